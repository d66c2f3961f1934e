"""A disk cache of decoded images, so that decoding 60k JPEGs happens once per source.

Entries are keyed by what identifies the source (path, size, mtime), written atomically (temp
file, fsync, rename) so a killed process never leaves a half-written entry, and built under a
file lock so that runs started together decode once, not once each.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from lrbench.data.raw import RawData

FORMAT_VERSION = 1
_FIELDS = ("train_x", "train_y", "test_x", "test_y")


def default_data_dir() -> Path:
    """LRBENCH_DATA, else the user's cache folder: where CIFAR files and decoded caches live."""
    if env := os.environ.get("LRBENCH_DATA"):
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "lrbench"


def cache_path(cache_dir: Path, label: str, key: dict[str, Any], suffix: str = ".npz") -> Path:
    blob = json.dumps({"v": FORMAT_VERSION, **key}, sort_keys=True, default=str)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:16]
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", label)[:60]
    return cache_dir / f"{stem}-{digest}{suffix}"


def read(path: Path) -> RawData | None:
    """The cached entry, or None when it is missing or unreadable (then it is rebuilt)."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in _FIELDS}
            classes = [str(c) for c in npz["classes"]]
        return RawData(**arrays, classes=classes)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None


def write(path: Path, data: RawData) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            arrays = {name: getattr(data, name) for name in _FIELDS}
            np.savez(f, **arrays, classes=np.array(data.classes, dtype=str))
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cached(
    cache_dir: Path, label: str, key: dict[str, Any], build: Callable[[], RawData]
) -> RawData:
    """`build()`'s result, from the cache when an entry for `key` exists."""
    path = cache_path(cache_dir, label, key)
    hit = read(path) if path.exists() else None
    if hit is not None:
        return hit
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(path) + ".lock")
        lock.acquire()
    except OSError as err:
        warnings.warn(
            f"cannot write the data cache in {cache_dir} ({err}); decoding uncached", stacklevel=2
        )
        return build()
    try:
        hit = read(path) if path.exists() else None
        if hit is not None:
            return hit
        data = build()
        try:
            write(path, data)
        except OSError as err:
            warnings.warn(f"cannot write the data cache {path} ({err})", stacklevel=2)
        return data
    finally:
        lock.release()
