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
import pandas as pd
from markupsafe import Markup

from lrbench.report import anytime as anytime_tables
from lrbench.report.metric import METRICS, in_metric
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
    from lrbench.report import Report

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


def render(report: Report, chosen: pd.DataFrame, figures: Figures) -> str:
    """The page for a report whose tables use the runs in `chosen` (after the lr choice)."""
    metric = report.metric
    anytime = report.anytime
    reference = report.reference.name if report.reference is not None else ""
    settings = setting_tables(report.summary, metric)
    return (
        _environment()
        .get_template("report.html.j2")
        .render(
            metric=METRICS[metric],
            metric_name=METRICS[metric].split(" (")[0],
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
                anytime_tables.display_rows(anytime.table, metric) if anytime is not None else {}
            ),
            anytime_what=anytime_tables.what(metric),
            skipped=[p for p in report.problems if p.kind == SKIPPED],
            notes=[p for p in report.problems if p.kind == NOTE],
            runs=_run_rows(report, chosen),
            verdict=verdict_lines(report.verdict) if report.verdict is not None else [],
        )
    )


def _inline(plot: Plot) -> Markup:
    """matplotlib's own SVG: it escapes every text it draws, so it goes into the page as is."""
    return Markup(plot.svg())


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


def _run_rows(report: Report, chosen: pd.DataFrame) -> list[RunRow]:
    """Every readable run: its state, whether the tables use it, and what problems.txt says;
    the runs the tables leave out come first."""
    used = set(chosen["path"])
    rows_used = {tuple(k) for k in chosen[ROW].to_numpy()} if len(chosen) else set()
    why: dict[str, list[str]] = {}
    for p in report.problems:
        why.setdefault(p.path, []).append(p.reason)
    rows = []
    for r in report.runs.sort_values(["sweep", "run_id"]).to_dict("records"):
        in_tables = r["path"] in used
        reasons = why.get(r["path"], [])
        if not in_tables and not reasons and r["status"] in RANKED:
            row_key = tuple(r[c] for c in ROW)
            reasons = [
                "another lr of its grid was chosen on validation"
                if row_key in rows_used
                else "left out of its cell (see the problems above)"
            ]
        state = str(r["status"])
        if r["stopped_early"] in (True, 1):
            state += " (stopped early)"
        rows.append(
            RunRow(
                run_id=str(r["run_id"]),
                path=str(r["path"]),
                status=str(r["status"]),
                state=state,
                in_tables=in_tables,
                why="; ".join(reasons),
                final=_number(in_metric(float(r["score"]), report.metric), ".2f"),
                setting=" · ".join(str(r[c]) for c in ("dataset", "model", "optimizer")),
                schedule=shown(r["schedule"], r["variant"]),
                budget=f"{100 * r['budget']:g}%",
                seed=str(r["seed"]),
                lr=f"{r['lr']:g}",
                epochs=str(r["epochs"]),
            )
        )
    return sorted(rows, key=lambda row: row.in_tables)  # the runs left out first
