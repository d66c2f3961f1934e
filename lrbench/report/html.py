"""report.html: the whole report as one page to open, mail or attach to a paper's supplement.

The page is self-contained: figures are inline SVG, styles and the small sort script are inline,
and its Content-Security-Policy lets it fetch nothing, so it stays whole when moved alone. It
renders the models the Markdown, LaTeX and terminal outputs render (tables.py, anytime.py), so
the numbers cannot disagree. Run ids, labels and paths come from results folders: they are data,
and Jinja2 escapes every one of them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

import jinja2
import numpy as np
import pandas as pd
from markupsafe import Markup

from lrbench.report import anytime as anytime_tables
from lrbench.report.metric import METRICS, in_metric, metric_named
from lrbench.report.plots import Figures, Plot
from lrbench.report.problems import NOTE, SKIPPED, skipped_runs
from lrbench.report.rank import COMPARED, LOW_HIGH_SPLIT, RANKED, ROW
from lrbench.report.tables import (
    DASH,
    ENSEMBLE_HEADERS,
    EXPECTED_HEADERS,
    FINISH_HEADERS,
    HELD_MARK,
    ensemble_rows,
    finish_rows,
    reference_tables,
    setting_tables,
)
from lrbench.report.variants import shown
from lrbench.report.verdict import lines as verdict_lines

if TYPE_CHECKING:
    from lrbench.report.contents import Report

UNCERTAINTY_HEADERS = {
    "dataset": "dataset",
    "model": "model",
    "optimizer": "optimizer",
    "budget": "budget",
    "schedule": "schedule",
    "variant": "variant",
    "n": "seeds",
    "mean": "mean",
    "ci_low": "95% low",
    "ci_high": "95% high",
    "p_top1": "P(top-1)",
    "p_top3": "P(top-3)",
}


# past this many runs the page lists only the runs with a problem (runs.csv lists all), and
# problems.txt's lines only up to it: the page stays a few MB whatever the study's size
RUN_LIST_LIMIT = 300


@dataclass(frozen=True)
class RunRow:
    """One run of the run list as the page prints it."""

    run_id: str
    path: str
    status: str
    state: str
    in_tables: bool
    why: str
    final: str
    setting: str
    schedule: str
    budget: str
    seed: str
    lr: str
    epochs: str


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("lrbench.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render(
    report: Report, chosen: pd.DataFrame, figures: Figures, runs: pd.DataFrame | None = None
) -> str:
    """The page for a report whose tables use the runs in `chosen` (after the lr choice);
    `runs`: its run_list when already made."""
    metric = report.metric
    runs = run_list(report, chosen) if runs is None else runs
    skipped = [p for p in report.problems if p.kind == SKIPPED]
    notes = [p for p in report.problems if p.kind == NOTE]
    anytime = report.anytime
    reference = report.reference.name if report.reference is not None else ""
    settings = setting_tables(report.summary, metric)
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            metric=METRICS[metric],
            metric_name=METRICS[metric].split(" (")[0],
            profile_what=_profile_what(metric),
            lrbench=_version(),
            sweeps=sorted({str(s) for s in report.runs["sweep"]}) if len(report.runs) else [],
            counts=_counts(report, chosen, len(settings)),
            split=f"{LOW_HIGH_SPLIT:g}",
            dash=DASH,
            finish_headers=[*FINISH_HEADERS.values(), *EXPECTED_HEADERS.values()],
            finish_rows=finish_rows(report.finishes),
            settings=settings,
            ensembles=ensemble_rows(report.summary, metric),
            ensemble_headers=ENSEMBLE_HEADERS,
            uncertainty=_uncertainty_rows(report.uncertainty),
            uncertainty_headers=[
                h for c, h in UNCERTAINTY_HEADERS.items() if c in report.uncertainty.columns
            ],
            reference=reference,
            reference_settings=(
                reference_tables(report.compared, metric) if report.compared is not None else []
            ),
            held_mark=HELD_MARK,
            figures=figures,
            svg=_inline,
            anytime=anytime,
            anytime_headers=anytime_tables.headers(metric),
            anytime_rows=(
                anytime_tables.display_rows(anytime.table) if anytime is not None else {}
            ),
            anytime_what=anytime_tables.what(metric),
            anytime_reaches=anytime_tables.reaches(metric),
            anytime_target=anytime_tables.target_text(anytime) if anytime is not None else "",
            skipped=skipped[:RUN_LIST_LIMIT],
            skipped_more=max(0, len(skipped) - RUN_LIST_LIMIT),
            notes=notes[:RUN_LIST_LIMIT],
            notes_more=max(0, len(notes) - RUN_LIST_LIMIT),
            runs=_run_rows(runs),
            runs_total=len(runs),
            runs_listed_all=len(runs) <= RUN_LIST_LIMIT,
            run_summary=_run_summary(runs),
            verdict=verdict_lines(report.verdict) if report.verdict is not None else [],
        )
    )


def _profile_what(metric: str) -> str:
    """What the performance profile divides (plots.error_ratios): the metric where lower is
    better, else the test error."""
    m = metric_named(metric)
    return m.title if m.lower_is_better else "test error"


def _inline(plot: Plot) -> Markup:
    """matplotlib's own SVG: it escapes every text it draws, so it goes into the page as is."""
    return Markup(plot.svg)


def _version() -> str:
    try:
        return version("lrbench")
    except PackageNotFoundError:
        return "unknown"


def _counts(report: Report, chosen: pd.DataFrame, settings: int) -> dict[str, int]:
    return {
        "runs": len(report.runs),
        "used": len(chosen),
        "skipped": skipped_runs(report.problems),
        "notes": sum(p.kind == NOTE for p in report.problems),
        "settings": settings,
        "cells": report.summary.groupby(COMPARED).ngroups if len(report.summary) else 0,
    }


def _number(value: Any, fmt: str) -> str:
    value = float(value)
    return format(value, fmt) if math.isfinite(value) else DASH


def _uncertainty_rows(table: pd.DataFrame) -> list[list[str]]:
    """uncertainty.csv's rows as the page prints them."""
    rows = []
    for r in table.to_dict("records"):
        rows.append(
            [
                *(str(r[c]) for c in ("dataset", "model", "optimizer")),
                f"{100 * r['budget']:g}%",
                str(r["schedule"]),
                *([str(r["variant"])] if "variant" in table.columns else []),
                str(r["n"]),
                *(_number(r[c], ".2f") for c in ("mean", "ci_low", "ci_high", "p_top1", "p_top3")),
            ]
        )
    return rows


RUN_LIST_COLUMNS = [
    "run_id",
    "state",
    "in_tables",
    "why",
    "final",
    "setting",
    "schedule",
    "budget",
    "seed",
    "lr",
    "epochs",
    "status",
    "path",
]


def run_list(report: Report, chosen: pd.DataFrame) -> pd.DataFrame:
    """Every readable run as runs.csv and the page list it: its state, whether the tables use it
    and why not (what problems.txt says); the runs the tables leave out first, then by sweep
    and run id. Built column by column: no Python object per run."""
    runs = report.runs.sort_values(["sweep", "run_id"], kind="stable")
    if runs.empty:
        return pd.DataFrame(columns=RUN_LIST_COLUMNS)
    why: dict[str, list[str]] = {}
    for p in report.problems:
        why.setdefault(p.path, []).append(p.reason)
    used = runs["path"].isin(set(chosen["path"])).to_numpy()
    texts = {k: "; ".join(v) for k, v in why.items()}
    reasons = pd.Series([texts.get(p, "") for p in runs["path"]], index=runs.index, dtype=object)
    left_out = ~used & (reasons == "").to_numpy() & runs["status"].isin(RANKED).to_numpy()
    if left_out.any():
        rows_used = set(chosen[ROW].itertuples(index=False, name=None)) if len(chosen) else set()
        keys = runs.loc[left_out, ROW].itertuples(index=False, name=None)
        reasons[left_out] = [
            "another lr of its grid was chosen on validation"
            if k in rows_used
            else "left out of its cell (see the problems above)"
            for k in keys
        ]
    stopped = runs["stopped_early"].isin([True, 1]).to_numpy()
    final = in_metric(runs["score"].to_numpy(dtype=float), report.metric)
    frame = pd.DataFrame(
        {
            "run_id": runs["run_id"].astype(str).to_numpy(),
            "state": np.where(stopped, runs["status"] + " (stopped early)", runs["status"]),
            "in_tables": used,
            "why": reasons.to_numpy(),
            "final": [_number(v, ".2f") for v in final],
            "setting": (runs["dataset"] + " · " + runs["model"] + " · " + runs["optimizer"])
            .astype(str)
            .to_numpy(),
            "schedule": [
                shown(s, v) for s, v in zip(runs["schedule"], runs["variant"], strict=True)
            ],
            "budget": [f"{100 * b:g}%" for b in runs["budget"]],
            "seed": runs["seed"].astype(str).to_numpy(),
            "lr": [f"{v:g}" for v in runs["lr"]],
            "epochs": runs["epochs"].astype(str).to_numpy(),
            "status": runs["status"].astype(str).to_numpy(),
            "path": runs["path"].astype(str).to_numpy(),
        }
    )
    return frame.sort_values("in_tables", kind="stable").reset_index(drop=True)


def _run_rows(runs: pd.DataFrame) -> list[RunRow]:
    """The runs the page lists: all of them up to RUN_LIST_LIMIT; past it, only those the
    tables leave out or a problem names (up to the limit; runs.csv has every run)."""
    shown_runs = (
        runs if len(runs) <= RUN_LIST_LIMIT else runs[~runs["in_tables"] | (runs["why"] != "")]
    )
    return [
        RunRow(**{f: r[f] for f in RunRow.__dataclass_fields__})
        for r in shown_runs.head(RUN_LIST_LIMIT).to_dict("records")
    ]


def _run_summary(runs: pd.DataFrame) -> list[list[str]]:
    """Runs by state: how many were read and how many the tables use."""
    if runs.empty:
        return []
    counts = runs.groupby("state", sort=True)["in_tables"].agg(["size", "sum"])
    return [[str(state), str(int(n)), str(int(used))] for state, (n, used) in counts.iterrows()]
