"""Read run folders into one table of runs, naming every run that cannot be used and why.

The report reads spec.json as plain JSON, not through RunSpec: results written by another
version may hold schedules, datasets or keys this version does not know, and they must still
be reported.

A sweep folder with a plan.json (`{"name": ..., "run_ids": [...]}`, written by `lrbench sweep`)
names the runs of its current config; its other runs are stale (left from an edited config)
and are listed, not reported, unless `include_stale`. Without plan.json every run is current.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lrbench.errors import UserError
from lrbench.plainfiles import NotPlainFile, read_json_bounded
from lrbench.report.problems import NOTE, Problem
from lrbench.report.variants import canonical, setup_of, stale_differences
from lrbench.results import RunDir, run_dirs, sweep_folders
from lrbench.verdict import Verdict

# provenance that can change a run's floating-point numbers: seeds pooled in one row that
# differ in it are noted (rank.notes)
NUMERIC_PROVENANCE = ("threads", "device", "precision")
RUN_COLUMNS = [
    "path",
    "run_id",
    "sweep",
    "dataset",
    "model",
    "optimizer",
    "lr",
    "schedule",
    "budget",
    "seed",
    "epochs",
    "status",
    "score",
    "val_score",
    "schedule_params",
    "steps_per_epoch",
    "stopped_early",
    "stopped_epoch",
    "ensemble_score",
    "ensemble_size",
    "setup_key",
    *NUMERIC_PROVENANCE,
]
CURVE_COLUMNS = ["epoch", "lr", "test_acc", "epoch_time_s", "ensemble_size", "ensemble_test_acc"]
RANKED = ("done", "diverged")
PLAN = "plan.json"


class BadRun(Exception):
    """A run folder whose files cannot be trusted; the message names the file and the fault."""


class Damaged(BadRun):
    """A run lrbench.verdict judges damaged (sweep and status say the same)."""


RETRAIN = "lrbench sweep CONFIG --retry-failed trains it again"


@dataclass
class Loaded:
    """All run folders found: `runs` has one row per readable spec.json, whatever its status."""

    runs: pd.DataFrame
    curves: dict[str, pd.DataFrame] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


def find_run_dirs(paths: list[Path]) -> list[Path]:
    """Run folders under each path: a sweep (has runs/), a results root of sweeps, or a run.

    Each path must exist and hold at least one run, or the user typed something wrong. Folders
    come back as reached from the given paths (relative stays relative, so the report's files
    name the same runs on any machine), each once.
    """
    found: dict[Path, Path] = {}  # resolved (one entry per folder) -> as the user spelled it
    for path in paths:
        if not path.exists():
            raise UserError(f"{path} does not exist")
        if not path.is_dir():
            raise UserError(f"{path} is not a folder (expected a sweep folder holding runs/)")
        dirs = _run_dirs_under(path)
        if not dirs:
            raise UserError(
                f"{path} holds no runs (expected {path}/runs/<run-id>/ "
                f"or {path}/<sweep>/runs/<run-id>/)"
            )
        for d in dirs:
            found.setdefault(d.resolve(), d)
    return list(found.values())


def _run_dirs_under(path: Path) -> list[Path]:
    """A run folder itself, the runs of the sweeps a path names (lrbench.results.sweep_folders,
    as `lrbench status` finds them), or else the run folders right inside it."""
    if (path / "spec.json").is_file():
        return [path]
    sweeps = sweep_folders(path)
    if sweeps:
        return [run.path for sweep in sweeps for run in run_dirs(sweep)]
    return [c for c in _children(path) if (c / "spec.json").is_file()]


def _children(path: Path) -> list[Path]:
    try:
        return sorted(c for c in path.iterdir() if c.is_dir() and not c.name.startswith("."))
    except OSError as err:
        raise UserError(f"{path} cannot be read ({err.strerror})") from None


def load_runs(paths: list[Path], include_stale: bool = False) -> Loaded:
    """Read every run folder; unreadable, failed, unfinished and stale runs become problems."""
    rows: list[dict[str, Any]] = []
    stale: dict[Path, list[dict[str, Any]]] = {}
    plans: dict[Path, frozenset[str] | None] = {}
    loaded = Loaded(runs=pd.DataFrame(columns=RUN_COLUMNS))
    for run_dir in find_run_dirs(paths):
        sweep = _sweep_dir(run_dir)
        if sweep is not None and sweep not in plans:
            plans[sweep] = _read_plan(sweep, loaded.problems)
        plan = plans.get(sweep) if sweep is not None else None
        verdict = RunDir(run_dir).verdict()  # the one verdict status and sweep give too
        try:
            if verdict.state == "damaged":  # a foreign file is the user's to remove
                raise Damaged(verdict.reason if verdict.foreign else f"{verdict.reason}; {RETRAIN}")
            row = _spec_row(run_dir, _spec(run_dir, verdict))
            if plan is not None and not include_stale and row["run_id"] not in plan:
                stale.setdefault(sweep, []).append(row)
                continue
            curve, why = _read_results(run_dir, verdict, row)
        except Damaged as err:
            loaded.problems.append(Problem(str(run_dir), f"damaged: {err}"))
            continue
        except BadRun as err:
            loaded.problems.append(Problem(str(run_dir), f"unreadable: {err}"))
            continue
        rows.append(row)
        if curve is not None:
            loaded.curves[row["path"]] = curve
        if why:
            loaded.problems.append(Problem(row["path"], why))
    if rows:
        loaded.runs = pd.DataFrame(rows, columns=RUN_COLUMNS)
    for sweep, runs in stale.items():
        loaded.problems.append(_stale_problem(sweep, runs, loaded.runs))
    return loaded


def _sweep_dir(run_dir: Path) -> Path | None:
    return run_dir.parent.parent if run_dir.parent.name == "runs" else None


def _read_plan(sweep: Path, problems: list[Problem]) -> frozenset[str] | None:
    """The run ids of the sweep's current config, or None (no plan.json: every run counts)."""
    path = sweep / PLAN
    if not path.exists():
        return None
    try:
        plan = _read_json(path)
    except BadRun as err:
        why = str(err)
    else:
        ids = plan.get("run_ids") if isinstance(plan, dict) else None
        if isinstance(ids, list) and all(isinstance(i, str) for i in ids):
            return frozenset(ids)
        why = f"{PLAN} has no run_ids list"
    problems.append(
        Problem(str(path), f"unreadable: {why}; every run of this sweep counts as current", NOTE)
    )
    return None


def _stale_problem(sweep: Path, stale: list[dict[str, Any]], runs: pd.DataFrame) -> Problem:
    stale_runs = pd.DataFrame(stale, columns=RUN_COLUMNS)
    current = runs[[_sweep_dir(Path(p)) == sweep for p in runs["path"]]]
    if current.empty:
        how = "no current run of it is here yet"
    else:
        keys = stale_differences(stale_runs, current)
        how = (
            f"they differ from the current runs in {', '.join(keys)}"
            if keys
            else "they differ from the current runs only in their seeds"
        )
    return Problem(
        str(sweep),
        f"{len(stale)} stale run(s) not in {PLAN}, left from an earlier config of the sweep "
        f"({how}); not in the tables (--include-stale reports them as settings of their own)",
        runs=len(stale),
    )


def _spec(run_dir: Path, verdict: Verdict) -> Any:
    """spec.json as the verdict read it (an unfinished run's may be missing or broken)."""
    if verdict.spec is not None:
        return verdict.spec
    return _read_json(run_dir / "spec.json")


def _read_results(
    run_dir: Path, verdict: Verdict, row: dict[str, Any]
) -> tuple[pd.DataFrame | None, str | None]:
    """Fill a run's row from its results; its per-epoch curve, and why it is skipped (None when
    it is ranked). The verdict (lrbench.verdict) has read and judged the run's files."""
    status = verdict.state
    if status in ("partial", "new"):
        row["status"] = "unfinished"
        rows = len(verdict.rows)
        return (
            None,
            f"unfinished: no summary.json ({rows} of {row['epochs']} epochs in metrics.csv)",
        )
    summary = verdict.summary or {}
    if status == "failed":
        row["status"] = "failed"
        return None, f"failed: {verdict.reason}"
    row["status"] = status
    row["stopped_early"] = summary.get("stopped_early") is True
    stopped_epoch = summary.get("stopped_epoch")
    if isinstance(stopped_epoch, int) and not isinstance(stopped_epoch, bool):
        row["stopped_epoch"] = stopped_epoch
    metrics = _metrics_frame(verdict)
    curve = metrics[[c for c in CURVE_COLUMNS if c in metrics.columns]]
    if status == "diverged":  # ranked whatever its metrics hold: its rows only feed the plots
        return (curve if len(curve) else None), None
    if "test_acc" not in metrics.columns:
        raise BadRun("metrics.csv has no test_acc column")
    last = metrics.iloc[-1]
    score = float(last["test_acc"])
    if not (math.isfinite(score) and 0.0 <= score <= 1.0):
        raise BadRun("metrics.csv: the last row's test_acc is not a fraction in [0, 1]")
    row["score"] = score
    if "val_acc" in metrics.columns:
        row["val_score"] = float(last["val_acc"])
    row["ensemble_score"], row["ensemble_size"] = _last_ensemble(metrics)
    return curve, None


def _metrics_frame(verdict: Verdict) -> pd.DataFrame:
    """metrics.csv's whole rows (as the verdict read them), every column numeric (NaN where a
    field is empty or not a number)."""
    found = verdict.metrics
    assert found is not None
    frame = pd.DataFrame(found.rows, columns=found.header)
    return frame.apply(pd.to_numeric, errors="coerce")


def _read_json(path: Path) -> Any:
    try:
        return read_json_bounded(path)
    except FileNotFoundError as err:
        raise BadRun(f"{path.name} is missing") from err
    except NotPlainFile as err:
        raise BadRun(str(err)) from err
    except (OSError, UnicodeDecodeError, ValueError) as err:
        raise BadRun(f"{path.name} is not valid JSON ({_short(err)})") from err


def _short(err: Exception) -> str:
    return str(err).splitlines()[0] if str(err) else type(err).__name__


def _spec_row(run_dir: Path, spec: Any) -> dict[str, Any]:
    """The fields of spec.json the report groups by; a missing one makes the run unusable."""
    try:
        schedule = spec["schedule"]
        row = {
            "path": str(run_dir),
            "run_id": str(spec.get("run_id") or run_dir.name),
            "sweep": str(spec.get("sweep") or run_dir.parent.parent.name),
            "dataset": _label(spec["dataset"]),
            "model": _label(spec["model"]),
            "optimizer": str(spec["optimizer"]["name"]),
            "lr": float(spec["optimizer"]["lr"]),
            "schedule": _label(schedule),
            "budget": float(spec["budget"]),
            "seed": int(spec["seed"]),
            "epochs": int(spec["epochs"]),
            "status": "",
            "score": math.nan,
            "val_score": math.nan,
            "schedule_params": json.dumps(schedule, sort_keys=True, default=str),
            "steps_per_epoch": _optional_int(spec.get("steps_per_epoch")),
            "stopped_early": False,
            "stopped_epoch": math.nan,
            "ensemble_score": math.nan,
            "ensemble_size": math.nan,
            "setup_key": canonical(setup_of(spec)),
            **_provenance(spec.get("provenance")),
        }
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        missing = f"no {err}" if isinstance(err, KeyError) else _short(err)
        raise BadRun(f"spec.json lacks a field the report needs ({missing})") from err
    return row


def _provenance(provenance: Any) -> dict[str, str]:
    """The provenance fields that can change a run's numbers, as text ("" when not recorded)."""
    given = provenance if isinstance(provenance, dict) else {}
    return {k: "" if given.get(k) in (None, "") else str(given[k]) for k in NUMERIC_PROVENANCE}


def _optional_int(value: Any) -> float:
    """A positive whole number from spec.json, else NaN (older or foreign results)."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return math.nan


def _last_ensemble(metrics: pd.DataFrame) -> tuple[float, float]:
    """The last snapshot-ensemble accuracy (and its size) in metrics.csv, NaN without one.

    Rows are empty in epochs without a snapshot; the last filled row is the whole ensemble.
    """
    if "ensemble_test_acc" not in metrics.columns:
        return math.nan, math.nan
    filled = metrics[metrics["ensemble_test_acc"].notna()]
    if filled.empty:
        return math.nan, math.nan
    acc = float(filled["ensemble_test_acc"].iloc[-1])
    if not (math.isfinite(acc) and 0.0 <= acc <= 1.0):
        return math.nan, math.nan
    size = filled["ensemble_size"].iloc[-1] if "ensemble_size" in filled.columns else math.nan
    return acc, float(size)


def _label(obj: Any) -> str:
    """`label` when set, else `name`: the name the user chose for reports."""
    if isinstance(obj, dict) and "import" in obj and not obj.get("label"):
        return str(obj["import"]).rpartition(":")[2]  # an import's default label
    if isinstance(obj, dict):
        return str(obj.get("label") or obj["name"])
    return str(obj)
