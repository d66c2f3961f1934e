"""`lrbench report`: run folders in, REX-style tables, CSVs and plots out.

Nothing here imports torch: a report is read on laptops that only hold results.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from lrbench.errors import UserError
from lrbench.report.load import Loaded, load_runs
from lrbench.report.problems import Problem, problems_text
from lrbench.report.rank import choose_lr, finishes, notes, summarize
from lrbench.report.tables import METRICS, latex, markdown

__all__ = ["Analysis", "Problem", "Report", "analyse", "build_report"]


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

    @property
    def summary_csv(self) -> str:
        return self.summary.to_csv(index=False)


@dataclass
class Analysis:
    """The numbers behind a report, before anything is rendered or written."""

    loaded: Loaded
    chosen: pd.DataFrame
    summary: pd.DataFrame
    finishes: pd.DataFrame
    problems: list[Problem]


def analyse(paths: list[Path]) -> Analysis:
    """Read, choose learning rates, rank and count finishes; writes nothing."""
    loaded = load_runs([Path(p) for p in paths])
    chosen, lr_problems = choose_lr(loaded.runs)
    summary = summarize(chosen)
    problems = [*loaded.problems, *lr_problems, *notes(loaded.runs, chosen)]
    return Analysis(loaded, chosen, summary, finishes(summary), problems)


def build_report(paths: list[Path], out_dir: Path, metric: str = "error") -> Report:
    """Read every run under `paths`, rank, and write tables, CSVs, plots and problems.txt."""
    if metric not in METRICS:
        raise UserError(f"metric must be one of {', '.join(METRICS)}, not {metric!r}")
    found = analyse(paths)
    report = Report(
        runs=found.loaded.runs,
        summary=found.summary,
        finishes=found.finishes,
        problems=found.problems,
        metric=metric,
        out_dir=Path(out_dir),
        markdown=markdown(found.summary, found.finishes, metric),
        latex=latex(found.summary, found.finishes, metric),
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
    stale = out / "problems.txt"
    if report.problems:
        texts["problems.txt"] = problems_text(report.problems)
    elif stale.exists():
        stale.unlink()
    for name, text in texts.items():
        (out / name).write_text(text)
        report.files.append(out / name)
    report.files += all_plots(chosen, report.summary, curves, out)
