"""What a report computed and the files it wrote: the one object every renderer reads
(report.html, the terminal's tables, the CSVs)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from lrbench.report.anytime import Anytime
from lrbench.report.problems import Problem
from lrbench.report.rank import summary_csv_table
from lrbench.report.reference import Reference


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
    uncertainty: pd.DataFrame
    files: list[Path] = field(default_factory=list)
    anytime: Anytime | None = None
    reference: Reference | None = None
    compared: pd.DataFrame | None = None  # our rows beside the reference's numbers
    verdict: pd.DataFrame | None = None  # verdict.VERDICT_CSV_COLUMNS
    baseline: pd.DataFrame | None = None  # verdict.BASELINE_CSV_COLUMNS, with --baseline

    @property
    def summary_csv(self) -> str:
        return summary_csv_table(self.summary).to_csv(index=False)

    def rich_tables(self) -> list:
        """Every table for the terminal: finishes, settings, reference, ensembles, anytime."""
        from lrbench.report.tables import rich_tables

        return rich_tables(
            self.summary,
            self.finishes,
            self.metric,
            anytime=self.anytime,
            compared=self.compared,
            reference=self.reference.name if self.reference else "",
            verdict=self.verdict,
            baseline=self.baseline,
        )
