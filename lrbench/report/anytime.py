"""Anytime performance and time-to-target, read from the runs' metrics.csv.

- Anytime: for each run, the best test accuracy reached by 10%, 25%, 50%, 75% and 100% of
  its budget (the run's `epochs`); a fraction f covers epochs 1..floor(f * epochs). Averaged
  over seeds per (cell, schedule). Where no judged epoch lies inside a fraction yet: NaN ("—").
- Time-to-target, as AlgoPerf scores it: the first judged epoch whose test accuracy reaches
  the target, in epochs and in seconds (the sum of epoch_time_s up to it, evaluation
  included); inf when never reached (diverged runs reach it only if they did before
  diverging). Per (cell, schedule) the median over seeds, so a schedule that misses the target
  in most seeds scores inf, and the count of seeds that reached it.
- Target: `--target X` for every cell; by default, per cell, the median over its schedules of
  their mean final test accuracy: a level about half the schedules hold at the end.
- Judged epochs. Cyclical schedules are judged only at their cycle ends, as the literature
  does (SGDR, snapshot ensembles, Smith's CLR: stop at a cycle end): the schedule is rebuilt
  from spec.json and each cycle end step k is judged at the last epoch that ends at or before
  it, floor(k / steps_per_epoch), whose rate is near the cycle's bottom (the epoch after it
  would already hold the restart). The final epoch always counts. A run that stopped early is
  also judged at its last epoch: its final metrics count as they stand. A schedule this
  version cannot rebuild is judged at every epoch, with a note. Every other schedule is judged
  at every epoch.

Nothing here imports torch (lrbench.schedules is numpy only).
"""

from __future__ import annotations

import json
import math
import statistics
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from lrbench.report.problems import NOTE, Problem
from lrbench.report.rank import CELL, SETTING, exact_mean
from lrbench.report.rebuild import rebuild_schedule

if TYPE_CHECKING:
    from matplotlib.figure import Figure

FRACTIONS = (0.1, 0.25, 0.5, 0.75, 1.0)
NOMINAL_SPE = 1000  # steps per epoch assumed when spec.json does not record it
EVERY = "every epoch"
CYCLE_ENDS = "cycle ends"
UNKNOWN = "every epoch (schedule unknown here)"
DASH = "–"  # as in tables.py
SHORT = {EVERY: "epochs", CYCLE_ENDS: "cycle ends", UNKNOWN: "epochs (?)"}


def fraction_column(f: float) -> str:
    return f"best_acc_{100 * f:g}"


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
        spe = int(steps_per_epoch) if steps_per_epoch else NOMINAL_SPE
        ends = sched.cycle_end_steps(epochs * spe, spe)
    except Exception:
        return every, UNKNOWN
    if len(ends) <= 1:
        return every, EVERY
    judged = {k // spe for k in ends if k // spe >= 1} | {epochs}
    return sorted(judged), CYCLE_ENDS


def _judged_rows(curve: pd.DataFrame, judged: list[int], stopped_early: bool) -> pd.DataFrame:
    rows = curve[curve["epoch"].isin(judged)]
    if stopped_early and len(curve):
        rows = pd.concat([rows, curve.iloc[[-1]]]).drop_duplicates("epoch")
    return rows.sort_values("epoch")


def best_by_fraction(
    curve: pd.DataFrame,
    epochs: int,
    judged: list[int],
    fractions: tuple[float, ...] = FRACTIONS,
    stopped_early: bool = False,
) -> list[float]:
    """Best test_acc over judged epochs <= floor(f * epochs), for each fraction f."""
    rows = _judged_rows(curve, judged, stopped_early)
    acc = pd.to_numeric(rows["test_acc"], errors="coerce")
    out = []
    for f in fractions:
        limit = math.floor(f * epochs + 1e-9)
        inside = acc[rows["epoch"] <= limit].dropna()
        out.append(float(inside.max()) if len(inside) else math.nan)
    return out


def best_so_far(curve: pd.DataFrame, judged: list[int], stopped_early: bool = False) -> pd.Series:
    """Best judged test_acc up to each epoch of the curve (NaN before the first judged one)."""
    rows = _judged_rows(curve, judged, stopped_early)
    acc = pd.Series(
        pd.to_numeric(rows["test_acc"], errors="coerce").to_numpy(), index=rows["epoch"]
    )
    full = acc.reindex(sorted(curve["epoch"]))
    return full.cummax().ffill() if full.notna().any() else full


def time_to_target(
    curve: pd.DataFrame, judged: list[int], target: float, stopped_early: bool = False
) -> tuple[float, float]:
    """(epochs, seconds) to the first judged epoch with test_acc >= target; inf if never."""
    rows = _judged_rows(curve, judged, stopped_early)
    acc = pd.to_numeric(rows["test_acc"], errors="coerce")
    hit = rows[acc >= target - 1e-12]
    if hit.empty:
        return math.inf, math.inf
    epoch = int(hit["epoch"].iloc[0])
    if "epoch_time_s" not in curve.columns:
        return float(epoch), math.nan
    times = pd.to_numeric(curve.loc[curve["epoch"] <= epoch, "epoch_time_s"], errors="coerce")
    return float(epoch), float(times.sum()) if times.notna().all() else math.nan


def cell_targets(summary: pd.DataFrame, target: float | None) -> dict[tuple, tuple[float, str]]:
    """Per cell: (target, where it came from)."""
    out: dict[tuple, tuple[float, str]] = {}
    for key, cell in summary.groupby(CELL, sort=True):
        if target is not None:
            out[key] = (float(target), "--target")
            continue
        means = [m for m in cell["mean_test_acc"] if math.isfinite(m)]
        out[key] = (
            (float(statistics.median(means)), "median of final means")
            if means
            else (math.nan, "no finished runs")
        )
    return out


@dataclass
class Anytime:
    """anytime.csv (per cell and schedule), time_to_target.csv (per run), per-epoch curves."""

    table: pd.DataFrame
    runs: pd.DataFrame
    curves: dict[str, pd.Series] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    target: float | None = None

    @property
    def empty(self) -> bool:
        return self.table.empty


def analyse_anytime(
    chosen: pd.DataFrame,
    curves: dict[str, pd.DataFrame],
    summary: pd.DataFrame,
    target: float | None = None,
) -> Anytime:
    """Anytime and time-to-target for the runs the tables use (after the lr choice)."""
    targets = cell_targets(summary, target)
    per_run: list[dict[str, Any]] = []
    bsf: dict[str, pd.Series] = {}
    unknown: dict[str, str] = {}
    for r in chosen.to_dict("records"):
        curve = curves.get(r["path"])
        if curve is None or "test_acc" not in curve.columns:
            continue
        schedule = json.loads(r["schedule_params"])
        spe = r.get("steps_per_epoch")
        spe = int(spe) if spe is not None and math.isfinite(float(spe)) else None
        judged, how = judged_epochs(schedule, int(r["epochs"]), spe)
        if how == UNKNOWN:
            unknown.setdefault(str(r["schedule"]), r["path"])
        stopped = bool(r.get("stopped_early"))
        key = tuple(r[c] for c in CELL)
        tgt, _ = targets.get(key, (math.nan, ""))
        epochs_to, seconds_to = (
            time_to_target(curve, judged, tgt, stopped) if math.isfinite(tgt) else (math.nan,) * 2
        )
        done = r["status"] == "done"
        fractions = (
            best_by_fraction(curve, int(r["epochs"]), judged, FRACTIONS, stopped)
            if done
            else [math.nan] * len(FRACTIONS)
        )
        if done:
            series = best_so_far(curve, judged, stopped)
            full = series.reindex(range(1, int(r["epochs"]) + 1))
            bsf[r["path"]] = full.ffill() if stopped else full
        per_run.append(
            {
                **{c: r[c] for c in CELL},
                "schedule": r["schedule"],
                "seed": r["seed"],
                "lr": r["lr"],
                "status": r["status"],
                "epochs": int(r["epochs"]),
                "judged": how,
                "target": tgt,
                "reached": bool(math.isfinite(epochs_to)),
                "epochs_to_target": epochs_to,
                "seconds_to_target": seconds_to,
                "path": r["path"],
                **dict(zip(FRACTION_COLUMNS, fractions, strict=True)),
            }
        )
    runs = pd.DataFrame(per_run, columns=[*TTT_COLUMNS, *FRACTION_COLUMNS])
    rows = []
    for key, group in runs.groupby([*CELL, "schedule"], sort=True):
        done = group[group["status"] == "done"]
        tgt, source = targets[key[:-1]]
        rows.append(
            {
                **dict(zip([*CELL, "schedule"], key, strict=True)),
                "judged": group["judged"].iloc[0],
                "n": len(group),
                **{c: _mean_finite(done[c]) for c in FRACTION_COLUMNS},
                "target": tgt,
                "target_source": source,
                "n_reached": int(group["reached"].sum()),
                "median_epochs_to_target": _median(group["epochs_to_target"]),
                "median_seconds_to_target": _median(group["seconds_to_target"]),
            }
        )
    problems = [
        Problem(
            path,
            f"schedule {label!r} cannot be rebuilt by this version: anytime and time-to-target "
            "judge it at every epoch (its cycle ends are unknown)",
            NOTE,
        )
        for label, path in sorted(unknown.items())
    ]
    return Anytime(
        table=pd.DataFrame(rows, columns=ANYTIME_COLUMNS),
        runs=runs[TTT_COLUMNS],
        curves=bsf,
        problems=problems,
        target=target,
    )


def _mean_finite(values: pd.Series) -> float:
    vals = [float(v) for v in values if math.isfinite(float(v))]
    return exact_mean(vals) if len(vals) == len(values) and vals else math.nan


def _median(values: pd.Series) -> float:
    vals = [float(v) for v in values if not math.isnan(float(v))]
    return float(np.median(vals)) if vals else math.nan


# --- rendering ----------------------------------------------------------------------------


def _pct(acc: float, metric: str) -> str:
    if not math.isfinite(acc):
        return DASH
    return f"{100 * (1 - acc):.2f}" if metric == "error" else f"{100 * acc:.2f}"


def _num(v: float, fmt: str) -> str:
    if math.isinf(v):
        return "inf"
    return DASH if math.isnan(v) else format(v, fmt)


def display_rows(table: pd.DataFrame, metric: str) -> dict[tuple, list[list[str]]]:
    """Per setting, one row of strings per (budget, schedule)."""
    out: dict[tuple, list[list[str]]] = {}
    for setting, group in table.groupby(SETTING, sort=True):
        rows = []
        for r in group.sort_values(["budget", "schedule"]).to_dict("records"):
            rows.append(
                [
                    f"{100 * r['budget']:g}%",
                    str(r["schedule"]),
                    *(_pct(r[c], metric) for c in FRACTION_COLUMNS),
                    _pct(r["target"], "accuracy"),
                    f"{r['n_reached']}/{r['n']}",
                    _num(r["median_epochs_to_target"], "g"),
                    _num(r["median_seconds_to_target"], ".1f"),
                    SHORT.get(r["judged"], r["judged"]),
                ]
            )
        out[tuple(str(s) for s in setting)] = rows
    return out


def what(metric: str) -> str:
    return "lowest test error (%)" if metric == "error" else "best test accuracy (%)"


def headers(metric: str) -> list[str]:
    return [
        "budget",
        "schedule",
        *(f"@{100 * f:g}%" for f in FRACTIONS),
        "target acc %",
        "reached",
        "epochs to target",
        "s to target",
        "judged at",
    ]


def markdown(anytime: Anytime, metric: str) -> str:
    out = [
        "# lrbench anytime report",
        "",
        f"Each '@f' column is the {what(metric)} a run reached by fraction f of its budget (epochs "
        "1..floor(f·epochs)), mean over seeds; – where no judged epoch lies inside f yet. "
        "Time to target (AlgoPerf-style): the first judged epoch whose test accuracy reaches "
        "the target, median over seeds, inf = not reached; 'reached' counts seeds. "
        + (
            f"Target: {100 * anytime.target:g}% (--target) in every cell. "
            if anytime.target is not None
            else "Target per cell: the median over schedules of the mean final test accuracy. "
        )
        + "Cyclical schedules (sgdr, triangular) are judged only at their cycle ends; seconds "
        "are summed epoch_time_s (evaluation included).",
    ]
    head = headers(metric)
    for setting, rows in display_rows(anytime.table, metric).items():
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


def rich_tables(anytime: Anytime, metric: str) -> list:
    from rich.table import Table
    from rich.text import Text

    tables = []
    head = headers(metric)
    for setting, rows in display_rows(anytime.table, metric).items():
        table = Table(
            title=f"{' · '.join(setting)} — anytime: {what(metric)} by fraction of the budget; "
            "time to target",
            caption="@f: mean over seeds · time to target: median over seeds, inf = not reached",
        )
        for i, h in enumerate(head):
            last = i == len(head) - 1
            table.add_column(h, justify="left" if i == 1 or last else "right", no_wrap=last)
        for row in rows:
            table.add_row(*(Text(c, style="dim" if c in (DASH, "inf") else "") for c in row))
        tables.append(table)
    return tables


def figure(anytime: Anytime, colour: dict) -> Figure:
    """anytime.png: best-so-far test accuracy against fraction of budget, a panel per cell."""
    from lrbench.report.plots import _grid, _legend

    runs = anytime.runs
    cells = list(runs[runs["status"] == "done"].groupby(CELL, sort=True))
    fig, axes = _grid(max(1, len(cells)))
    for ax, (cell, group) in zip(axes, cells, strict=False):
        for schedule, sched_runs in group.groupby("schedule", sort=True):
            frames = []
            for p, e in zip(sched_runs["path"], sched_runs["epochs"], strict=True):
                if p in anytime.curves:
                    s = anytime.curves[p]
                    frames.append(pd.Series(s.to_numpy(), index=s.index / float(e)))
            if not frames:
                continue
            mean = pd.concat(frames, axis=1).mean(axis=1, skipna=False).dropna()
            if mean.empty:
                continue
            ax.plot(
                mean.index,
                100 * mean.to_numpy(),
                drawstyle="steps-post",
                marker="." if len(mean) < 40 else None,
                color=colour.get(schedule),
                label=str(schedule),
            )
        tgt = group["target"].iloc[0]
        if math.isfinite(tgt):
            ax.axhline(100 * tgt, color="grey", ls="--", lw=1, label="target")
        dataset, model, optimizer, budget = cell
        ax.set_title(f"{dataset} · {model} · {optimizer}, budget {100 * budget:g}%")
        ax.set_xlim(0, 1.02)
        ax.set_xlabel("fraction of the budget")
        ax.set_ylabel("best test accuracy so far (%)")
        ax.grid(alpha=0.3)
    if not cells:
        axes[0].set_title("(no finished runs)")
    fig.suptitle("Anytime: best-so-far test accuracy (mean over seeds; cyclical: at cycle ends)")
    _legend(fig, axes)
    return fig
