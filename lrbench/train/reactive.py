"""What reacts to metrics: decay on plateau and early stopping, as pure state transitions.

Each state is plain data stored in the run's checkpoint and advanced once per epoch by a pure
function, so a resumed run makes exactly the decisions an uninterrupted one makes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

# torch.optim.lr_scheduler.ReduceLROnPlateau ignores reductions smaller than this.
PLATEAU_EPS = 1e-8


@dataclass(frozen=True)
class PlateauState:
    """ReduceLROnPlateau (mode min, relative threshold) over the rate's scale factor."""

    scale: float = 1.0
    best: float = math.inf
    bad_epochs: int = 0
    cooldown_left: int = 0

    def update(
        self, metric: float, *, base_lr: float, factor: float, patience: int,
        threshold: float, cooldown: int, min_lr: float,
    ) -> PlateauState:  # fmt: skip
        state = self
        if metric < state.best * (1.0 - threshold):
            state = replace(state, best=metric, bad_epochs=0)
        else:
            state = replace(state, bad_epochs=state.bad_epochs + 1)
        if state.cooldown_left > 0:
            state = replace(state, cooldown_left=state.cooldown_left - 1, bad_epochs=0)
        if state.bad_epochs > patience:
            old = base_lr * state.scale
            new = max(old * factor, min_lr)
            if old - new > PLATEAU_EPS:
                state = replace(state, scale=new / base_lr)
            state = replace(state, cooldown_left=cooldown, bad_epochs=0)
        return state

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def plateau_params(profile: Any, epochs: int) -> dict[str, Any]:
    """The ReduceLROnPlateau arguments of a plateau schedule, patience in epochs."""
    return {
        "factor": profile.factor,
        "patience": profile.patience_epochs(epochs),
        "threshold": profile.threshold,
        "cooldown": profile.cooldown,
        "min_lr": profile.min_lr,
    }


@dataclass(frozen=True)
class EarlyStopState:
    """Stop when `metric` has not improved by min_delta for `patience` epochs at a check."""

    best: float | None = None
    best_epoch: int = 0

    def update(
        self, metric: float, epoch: int, *, maximize: bool, min_delta: float
    ) -> EarlyStopState:
        if self.best is None:
            return EarlyStopState(metric, epoch)
        gain = metric - self.best if maximize else self.best - metric
        return EarlyStopState(metric, epoch) if gain > min_delta else self

    def should_stop(self, epoch: int, patience: int) -> bool:
        return self.best is not None and epoch - self.best_epoch >= patience

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def maximize(metric: str) -> bool:
    return metric.endswith("_acc")


def check_epochs(
    cycle_end_steps: list[int], steps_per_epoch: int, epochs: int, cyclical: bool
) -> set[int]:
    """Epochs (1-based) at whose end early stopping may judge the run.

    Every epoch for schedules without cycles; for cyclical schedules (and snapshots) only the
    epochs in which a cycle ends, so a run is never judged at a learning-rate peak.
    """
    if not cyclical:
        return set(range(1, epochs + 1))
    return {math.ceil(k / steps_per_epoch) for k in cycle_end_steps}


class Reactions:
    """A run's reactive parts (plateau decay, early stopping), advanced once per epoch.

    The loop's member multiplies its precomputed rates by `lr_scale`, calls `after_epoch` with
    each metrics row, stores `state()` in the checkpoint and hands it back to `restore`.
    """

    def __init__(self, spec: Any, schedule: Any, steps_per_epoch: int) -> None:
        self.base_lr = spec.optimizer.lr
        self.plateau = PlateauState()
        self.plateau_args = (
            plateau_params(schedule.profile, spec.epochs) if schedule.reactive else None
        )
        self.monitor = spec.schedule.get("monitor")
        self.early = spec.early_stop
        self.stop = EarlyStopState()
        self.stopped_epoch: int | None = None
        total = steps_per_epoch * spec.epochs
        cyclical = bool(schedule.profile.cycle_ends()) or spec.snapshots
        ends = schedule.cycle_end_steps(total, steps_per_epoch)
        self.checks = check_epochs(ends, steps_per_epoch, spec.epochs, cyclical)

    @property
    def lr_scale(self) -> float:
        return self.plateau.scale

    def after_epoch(self, epoch: int, row: dict[str, Any]) -> None:
        if self.plateau_args is not None:
            self.plateau = self.plateau.update(
                row[self.monitor], base_lr=self.base_lr, **self.plateau_args
            )
        if self.early and epoch in self.checks:
            metric = self.early["metric"]
            self.stop = self.stop.update(
                row[metric], epoch, maximize=maximize(metric), min_delta=self.early["min_delta"]
            )
            if self.stop.should_stop(epoch, self.early["patience"]) and epoch < max(self.checks):
                self.stopped_epoch = epoch

    def state(self) -> dict[str, Any]:
        return {
            "plateau": self.plateau.to_dict(),
            "early_stop": self.stop.to_dict(),
            "stopped_epoch": self.stopped_epoch,
        }

    def restore(self, state: dict[str, Any]) -> None:
        self.plateau = PlateauState(**state.get("plateau", {}))
        self.stop = EarlyStopState(**state.get("early_stop", {}))
        self.stopped_epoch = state.get("stopped_epoch")
