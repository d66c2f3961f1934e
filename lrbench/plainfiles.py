"""Reading a results folder's files as plain files of its own, with bounds.

A results folder is shared, copied and sometimes tampered with: a file there may be a symbolic
link (to a file elsewhere, to /dev/zero), a FIFO (a read blocks forever), a device, a folder, or
far larger or deeper than lrbench ever writes. Every read of it goes through `read_bounded`,
which never follows a link, never blocks, and never reads more than a bound; JSON is parsed only
after a depth check. The bounds are far above what any run writes (README, "Results on disk").
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
from pathlib import Path
from typing import Any, BinaryIO

from lrbench.errors import UserError

MAX_JSON_BYTES = 1 << 20  # spec.json, summary.json, plan.json: a few KB each
MAX_METRICS_BYTES = 16 << 20  # metrics.csv: about 150 bytes an epoch
MAX_JSON_DEPTH = 32  # lrbench writes 4 levels

# never follow a link, never block on a FIFO
_READ_FLAGS = (
    os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
)
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")


class NotPlainFile(OSError):
    """A path that is not a plain file of its own (a link, FIFO, device, folder) or is larger
    than lrbench reads; its message names the file and what it is."""


def kind_of(path: Path) -> str | None:
    """What a path is when it is not a plain file ('a symbolic link', 'a FIFO', ...), or None
    for a plain file or nothing at all. Links are not followed."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return None
    return _kind(mode)


def kinds_in(folder: Path) -> dict[str, str | None]:
    """What each entry of a folder is, by name (kind_of's words; None for a plain file), from
    one listing of the folder rather than a stat per file. Empty when the folder cannot be
    listed."""
    try:
        with os.scandir(folder) as entries:
            return {entry.name: _entry_kind(entry) for entry in entries}
    except OSError:
        return {}


def _entry_kind(entry: os.DirEntry) -> str | None:
    try:
        if entry.is_file(follow_symlinks=False):
            return None
        if entry.is_symlink():
            return "a symbolic link"
        if entry.is_dir(follow_symlinks=False):
            return "a folder"
        return _kind(entry.stat(follow_symlinks=False).st_mode)
    except OSError:  # gone since the listing
        return None


def _kind(mode: int) -> str | None:
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a socket" if stat.S_ISSOCK(mode) else "not a plain file"


def open_plain(path: Path) -> BinaryIO:
    """A plain file of its own, open for reading; FileNotFoundError when missing, NotPlainFile
    for a link, FIFO, device or folder. Opening never follows a link and never blocks."""
    fd, _ = _open_plain_fd(path)
    return os.fdopen(fd, "rb")


def read_bounded(path: Path, limit: int) -> bytes:
    """A plain file's bytes, at most `limit` of them; FileNotFoundError when missing,
    NotPlainFile for a link, FIFO, device, folder or a larger file. Unbuffered: the run folders
    of a large report are many small files, read whole."""
    fd, info = _open_plain_fd(path)
    try:
        chunks: list[bytes] = []
        size = 0
        # the size read, not the bound: a read of `limit` bytes would allocate them all
        want = min(info.st_size, limit) + 1
        while size <= limit and (chunk := os.read(fd, want)):
            chunks.append(chunk)
            size += len(chunk)
            if size <= info.st_size:
                break  # the whole file, as it was sized
            want = limit + 1 - size  # it grew since: read on, up to the bound
    finally:
        os.close(fd)
    if info.st_size > limit or size > limit:
        raise NotPlainFile(
            f"{path.name} holds more than {limit:,} bytes, more than lrbench ever writes there"
        )
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _open_plain_fd(path: Path) -> tuple[int, os.stat_result]:
    """open_plain's file descriptor and what fstat says of it."""
    try:
        fd = os.open(path, _READ_FLAGS)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise NotPlainFile(f"{path.name} is a symbolic link, not a file of its own") from None
        raise
    info = os.fstat(fd)
    what = _kind(info.st_mode)
    if what is not None:
        os.close(fd)
        raise NotPlainFile(f"{path.name} is {what}, not a plain file")
    return fd, info


def json_depth(text: str) -> int:
    """How deep arrays and objects nest in a JSON text (strings are skipped)."""
    depth = deepest = 0
    for bracket in _BRACKETS.findall(_STRING.sub('""', text)):
        depth += 1 if bracket in "[{" else -1
        deepest = max(deepest, depth)
    return deepest


def read_json_bounded(path: Path, limit: int = MAX_JSON_BYTES) -> Any:
    """A JSON file's value: bounded in size and depth. Raises OSError (NotPlainFile included)
    or ValueError (not UTF-8, not JSON, nested deeper than MAX_JSON_DEPTH)."""
    text = read_bounded(path, limit).decode("utf-8")
    opening = text.count("[") + text.count("{")  # a bound on the depth: most files stop here
    if opening > MAX_JSON_DEPTH and json_depth(text) > MAX_JSON_DEPTH:
        raise ValueError(f"nested deeper than {MAX_JSON_DEPTH} levels")
    return json.loads(text)


def make_folder(path: Path, what: str, name: str | None = None) -> Path:
    """A folder to write into, made if missing; a file in its place, or a folder that cannot be
    made, is one line naming `name` (the option that gave it, else the path)."""
    name = name or str(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{name}: is a file, not a {what}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"{name}: cannot create the {what} ({err.strerror})") from None
    return path
