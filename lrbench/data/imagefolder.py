"""Images in the `train/<class>/*`, `test/<class>/*` layout, from a folder or a tar archive.

The archive is read as a stream (one pass, no extraction to disk) and its JPEGs are decoded by a
small process pool while the stream is still being read. The result is cached (see cache.py), so
only the first load of a source pays for decoding.
"""

from __future__ import annotations

import lzma
import os
import tarfile
import zlib
from collections.abc import Iterable, Iterator
from itertools import chain, islice
from pathlib import Path
from typing import NamedTuple

import numpy as np

from lrbench.data import cache
from lrbench.data.raw import RawData
from lrbench.errors import UserError
from lrbench.forked import usable_cores
from lrbench.imagedecode import decode_chunk, decode_parallel, one_line

SPLITS = ("train", "test")
IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp", ".gif"}
)
ARCHIVE_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.xz", ".txz", ".tar.bz2", ".tbz2")
_CHUNK = 512
_POOL_MIN_IMAGES = 2048


class _Entry(NamedTuple):
    """Sorts as a plain tuple (split, class, file name): fast for 60k entries."""

    split: str
    cls: str
    name: str


def load_imagefolder(root: str | None, cache_dir: Path) -> RawData:
    path = source_path(root)
    if path.is_dir():
        return _load_folder(path, cache_dir)
    return _load_archive(path, cache_dir)


def source_path(root: str | None) -> Path:
    """The folder or archive `root` names, made absolute; a UserError when there is none."""
    if not root:
        raise UserError(
            "dataset imagefolder needs a root: {name: imagefolder, root: PATH} where PATH is a "
            "folder or .tar[.gz|.xz] archive holding train/<class>/* and test/<class>/*"
        )
    path = Path(root).expanduser().absolute()
    if not path.exists():
        raise UserError(f"imagefolder root {path} does not exist")
    if not (path.is_dir() or path.is_file()):  # a named pipe would block the reader forever
        raise UserError(f"imagefolder root {path} is neither a folder nor a regular file")
    return path


def folder_images(path: Path) -> tuple[Path, list[tuple[_Entry, str, int, int]]]:
    """The folder holding train/ and test/, and its images sorted by entry, each with its file,
    size and mtime."""
    base = _folder_base(path)
    return base, sorted(_scan(base))


def _load_folder(path: Path, cache_dir: Path) -> RawData:
    base, files = folder_images(path)
    listing = [(*entry, size, mtime) for entry, _, size, mtime in files]
    key = {"kind": "folder", "path": str(base.resolve()), "files": listing}

    def build() -> RawData:
        return _assemble(path, _decode_stream((entry, file) for entry, file, _, _ in files))

    return cache.cached(cache_dir, f"imagefolder-{path.name}", key, build)


def _scan(base: Path) -> Iterator[tuple[_Entry, str, int, int]]:
    """Every image under base/{train,test}/<class>/ with its size and mtime (one stat each)."""
    for split in SPLITS:
        with os.scandir(base / split) as classes:
            class_dirs = [d for d in classes if d.is_dir() and not d.name.startswith(".")]
        for cls in class_dirs:
            with os.scandir(cls.path) as files:
                for f in files:
                    if _is_image(f.name) and f.is_file():
                        st = f.stat()
                        yield _Entry(split, cls.name, f.name), f.path, st.st_size, st.st_mtime_ns


def _folder_base(path: Path) -> Path:
    """`path` itself or its one subfolder that holds train/ and test/."""
    if all((path / s).is_dir() for s in SPLITS):
        return path
    inner = [
        d for d in sorted(path.iterdir()) if d.is_dir() and all((d / s).is_dir() for s in SPLITS)
    ]
    if len(inner) == 1:
        return inner[0]
    raise UserError(
        f"imagefolder root {path} has no train/ and test/ folders (nor one subfolder holding them)"
    )


def archive_key(path: Path) -> dict[str, object]:
    """What names an archive's cached decode and fingerprint: the file as it is now."""
    st = path.stat()
    return {
        "kind": "archive",
        "path": str(path.resolve()),
        "size": st.st_size,
        "mtime_ns": st.st_mtime_ns,
    }


def _load_archive(path: Path, cache_dir: Path) -> RawData:
    key = archive_key(path)
    return cache.cached(
        cache_dir, f"imagefolder-{path.name}", key, lambda: _assemble(path, _read_archive(path))
    )


def _read_archive(path: Path) -> dict[_Entry, np.ndarray]:
    try:
        with tarfile.open(path, "r|*") as tar:
            decoded = _decode_stream(_archive_members(tar))
    except (tarfile.TarError, EOFError, OSError, ValueError, lzma.LZMAError, zlib.error) as err:
        hint = (
            ""
            if path.name.endswith(ARCHIVE_SUFFIXES)
            else " (expected a folder or a .tar[.gz|.xz] archive)"
        )
        raise UserError(f"cannot read imagefolder archive {path}: {one_line(err)}{hint}") from err
    prefixes = {p for p, _ in decoded}
    if "" in prefixes:
        prefix = ""
    elif len(prefixes) == 1:
        (prefix,) = prefixes
    else:
        found = ", ".join(sorted(prefixes)) or "none"
        raise UserError(
            f"imagefolder archive {path} needs train/<class>/* and test/<class>/* at its top "
            f"or inside exactly one top-level folder (found image folders under: {found})"
        )
    return {entry: img for (p, entry), img in decoded.items() if p == prefix}


def _archive_members(tar: tarfile.TarFile) -> Iterator[tuple[tuple[str, _Entry], bytes]]:
    """(prefix, entry) and the file's bytes, for every image at [prefix/]split/class/name."""
    for member in tar:
        if not member.isfile():
            continue
        parts = [p for p in member.name.split("/") if p not in ("", ".")]
        if any(p.startswith(".") or p == "__MACOSX" for p in parts) or not _is_image(parts[-1]):
            continue
        if len(parts) == 3 and parts[0] in SPLITS:
            prefix = ""
        elif len(parts) == 4 and parts[1] in SPLITS:
            prefix, parts = parts[0], parts[1:]
        else:
            continue
        f = tar.extractfile(member)
        if f is not None:
            yield (prefix, _Entry(*parts)), f.read()


def _is_image(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _decode_stream(items: Iterable[tuple[object, bytes | str]]) -> dict:
    """Decode (key, bytes-or-path) pairs into {key: uint8 HWC array}, in parallel when it pays.

    A file that cannot be decoded is reported by name (lrbench.imagedecode returns why).
    """
    keys: list[object] = []

    def numbered() -> Iterator[tuple[int, bytes | str]]:
        for key, src in items:
            keys.append(key)
            yield len(keys) - 1, src

    stream = numbered()
    head = list(islice(stream, _POOL_MIN_IMAGES))
    workers = _workers()
    if workers == 1 or len(head) < _POOL_MIN_IMAGES:
        decoded = [decode_chunk([*head, *stream])]
    else:
        rest = chain(head, stream)
        decoded = decode_parallel(iter(lambda: list(islice(rest, _CHUNK)), []), workers)
    out: dict = {}
    for chunk in decoded:
        for i, img in chunk:
            if isinstance(img, str):
                raise UserError(f"cannot decode image {_entry_path(keys[i])}: {img}")
            out[keys[i]] = img
    return out


def _entry_path(key: object) -> str:
    """An image's path in its folder or archive (a folder's keys are entries, an archive's
    (prefix, entry) pairs; a file given by path names itself)."""
    if isinstance(key, str):
        return key
    prefix, entry = ("", key) if isinstance(key, _Entry) else key
    return "/".join(p for p in (prefix, entry.split, entry.cls, entry.name) if p)


def _assemble(path: Path, images: dict[_Entry, np.ndarray]) -> RawData:
    classes = sorted({e.cls for e in images if e.split == "train"})
    tests = {e.cls for e in images if e.split == "test"}
    if not classes or not tests:
        missing = "train" if not classes else "test"
        raise UserError(f"imagefolder {path} has no images in {missing}/<class>/")
    if unknown := sorted(tests - set(classes)):
        raise UserError(
            f"imagefolder {path}: test classes {', '.join(unknown)} have no train/ folder"
        )
    index = {c: i for i, c in enumerate(classes)}
    ordered = sorted(images)
    shape = images[ordered[0]].shape
    for e in ordered:
        if images[e].shape != shape:
            h, w = shape[:2]
            raise UserError(
                f"imagefolder {path}: {e.split}/{e.cls}/{e.name} is "
                f"{images[e].shape[1]}x{images[e].shape[0]}, not {w}x{h} like the others; "
                "all images must have one size"
            )
    arrays = {}
    for split in SPLITS:
        keys = [e for e in ordered if e.split == split]
        x = np.stack([images[e] for e in keys]).transpose(0, 3, 1, 2)
        arrays[f"{split}_x"] = np.ascontiguousarray(x)
        arrays[f"{split}_y"] = np.array([index[e.cls] for e in keys], dtype=np.int64)
    return RawData(**arrays, classes=classes)


def _workers() -> int:
    return min(usable_cores(), 8)
