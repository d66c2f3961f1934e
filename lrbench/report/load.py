"""Read run folders into one table of runs, naming every run that cannot be used and why.

The report reads spec.json as plain JSON, not through RunSpec: results written by another
version may hold schedules, datasets or keys this version does not know, and they must still
be reported.

A sweep folder with a plan.json (`{"name": ..., "run_ids": [...]}`, written by `lrbench sweep`)
names the runs of its current config; its other runs are stale (left from an edited config)
and are listed, not reported, unless `include_stale`. Without plan.json every run is current.

Reading is one pass over the run folders: each run's files are read once, its fields go into a
row of `runs` and its per-epoch rows into one shared `Curves` frame (no frame per run), so a
report of 10^5 runs costs what their files cost to read.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from lrbench.errors import UserError
from lrbench.forked import fork_map, slices
from lrbench.plainfiles import NotPlainFile, read_json_bounded
from lrbench.report.curves import CurveBuilder, Curves, number
from lrbench.report.duplicates import one_result_per_run_id
from lrbench.report.metric import metric_named
from lrbench.report.problems import NOTE, Problem
from lrbench.report.variants import canonical, setup_of, stale_differences
from lrbench.results import RunDir, run_dirs, sweep_folders
from lrbench.verdict import Verdict

# provenance that can change a run's floating-point numbers: seeds pooled in one row that
# differ in it are noted (rank.notes)
NUMERIC_PROVENANCE = (
    "threads",
    "device",
    "precision",
    "cpu_capability",
    "torch",
    "numpy",
    "pillow",
    "libjpeg",
)
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
    "metric",
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
DEFAULT_METRIC = "error"  # a spec.json without a top-level "metric"
NAN = math.nan
RANKED = ("done", "diverged")
PLAN = "plan.json"
SMALLEST_SHARE = 256  # run folders a reading worker is given at a time, at least


class BadRun(Exception):
    """A run folder whose files cannot be trusted; the message names the file and the fault."""


class Damaged(BadRun):
    """A run lrbench.verdict judges damaged (sweep and status say the same)."""


RETRAIN = "lrbench sweep CONFIG --retry-failed trains it again"


@dataclass
class Loaded:
    """All run folders found: `runs` has one row per readable spec.json, whatever its status;
    `curves` the per-epoch rows of the done and diverged ones (a mapping path -> rows)."""

    runs: pd.DataFrame
    curves: Curves = field(default_factory=Curves.empty)
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
        parents: dict[Path, Path] = {}  # a sweep's runs/ resolved once, not once per run
        for d in dirs:
            parent = parents.get(d.parent)
            if parent is None:
                parent = parents[d.parent] = d.parent.resolve()
            found.setdefault(parent / d.name, d)
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


def load_runs(
    paths: list[Path], include_stale: bool = False, metric: str | None = None, workers: int = 1
) -> Loaded:
    """Read every run folder; unreadable, failed, unfinished and stale runs become problems.

    A run is scored by `metric` when given, else by its spec.json's `metric` (absent: error).
    `workers`: forked processes that read the folders, a share each (lrbench.forked); the
    result is the same for any number.
    """
    run_dirs = find_run_dirs(paths)
    plans: dict[Path, frozenset[str] | None] = {}
    problems: list[Problem] = []
    for run_dir in run_dirs:
        sweep = _sweep_dir(run_dir)
        if sweep is not None and sweep not in plans:
            plans[sweep] = _read_plan(sweep, problems)
    shares = slices(run_dirs, workers, SMALLEST_SHARE)
    read = fork_map(lambda share: _read_share(share, plans, include_stale, metric), shares, workers)
    rows = [row for share in read for row in share.rows]
    stale: dict[Path, list[dict[str, Any]]] = {}
    for share in read:
        problems += share.problems
        for sweep, row in share.stale:
            stale.setdefault(sweep, []).append(row)
    runs, copies = one_result_per_run_id(pd.DataFrame(rows, columns=RUN_COLUMNS), RANKED)
    dropped = {row["path"] for row in rows} - set(runs["path"])
    curves = CurveBuilder.joined([share.curves for share in read]).build().without(dropped)
    loaded = Loaded(runs=runs, curves=curves, problems=problems + copies)
    for sweep, runs_of in stale.items():
        loaded.problems.append(_stale_problem(sweep, runs_of, loaded.runs))
    return loaded


@dataclass
class _Share:
    """What one worker read of its share of the run folders, in their order."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    stale: list[tuple[Path, dict[str, Any]]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    curves: CurveBuilder = field(default_factory=CurveBuilder)


def _read_share(
    run_dirs: list[Path],
    plans: dict[Path, frozenset[str] | None],
    include_stale: bool,
    metric: str | None,
) -> _Share:
    read = _Share()
    for run_dir in run_dirs:
        sweep = _sweep_dir(run_dir)
        plan = plans.get(sweep) if sweep is not None else None
        verdict = RunDir(run_dir).verdict()  # the one verdict status and sweep give too
        try:
            if verdict.state == "damaged":  # a foreign file is the user's to remove
                raise Damaged(verdict.reason if verdict.foreign else f"{verdict.reason}; {RETRAIN}")
            row = _spec_row(run_dir, _spec(run_dir, verdict))
            row["metric"] = metric or row["metric"]
            if plan is not None and not include_stale and row["run_id"] not in plan:
                read.stale.append((sweep, row))  # type: ignore[arg-type]
                continue
            why = _read_results(verdict, row, read.curves)
        except Damaged as err:
            read.problems.append(Problem(str(run_dir), f"damaged: {err}"))
            continue
        except BadRun as err:
            read.problems.append(Problem(str(run_dir), f"unreadable: {err}"))
            continue
        read.rows.append(row)
        if why:
            read.problems.append(Problem(row["path"], why))
    return read


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


def _read_results(verdict: Verdict, row: dict[str, Any], curves: CurveBuilder) -> str | None:
    """Fill a run's row from its results and add its per-epoch rows to `curves`; why it is
    skipped (None when it is ranked). The verdict (lrbench.verdict) has read each file once and
    judged it."""
    status = verdict.state
    if status in ("partial", "new"):
        row["status"] = "unfinished"
        rows = len(verdict.rows)
        return f"unfinished: no summary.json ({rows} of {row['epochs']} epochs in metrics.csv)"
    summary = verdict.summary or {}
    if status == "failed":
        row["status"] = "failed"
        return f"failed: {verdict.reason}"
    row["status"] = status
    row["stopped_early"] = summary.get("stopped_early") is True
    stopped_epoch = summary.get("stopped_epoch")
    if isinstance(stopped_epoch, int) and not isinstance(stopped_epoch, bool):
        row["stopped_epoch"] = stopped_epoch
    found = verdict.metrics
    assert found is not None
    metric = metric_named(row["metric"])
    if status == "diverged":  # ranked whatever its metrics hold: its rows only feed the plots
        curves.add(row["path"], found.rows, metric)
        return None
    if metric.column not in found.header:
        raise BadRun(f"metrics.csv has no {metric.column} column (metric {metric.name})")
    last = found.rows[-1]
    value = number(last[metric.column])
    if not metric.readable(value):
        raise BadRun(
            f"metrics.csv: the last row's {metric.column} is {value:g}, not {metric.expected}"
        )
    row["score"] = metric.score(value)
    if metric.val_column in found.header:
        row["val_score"] = metric.score(number(last[metric.val_column]))
    if metric.column == "test_acc":
        row["ensemble_score"], row["ensemble_size"] = _last_ensemble(found.rows)
    curves.add(row["path"], found.rows, metric)
    return None


def _read_json(path: Path, missing_ok: bool = False) -> Any:
    """A JSON file's value (None for a missing file when `missing_ok`)."""
    try:
        return read_json_bounded(path)
    except FileNotFoundError as err:
        if missing_ok:
            return None
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
            "metric": _metric_name(spec.get("metric", DEFAULT_METRIC)),
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


def _metric_name(name: Any) -> str:
    """The run's metric as spec.json names it; one this version does not know is unreadable."""
    try:
        return metric_named(str(name)).name
    except UserError as err:
        raise BadRun(f"spec.json's metric: {err}") from None


def _last_ensemble(rows: list[dict[str, Any]]) -> tuple[float, float]:
    """The last snapshot-ensemble accuracy (and its size) in metrics.csv, NaN without one.

    Rows are empty in epochs without a snapshot; the last filled row is the whole ensemble.
    """
    for row in reversed(rows):
        acc = number(row.get("ensemble_test_acc"))
        if math.isnan(acc):
            continue
        if not (math.isfinite(acc) and 0.0 <= acc <= 1.0):
            return NAN, NAN
        return acc, number(row.get("ensemble_size"))
    return NAN, NAN


def _label(obj: Any) -> str:
    """`label` when set, else `name`: the name the user chose for reports."""
    if isinstance(obj, dict) and "import" in obj and not obj.get("label"):
        return str(obj["import"]).rpartition(":")[2]  # an import's default label
    if isinstance(obj, dict):
        return str(obj.get("label") or obj["name"])
    return str(obj)
