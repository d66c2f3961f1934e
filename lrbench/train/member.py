"""A member of the training loop: one run and everything the run *is*, whoever steps its model.

Its folder (claimed, never overwritten when it holds another run), spec.json, the metrics rows,
the checkpoint's content, the summary, divergence, plateau and early-stopping state, and its
snapshot ensemble are all here, once; whether the run trains alone or as one member of a pack
is the stepper's business (lrbench.train.steppers, lrbench.train.packed.stepper).
"""

from __future__ import annotations

import math
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import numpy as np
import torch

from lrbench.data import DeviceData
from lrbench.errors import UserError
from lrbench.results import RunDir, atomic_write_json, metric_columns, read_json
from lrbench.schedules import build_schedule
from lrbench.specs import RunSpec
from lrbench.tasks import CrossEntropy, Task, task_for
from lrbench.train.checkpoint import checkpoint_fault, read_checkpoint
from lrbench.train.checkpoint import identity as checkpoint_identity
from lrbench.train.optim import base_momentum
from lrbench.train.reactive import Reactions
from lrbench.train.runtime import provenance
from lrbench.train.snapshots import SnapshotEnsemble, snapshot_steps, split_labels
from lrbench.train.tblog import RunLog

ENSEMBLE_COLUMNS = ["ensemble_size", "ensemble_test_acc"]
FINAL_KEYS = ("test_acc", "test_loss", "val_acc", "val_loss")
LOSS_KEYS = ("train_loss", "test_loss", "val_loss")


def claim_run_dir(spec: RunSpec, run: RunDir) -> None:
    """Refuse a folder that holds a different run: its files must never be overwritten. The
    same run with its data read from another path (RunSpec.identity) is the same run. A
    sweep's folder is named by its run's id: there a missing or broken spec.json is damage,
    and the run trains again from the start (Member.prepare)."""
    own = run.path.name == spec.run_id
    if not run.spec.exists():
        if own or not run.path.exists():
            return
        if any(not p.name.startswith(".") for p in run.path.iterdir()):
            raise UserError(f"{run.path} is not empty and holds no spec.json: choose another --out")
        return
    try:
        stored = read_json(run.spec)
        same = RunSpec.model_validate({k: stored[k] for k in RunSpec.model_fields if k in stored})
    except Exception as err:
        if own:
            return
        raise UserError(f"{run.spec} is unreadable ({err}); move the folder away") from err
    if same.identity() != spec.identity():
        raise UserError(
            f"{run.path} holds a different run ({stored.get('run_id')}); choose another --out"
        )


@dataclass
class Member:
    """One run in the loop, model `index` of its stepper (0 when it trains alone)."""

    index: int
    spec: RunSpec
    run: RunDir
    summary: dict[str, Any] | None = None  # set once the run has ended
    schedule_rates: np.ndarray = field(default_factory=lambda: np.zeros(0))  # [T], before plateau
    schedule_momenta: np.ndarray = field(default_factory=lambda: np.zeros(0))  # [T] (Adam: beta1)
    reactions: Reactions | None = None
    snapshot_steps: frozenset[int] = frozenset()
    ensemble: SnapshotEnsemble = field(default_factory=SnapshotEnsemble)
    state: dict[str, Any] | None = None  # the checkpoint it resumes from
    epochs_done: int = 0
    wall_before: float = 0.0
    row: dict[str, Any] = field(default_factory=dict)
    columns: list[str] = field(default_factory=list)
    log: RunLog | None = None  # live curves, when the runtime asks for them
    task: Task = field(default_factory=CrossEntropy)  # its loss and metrics (lrbench.tasks)

    @classmethod
    def open(cls, index: int, spec: RunSpec, run: RunDir) -> Member:
        """Claim the folder; a finished run comes back with its summary."""
        claim_run_dir(spec, run)
        member = cls(index, spec, run)
        if run.summary.exists() and run.state() in ("done", "diverged"):
            member.summary = read_json(run.summary)
        return member

    @property
    def epochs(self) -> int:
        return self.spec.epochs

    def prepare(self, data: DeviceData, device: torch.device, precision: str, pack: int) -> None:
        """Tables, reactive state and snapshots; resume from the checkpoint when its metrics
        rows agree with it, else start over (spec.json records how the run trains)."""
        self.task = task_for(self.spec)
        steps_per_epoch = data.steps_per_epoch(self.spec.batch_size)
        total = steps_per_epoch * self.epochs
        schedule = build_schedule(self.spec.schedule)
        self.schedule_rates = self.spec.optimizer.lr * schedule.multipliers(total, steps_per_epoch)
        momenta = schedule.momenta(total, steps_per_epoch)  # None: it leaves momentum alone
        self.schedule_momenta = (
            momenta if momenta is not None else np.full(total, base_momentum(self.spec.optimizer))
        )
        self.reactions = Reactions(self.spec, schedule, steps_per_epoch)
        steps = snapshot_steps(schedule, total, steps_per_epoch) if self.spec.snapshots else []
        self.snapshot_steps = frozenset(steps)
        self.columns = [
            c for c in metric_columns(data.has_val) if self.task.accuracy or not c.endswith("_acc")
        ] + (ENSEMBLE_COLUMNS if self.spec.snapshots else [])
        run = self.run
        run.path.mkdir(parents=True, exist_ok=True)
        run.remove_temp_files()
        damaged = run.damage()  # a finished run whose files cannot be trusted: from the start
        run.summary.unlink(missing_ok=True)
        if run.checkpoint.exists() and not damaged:
            state = read_checkpoint(run.checkpoint)
            own = checkpoint_fault(state, self.spec, steps_per_epoch) is None
            if own and run.complete_epochs() >= state["epoch"]:
                self._resume(state)
                return
            # metrics.csv lost rows the checkpoint counts, or the checkpoint is another run's
            # (or holds an epoch no run reaches): only one checkpoint is kept, so the run
            # trains again from the start and ends equal to an untouched run
        run.checkpoint.unlink(missing_ok=True)
        run.truncate_metrics(0)
        record = spec_record(self.spec, steps_per_epoch, device, precision, pack, self.index)
        atomic_write_json(run.spec, record)

    def _resume(self, state: dict[str, Any]) -> None:
        assert self.reactions is not None
        self.state = state
        self.epochs_done = int(state["epoch"])
        self.wall_before = float(state.get("wall_time_s", 0.0))
        self.reactions.restore(state)
        self.ensemble.load_state_dict(state.get("ensemble", {}))
        self.run.truncate_metrics(self.epochs_done)
        self.row = self.run.last_metrics_row()

    def rates(self, first: int, count: int) -> np.ndarray:
        """This member's rate at steps first .. first+count-1, plateau's decay applied."""
        assert self.reactions is not None
        return self.schedule_rates[first : first + count] * self.reactions.lr_scale

    def momenta(self, first: int, count: int) -> np.ndarray:
        """This member's momentum (Adam: beta1) at steps first .. first+count-1."""
        return self.schedule_momenta[first : first + count]

    def new_row(self, epoch: int, step: int, train_loss: float, train_acc: float) -> dict:
        return {
            "epoch": epoch,
            "step": step,
            "lr": float(self.rates(step - 1, 1)[0]),
            "momentum": float(self.momenta(step - 1, 1)[0]),
            "train_loss": train_loss,
            **({"train_acc": train_acc} if self.task.accuracy else {}),
        }

    def add_ensemble_columns(self, row: dict[str, Any], count_before: int, data: DeviceData):
        if self.ensemble.count > count_before:
            row["ensemble_size"] = self.ensemble.count
            row["ensemble_test_acc"] = self.ensemble.accuracy(split_labels(data, "test"))

    def record(self, row: dict[str, Any], rates: np.ndarray, momenta: np.ndarray) -> None:
        """The epoch's row into metrics.csv, and with the rates and momenta its steps used into
        the log."""
        self.run.append_metrics(row, self.columns)
        self.row = row
        if self.log is not None:
            self.log.epoch(row, rates, momenta)

    @property
    def diverged(self) -> bool:
        """A loss in the last row is not finite (training or evaluation): the run diverged."""
        return any(
            isinstance(self.row.get(k), float) and not math.isfinite(self.row[k]) for k in LOSS_KEYS
        )

    def checkpoint_extra(self, wall: float) -> dict[str, Any]:
        assert self.reactions is not None
        return {
            **checkpoint_identity(self.spec),
            "wall_time_s": wall,
            "ensemble": self.ensemble.state_dict(),
            **self.reactions.state(),
        }

    def finish(self, status: str, wall: float) -> dict[str, Any]:
        stopped = self.reactions.stopped_epoch if self.reactions else None
        self.summary = {
            "status": status,
            "epochs_completed": int(self.row.get("epoch", self.epochs)),
            "final": {
                k: self.row.get(k) for k in FINAL_KEYS if self.task.accuracy or "_acc" not in k
            },
            "wall_time_s": wall,
            "stopped_early": stopped is not None,
            "stopped_epoch": stopped,
        }
        atomic_write_json(self.run.summary, self.summary)
        return self.summary

    def fail(self, err: BaseException) -> None:
        self.run.log.write_text(traceback.format_exc())
        self.summary = {"status": "failed", "error": f"{type(err).__name__}: {err}"}
        atomic_write_json(self.run.summary, self.summary)


def spec_record(
    spec: RunSpec,
    steps_per_epoch: int,
    device: torch.device,
    precision: str,
    pack_size: int = 1,
    index: int = 0,
) -> dict[str, Any]:
    """spec.json: the resolved spec, the run's step counts, and how it trained (provenance)."""
    return {
        "run_id": spec.run_id,
        **spec.model_dump(mode="json"),
        **({"metric": spec.default_metric} if spec.default_metric != "error" else {}),
        "steps_per_epoch": steps_per_epoch,
        "total_steps": steps_per_epoch * spec.epochs,
        "provenance": {
            **provenance(device, precision),
            "pack": {"size": pack_size, "slot": index},  # the stored key stays "slot"
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
    }
