"""Which run a checkpoint belongs to, and how far it got: written into checkpoint.pt, checked
before it is resumed, and read back without torch, so that `status` and `report` judge it as
training does (lrbench.verdict).

checkpoint.pt is torch's zip format, whose `data.pkl` pickles one dict: the plain values
`run_id`, `spec_sha256`, `seed`, `epoch` and `step` beside the tensors. `read_header` reads
that pickle with an unpickler that imports and calls nothing (every class or function the file
names becomes an inert placeholder, every tensor None), so the identity comes from the very
file that would be resumed: one file written atomically, no second file to fall out of step
with it. Every read is bounded (a zip's central directory, the pickle), as for all files of a
results folder (lrbench.plainfiles).
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, BinaryIO

from lrbench.plainfiles import open_plain
from lrbench.specs import RunSpec

HEADER_KEYS = ("run_id", "spec_sha256", "seed", "epoch", "step")
MAX_READ_BYTES = 16 << 20  # a zip directory or data.pkl: a few KB to a few hundred KB


def identity(spec: RunSpec) -> dict[str, Any]:
    """What ties a checkpoint to its run: written into it, checked before it is resumed."""
    blob = json.dumps(spec.identity(), sort_keys=True, separators=(",", ":"))
    return {
        "run_id": spec.run_id,
        "spec_sha256": hashlib.sha256(blob.encode()).hexdigest(),
        "seed": spec.seed,
    }


def identity_fault(
    state: Mapping[str, Any], own: Mapping[str, Any], epochs: Any, steps_per_epoch: Any
) -> str | None:
    """Why a checkpoint's content cannot resume the run `own` names (another run's, or an
    epoch no run of `epochs` reaches), or None. Checkpoints of older versions record no
    identity and are judged by epoch alone; a bound not known (None) is not checked."""
    epoch, step = state.get("epoch"), state.get("step")
    reached = _whole(epoch) and _whole(step) and epoch >= 0
    if reached and _whole(epochs):
        reached = epoch <= epochs
    if reached and _whole(steps_per_epoch):
        reached = step == epoch * steps_per_epoch
    if not reached:
        return (
            f"checkpoint.pt records epoch {epoch!r} and step {step!r}, which this run never reaches"
        )
    for key, value in own.items():
        if key in state and state[key] != value:
            return (
                f"checkpoint.pt belongs to another run (its {key} is {state[key]!r}, not {value!r})"
            )
    return None


def recorded_fault(path: Path, spec: Mapping[str, Any]) -> str | None:
    """identity_fault of the checkpoint at `path` for the run spec.json `spec` describes, read
    without torch. None also when the file cannot be read as lrbench writes it: then resuming
    says why (lrbench.train.checkpoint), as nothing here can tell a damaged file from a format
    of another torch."""
    header = read_header(path)
    if header is None:
        return None
    own = {"run_id": spec.get("run_id")}
    sha = _spec_sha256(spec)
    if sha is not None:
        own["spec_sha256"] = sha
    own["seed"] = spec.get("seed")
    return identity_fault(header, own, spec.get("epochs"), spec.get("steps_per_epoch"))


def _spec_sha256(spec: Mapping[str, Any]) -> str | None:
    """The spec hash of a run spec.json records, or None when it is not a valid spec."""
    try:
        same = RunSpec.model_validate({k: spec[k] for k in RunSpec.model_fields if k in spec})
    except Exception:
        return None
    return identity(same)["spec_sha256"]


def read_header(path: Path) -> dict[str, Any] | None:
    """The plain values of HEADER_KEYS in a checkpoint, or None when it is not a zip holding
    a pickled dict within the bounds. Nothing in the file is imported or run."""
    try:
        with open_plain(path) as fh, zipfile.ZipFile(_ReadsAtMost(fh)) as archive:
            name = next((n for n in archive.namelist() if _is_data_pkl(n)), None)
            if name is None or archive.getinfo(name).file_size > MAX_READ_BYTES:
                return None
            with archive.open(name) as member:
                blob = member.read(MAX_READ_BYTES + 1)
        state = _InertUnpickler(io.BytesIO(blob)).load()
    except Exception:
        return None
    if len(blob) > MAX_READ_BYTES or not isinstance(state, dict):
        return None
    return {k: state[k] for k in HEADER_KEYS if k in state}


def _is_data_pkl(name: str) -> bool:
    """torch writes `<archive>/data.pkl`, the archive named after the file it first saved to."""
    folder, _, base = name.rpartition("/")
    return base == "data.pkl" and "/" not in folder


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _ReadsAtMost:
    """A file no single read of which exceeds MAX_READ_BYTES: a zip directory of gigabytes
    (lrbench writes a few KB) is refused instead of read into memory."""

    def __init__(self, fh: BinaryIO) -> None:
        self._fh = fh

    def read(self, n: int | None = -1) -> bytes:
        if n is None or n < 0:
            here = self._fh.tell()
            n = self._fh.seek(0, io.SEEK_END) - here
            self._fh.seek(here)
        if n > MAX_READ_BYTES:
            raise OSError(f"a read of {n:,} bytes, more than a checkpoint's header needs")
        return self._fh.read(n)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()

    def seekable(self) -> bool:
        return True


class _Inert:
    """What a class or function the pickle names becomes (a tensor's rebuild, an OrderedDict):
    it accepts every argument and item and does nothing with them."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def append(self, item: Any) -> None:
        pass

    def extend(self, items: Any) -> None:
        pass

    def add(self, item: Any) -> None:
        pass

    def __repr__(self) -> str:
        return "<an object>"


class _InertUnpickler(pickle.Unpickler):
    """Plain values as they are; nothing imported, nothing called, no tensor data read."""

    def find_class(self, module: str, name: str) -> Any:
        return _Inert

    def persistent_load(self, pid: Any) -> None:
        return None
