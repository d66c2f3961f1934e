"""A sweep on disk: which runs it has, in which state, and what is left to train."""

from __future__ import annotations

import fnmatch
import statistics
from dataclasses import dataclass
from pathlib import Path

import yaml

from lrbench.config import SweepConfig, expand
from lrbench.results import RunDir, atomic_write_text, read_json, run_dirs
from lrbench.specs import RunSpec

# What a sweep does with a run in each state.
TRAIN_STATES = ("new", "partial")
SKIP_STATES = ("done", "diverged")


@dataclass(frozen=True)
class PlannedRun:
    spec: RunSpec
    run: RunDir
    state: str  # new | partial | done | diverged | failed | corrupt

    @property
    def epochs_done(self) -> int:
        if self.state in SKIP_STATES:
            return self.spec.epochs
        row = self.run.last_metrics_row() if self.state == "partial" else {}
        return int(row.get("epoch", 0) or 0)

    def to_train(self, retry_failed: bool) -> bool:
        return self.state in TRAIN_STATES or (retry_failed and self.state in ("failed", "corrupt"))


def sweep_dir(config: SweepConfig, results: Path) -> Path:
    return results / config.name


def plan(config: SweepConfig, results: Path, only: str | None = None) -> list[PlannedRun]:
    root = sweep_dir(config, results)
    planned = []
    for spec in expand(config):
        if only and not fnmatch.fnmatch(spec.run_id, only) and only not in spec.run_id:
            continue
        run = RunDir(root / "runs" / spec.run_id)
        planned.append(PlannedRun(spec, run, run.status()))
    return planned


def write_sweep_yaml(config: SweepConfig, results: Path) -> Path:
    path = sweep_dir(config, results) / "sweep.yaml"
    text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    atomic_write_text(path, text)
    return path


def seconds_per_epoch(runs: list[RunDir]) -> dict[tuple[str, int], float]:
    """Median epoch time per (model, batch size) from runs already on disk, for estimates."""
    times: dict[tuple[str, int], list[float]] = {}
    for run in runs:
        row = run.last_metrics_row() if run.metrics.exists() else {}
        if not row or not run.spec.exists():
            continue
        spec = read_json(run.spec)
        key = (spec.get("model"), spec.get("batch_size"))
        t = row.get("epoch_time_s")
        if isinstance(t, float | int):
            times.setdefault(key, []).append(float(t))
    return {k: statistics.median(v) for k, v in times.items()}


def estimate_seconds(planned: list[PlannedRun], results_root: Path, workers: int) -> float | None:
    """Remaining epochs × measured seconds per epoch, spread over the workers; None if unknown."""
    timing = seconds_per_epoch(run_dirs(results_root))
    total = 0.0
    for p in planned:
        left = p.spec.epochs - p.epochs_done
        if left <= 0 or p.state in SKIP_STATES:
            continue
        key = (p.spec.model, p.spec.batch_size)
        if key not in timing:
            return None
        total += left * timing[key]
    return total / max(1, workers)
