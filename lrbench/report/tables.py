"""The paper-style tables as Markdown, LaTeX (booktabs) and rich terminal tables.

One neutral model (SettingTable) is built from summary.csv's rows and each renderer only
decides how a top-1 / top-3 mark and a "±" look, so the three outputs cannot disagree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd
from rich.table import Table
from rich.text import Text

from lrbench.report.rank import LOW_HIGH_SPLIT, SETTING

METRICS = {"error": "test error (%)", "accuracy": "test accuracy (%)"}
FINISH_HEADERS = {
    "schedule": "schedule",
    "cells": "cells",
    "low_top1": "low top-1 %",
    "low_top3": "low top-3 %",
    "high_top1": "high top-1 %",
    "high_top3": "high top-3 %",
    "top1": "top-1 %",
    "top3": "top-3 %",
}
DASH = "–"


@dataclass(frozen=True)
class Entry:
    """One table cell: mean and std (already in %), the mark, and notes such as the chosen rate."""

    mean: str
    std: str | None
    mark: str
    notes: str


@dataclass(frozen=True)
class SettingTable:
    """Schedules as rows, budgets as columns, for one (dataset, model, optimizer)."""

    setting: tuple[str, str, str]
    columns: list[str]
    rows: list[tuple[str, list[Entry | None]]]

    @property
    def title(self) -> str:
        return " · ".join(self.setting)

    @property
    def slug(self) -> str:
        return "-".join(self.setting)


def setting_tables(summary: pd.DataFrame, metric: str) -> list[SettingTable]:
    tables = []
    for setting, group in summary.groupby(SETTING, sort=True):
        budgets = sorted(group["budget"].unique())
        full_n = int(group["n"].max())
        rows = []
        for schedule, sched_rows in group.groupby("schedule", sort=True):
            by_budget = {r["budget"]: r for r in sched_rows.to_dict("records")}
            entries = [
                _entry(by_budget[b], metric, full_n) if b in by_budget else None for b in budgets
            ]
            rows.append((str(schedule), entries))
        columns = [_budget_header(b, group[group["budget"] == b]["epochs"]) for b in budgets]
        tables.append(SettingTable(tuple(str(x) for x in setting), columns, rows))
    return tables


def _budget_header(budget: float, epochs: pd.Series) -> str:
    head = f"{100 * budget:g}%"
    return f"{head} ({int(epochs.iloc[0])} ep)" if epochs.nunique() == 1 else head


def _entry(row: dict[str, Any], metric: str, full_n: int) -> Entry:
    """Accuracy fractions become % (error = 100 - accuracy); notes say what the mean hides."""
    notes = []
    if len(str(row["lr_grid"]).split()) > 1:
        notes.append(f"lr {row['lr']:g}")
    n, n_div = int(row["n"]), int(row["n_diverged"])
    if 0 < n_div < n:
        notes.append(f"{n_div}/{n} diverged")
    elif n < full_n:
        notes.append(f"n={n}")
    n_stopped = int(row.get("n_stopped_early") or 0)
    if n_stopped:
        notes.append(f"{n_stopped}/{n} stopped early")
    mark = "top1" if row["top1"] else "top3" if row["top3"] else ""
    mean_acc, std_acc = float(row["mean_test_acc"]), float(row["std_test_acc"])
    if not math.isfinite(mean_acc):
        return Entry("diverged", None, mark, "; ".join(notes))
    value = 100 * (1 - mean_acc) if metric == "error" else 100 * mean_acc
    std = f"{100 * std_acc:.2f}" if math.isfinite(std_acc) else None
    return Entry(f"{value:.2f}", std, mark, "; ".join(notes))


def _finish_value(value: float) -> str:
    return DASH if not math.isfinite(value) else f"{value:.1f}"


def _best_in_columns(fin: pd.DataFrame) -> dict[str, float]:
    return {c: fin[c].max() for c in list(FINISH_HEADERS)[2:] if fin[c].notna().any()}


# --- Markdown ------------------------------------------------------------------------------


def _md_escape(text: str) -> str:
    for ch in "\\|*_<`":
        text = text.replace(ch, "\\" + ch)
    return text


def _md_entry(entry: Entry | None) -> str:
    if entry is None:
        return DASH
    text = entry.mean if entry.std is None else f"{entry.mean} ± {entry.std}"
    if entry.mark == "top1":
        text = f"**{text}**"
    elif entry.mark == "top3":
        text = f"<u>{text}</u>"
    return f"{text} ({_md_escape(entry.notes)})" if entry.notes else text


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def markdown(summary: pd.DataFrame, fin: pd.DataFrame, metric: str) -> str:
    out = [
        "# lrbench report",
        "",
        f"Cells are (dataset, model, optimizer, budget). Each entry is the {METRICS[metric]} of "
        "the last epoch, mean ± sample std over seeds. Within each budget column **bold** is "
        "top-1 (no schedule strictly better; ties all count) and <u>underlined</u> is top-3 "
        "(fewer than three strictly better). A schedule with diverged seeds ranks below every "
        'schedule with fewer. "lr x" is the rate chosen on validation accuracy from a grid; '
        '"n=k" marks fewer seeds than the rest of the table; – means not run.',
        "",
        "## Finishes",
        "",
        f"Percent of the cells each schedule took part in; low budget < {LOW_HIGH_SPLIT:g}, "
        f"high ≥ {LOW_HIGH_SPLIT:g}. Bold: best in the column.",
        "",
        _md_row(list(FINISH_HEADERS.values())),
        _md_row(["---"] + ["---:"] * (len(FINISH_HEADERS) - 1)),
    ]
    best = _best_in_columns(fin)
    for r in fin.itertuples(index=False):
        cells = [_md_escape(str(r.schedule)), str(r.cells)]
        for col in list(FINISH_HEADERS)[2:]:
            v = getattr(r, col)
            text = _finish_value(v)
            cells.append(f"**{text}**" if col in best and v == best[col] else text)
        out.append(_md_row(cells))
    for table in setting_tables(summary, metric):
        out += [
            "",
            f"## {_md_escape(table.title)} — {METRICS[metric]}",
            "",
            _md_row(["schedule", *table.columns]),
            _md_row(["---"] + ["---:"] * len(table.columns)),
        ]
        for schedule, entries in table.rows:
            out.append(_md_row([_md_escape(schedule), *(_md_entry(e) for e in entries)]))
    for setting, rows in ensemble_rows(summary, metric).items():
        out += [
            "",
            f"## {_md_escape(' · '.join(setting))} — snapshot ensembles, {METRICS[metric]}",
            "",
            "Single: the last epoch's model; ensemble: the average of the softmax outputs of "
            "the snapshots taken at each cycle end (Huang et al. 2017); mean ± std over seeds.",
            "",
            _md_row(ENSEMBLE_HEADERS),
            _md_row(["---:", "---"] + ["---:"] * (len(ENSEMBLE_HEADERS) - 2)),
        ]
        out += [_md_row([_md_escape(c) for c in r]) for r in rows]
    return "\n".join(out) + "\n"


# --- snapshot ensembles -------------------------------------------------------------------

ENSEMBLE_HEADERS = ["budget", "schedule", "snapshots", "single", "ensemble", "change"]


def _mean_std(mean: float, std: float, metric: str, sep: str = " ± ") -> str:
    if not math.isfinite(mean):
        return DASH
    value = 100 * (1 - mean) if metric == "error" else 100 * mean
    return f"{value:.2f}{sep}{100 * std:.2f}" if math.isfinite(std) else f"{value:.2f}"


def ensemble_rows(summary: pd.DataFrame, metric: str, sep: str = " ± ") -> dict[tuple, list]:
    """Per setting, rows (budget, schedule, snapshots, single, ensemble, change) for every
    (cell, schedule) whose runs recorded a snapshot ensemble; empty when none did."""
    if "mean_ensemble_test_acc" not in summary.columns:
        return {}
    values = pd.to_numeric(summary["mean_ensemble_test_acc"], errors="coerce")
    with_ens = summary.loc[values.notna() & values.abs().lt(math.inf)]
    out: dict[tuple, list] = {}
    for setting, group in with_ens.groupby(SETTING, sort=True):
        rows = []
        for r in group.sort_values(["budget", "schedule"]).to_dict("records"):
            single, ens = float(r["mean_test_acc"]), float(r["mean_ensemble_test_acc"])
            gain = 100 * (ens - single)
            if metric == "error":
                gain = -gain
            rows.append(
                [
                    f"{100 * r['budget']:g}%",
                    str(r["schedule"]),
                    f"{r['ensemble_size']:g}",
                    _mean_std(single, float(r["std_test_acc"]), metric, sep),
                    _mean_std(ens, float(r["std_ensemble_test_acc"]), metric, sep),
                    f"{gain:+.2f}" if math.isfinite(gain) else DASH,
                ]
            )
        out[tuple(str(x) for x in setting)] = rows
    return out


# --- LaTeX ---------------------------------------------------------------------------------

_TEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def tex_escape(text: str) -> str:
    return "".join(_TEX.get(ch, ch) for ch in text)


def _tex_entry(entry: Entry | None) -> str:
    if entry is None:
        return "--"
    text = entry.mean if entry.std is None else f"{entry.mean} $\\pm$ {entry.std}"
    if entry.mark == "top1":
        text = f"\\textbf{{{text}}}"
    elif entry.mark == "top3":
        text = f"\\underline{{{text}}}"
    return f"{text} {{\\scriptsize ({tex_escape(entry.notes)})}}" if entry.notes else text


def _tex_table(caption: str, label: str, header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "\\begin{table}[ht]",
        "\\centering",
        f"\\caption{{{caption}}}",
        f"\\label{{{label}}}",
        f"\\begin{{tabular}}{{l{'r' * (len(header) - 1)}}}",
        "\\toprule",
        " & ".join(header) + " \\\\",
        "\\midrule",
        *(" & ".join(r) + " \\\\" for r in rows),
        "\\bottomrule",
        "\\end{tabular}",
        "\\end{table}",
        "",
    ]


def latex(summary: pd.DataFrame, fin: pd.DataFrame, metric: str) -> str:
    out = [
        "% lrbench report. Needs \\usepackage{booktabs} in the preamble.",
        "% \\textbf = top-1 (ties all count), \\underline = top-3, within each budget column.",
        "",
    ]
    best = _best_in_columns(fin)
    fin_rows = []
    for r in fin.itertuples(index=False):
        cells = [tex_escape(str(r.schedule)), str(r.cells)]
        for col in list(FINISH_HEADERS)[2:]:
            v = getattr(r, col)
            text = _finish_value(v)
            cells.append(f"\\textbf{{{text}}}" if col in best and v == best[col] else text)
        fin_rows.append(cells)
    out += _tex_table(
        "Finishes: percent of the cells each schedule took part in where it ranked top-1 / "
        f"top-3; low budget $<$ {LOW_HIGH_SPLIT:g}, high $\\geq$ {LOW_HIGH_SPLIT:g}.",
        "tab:finishes",
        [tex_escape(h) for h in FINISH_HEADERS.values()],
        fin_rows,
    )
    for table in setting_tables(summary, metric):
        out += _tex_table(
            f"{tex_escape(', '.join(table.setting))}: {tex_escape(METRICS[metric])}, mean $\\pm$ "
            "std over seeds. Bold: top-1; underlined: top-3.",
            f"tab:{tex_escape(table.slug)}",
            ["Schedule", *(tex_escape(c) for c in table.columns)],
            [[tex_escape(s), *(_tex_entry(e) for e in entries)] for s, entries in table.rows],
        )
    for setting, rows in ensemble_rows(summary, metric, sep=" $\\pm$ ").items():
        out += _tex_table(
            f"{tex_escape(', '.join(setting))}: snapshot ensembles (softmax averaged over the "
            f"snapshots at each cycle end) against the last epoch's model, "
            f"{tex_escape(METRICS[metric])}, mean $\\pm$ std over seeds.",
            f"tab:ensembles-{tex_escape('-'.join(setting))}",
            [tex_escape(h) for h in ENSEMBLE_HEADERS],
            [
                [tex_escape(r[0]), tex_escape(r[1]), r[2], r[3], r[4], r[5].replace(DASH, "--")]
                for r in rows
            ],
        )
    return "\n".join(out)


# --- rich ----------------------------------------------------------------------------------

STYLES = {"top1": "bold green", "top3": "underline yellow", "": ""}


def _rich_entry(entry: Entry | None) -> Text:
    if entry is None:
        return Text(DASH, style="dim")
    value = entry.mean if entry.std is None else f"{entry.mean} ± {entry.std}"
    text = Text(value, style=STYLES[entry.mark])
    if entry.notes:
        text.append(f" ({entry.notes})", style="dim")
    return text


def rich_tables(
    summary: pd.DataFrame, fin: pd.DataFrame, metric: str, anytime: Any = None
) -> list[Table]:
    """Finish table first (the headline), then one table per setting, then the snapshot
    ensembles (when runs recorded them) and the anytime tables (when given)."""
    finish = Table(
        title=f"Finishes (% of each schedule's cells; low budget < {LOW_HIGH_SPLIT:g})",
        caption="bold: best in column",
    )
    for key, head in FINISH_HEADERS.items():
        if key == "schedule":
            finish.add_column(head, no_wrap=True)
        else:
            finish.add_column(head, justify="right")
    best = _best_in_columns(fin)
    for r in fin.itertuples(index=False):
        cells = [Text(str(r.schedule)), Text(str(r.cells))]
        for col in list(FINISH_HEADERS)[2:]:
            v = getattr(r, col)
            cells.append(
                Text(_finish_value(v), style="bold green" if col in best and v == best[col] else "")
            )
        finish.add_row(*cells)
    tables = [finish]
    for st in setting_tables(summary, metric):
        table = Table(
            title=f"{st.title} — {METRICS[metric]}",
            caption="green bold: top-1 · yellow underlined: top-3",
        )
        table.add_column("schedule", no_wrap=True)
        for col in st.columns:
            table.add_column(col, justify="right")
        for schedule, entries in st.rows:
            table.add_row(Text(schedule), *(_rich_entry(e) for e in entries))
        tables.append(table)
    for setting, rows in ensemble_rows(summary, metric).items():
        table = Table(
            title=f"{' · '.join(setting)} — snapshot ensembles, {METRICS[metric]}",
            caption="single: last epoch's model · ensemble: softmax averaged over cycle-end "
            "snapshots",
        )
        for i, head in enumerate(ENSEMBLE_HEADERS):
            table.add_column(head, justify="left" if i == 1 else "right", no_wrap=i == 1)
        for r in rows:
            table.add_row(*(Text(c) for c in r))
        tables.append(table)
    if anytime is not None and not anytime.empty:
        from lrbench.report.anytime import rich_tables as anytime_tables

        tables += anytime_tables(anytime, metric)
    return tables
