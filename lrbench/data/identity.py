"""What names a dataset in run ids: its content, never how the path to it is spelled.

An image folder or archive is known by its fingerprint, `sha256:` and a sha256
- of an archive: of its bytes (what `sha256sum` prints);
- of a folder: of the sorted list of its images' `split/class/file` names, each with the sha256
  of the file's bytes (what the loader skips, other files and hidden ones, is left out; so is
  the name of the folder holding train/ and test/).
So the same archive by a relative or absolute path, through a symlink or copied elsewhere has
one fingerprint, and so has the same folder; a changed file gives another. An archive and the
folder it extracts to have different ones: their runs are different runs.

The fingerprint is kept in the data cache folder, keyed by what the file system says about the
source: an archive's resolved path, size and mtime; a folder's resolved path and the name, size
and mtime of each image. Hashing reads every byte once (the 18 MB CIFAR-10 archive: 0.1 s);
after that a look costs a stat (a folder: one per image). A file rewritten with its size and
mtime kept is not noticed, as by make.

The other sources need no fingerprint: torchvision's files are fixed by the dataset's name,
synthetic data by lrbench's code, and your own data are named by their module's source hash.
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lrbench.data import cache
from lrbench.data.imagefolder import archive_key, folder_images, source_path
from lrbench.errors import UserError
from lrbench.results import atomic_write_json
from lrbench.specs import FINGERPRINT, DatasetSpec

_BLOCK = 1 << 20


def identify(spec: DatasetSpec, cache_dir: Path | None = None) -> DatasetSpec:
    """`spec` with the fingerprint of its images (an image folder); other sources as they are.

    The root stays as it was given: runs read their data there.
    """
    if spec.name == "text":
        from lrbench.data.text import text_fingerprint

        return spec.model_copy(update={"fingerprint": text_fingerprint(spec.path)})
    if spec.name != "imagefolder":
        return spec
    return spec.model_copy(update={"fingerprint": fingerprint(spec.root, cache_dir)})


def check_identity(spec: DatasetSpec, cache_dir: Path) -> None:
    """The data at the root are the ones the run's id was made with."""
    if spec.name != "imagefolder" or spec.fingerprint is None:
        return
    now = fingerprint(spec.root, cache_dir)
    if now != spec.fingerprint:
        raise UserError(
            f"imagefolder {spec.root}: its files changed since the run was planned "
            f"(fingerprint {spec.fingerprint[:19]}, now {now[:19]}); run the command again, so "
            "that the run ids name the new images"
        )


def fingerprint(root: str | None, cache_dir: Path | None = None) -> str:
    """The fingerprint of the image folder or archive at `root`; the kept one when the source
    looks unchanged (`cache_dir`: the data cache folder by default)."""
    path = source_path(root)
    if cache_dir is None:
        cache_dir = cache.default_data_dir() / "cache"
    if path.is_dir():
        base, files = folder_images(path)
        listing = [(*entry, size, mtime) for entry, _, size, mtime in files]
        key: dict[str, Any] = {"kind": "folder", "path": str(base.resolve()), "files": listing}
        return _kept(cache_dir, key, lambda: f"sha256:{_folder_digest(files)}")
    return _kept(cache_dir, archive_key(path), lambda: f"sha256:{_file_digest(path)}")


def _kept(cache_dir: Path, key: dict[str, Any], compute: Callable[[], str]) -> str:
    """The fingerprint kept for `key`, else `compute()`'s, kept for next time."""
    source = key["path"]
    kept = cache.cache_path(cache_dir / "fingerprints", Path(source).name, key, suffix=".json")
    try:
        found = json.loads(kept.read_text()).get("fingerprint")
    except (OSError, ValueError, AttributeError):
        found = None
    if isinstance(found, str) and re.fullmatch(FINGERPRINT, found):
        return found
    value = compute()
    try:
        atomic_write_json(kept, {"source": source, "fingerprint": value})
    except OSError as err:
        warnings.warn(
            f"cannot write the data cache {kept} ({err}); the data are hashed again next time",
            stacklevel=3,
        )
    return value


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def _folder_digest(files: list[tuple[Any, str, int, int]]) -> str:
    """One sha256 over the sorted (split, class, file, sha256 of its bytes) of every image."""
    listing = [[*entry, _file_digest(Path(file))] for entry, file, _, _ in files]
    return hashlib.sha256(json.dumps(listing, separators=(",", ":")).encode()).hexdigest()
