"""A sweep on disk: which runs it has, in which state, what is left to train, and how long."""

from __future__ import annotations

import fnmatch
import os
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from lrbench.errors import UserError
from lrbench.results import RunDir, atomic_write_json, atomic_write_text, read_json, run_dirs
from lrbench.verdict import RETRY_STATES, SKIP_STATES, TRAIN_STATES

if TYPE_CHECKING:  # the config imports the data and models (torch); status needs neither
    from lrbench.config import SweepConfig
    from lrbench.specs import RunSpec

PLAN_FILE = "plan.json"


@dataclass(frozen=True)
class PlannedRun:
    spec: RunSpec
    run: RunDir
    state: str  # new | partial | done | diverged | failed | damaged
    foreign: bool = False  # a link, FIFO or device in its place: left alone, never trained
    restart: str | None = None  # why an unfinished run is damaged: trained again from the start

    @property
    def epochs_done(self) -> int:
        if self.state in SKIP_STATES:
            return self.spec.epochs
        return self.run.complete_epochs() if self.state == "partial" else 0

    @property
    def run_id(self) -> str:
        """The id, read off the run's folder name (the spec's own recomputes a hash each time)."""
        return self.run.path.name

    def to_train(self, retry_failed: bool) -> bool:
        if self.foreign:
            return False
        if self.restart:  # unfinished: a plain sweep trains it, as it would have resumed it
            return True
        return self.state in TRAIN_STATES or (retry_failed and self.state in RETRY_STATES)

    def shown_state(self, retry_failed: bool) -> str:
        """What the dry run says the sweep does with it: to run, to resume (epoch e/E), done,
        failed (retry), ..."""
        state = {"new": "to run", "partial": "to resume"}.get(self.state, self.state)
        if self.state == "partial":
            state += f" (epoch {self.epochs_done}/{self.spec.epochs})"
        if self.restart:
            state += " (to run from the start)"
        elif self.state in RETRY_STATES and retry_failed:
            state += " (retry)"
        return state


def sweep_dir(config: SweepConfig, results: Path) -> Path:
    return results / config.name


def check_results_root(results: Path) -> None:
    """The results root is a folder, or can be made one (what it is in is a folder): one line
    for anything else, --dry-run included."""
    if results.exists() and not results.is_dir():
        raise UserError(f"--results {results}: is a file, not a folder for results")
    above = next((p for p in results.absolute().parents if p.exists()), None)
    if above is not None and not results.exists() and not above.is_dir():
        raise UserError(f"--results {results}: {above} is a file, not a folder")


def plan(config: SweepConfig, results: Path, only: str | None = None) -> list[PlannedRun]:
    """Every run of the config (or those `only` selects) in its state. The runs folder is
    listed once: a run without a folder is new without asking the file system again, so a
    fresh plan of 10^5 runs costs no 10^5 stats."""
    from lrbench.config import expand

    check_results_root(results)
    runs = sweep_dir(config, results) / "runs"
    started = _folder_names(runs)
    planned = []
    for spec in expand(config):
        run_id = spec.run_id
        if only and not fnmatch.fnmatch(run_id, only) and only not in run_id:
            continue
        run = RunDir(runs / run_id)
        if run_id in started:
            verdict = run.verdict()
            restart = verdict.reason if verdict.restart else None
            planned.append(PlannedRun(spec, run, verdict.state, verdict.foreign, restart))
        else:
            planned.append(PlannedRun(spec, run, "new"))
    return planned


def _folder_names(folder: Path) -> set[str]:
    try:
        with os.scandir(folder) as entries:
            return {e.name for e in entries}
    except (FileNotFoundError, NotADirectoryError):
        return set()


def write_sweep_files(config: SweepConfig, results: Path) -> Path:
    """sweep.yaml (the config as resolved: user code by import path and source hash) and
    plan.json (every run id of it, so that report and status know the current runs without
    reading, let alone importing, anything else)."""
    from lrbench.config import expand

    where = sweep_dir(config, results)
    text = yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
    try:
        where.mkdir(parents=True, exist_ok=True)
        atomic_write_text(where / "sweep.yaml", text)
        run_ids = [s.run_id for s in expand(config)]
        atomic_write_json(where / PLAN_FILE, {"name": config.name, "run_ids": run_ids})
    except OSError as err:
        raise UserError(f"cannot write the sweep's files in {where}: {err.strerror}") from None
    return where


def planned_run_ids(sweep: Path) -> list[str] | None:
    """The run ids plan.json lists (None without a readable one: an older sweep)."""
    try:
        record = read_json(sweep / PLAN_FILE)
    except (OSError, ValueError):
        return None
    ids = record.get("run_ids") if isinstance(record, dict) else None
    return [str(r) for r in ids] if isinstance(ids, list) else None


def seconds_per_epoch(runs: list[RunDir]) -> dict[tuple[str, int], float]:
    """Median epoch time per (model, batch size) from runs already on disk, for estimates."""
    times: dict[tuple[str, int], list[float]] = {}
    for run in runs:
        rows = run.read_metrics().rows
        if not rows:
            continue
        try:
            spec = read_json(run.spec)
            key = (str(spec.get("model")), int(spec.get("batch_size")))
        except (OSError, ValueError, TypeError, AttributeError):
            continue
        t = rows[-1].get("epoch_time_s")
        if isinstance(t, float | int):
            times.setdefault(key, []).append(float(t))
    return {k: statistics.median(v) for k, v in times.items()}


def estimate_seconds(planned: list[PlannedRun], sweep: Path, workers: int) -> float | None:
    """Remaining epochs x the seconds per epoch measured in this sweep's folder, spread over
    the workers; None when some kind of run has no timed epoch yet."""
    timing = seconds_per_epoch(run_dirs(sweep))
    total = 0.0
    for p in planned:
        left = p.spec.epochs - p.epochs_done
        if left <= 0 or p.state in SKIP_STATES:
            continue
        key = (_model_key(p.spec), p.spec.batch_size)
        if key not in timing:
            return None
        total += left * timing[key]
    return total / max(1, workers)


def _model_key(spec: RunSpec) -> str:
    """The model as seconds_per_epoch keys it (spec.json's `model`, as a string)."""
    if isinstance(spec.model, str):
        return spec.model
    return str(spec.model.model_dump(mode="json"))
