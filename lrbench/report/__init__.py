"""`lrbench report`: run folders in, REX-style tables, CSVs and plots out.

Nothing here imports torch: a report is read on laptops that only hold results.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from lrbench.errors import UserError
from lrbench.report.anytime import Anytime, analyse_anytime
from lrbench.report.anytime import markdown as anytime_markdown
from lrbench.report.load import Loaded, load_runs
from lrbench.report.problems import Problem, problems_text
from lrbench.report.rank import choose_lr, finishes, notes, summarize
from lrbench.report.tables import METRICS, latex, markdown

__all__ = ["Analysis", "Anytime", "Problem", "Report", "analyse", "build_report"]


@dataclass
class Report:
    """Everything the report computed and the files it wrote."""

    runs: pd.DataFrame
    summary: pd.DataFrame
    finishes: pd.DataFrame
    problems: list[Problem]
    metric: str
    out_dir: Path
    markdown: str
    latex: str
    files: list[Path] = field(default_factory=list)
    anytime: Anytime | None = None

    @property
    def summary_csv(self) -> str:
        return self.summary.to_csv(index=False)

    def rich_tables(self) -> list:
        """Every table for the terminal: finishes, settings, ensembles, anytime."""
        from lrbench.report.tables import rich_tables

        return rich_tables(self.summary, self.finishes, self.metric, anytime=self.anytime)


@dataclass
class Analysis:
    """The numbers behind a report, before anything is rendered or written."""

    loaded: Loaded
    chosen: pd.DataFrame
    summary: pd.DataFrame
    finishes: pd.DataFrame
    problems: list[Problem]
    anytime: Anytime


def analyse(paths: list[Path], target: float | None = None) -> Analysis:
    """Read, choose learning rates, rank, count finishes, anytime; writes nothing.

    `target`: the test accuracy time-to-target aims at in every cell (None: per cell, the
    median over schedules of their mean final test accuracy).
    """
    if target is not None and not (math.isfinite(target) and 0.0 < target <= 1.0):
        raise UserError(f"--target must be a test accuracy in (0, 1], got {target:g}")
    loaded = load_runs([Path(p) for p in paths])
    chosen, lr_problems = choose_lr(loaded.runs)
    summary = summarize(chosen)
    anytime = analyse_anytime(chosen, loaded.curves, summary, target)
    problems = [
        *loaded.problems,
        *lr_problems,
        *notes(loaded.runs, chosen),
        *anytime.problems,
    ]
    return Analysis(loaded, chosen, summary, finishes(summary), problems, anytime)


def build_report(
    paths: list[Path], out_dir: Path, metric: str = "error", target: float | None = None
) -> Report:
    """Read every run under `paths`, rank, and write tables, CSVs, plots and problems.txt."""
    if metric not in METRICS:
        raise UserError(f"metric must be one of {', '.join(METRICS)}, not {metric!r}")
    found = analyse(paths, target)
    report = Report(
        runs=found.loaded.runs,
        summary=found.summary,
        finishes=found.finishes,
        problems=found.problems,
        metric=metric,
        out_dir=Path(out_dir),
        markdown=markdown(found.summary, found.finishes, metric),
        latex=latex(found.summary, found.finishes, metric),
        anytime=found.anytime,
    )
    _write(report, found.chosen, found.loaded.curves)
    return report


def _write(report: Report, chosen: pd.DataFrame, curves: dict[str, pd.DataFrame]) -> None:
    from lrbench.report.plots import all_plots

    out = report.out_dir
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create the output folder {out}: {err.strerror}") from err
    texts = {
        "summary.csv": report.summary_csv,
        "finishes.csv": report.finishes.to_csv(index=False),
        "tables.md": report.markdown,
        "tables.tex": report.latex,
    }
    if report.anytime is not None:
        texts["anytime.md"] = anytime_markdown(report.anytime, report.metric)
        texts["anytime.csv"] = report.anytime.table.to_csv(index=False)
        texts["time_to_target.csv"] = report.anytime.runs.to_csv(index=False)
    stale = out / "problems.txt"
    if report.problems:
        texts["problems.txt"] = problems_text(report.problems)
    elif stale.exists():
        stale.unlink()
    for name, text in texts.items():
        (out / name).write_text(text)
        report.files.append(out / name)
    report.files += all_plots(chosen, report.summary, curves, out)
    if report.anytime is not None:
        from lrbench.report.anytime import plot as anytime_plot
        from lrbench.report.plots import colours

        colour = colours(sorted(set(report.summary["schedule"]) | set(chosen["schedule"])))
        report.files.append(anytime_plot(report.anytime, chosen, out, colour))
