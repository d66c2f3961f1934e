"""The paper-style tables as Markdown, LaTeX (booktabs) and rich terminal tables.

One neutral model (SettingTable, FinishRow, ReferenceTable) is built from the summary's rows
and each renderer only decides how a top-1 / top-3 mark, a "±" and an interval look, so the
three outputs cannot disagree.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import pandas as pd
from rich.table import Table
from rich.text import Text

from lrbench.report.anytime import Anytime
from lrbench.report.anytime import display_rows as anytime_rows
from lrbench.report.anytime import headers as anytime_headers
from lrbench.report.anytime import what as anytime_what
from lrbench.report.metric import BUILT_IN, METRICS, Metric, metric_named
from lrbench.report.rank import LOW_HIGH_SPLIT, SETTING
from lrbench.report.variants import shown
from lrbench.report.verdict import lines as verdict_lines

__all__ = ["METRICS", "latex", "markdown", "rich_tables", "setting_tables"]

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
EXPECTED_HEADERS = {"expected_top1": "expected top-1 %", "expected_top3": "expected top-3 %"}
DASH = "–"
HELD_MARK = "†"
T_MARK = "ᵗ"  # the interval is the t-interval of the mean (fewer than five finished seeds)


@dataclass(frozen=True)
class Entry:
    """One table cell: mean and std (already in %), the 95% interval, the mark, notes such as
    the chosen rate, and the probability of finishing top-1 (report.html shows it)."""

    mean: str
    std: str | None
    interval: str | None
    mark: str
    notes: str
    p_top1: str | None = None


@dataclass(frozen=True)
class SettingTable:
    """Schedules as rows, budgets as columns, for one (dataset, model, optimizer) and setup.

    A row is (schedule, its variant within the setup, entries); `setup` says what sets this
    table's runs apart from another setup's (empty when there is one).
    """

    setting: tuple[str, ...]
    setup: str
    columns: list[str]
    rows: list[tuple[str, str, list[Any]]]
    metric: Metric = BUILT_IN["error"]

    @property
    def title(self) -> str:
        return " · ".join([*self.setting, *([self.setup] if self.setup else [])])

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9.-]+", "-", self.title.replace(" · ", "-")).strip("-")

    @property
    def has_variants(self) -> bool:
        return any(variant for _, variant, _ in self.rows)


def row_metric(row: dict[str, Any] | pd.Series, default: str | Metric = "error") -> Metric:
    """The metric a summary row is shown in: its own (each setting has one), else `default`."""
    name = row.get("metric") if hasattr(row, "get") else None
    return metric_named(name if isinstance(name, str) and name else default)


def _tables(
    summary: pd.DataFrame, entry: Any, metric: str | Metric = "error"
) -> list[SettingTable]:
    """One table per setting and setup; `entry(row, full_n)` makes each filled cell."""
    tables = []
    for (*setting, setup), group in summary.groupby([*SETTING, "setup"], sort=True):
        shown_in = row_metric(group.iloc[0], metric)
        budgets = sorted(group["budget"].unique())
        full_n = int(group["n"].max())
        rows = []
        for (schedule, variant), sched_rows in group.groupby(
            ["schedule", "schedule_variant"], sort=True
        ):
            by_budget = {r["budget"]: r for r in sched_rows.to_dict("records")}
            entries = [entry(by_budget[b], full_n) if b in by_budget else None for b in budgets]
            rows.append((str(schedule), str(variant), entries))
        columns = [_budget_header(b, group[group["budget"] == b]["epochs"]) for b in budgets]
        tables.append(
            SettingTable(tuple(str(x) for x in setting), str(setup), columns, rows, shown_in)
        )
    return tables


def setting_tables(summary: pd.DataFrame, metric: str | Metric = "error") -> list[SettingTable]:
    """Per setting and setup, its entries in its own metric (`metric` where rows name none)."""
    return _tables(
        summary, lambda row, full_n: _entry(row, row_metric(row, metric), full_n), metric
    )


def _budget_header(budget: float, epochs: pd.Series) -> str:
    head = f"{100 * budget:g}%"
    return f"{head} ({int(epochs.iloc[0])} ep)" if epochs.nunique() == 1 else head


def _entry(row: dict[str, Any], metric: Metric, full_n: int) -> Entry:
    """Scores become the metric's numbers (error = 100 - accuracy %, a loss itself); notes say
    what the mean hides."""
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
    p_top1 = float(row.get("p_top1", math.nan))
    p_top1_text = f"{p_top1:.2f}" if math.isfinite(p_top1) else None
    mean_acc, std_acc = float(row["mean_test_acc"]), float(row["std_test_acc"])
    if not math.isfinite(mean_acc):
        return Entry("diverged", None, None, mark, "; ".join(notes), p_top1_text)
    digits = _digits(metric)
    std = f"{metric.shown_spread(std_acc):.{digits}f}" if math.isfinite(std_acc) else None
    mean = f"{metric.shown(mean_acc):.{digits}f}"
    return Entry(mean, std, _interval(row, metric), mark, "; ".join(notes), p_top1_text)


def _digits(metric: Metric) -> int:
    """Two decimals for percentages, three for losses (nats differ in the third)."""
    return 2 if metric.percent else 3


def _interval(row: dict[str, Any], metric: Metric) -> str | None:
    low, high = metric.shown_interval(row["ci_low_test_acc"], row["ci_high_test_acc"])
    digits = _digits(metric)
    if not math.isfinite(low):
        return None
    mark = T_MARK if row.get("interval") == "t" else ""
    return f"[{low:.{digits}f}, {high:.{digits}f}]{mark}"


@dataclass(frozen=True)
class FinishRow:
    """One row of the finish table as text: name, cells, the percentages (with whether each is
    the best of its column) and the expected finishes with their intervals."""

    name: str
    cells: str
    values: list[tuple[str, bool]]
    expected: list[str]


def finish_rows(fin: pd.DataFrame) -> list[FinishRow]:
    best = _best_in_columns(fin)
    rows = []
    for r in fin.to_dict("records"):
        values = [
            (_finish_value(r[c]), c in best and r[c] == best[c]) for c in list(FINISH_HEADERS)[2:]
        ]
        expected = [_expected(r, c) for c in EXPECTED_HEADERS]
        rows.append(
            FinishRow(shown(r["schedule"], r["variant"]), str(r["cells"]), values, expected)
        )
    return rows


def _expected(row: dict[str, Any], column: str) -> str:
    mean, low, high = (float(row.get(f"{column}{end}", math.nan)) for end in ("", "_low", "_high"))
    return DASH if not math.isfinite(mean) else f"{mean:.1f} [{low:.0f}, {high:.0f}]"


@dataclass(frozen=True)
class ReferenceEntry:
    """Ours (mean, interval) and the published number (with its std), and whether our interval
    holds it (None: we have no interval)."""

    ours: str
    interval: str | None
    reference: str
    held: bool | None


def reference_tables(compared: pd.DataFrame, metric: str | Metric = "error") -> list[SettingTable]:
    """Per setting and setup, our numbers beside a reference's, for the rows it has."""
    return _tables(compared, lambda row, _: _reference_entry(row, row_metric(row, metric)), metric)


def _reference_entry(row: dict[str, Any], metric: Metric) -> ReferenceEntry:
    mean = float(row["mean_test_acc"])
    ours = f"{metric.shown(mean):.2f}" if math.isfinite(mean) else "diverged"
    ref = f"{metric.shown(row['ref_acc']):.2f}"
    if math.isfinite(row["ref_std_acc"]):
        ref += f" ± {metric.shown_spread(row['ref_std_acc']):.2f}"
    return ReferenceEntry(ours, _interval(row, metric), ref, row["held"])


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
    if entry.interval:
        text += f" {entry.interval}"
    return f"{text} ({_md_escape(entry.notes)})" if entry.notes else text


def _md_reference(entry: ReferenceEntry | None) -> str:
    if entry is None:
        return DASH
    ours = f"{entry.ours} {entry.interval}" if entry.interval else entry.ours
    return f"{ours} · {entry.reference}" + (f" {HELD_MARK}" if entry.held is False else "")


def _row_heads(table: SettingTable, schedule: str, variant: str, escape: Any) -> list[str]:
    return [escape(schedule), *([escape(variant)] if table.has_variants else [])]


def _heads(table: SettingTable) -> list[str]:
    return ["schedule", *(["variant"] if table.has_variants else []), *table.columns]


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


INTERVALS = (
    "[low, high] is the 95% interval of the mean: a bootstrap over seeds, or, marked ᵗ, the "
    "t-interval (mean ± t·s/√n) where fewer than five seeds finished — a bootstrap interval of "
    "n seeds is at most their range and covers only about 1 − 2·0.5ⁿ (75% for three); none "
    "with one finished seed. uncertainty.csv has it with each row's probability of finishing "
    "top-1 and top-3."
)
EXPECTED = (
    "Expected: the percent of its cells a schedule finishes top-1 (top-3) on average over "
    "paired resamples of the seeds, and its 95% interval."
)


def markdown(
    summary: pd.DataFrame,
    fin: pd.DataFrame,
    metric: str,
    compared: pd.DataFrame | None = None,
    reference: str = "",
    verdict: pd.DataFrame | None = None,
    baseline: pd.DataFrame | None = None,
) -> str:
    """tables.md; `compared` (reference.compare) adds our numbers beside `reference`'s;
    `verdict` (verdict.verdicts) goes first, `baseline` (verdict.against_baseline) after it."""
    finish_heads = [*FINISH_HEADERS.values(), *EXPECTED_HEADERS.values()]
    out = [
        "# lrbench report",
        "",
        "Cells are (dataset, model, optimizer, budget). Each entry is the metric named in its "
        f"table's title at the last epoch, mean ± sample std over seeds. {INTERVALS} Within "
        "each budget column (lower is better for an error or a loss) "
        "**bold** is top-1 (no schedule strictly better; ties all count) and <u>underlined</u> "
        "is top-3 (fewer than three strictly better). A schedule with diverged seeds ranks "
        'below every schedule with fewer. "lr x" is the rate chosen on validation accuracy from '
        'a grid; "n=k" marks fewer seeds than the rest of the table; – means not run.',
        *_md_verdict(verdict, baseline),
        "",
        "## Finishes",
        "",
        f"Percent of the cells each schedule took part in; low budget < {LOW_HIGH_SPLIT:g}, "
        f"high ≥ {LOW_HIGH_SPLIT:g}. Bold: best in the column. {EXPECTED}",
        "",
        _md_row(finish_heads),
        _md_row(["---"] + ["---:"] * (len(finish_heads) - 1)),
    ]
    for r in finish_rows(fin):
        values = [f"**{text}**" if best else text for text, best in r.values]
        out.append(_md_row([_md_escape(r.name), r.cells, *values, *r.expected]))
    for table in setting_tables(summary, metric):
        out += [
            "",
            f"## {_md_escape(table.title)} — {table.metric.label}",
            "",
            _md_row(_heads(table)),
            _md_row(
                ["---"] * (len(_heads(table)) - len(table.columns)) + ["---:"] * len(table.columns)
            ),
        ]
        for schedule, variant, entries in table.rows:
            heads = _row_heads(table, schedule, variant, _md_escape)
            out.append(_md_row([*heads, *(_md_entry(e) for e in entries)]))
    if compared is not None and len(compared):
        out += [
            "",
            f"## Against {_md_escape(reference)}",
            "",
            f"Each entry: ours, mean [95% interval] · {_md_escape(reference)}'s number "
            f"(in each table's metric); {HELD_MARK}: our interval does not hold it.",
        ]
        for table in reference_tables(compared, metric):
            out += [
                "",
                f"### {_md_escape(table.title)} — {table.metric.label}",
                "",
                _md_row(_heads(table)),
                _md_row(
                    ["---"] * (len(_heads(table)) - len(table.columns))
                    + ["---:"] * len(table.columns)
                ),
            ]
            for schedule, variant, entries in table.rows:
                heads = _row_heads(table, schedule, variant, _md_escape)
                out.append(_md_row([*heads, *(_md_reference(e) for e in entries)]))
    for setting, rows in ensemble_rows(summary, metric).items():
        out += [
            "",
            f"## {_md_escape(' · '.join(setting))} — snapshot ensembles, "
            f"{_setting_metric(summary, setting, metric).label}",
            "",
            "Single: the last epoch's model; ensemble: the average of the softmax outputs of "
            "the snapshots taken at each cycle end (Huang et al. 2017); mean ± std over seeds.",
            "",
            _md_row(ENSEMBLE_HEADERS),
            _md_row(["---:", "---"] + ["---:"] * (len(ENSEMBLE_HEADERS) - 2)),
        ]
        out += [_md_row([_md_escape(c) for c in r]) for r in rows]
    return "\n".join(out) + "\n"


def _md_verdict(verdict: pd.DataFrame | None, baseline: pd.DataFrame | None) -> list[str]:
    out: list[str] = []
    if verdict is not None and len(verdict):
        out += ["", "## Verdict", "", VERDICT_TEXT, ""]
        out += [f"- {_md_escape(line)}" for line in verdict_lines(verdict)]
    if baseline is not None and len(baseline):
        heads = list(BASELINE_HEADERS.values())
        name = baseline["baseline"].iloc[0]
        out += ["", f"## Against {_md_escape(name)}", "", BASELINE_TEXT, ""]
        out += [_md_row(heads), _md_row(["---"] * 4 + ["---:"] * (len(heads) - 4))]
        out += [_md_row([_md_escape(c) for c in r]) for r in baseline_rows(baseline)]
    return out


VERDICT_TEXT = (
    "Per cell, the winner and its margin over the runner-up: the paired mean difference over "
    "the seeds both finished, positive when the winner is better, with its 95% t-interval; "
    "≈ coin flip where that interval reaches zero, with the seeds that would settle it at the "
    "observed spread (verdict.csv)."
)
BASELINE_TEXT = (
    "Each schedule minus the baseline, paired over seeds, positive when better than the "
    "baseline; intervals Holm-adjusted for the comparisons in the cell (level = the "
    "confidence each is judged at); p (Holm): the adjusted p-value of a paired t-test "
    "(baseline.csv)."
)
BASELINE_HEADERS = {
    "where": "setting",
    "budget": "budget",
    "schedule": "schedule",
    "baseline": "baseline",
    "difference": "difference [interval]",
    "level": "level",
    "n": "seeds",
    "p_holm": "p (Holm)",
}


def baseline_rows(baseline: pd.DataFrame) -> list[list[str]]:
    rows = []
    for r in baseline.to_dict("records"):
        where = f"{r['dataset']} · {r['model']} · {r['optimizer']}"
        interval = f" [{r['low']:.2f}, {r['high']:.2f}]" if math.isfinite(r["low"]) else ""
        rows.append(
            [
                where + (f" [{r['setup']}]" if r["setup"] else ""),
                f"{100 * r['budget']:g}%",
                str(r["schedule"]),
                str(r["baseline"]),
                f"{r['difference']:+.2f}{interval}" if math.isfinite(r["difference"]) else DASH,
                f"{r['level']:.4f}",
                str(r["n"]),
                f"{r['p_holm']:.3f}" if math.isfinite(r["p_holm"]) else DASH,
            ]
        )
    return rows


# --- snapshot ensembles -------------------------------------------------------------------

ENSEMBLE_HEADERS = ["budget", "schedule", "snapshots", "single", "ensemble", "change"]


def _mean_std(mean: float, std: float, metric: Metric, sep: str = " ± ") -> str:
    if not math.isfinite(mean):
        return DASH
    value = metric.shown(mean)
    if not math.isfinite(std):
        return f"{value:.2f}"
    return f"{value:.2f}{sep}{metric.shown_spread(std):.2f}"


def signed(value: float) -> str:
    """A change with its sign, to two decimals; one that rounds to zero is +0.00, never -0.00."""
    return f"{round(value, 2) + 0.0:+.2f}"


def label_column(table: Table, head: str, labels: Iterable[str]) -> None:
    """A column of names (schedules): as wide as its longest name, and folded rather than cut
    where the terminal is narrower, so that two names never print the same."""
    width = max([len(head), *(len(str(x)) for x in labels)])
    table.add_column(head, no_wrap=True, overflow="fold", min_width=width)


def _setting_metric(summary: pd.DataFrame, setting: tuple, metric: str | Metric) -> Metric:
    """The metric a setting's rows are shown in (`metric` where they name none)."""
    rows = summary[(summary[SETTING].astype(str) == pd.Series(setting, index=SETTING)).all(axis=1)]
    return row_metric(rows.iloc[0], metric) if len(rows) else metric_named(metric)


def ensemble_rows(
    summary: pd.DataFrame, metric: str | Metric = "error", sep: str = " ± "
) -> dict[tuple, list]:
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
            shown_in = row_metric(r, metric)
            gain = shown_in.shown(ens) - shown_in.shown(single)
            rows.append(
                [
                    f"{100 * r['budget']:g}%",
                    str(r["schedule"]),
                    f"{r['ensemble_size']:g}",
                    _mean_std(single, float(r["std_test_acc"]), shown_in, sep),
                    _mean_std(ens, float(r["std_ensemble_test_acc"]), shown_in, sep),
                    signed(gain) if math.isfinite(gain) else DASH,
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
    interval = entry.interval.replace(T_MARK, "$^t$") if entry.interval else None
    small = " ".join(
        x for x in (interval, f"({tex_escape(entry.notes)})" if entry.notes else "") if x
    )
    return f"{text} {{\\scriptsize {small}}}" if small else text


def _tex_reference(entry: ReferenceEntry | None) -> str:
    if entry is None:
        return "--"
    interval = entry.interval.replace(T_MARK, "$^t$") if entry.interval else None
    ours = f"{entry.ours} {{\\scriptsize {interval}}}" if interval else entry.ours
    mark = "$^\\dagger$" if entry.held is False else ""
    reference = entry.reference.replace("±", "$\\pm$")
    return f"{ours} / {reference}{mark}"


def _tex_heads(table: SettingTable) -> list[str]:
    return [tex_escape(h.capitalize() if h == "schedule" else h) for h in _heads(table)]


def _tex_table(
    caption: str, label: str, header: list[str], rows: list[list[str]], left: int = 1
) -> list[str]:
    return [
        "\\begin{table}[ht]",
        "\\centering",
        f"\\caption{{{caption}}}",
        f"\\label{{{label}}}",
        f"\\begin{{tabular}}{{{'l' * left}{'r' * (len(header) - left)}}}",
        "\\toprule",
        " & ".join(header) + " \\\\",
        "\\midrule",
        *(" & ".join(r) + " \\\\" for r in rows),
        "\\bottomrule",
        "\\end{tabular}",
        "\\end{table}",
        "",
    ]


def latex(
    summary: pd.DataFrame,
    fin: pd.DataFrame,
    metric: str,
    compared: pd.DataFrame | None = None,
    reference: str = "",
) -> str:
    """tables.tex (booktabs); `compared` adds our numbers beside `reference`'s."""
    out = [
        "% lrbench report. Needs \\usepackage{booktabs} in the preamble.",
        "% \\textbf = top-1 (ties all count), \\underline = top-3, within each budget column.",
        "",
    ]
    fin_rows = []
    for r in finish_rows(fin):
        values = [f"\\textbf{{{text}}}" if best else text for text, best in r.values]
        fin_rows.append([tex_escape(r.name), r.cells, *values, *r.expected])
    out += _tex_table(
        "Finishes: percent of the cells each schedule took part in where it ranked top-1 / "
        f"top-3; low budget $<$ {LOW_HIGH_SPLIT:g}, high $\\geq$ {LOW_HIGH_SPLIT:g}. "
        f"{tex_escape(EXPECTED)}",
        "tab:finishes",
        [tex_escape(h) for h in [*FINISH_HEADERS.values(), *EXPECTED_HEADERS.values()]],
        fin_rows,
    )
    for table in setting_tables(summary, metric):
        left = len(_heads(table)) - len(table.columns)
        out += _tex_table(
            f"{tex_escape(', '.join(table.title.split(' · ')))}: {tex_escape(table.metric.label)}, "
            f"mean $\\pm$ std over seeds, [95\\% interval]. Bold: top-1; underlined: top-3.",
            f"tab:{table.slug}",
            _tex_heads(table),
            [
                [*_row_heads(table, s, v, tex_escape), *(_tex_entry(e) for e in entries)]
                for s, v, entries in table.rows
            ],
            left,
        )
    if compared is not None and len(compared):
        for table in reference_tables(compared, metric):
            left = len(_heads(table)) - len(table.columns)
            out += _tex_table(
                f"{tex_escape(', '.join(table.title.split(' · ')))}: ours, mean [95\\% "
                f"interval] / {tex_escape(reference)} ({tex_escape(table.metric.label)}); "
                "$^\\dagger$: our interval does not hold it.",
                f"tab:reference-{table.slug}",
                _tex_heads(table),
                [
                    [*_row_heads(table, s, v, tex_escape), *(_tex_reference(e) for e in entries)]
                    for s, v, entries in table.rows
                ],
                left,
            )
    for setting, rows in ensemble_rows(summary, metric, sep=" $\\pm$ ").items():
        out += _tex_table(
            f"{tex_escape(', '.join(setting))}: snapshot ensembles (softmax averaged over the "
            f"snapshots at each cycle end) against the last epoch's model, "
            f"{tex_escape(_setting_metric(summary, setting, metric).label)}, mean $\\pm$ std "
            "over seeds.",
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
    if entry.interval:
        text.append(f" {entry.interval}", style="cyan")
    if entry.notes:
        text.append(f" ({entry.notes})", style="dim")
    return text


def _rich_reference(entry: ReferenceEntry | None) -> Text:
    if entry is None:
        return Text(DASH, style="dim")
    text = Text(entry.ours)
    if entry.interval:
        text.append(f" {entry.interval}", style="cyan")
    text.append(f" · {entry.reference}", style="dim")
    if entry.held is False:
        text.append(f" {HELD_MARK}", style="bold red")
    return text


def _rich_setting(table: SettingTable, title: str, caption: str, entry: Any) -> Table:
    out = Table(title=title, caption=caption)
    heads = _heads(table)[: len(_heads(table)) - len(table.columns)]
    for i, head in enumerate(heads):
        label_column(out, head, [_row_heads(table, *r[:2], str)[i] for r in table.rows])
    for col in table.columns:
        out.add_column(col, justify="right")
    for schedule, variant, entries in table.rows:
        heads = _row_heads(table, schedule, variant, str)
        out.add_row(*(Text(h) for h in heads), *(entry(e) for e in entries))
    return out


def _rich_verdict(verdict: pd.DataFrame | None, baseline: pd.DataFrame | None) -> list[Table]:
    out = []
    if verdict is not None and len(verdict):
        table = Table(title="Verdict", caption=VERDICT_TEXT, show_header=False)
        table.add_column("verdict")
        for line in verdict_lines(verdict):
            table.add_row(Text(line, style="yellow" if "coin flip" in line else ""))
        out.append(table)
    if baseline is not None and len(baseline):
        table = Table(title=f"Against {baseline['baseline'].iloc[0]}", caption=BASELINE_TEXT)
        for i, head in enumerate(BASELINE_HEADERS.values()):
            table.add_column(head, justify="left" if i < 4 else "right")
        for r in baseline_rows(baseline):
            table.add_row(*(Text(c) for c in r))
        out.append(table)
    return out


def rich_tables(
    summary: pd.DataFrame,
    fin: pd.DataFrame,
    metric: str,
    anytime: Anytime | None = None,
    compared: pd.DataFrame | None = None,
    reference: str = "",
    verdict: pd.DataFrame | None = None,
    baseline: pd.DataFrame | None = None,
) -> list[Table]:
    """Finish table first (the headline), then one table per setting, the reference's numbers
    beside ours (when given), the snapshot ensembles (when runs recorded them) and the anytime
    tables (when given)."""
    finish = Table(
        title=f"Finishes (% of each schedule's cells; low budget < {LOW_HIGH_SPLIT:g})",
        caption="bold: best in column · expected: mean over paired resamples of the seeds "
        "[95% interval]",
    )
    for key, head in [*FINISH_HEADERS.items(), *EXPECTED_HEADERS.items()]:
        if key == "schedule":
            label_column(finish, head, [r.name for r in finish_rows(fin)])
        else:
            finish.add_column(head, justify="right")
    for r in finish_rows(fin):
        values = [Text(text, style="bold green" if best else "") for text, best in r.values]
        finish.add_row(Text(r.name), Text(r.cells), *values, *(Text(e) for e in r.expected))
    tables = [*_rich_verdict(verdict, baseline), finish]
    for st in setting_tables(summary, metric):
        tables.append(
            _rich_setting(
                st,
                f"{st.title} — {st.metric.label}",
                "green bold: top-1 · yellow underlined: top-3 · cyan: 95% interval (ᵗ: the "
                "t-interval, fewer than 5 seeds: a bootstrap's would be at most their range)",
                _rich_entry,
            )
        )
    if compared is not None and len(compared):
        for st in reference_tables(compared, metric):
            tables.append(
                _rich_setting(
                    st,
                    f"{st.title} — ours against {reference}, {st.metric.label}",
                    f"ours [95% interval] · {reference}; {HELD_MARK}: outside our interval",
                    _rich_reference,
                )
            )
    for setting, rows in ensemble_rows(summary, metric).items():
        table = Table(
            title=f"{' · '.join(setting)} — snapshot ensembles, "
            f"{_setting_metric(summary, setting, metric).label}",
            caption="single: last epoch's model · ensemble: softmax averaged over cycle-end "
            "snapshots",
        )
        for i, head in enumerate(ENSEMBLE_HEADERS):
            if i == 1:
                label_column(table, head, [r[1] for r in rows])
            else:
                table.add_column(head, justify="right")
        for r in rows:
            table.add_row(*(Text(c) for c in r))
        tables.append(table)
    if anytime is not None and not anytime.empty:
        tables += _rich_anytime(anytime)
    return tables


def _rich_anytime(anytime: Anytime) -> list:
    tables = []
    head = anytime_headers(anytime.metric)
    for setting, rows in anytime_rows(anytime.table).items():
        table = Table(
            title=f"{' · '.join(setting)} — anytime: {anytime_what(anytime.metric)} by fraction of the "
            "budget; time to target",
            caption="@f: mean over seeds · time to target: median over seeds, inf = not reached",
        )
        for i, h in enumerate(head):
            if i == 1:
                label_column(table, h, [r[1] for r in rows])
            else:
                last = i == len(head) - 1
                table.add_column(h, justify="left" if last else "right", overflow="fold")
        for row in rows:
            table.add_row(*(Text(c, style="dim" if c in (DASH, "inf") else "") for c in row))
        tables.append(table)
    return tables
