"""`lrbench status`: each sweep's runs by state, what failed or is damaged, and how far the
unfinished runs are, with an estimate of the time left. It reads results only: no config is
imported, so a results folder never runs code."""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from lrbench.errors import UserError
from lrbench.forked import fork_map, slices
from lrbench.results import RunDir, run_dirs, sweep_folders
from lrbench.sweep.plan import planned_run_ids

SMALLEST_SHARE = 512  # run folders a worker judges at a time, at least
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


def sweep_status(results: Path, workers: int = 1) -> list[SweepStatus]:
    """Each sweep's runs by state; `workers`: forked processes that judge a share of the runs
    each (lrbench.forked; the same answer for any number)."""
    if not results.exists():
        raise UserError(f"{results}: no such folder")
    if not results.is_dir():
        raise UserError(f"{results}: is a file, not a results folder")
    sweeps = sweep_folders(results)
    if not sweeps:
        raise UserError(f"{results}: holds no sweep (no runs/ folder)")
    return [_one(sweep, workers) for sweep in sweeps]


@dataclass
class _Tally:
    """What the runs of one share hold, in their order."""

    counts: Counter[str] = field(default_factory=Counter)
    problems: list[tuple[str, str, str]] = field(default_factory=list)
    unfinished: list[Progress] = field(default_factory=list)
    epoch_times: list[float] = field(default_factory=list)
    spec_epochs: list[int] = field(default_factory=list)


def _one(sweep: Path, workers: int) -> SweepStatus:
    """A sweep's runs, each judged once by its verdict (every file read once)."""
    status = SweepStatus(sweep)
    runs = run_dirs(sweep)
    tallies = fork_map(_tally, slices(runs, workers, SMALLEST_SHARE), workers)
    epoch_times: list[float] = []
    spec_epochs: list[int] = []
    for tally in tallies:
        status.counts.update(tally.counts)
        status.problems += tally.problems
        status.unfinished += tally.unfinished
        epoch_times += tally.epoch_times
        spec_epochs += tally.spec_epochs
    planned = planned_run_ids(sweep)
    if planned is not None:
        on_disk = {r.path.name for r in runs}
        status.counts["new"] += sum(1 for r in planned if r not in on_disk)
    status.seconds_left = _seconds_left(status, epoch_times, spec_epochs[:20])
    return status


def _tally(runs: Sequence[RunDir]) -> _Tally:
    tally = _Tally()
    for run in runs:
        verdict = run.verdict()
        state = verdict.state
        if state in ("partial", "new") and run.is_locked():
            state = "running"
        tally.counts[state] += 1
        if state in ("failed", "damaged"):
            tally.problems.append((state, run.path.name, verdict.reason or "unreadable"))
        times = [r["epoch_time_s"] for r in verdict.rows
                 if isinstance(r.get("epoch_time_s"), float | int)]  # fmt: skip
        tally.epoch_times += times
        epochs = _epochs(verdict.spec)
        if epochs and len(tally.spec_epochs) < 20:
            tally.spec_epochs.append(epochs)
        if state in ("running", "partial"):
            tally.unfinished.append(_progress(run, state, times, epochs))
    return tally


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
