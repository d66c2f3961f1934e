"""`lrbench report`: run folders in, REX-style tables, CSVs and plots out.

Nothing here imports torch: a report is read on laptops that only hold results.
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from lrbench.errors import UserError, did_you_mean
from lrbench.forked import Forked
from lrbench.plainfiles import make_folder
from lrbench.report.anytime import Anytime, analyse_anytime
from lrbench.report.anytime import markdown as anytime_markdown
from lrbench.report.contents import Report
from lrbench.report.load import Loaded, load_runs
from lrbench.report.metric import metric_named
from lrbench.report.problems import NOTE, Problem, problems_text
from lrbench.report.rank import (
    FINISH_CSV_COLUMNS,
    FINISH_ROW,
    choose_lr,
    finishes,
    notes,
    summarize,
)
from lrbench.report.reference import (
    Reference,
    compare,
    differences,
    load_reference,
    reference_table,
)
from lrbench.report.tables import latex, markdown
from lrbench.report.uncertainty import paired_bootstrap, uncertainty_table
from lrbench.report.variants import assign_variants, named_rows
from lrbench.report.verdict import against_baseline, verdicts

if TYPE_CHECKING:
    from lrbench.report.plots import Plot

__all__ = ["Analysis", "Anytime", "Problem", "Report", "analyse", "build_report"]


@dataclass
class Analysis:
    """The numbers behind a report, before anything is rendered or written."""

    loaded: Loaded
    chosen: pd.DataFrame
    summary: pd.DataFrame
    finishes: pd.DataFrame
    problems: list[Problem]
    anytime: Anytime
    verdict: pd.DataFrame  # verdict.VERDICT_CSV_COLUMNS, one row per cell


@dataclass
class Chosen:
    """The first half of an analysis: the runs read, and per row the learning rate chosen."""

    loaded: Loaded
    chosen: pd.DataFrame
    problems: list[Problem]


def choose(
    paths: list[Path], include_stale: bool = False, metric: str | None = None, workers: int = 1
) -> Chosen:
    """Read, split settings, choose learning rates (analyse's first half: the per-epoch figures
    need no more)."""
    if metric is not None:
        metric_named(metric)  # an unknown name is the user's error, before anything is read
    loaded = load_runs([Path(p) for p in paths], include_stale, metric, workers)
    runs, variant_notes = assign_variants(loaded.runs)
    loaded.runs = runs
    chosen, lr_problems = choose_lr(runs)
    return Chosen(loaded, chosen, [*loaded.problems, *lr_problems, *variant_notes])


@dataclass
class Ranked:
    """The second step: every row of the chosen runs summarised and ranked in its cell, and the
    anytime analysis (no resampling yet)."""

    first: Chosen
    summary: pd.DataFrame
    anytime: Anytime


def rank(first: Chosen, target: float | None = None, metric: str | None = None) -> Ranked:
    """Summarise and rank the rows, and the anytime analysis of their runs."""
    summary = summarize(first.chosen)
    anytime = analyse_anytime(
        named_rows(first.chosen),
        first.loaded.curves,
        named_rows(summary),
        target,
        metric or report_metric(summary),
    )
    return Ranked(first, summary, anytime)


def conclude(ranked: Ranked) -> Analysis:
    """The last step: how sure each number is (paired bootstrap), finishes, notes, verdicts."""
    first, chosen = ranked.first, ranked.first.chosen
    sure = paired_bootstrap(chosen, ranked.summary)
    summary = ranked.summary.join(sure.intervals)
    finished = finishes(summary).merge(sure.expected, on=FINISH_ROW, how="left")
    problems = [
        *first.problems,
        *notes(first.loaded.runs, chosen),
        *sure.problems,
        *ranked.anytime.problems,
    ]
    return Analysis(
        first.loaded,
        chosen,
        summary,
        finished[FINISH_CSV_COLUMNS],
        problems,
        ranked.anytime,
        verdicts(chosen, summary),
    )


def analyse(
    paths: list[Path],
    target: float | None = None,
    include_stale: bool = False,
    metric: str | None = None,
    workers: int = 1,
) -> Analysis:
    """Read, split settings, choose learning rates, rank, bootstrap, count finishes, anytime;
    writes nothing.

    `target`: the value of the metric's metrics.csv column (a test accuracy, a test loss)
    time-to-target aims at in every cell (None: per cell, the median over schedules of their
    mean final score). `metric`: what every run is scored by (None: each run's spec.json
    `metric`), and the one anytime shows every value in (None: report_metric). `include_stale`:
    report runs a sweep's plan.json no longer lists, as settings of their own. `workers`:
    forked processes that read the run folders (lrbench.forked; the same numbers for any).
    """
    return conclude(rank(choose(paths, include_stale, metric, workers), target, metric))


def build_report(
    paths: list[Path],
    out_dir: Path,
    metric: str | None = None,
    target: float | None = None,
    include_stale: bool = False,
    reference: str | Path | None = None,
    baseline: str | None = None,
    workers: int = 1,
) -> Report:
    """Read every run under `paths`, rank, and write tables, CSVs, plots and problems.txt.

    `metric`: what every setting is ranked and shown by (None: each run's spec.json `metric`,
    absent = error, so each setting in its own). `reference`: a CSV of published numbers (or
    a shipped one's name) to put beside ours. `baseline`: a schedule label every other
    schedule is compared with, paired and Holm-adjusted (baseline.csv). `workers`: forked
    processes that read the runs and draw the figures (the same files for any number).
    """
    ref = load_reference(reference) if reference is not None else None
    from lrbench.report.plots import (
        anytime_figures,
        curve_figures,
        draw_figures,
        ranked_figures,
        resampled_figures,
    )

    # Each group of figures is drawn in the background as soon as what it shows is known: the
    # per-epoch ones while the runs are ranked; the anytime one (the largest) and those of the
    # ranked rows while the seeds are resampled; P(top-1) while the tables are written. The
    # drawing workers (lrbench.forked, one a group with two workers or more; with one worker,
    # everything is done here, in turn) give way to the analysis here, which the later groups
    # and the tables wait for.
    background = workers - 1
    with ExitStack() as stack:
        drawings = []

        def draw(builds: dict) -> None:
            drawings.append(stack.enter_context(draw_figures(builds, background)))

        first = choose(paths, include_stale, metric, workers)
        draw(curve_figures(first.chosen, first.loaded.curves))
        ranked = rank(first, target, metric)
        shown_in = metric or report_metric(ranked.summary)
        draw(anytime_figures(first.chosen, ranked.anytime))
        draw(ranked_figures(first.chosen, ranked.summary, shown_in))
        found = conclude(ranked)
        draw(resampled_figures(found.chosen, found.summary))
        report = _assemble(found, Path(out_dir), metric, ref, baseline, paths[0])
        _write(report, found.chosen, drawings)
    return report


def _assemble(
    found: Analysis,
    out_dir: Path,
    metric: str | None,
    ref: Reference | None,
    baseline: str | None,
    first_path: Path,
) -> Report:
    """The report's contents: the analysis, compared with a baseline schedule and with
    published numbers where asked, as tables."""
    metric = metric or report_metric(found.summary)
    against = None
    if baseline is not None:
        labels = sorted(set(found.summary["schedule"]))
        if baseline not in labels:
            raise UserError(
                f"--baseline {baseline}: no schedule of that label in these runs "
                f"(schedules: {', '.join(labels)}){did_you_mean(baseline, labels)}"
            )
        against = against_baseline(found.chosen, found.summary, baseline)
    compared = compare(found.summary, ref) if ref is not None else None
    problems = list(found.problems)
    differ = differences(found.summary, ref) if ref is not None else None
    if differ:
        problems.append(Problem(str(first_path), differ, NOTE))
    elif ref is not None and compared is not None and compared.empty:
        problems.append(
            Problem(
                str(first_path),
                f"reference {ref.name}: none of its rows matches a row of this report "
                "(matched by dataset, model, optimizer, budget, schedule, full length and data)",
                NOTE,
            )
        )
    ref_name = ref.name if ref is not None else ""
    report = Report(
        runs=found.loaded.runs,
        summary=found.summary,
        finishes=found.finishes,
        problems=problems,
        metric=metric,
        out_dir=out_dir,
        markdown=markdown(
            found.summary,
            found.finishes,
            metric,
            compared,
            ref_name,
            verdict=found.verdict,
            baseline=against,
        ),
        latex=latex(found.summary, found.finishes, metric, compared, ref_name),
        uncertainty=uncertainty_table(found.summary, metric),
        anytime=found.anytime,
        reference=ref,
        compared=compared,
        verdict=found.verdict,
        baseline=against,
    )
    return report


def report_metric(summary: pd.DataFrame) -> str:
    """The one metric of a report whose settings share one; a mixed report's first (each
    setting's own is summary["metric"], which the tables use)."""
    names = sorted(set(summary["metric"])) if "metric" in summary.columns else []
    return names[0] if len(names) == 1 else (summary["metric"].iloc[0] if names else "error")


def _write(report: Report, chosen: pd.DataFrame, drawings: list[Forked[Plot]]) -> None:
    """Write every file of the report, the figures once `drawings` have drawn them."""
    from lrbench.report.html import render, run_list
    from lrbench.report.plots import Figures

    out = make_folder(report.out_dir, "folder for the report")
    texts = {
        "summary.csv": report.summary_csv,
        "finishes.csv": report.finishes.to_csv(index=False),
        "uncertainty.csv": report.uncertainty.to_csv(index=False),
        "tables.md": report.markdown,
        "tables.tex": report.latex,
    }
    if report.verdict is not None:
        texts["verdict.csv"] = report.verdict.to_csv(index=False)
    if report.baseline is not None:
        texts["baseline.csv"] = report.baseline.to_csv(index=False)
    if report.compared is not None:
        texts["reference.csv"] = reference_table(report.compared, report.metric).to_csv(index=False)
    if report.anytime is not None:
        texts["anytime.md"] = anytime_markdown(report.anytime, report.metric)
        texts["anytime.csv"] = report.anytime.table.to_csv(index=False)
        texts["time_to_target.csv"] = report.anytime.runs.to_csv(index=False)
    if report.problems:
        texts["problems.txt"] = problems_text(report.problems)
    runs = run_list(report, chosen)
    texts["runs.csv"] = runs.to_csv(index=False)
    figures = Figures.of([plot for drawing in drawings for plot in drawing.results()])
    texts["report.html"] = render(report, chosen, figures, runs)
    try:
        if "problems.txt" not in texts and (out / "problems.txt").is_file():
            (out / "problems.txt").unlink()  # from an earlier report of these runs
        for name, text in texts.items():
            (out / name).write_text(text, encoding="utf-8")
            report.files.append(out / name)
        report.files += [plot.save_png(out) for plot in figures.all()]
    except OSError as err:
        where = err.filename or out
        raise UserError(f"cannot write the report into {out}: {where}: {err.strerror}") from err
