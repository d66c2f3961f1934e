"""Anytime performance and time-to-target, read from the runs' per-epoch rows (report.curves).

Every value is in the report's metric (error, accuracy, a loss): computed on scores (higher is
better, lrbench.report.metric) and shown as the metric at the end.

- Anytime: for each run, the best score reached by 10%, 25%, 50%, 75% and 100% of its budget
  (the run's `epochs`); a fraction f covers epochs 1..floor(f * epochs). Averaged over seeds
  per (cell, schedule). Where no judged epoch lies inside a fraction yet: NaN ("—").
- Time-to-target, as AlgoPerf scores it: the first judged epoch whose score reaches the
  target (an error or loss at or below it, an accuracy at or above it), in epochs and in
  seconds (the sum of epoch_time_s up to it, evaluation included); inf when never reached
  (diverged runs reach it only if they did before diverging). Per (cell, schedule) the median
  over seeds, so a schedule that misses the target in most seeds scores inf, and the count of
  seeds that reached it.
- Target: `--target X` for every cell, a value of the metric's metrics.csv column (a test
  accuracy as a fraction, a test loss); by default, per cell, the median over its schedules of
  their mean final score: a level about half the schedules hold at the end.
- Judged epochs. Cyclical schedules are judged only at their cycle ends, as the literature
  does (SGDR, snapshot ensembles, Smith's CLR: stop at a cycle end): the schedule is rebuilt
  from spec.json and each cycle end step k is judged at the last epoch that ends at or before
  it, floor(k / steps_per_epoch), whose rate is near the cycle's bottom (the epoch after it
  would already hold the restart). The final epoch always counts. A run that stopped early is
  also judged at its last epoch: its final metrics count as they stand. A schedule this
  version cannot rebuild is judged at every epoch, with a note. Every other schedule is judged
  at every epoch.

All runs are analysed at once: one pass over the rows of every run, grouped by run; schedules
are rebuilt once per (schedule, epochs, steps per epoch), not once per run.

Nothing here imports torch (lrbench.schedules is numpy only).
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from lrbench.errors import UserError
from lrbench.report.curves import Curves
from lrbench.report.metric import Metric, metric_named
from lrbench.report.problems import NOTE, Problem
from lrbench.report.rank import CELL, SETTING
from lrbench.report.rebuild import rebuild_schedule

FRACTIONS = (0.1, 0.25, 0.5, 0.75, 1.0)
NOMINAL_STEPS_PER_EPOCH = 1000  # steps per epoch assumed when spec.json does not record it
EVERY = "every epoch"
CYCLE_ENDS = "cycle ends"
UNKNOWN = "every epoch (schedule unknown here)"
DASH = "–"  # as in tables.py
DEFAULT = metric_named("error")  # runs whose spec.json names no metric
MEAN = "mean_test_acc"  # summary's mean final score over seeds (rank.summarize)
SHORT = {EVERY: "epochs", CYCLE_ENDS: "cycle ends", UNKNOWN: "epochs (?)"}


def fraction_column(f: float) -> str:
    return f"best_at_{100 * f:g}"


FRACTION_COLUMNS = [fraction_column(f) for f in FRACTIONS]
ANYTIME_COLUMNS = [
    *CELL,
    "schedule",
    "judged",
    "n",
    *FRACTION_COLUMNS,
    "target",
    "target_source",
    "n_reached",
    "median_epochs_to_target",
    "median_seconds_to_target",
]
TTT_COLUMNS = [
    *CELL,
    "schedule",
    "seed",
    "lr",
    "status",
    "epochs",
    "judged",
    "target",
    "reached",
    "epochs_to_target",
    "seconds_to_target",
    "path",
]


def judged_epochs(
    schedule: dict[str, Any], epochs: int, steps_per_epoch: int | None
) -> tuple[list[int], str]:
    """The epochs (1-based) at which a run with this schedule is judged, and why."""
    every = list(range(1, epochs + 1))
    sched = rebuild_schedule(schedule)
    if sched is None:
        return every, UNKNOWN
    try:
        per_epoch = int(steps_per_epoch) if steps_per_epoch else NOMINAL_STEPS_PER_EPOCH
        ends = sched.cycle_end_steps(epochs * per_epoch, per_epoch)
    except Exception:
        return every, UNKNOWN
    if len(ends) <= 1:
        return every, EVERY
    judged = {k // per_epoch for k in ends if k // per_epoch >= 1} | {epochs}
    return sorted(judged), CYCLE_ENDS


def best_by_fraction(
    curve: pd.DataFrame,
    epochs: int,
    judged: list[int],
    fractions: tuple[float, ...] = FRACTIONS,
    stopped_early: bool = False,
) -> list[float]:
    """Best score over judged epochs <= floor(f * epochs), for each fraction f (one run)."""
    rows = _one_run(curve, judged, epochs, stopped_early)
    return [float(rows[fraction_column(f)].iloc[0]) for f in fractions]


def time_to_target(
    curve: pd.DataFrame, judged: list[int], target: float, stopped_early: bool = False
) -> tuple[float, float]:
    """(epochs, seconds) to the first judged epoch whose score reaches `target` (one run)."""
    epochs = int(curve["epoch"].max()) if len(curve) else 0
    rows = _one_run(curve, judged, epochs, stopped_early, target)
    return float(rows["epochs_to_target"].iloc[0]), float(rows["seconds_to_target"].iloc[0])


def _one_run(
    curve: pd.DataFrame,
    judged: list[int],
    epochs: int,
    stopped_early: bool,
    target: float = math.nan,
) -> pd.DataFrame:
    """The per-run measures of one run's curve (columns epoch, score[, epoch_time_s])."""
    rows = curve.assign(path="run")
    is_judged = rows["epoch"].isin(judged).to_numpy().copy()
    if stopped_early and len(rows):
        is_judged[-1] = True
    runs = pd.DataFrame({"path": ["run"], "epochs": [epochs], "target": [target]})
    return _per_run(rows, is_judged, runs)


def _per_run(rows: pd.DataFrame, is_judged: np.ndarray, runs: pd.DataFrame) -> pd.DataFrame:
    """Per run (`runs`: path, epochs, target as a score), over all runs' rows at once (`rows`:
    path, epoch, score, [epoch_time_s], each run's rows contiguous and in epoch order): the best
    judged score by each fraction, and the epochs and seconds to the first judged epoch whose
    score reaches the target (inf when none does; NaN seconds where a time is missing)."""
    at = pd.Index(runs["path"]).get_indexer(rows["path"])
    epochs = runs["epochs"].to_numpy(dtype=float)[at]
    epoch = rows["epoch"].to_numpy(dtype=float)
    score = np.where(is_judged, rows["score"].to_numpy(dtype=float), np.nan)
    out = pd.DataFrame(index=pd.RangeIndex(len(runs)))
    for f in FRACTIONS:
        inside = np.where(epoch <= np.floor(f * epochs + 1e-9), score, np.nan)
        out[fraction_column(f)] = pd.Series(inside).groupby(at).max()
    if "epoch_time_s" in rows.columns:
        seconds = rows["epoch_time_s"].to_numpy(dtype=float)
        missing = pd.Series(np.isnan(seconds)).groupby(at).cumsum().to_numpy() > 0
        spent = pd.Series(np.nan_to_num(seconds)).groupby(at).cumsum().to_numpy()
        spent = np.where(missing, np.nan, spent)
    else:
        spent = np.full(len(rows), np.nan)
    target = runs["target"].to_numpy(dtype=float)[at]
    with np.errstate(invalid="ignore"):
        hit = score >= target - 1e-12  # NaN (not judged, no target) never hits
    first = pd.DataFrame({"run": at[hit], "epoch": epoch[hit], "spent": spent[hit]})
    first = first.groupby("run").first()
    reached = first.reindex(out.index)
    no_target = ~np.isfinite(runs["target"].to_numpy(dtype=float))
    out["epochs_to_target"] = np.where(
        no_target, np.nan, reached["epoch"].fillna(math.inf).to_numpy()
    )
    out["seconds_to_target"] = np.where(
        no_target,
        np.nan,
        np.where(reached["epoch"].isna(), math.inf, reached["spent"].to_numpy()),
    )
    return out


def best_so_far(rows: pd.DataFrame, is_judged: np.ndarray, runs: pd.DataFrame) -> pd.DataFrame:
    """Per run of `runs` (path, epochs, stopped_early) and each epoch 1..epochs, the best judged
    score so far (NaN before the first judged epoch; a run that stopped early holds its last
    value to the end of its budget): columns path, x (epoch / epochs), best."""
    at = pd.Index(runs["path"]).get_indexer(rows["path"])
    score = pd.Series(np.where(is_judged, rows["score"].to_numpy(dtype=float), np.nan))
    best = score.groupby(at).cummax().groupby(at).ffill().to_numpy()
    epoch = rows["epoch"].to_numpy(dtype=np.int64)
    epochs = runs["epochs"].to_numpy(dtype=np.int64)
    inside = epoch <= epochs[at]
    at, epoch, best = at[inside], epoch[inside], best[inside]
    # stopped runs: from the epoch after their last row to the end of the budget, held
    last = pd.DataFrame({"run": at, "epoch": epoch, "best": best}).groupby("run").last()
    stopped = runs["stopped_early"].to_numpy(dtype=bool)[last.index.to_numpy()]
    last = last[stopped]
    gaps = epochs[last.index.to_numpy()] - last["epoch"].to_numpy()
    gaps = np.maximum(gaps, 0)
    held_run = np.repeat(last.index.to_numpy(), gaps)
    starts = np.repeat(last["epoch"].to_numpy() + 1 - np.cumsum(np.r_[0, gaps[:-1]]), gaps)
    held_epoch = starts + np.arange(len(held_run)) if len(held_run) else np.zeros(0, np.int64)
    held_best = np.repeat(last["best"].to_numpy(), gaps)
    run = np.r_[at, held_run].astype(np.int64)
    return pd.DataFrame(
        {
            "path": runs["path"].to_numpy()[run],
            "x": np.r_[epoch, held_epoch] / epochs[run],
            "best": np.r_[best, held_best],
        }
    )


def cell_targets(
    summary: pd.DataFrame, target: float | None, metrics: dict[tuple, Metric]
) -> dict[tuple, tuple[float, str]]:
    """Per cell: (target as a score, where it came from). `--target` is a value of the cell's
    metric column in metrics.csv (a test accuracy as a fraction, a test loss)."""
    out: dict[tuple, tuple[float, str]] = {}
    for key, cell in summary.groupby(CELL, sort=True):
        if target is not None:
            metric = metrics.get(key, DEFAULT)
            out[key] = (metric.score(float(target)), "--target")
            continue
        means = [m for m in cell[MEAN] if math.isfinite(m)]
        out[key] = (
            (float(statistics.median(means)), "median of final means")
            if means
            else (math.nan, "no finished runs")
        )
    return out


def check_target(target: float, metrics: list[Metric]) -> None:
    """A target must be a value the runs' metric can take: an accuracy in (0, 1], a finite loss."""
    if not math.isfinite(target):
        raise UserError(f"--target must be a number, got {target:g}")
    for metric in metrics:
        if metric.column.endswith("_acc") and not 0.0 < target <= 1.0:
            raise UserError(f"--target must be a test accuracy in (0, 1], got {target:g}")


@dataclass
class Anytime:
    """anytime.csv (per cell and schedule), time_to_target.csv (per run), best-so-far curves;
    every value of the metric (fractions, targets) as the report's metric shows it."""

    table: pd.DataFrame
    runs: pd.DataFrame
    best_so_far: pd.DataFrame  # path, x (fraction of the budget), best (as shown)
    metric: Metric
    problems: list[Problem] = field(default_factory=list)
    target: float | None = None

    @property
    def empty(self) -> bool:
        return self.table.empty


def analyse_anytime(
    chosen: pd.DataFrame,
    curves: Curves,
    summary: pd.DataFrame,
    target: float | None = None,
    metric: str | Metric = "error",
) -> Anytime:
    """Anytime and time-to-target for the runs the tables use (after the lr choice), over all
    runs at once: one pass over the rows of `curves`, whatever the number of runs."""
    shown = metric_named(metric)
    runs = chosen[chosen["path"].isin(curves.keys())].reset_index(drop=True)
    cell_keys = list(zip(*(runs[c] for c in CELL), strict=True))
    run_metrics = runs["metric"] if "metric" in runs.columns else [DEFAULT.name] * len(runs)
    cell_metric = {k: metric_named(m) for k, m in zip(cell_keys, run_metrics, strict=True)}
    if target is not None:
        check_target(target, list(set(cell_metric.values())) or [DEFAULT])
    targets = cell_targets(summary, target, cell_metric)
    judged = _judged(runs)
    runs = runs.assign(judged=judged["how"].to_numpy())
    runs["target"] = [targets.get(k, (math.nan, ""))[0] for k in cell_keys]
    rows = curves.of(runs["path"])
    is_judged = _judged_mask(rows, runs, judged)
    measures = _per_run(rows, is_judged, runs)
    done = (runs["status"] == "done").to_numpy()
    for c in FRACTION_COLUMNS:
        measures.loc[~done, c] = math.nan
    per_run = pd.concat([runs, measures], axis=1)
    per_run["reached"] = np.isfinite(per_run["epochs_to_target"].to_numpy(dtype=float))
    per_run["epochs"] = per_run["epochs"].astype(int)
    table = _per_schedule(per_run, targets)
    finished = runs[done].reset_index(drop=True)
    of_finished = rows["path"].isin(set(finished["path"])).to_numpy()
    bsf = best_so_far(rows[of_finished], is_judged[of_finished], finished)
    bsf["best"] = shown.shown(bsf["best"].to_numpy())
    for frame in (table, per_run):
        for c in [*FRACTION_COLUMNS, "target"]:
            frame[c] = shown.shown(frame[c].to_numpy(dtype=float))
    unknown = runs[runs["judged"] == UNKNOWN].drop_duplicates("schedule").sort_values("schedule")
    problems = [
        Problem(
            path,
            f"schedule {label!r} cannot be rebuilt by this version: anytime and time-to-target "
            "judge it at every epoch (its cycle ends are unknown)",
            NOTE,
        )
        for label, path in zip(unknown["schedule"], unknown["path"], strict=True)
    ]
    return Anytime(
        table=table,
        runs=per_run[TTT_COLUMNS],
        best_so_far=bsf,
        metric=shown,
        problems=problems,
        target=target,
    )


def _judged(runs: pd.DataFrame) -> pd.DataFrame:
    """Per run: how it is judged and, for cycle ends, the id of its judged epochs (runs that
    share schedule, epochs and steps per epoch share them: rebuilt once)."""
    keys = list(
        zip(runs["schedule_params"], runs["epochs"].astype(int), runs["steps_per_epoch"],
            strict=True)
    )  # fmt: skip
    found: dict[tuple, tuple[list[int], str]] = {}
    for key in dict.fromkeys(keys):
        params, epochs, per_epoch = key
        per_epoch = (
            int(per_epoch) if per_epoch is not None and math.isfinite(float(per_epoch)) else None
        )
        found[key] = judged_epochs(json.loads(params), epochs, per_epoch)
    ids = {k: i for i, k in enumerate(found)}
    return pd.DataFrame(
        {
            "how": [found[k][1] for k in keys],
            "key": [ids[k] for k in keys],
        }
    ).assign(epochs=[found[k][0] for k in keys])


def _judged_mask(rows: pd.DataFrame, runs: pd.DataFrame, judged: pd.DataFrame) -> np.ndarray:
    """For each row, whether its epoch is judged: every epoch, or a cycle end, and the last row
    of a run that stopped early."""
    at = pd.Index(runs["path"]).get_indexer(rows["path"])
    cyclic = (judged["how"] == CYCLE_ENDS).to_numpy()
    mask = ~cyclic[at]
    if cyclic.any():
        pairs = {
            (k, e)
            for k, epochs in zip(judged["key"][cyclic], judged["epochs"][cyclic], strict=True)
            for e in epochs
        }
        index = pd.MultiIndex.from_tuples(sorted(pairs), names=["key", "epoch"])
        row_keys = pd.MultiIndex.from_arrays(
            [judged["key"].to_numpy()[at], rows["epoch"].to_numpy()]
        )
        mask |= row_keys.isin(index)
    stopped = runs["stopped_early"].astype(bool).to_numpy()
    if stopped.any() and len(rows):
        last = np.r_[at[1:] != at[:-1], True]
        mask |= last & stopped[at]
    return mask


def _per_schedule(per_run: pd.DataFrame, targets: dict[tuple, tuple[float, str]]) -> pd.DataFrame:
    """anytime.csv: per (cell, schedule) the mean over seeds of each fraction (done runs; NaN
    unless every one has a value), the target, seeds that reached it, median times."""
    if per_run.empty:
        return pd.DataFrame(columns=ANYTIME_COLUMNS)
    keys = [*CELL, "schedule"]
    groups = per_run.groupby(keys, sort=True)
    table = groups.agg(
        judged=("judged", "first"),
        n=("path", "size"),
        n_reached=("reached", "sum"),
        median_epochs_to_target=("epochs_to_target", "median"),
        median_seconds_to_target=("seconds_to_target", "median"),
    )
    done = per_run[per_run["status"] == "done"]
    for c in FRACTION_COLUMNS:
        values = done[c].astype(float)
        finite = pd.Series(np.isfinite(values.to_numpy()), index=done.index)
        by = [done[k] for k in keys]
        mean = values.groupby(by, sort=True).mean()
        table[c] = mean.where(finite.groupby(by, sort=True).all()).reindex(table.index)
    table = table.reset_index()
    cells = list(zip(*(table[c] for c in CELL), strict=True))
    table["target"] = [targets[k][0] for k in cells]
    table["target_source"] = [targets[k][1] for k in cells]
    table["n_reached"] = table["n_reached"].astype(int)
    return table[ANYTIME_COLUMNS]


# --- rendering ----------------------------------------------------------------------------


def _value(v: float) -> str:
    return f"{v:.2f}" if math.isfinite(v) else DASH


def _num(v: float, fmt: str) -> str:
    if math.isinf(v):
        return "inf"
    return DASH if math.isnan(v) else format(v, fmt)


def display_rows(table: pd.DataFrame, metric: str | Metric = "") -> dict[tuple, list[list[str]]]:
    """Per setting, one row of strings per (budget, schedule); values as the table holds them
    (the report's metric)."""
    out: dict[tuple, list[list[str]]] = {}
    for setting, group in table.groupby(SETTING, sort=True):
        rows = []
        for r in group.sort_values(["budget", "schedule"]).to_dict("records"):
            rows.append(
                [
                    f"{100 * r['budget']:g}%",
                    str(r["schedule"]),
                    *(_value(r[c]) for c in FRACTION_COLUMNS),
                    _value(r["target"]),
                    f"{r['n_reached']}/{r['n']}",
                    _num(r["median_epochs_to_target"], "g"),
                    _num(r["median_seconds_to_target"], ".1f"),
                    SHORT.get(r["judged"], r["judged"]),
                ]
            )
        out[tuple(str(s) for s in setting)] = rows
    return out


def what(metric: str | Metric) -> str:
    """What an '@f' entry is: 'lowest test error (%)', 'best test accuracy (%)', ..."""
    m = metric_named(metric)
    return f"{'lowest' if m.lower_is_better else 'best'} {m.label}"


def reaches(metric: str | Metric) -> str:
    """How a run reaches the target, in words: 'test error at or below the target'."""
    m = metric_named(metric)
    return f"{m.title} at or {'below' if m.lower_is_better else 'above'} the target"


def headers(metric: str | Metric) -> list[str]:
    m = metric_named(metric)
    unit = " %" if "(%)" in m.label else ""
    return [
        "budget",
        "schedule",
        *(f"@{100 * f:g}%" for f in FRACTIONS),
        f"target{unit}",
        "reached",
        "epochs to target",
        "s to target",
        "judged at",
    ]


def target_text(anytime: Anytime) -> str:
    """Where the targets come from, in the report's metric."""
    m = anytime.metric
    if anytime.target is not None:
        value = with_unit(m, m.shown(m.score(anytime.target)))
        return f"Target: {m.title} {value} (--target {anytime.target:g}) in every cell."
    return f"Target per cell: the median over schedules of their mean final {m.title}."


def with_unit(metric: Metric, value: float) -> str:
    """A shown value with its unit: '10%', '1.52 nats'."""
    unit = metric.label.split(" (")[-1].rstrip(")") if " (" in metric.label else ""
    return f"{value:.4g}%" if unit == "%" else f"{value:.4g} {unit}".rstrip()


def explanation(anytime: Anytime) -> str:
    """The paragraph that says what the anytime tables hold (Markdown and the page)."""
    m = anytime.metric
    return (
        f"Each '@f' column is the {what(m)} a run reached by fraction f of its budget (epochs "
        "1..floor(f·epochs)), mean over seeds; – where no judged epoch lies inside f yet. "
        f"Time to target: the first judged epoch with {reaches(m)}, median over seeds, "
        "inf = not reached; 'reached' counts seeds. "
        + target_text(anytime)
        + " Cyclical schedules (sgdr, triangular) are judged only at their cycle ends; seconds "
        "are summed epoch_time_s (evaluation included)."
    )


def markdown(anytime: Anytime, metric: str | Metric = "") -> str:
    out = ["# lrbench anytime report", "", explanation(anytime)]
    head = headers(anytime.metric)
    for setting, rows in display_rows(anytime.table).items():
        out += [
            "",
            f"## {' · '.join(setting)}",
            "",
            "| " + " | ".join(head) + " |",
            "| " + " | ".join(["---:", "---"] + ["---:"] * (len(head) - 3) + ["---"]) + " |",
        ]
        out += ["| " + " | ".join(_md(c) for c in row) + " |" for row in rows]
    return "\n".join(out) + "\n"


def _md(text: str) -> str:
    for ch in "\\|*_<`":
        text = text.replace(ch, "\\" + ch)
    return text
