"""A run's checkpoint: written atomically, off the training thread, and read as data only.

Format (one file, `checkpoint.pt`, the same whether the run trained alone or in a pack, so either
path resumes the other's): the model's state_dict, the optimizer's state (torch.optim's
state_dict; for schedule-free optimizers lrbench's own layout, see lrbench.train.optim), `epoch` and
`step` done, the run it belongs to (`run_id`, `spec_sha256`, `seed`: a checkpoint is never
resumed in another run's folder, and `status` reads them without torch, see
lrbench.checkpoint_identity), the RNG states, `wall_time_s`, and the reactive state (plateau, early stopping) and
snapshot ensemble of lrbench.train.member.

Results folders are shared between people and clusters, so a checkpoint is loaded with
`weights_only=True`: tensors and plain containers, never code. Anything else is refused.
"""

from __future__ import annotations

import io
import pickle
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from lrbench.checkpoint_identity import identity, identity_fault
from lrbench.errors import UserError
from lrbench.plainfiles import kind_of
from lrbench.results import atomic_write_bytes
from lrbench.specs import RunSpec

MAX_CHECKPOINT_BYTES = 64 << 30  # far above any model lrbench trains


def cpu_copy(obj: Any) -> Any:
    """A copy of `obj` with every tensor copied to the CPU (also on the CPU, where `.cpu()`
    would alias): safe to serialise while training goes on."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: cpu_copy(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return type(obj)(cpu_copy(v) for v in obj)
    return obj


def rng_state() -> dict[str, Any]:
    return {
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch_rng"].cpu())
    if state.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])


def write_checkpoint(path: Path, state: dict[str, Any]) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint's content, loaded as data only; UserError for anything else."""
    what = kind_of(path)
    if what is not None:
        raise UserError(f"{path} is {what}, not a plain file; lrbench will not read it")
    if path.stat().st_size > MAX_CHECKPOINT_BYTES:
        raise UserError(f"{path} is larger than lrbench ever writes; delete it to restart the run")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise UserError(
            f"{path} holds more than tensors and plain data, so lrbench will not load it (a "
            "results folder is data, never code); delete it to train the run from the start"
        ) from err
    except Exception as err:
        raise UserError(f"{path} is unreadable ({err}); delete it to restart the run") from err
    required = ("model", "optimizer", "epoch", "step")
    if not isinstance(state, dict) or any(k not in state for k in required):
        raise UserError(f"{path} is not an lrbench checkpoint; delete it to restart the run")
    return state


def checkpoint_fault(state: dict[str, Any], spec: RunSpec, steps_per_epoch: int) -> str | None:
    """Why a checkpoint cannot resume this run (another run's, or an epoch no run reaches), or
    None: the words `status` and `report` give too (lrbench.checkpoint_identity)."""
    return identity_fault(state, identity(spec), spec.epochs, steps_per_epoch)


class CheckpointWriter:
    """Writes an epoch's checkpoints on a background thread while the next epoch trains, so the
    device never waits for files to be serialised and fsynced. At most one epoch's set is in
    flight; leaving the block waits for it and re-raises a failed write. A kill -9 meanwhile
    leaves the previous checkpoints (atomic writes) and resume drops the metrics rows after them.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lrbench-checkpoint")
        self._pending: Future | None = None

    def submit(self, fn, *args) -> None:
        self.wait()
        self._pending = self._pool.submit(fn, *args)

    def wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def __enter__(self) -> CheckpointWriter:
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.wait()
        finally:
            self._pool.shutdown()
