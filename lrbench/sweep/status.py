"""`lrbench status`: each sweep's runs by state, what failed or is damaged, and how far the
unfinished runs are, with an estimate of the time left. It reads results only: no config is
imported, so a results folder never runs code."""

from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from lrbench.errors import UserError
from lrbench.results import RunDir, run_dirs, sweep_folders
from lrbench.sweep.plan import planned_run_ids

STATES = ("done", "diverged", "failed", "damaged", "running", "partial", "new")


@dataclass
class Progress:
    """An unfinished run: epochs done of its epochs, and the time its remaining epochs take at
    its own median epoch time (None before its first epoch)."""

    run_id: str
    state: str
    epochs_done: int
    epochs: int
    seconds_left: float | None


@dataclass
class SweepStatus:
    path: Path
    counts: Counter[str] = field(default_factory=Counter)
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # (state, run, why)
    unfinished: list[Progress] = field(default_factory=list)
    seconds_left: float | None = None  # the unfinished and unstarted runs, one after another

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def sweep_status(results: Path) -> list[SweepStatus]:
    if not results.exists():
        raise UserError(f"{results}: no such folder")
    if not results.is_dir():
        raise UserError(f"{results}: is a file, not a results folder")
    sweeps = sweep_folders(results)
    if not sweeps:
        raise UserError(f"{results}: holds no sweep (no runs/ folder)")
    return [_one(sweep) for sweep in sweeps]


def _one(sweep: Path) -> SweepStatus:
    """A sweep's runs, each judged once by its verdict (every file read once)."""
    status = SweepStatus(sweep)
    runs = run_dirs(sweep)
    epoch_times: list[float] = []
    spec_epochs: list[int] = []
    for run in runs:
        verdict = run.verdict()
        state = verdict.state
        if state in ("partial", "new") and run.is_locked():
            state = "running"
        status.counts[state] += 1
        if state in ("failed", "damaged"):
            status.problems.append((state, run.path.name, verdict.reason or "unreadable"))
        times = [r["epoch_time_s"] for r in verdict.rows
                 if isinstance(r.get("epoch_time_s"), float | int)]  # fmt: skip
        epoch_times += times
        epochs = _epochs(verdict.spec)
        if epochs and len(spec_epochs) < 20:
            spec_epochs.append(epochs)
        if state in ("running", "partial"):
            status.unfinished.append(_progress(run, state, times, epochs))
    planned = planned_run_ids(sweep)
    if planned is not None:
        on_disk = {r.path.name for r in runs}
        status.counts["new"] += sum(1 for r in planned if r not in on_disk)
    status.seconds_left = _seconds_left(status, epoch_times, spec_epochs)
    return status


def _epochs(spec: dict | None) -> int:
    epochs = spec.get("epochs") if spec else None
    return epochs if isinstance(epochs, int) and not isinstance(epochs, bool) and epochs > 0 else 0


def _progress(run: RunDir, state: str, times: list[float], epochs: int) -> Progress:
    done = len(times)
    left = (epochs - done) * statistics.median(times) if times and epochs else None
    return Progress(run.path.name, state, done, epochs, left)


def _seconds_left(
    status: SweepStatus, epoch_times: list[float], spec_epochs: list[int]
) -> float | None:
    """The remaining epochs of unfinished and unstarted runs at the sweep's median epoch time
    (unstarted runs are counted at the epochs of the runs that have started)."""
    if not epoch_times:
        return None
    median = statistics.median(epoch_times)
    total = sum((p.epochs - p.epochs_done) * median for p in status.unfinished)
    new = status.counts["new"]
    if new:
        epochs = [p.epochs for p in status.unfinished] or spec_epochs
        total += new * median * (statistics.mean(epochs) if epochs else 0)
    return total
