"""What the report could not use, and why: every skipped run is named so nothing vanishes silently."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass

SKIPPED = "skipped"
NOTE = "note"


@dataclass(frozen=True)
class Problem:
    """One line of problems.txt: a run (or a group of runs) and what was wrong with it.

    `kind` is SKIPPED when runs were left out of the tables, NOTE when they were used but the
    reader should know something (missing seeds, duplicate seeds, ...). `runs`: how many
    skipped runs the line stands for (the stale runs of a sweep are one line).
    """

    path: str
    reason: str
    kind: str = SKIPPED
    runs: int = 1

    def line(self) -> str:
        return f"{self.path}: {self.reason}"


def problems_text(problems: list[Problem]) -> str:
    """problems.txt: skipped runs first, then notes, each section with its count."""
    skipped = [p for p in problems if p.kind == SKIPPED]
    notes = [p for p in problems if p.kind == NOTE]
    out: list[str] = []
    if skipped:
        out.append(f"{skipped_runs(problems)} skipped (not in the tables):")
        out += [f"  {p.line()}" for p in skipped]
    if notes:
        if out:
            out.append("")
        out.append(f"{len(notes)} notes (used in the tables):")
        out += [f"  {p.line()}" for p in notes]
    return "\n".join(out) + "\n" if out else ""


def skipped_runs(problems: list[Problem]) -> int:
    return sum(p.runs for p in problems if p.kind == SKIPPED)


def common_parent(paths: Iterable[str]) -> str:
    """The folder a problem about several runs names: the deepest one holding them all."""
    given = list(paths)
    try:
        return os.path.commonpath(given)
    except ValueError:  # relative and absolute paths mixed (folders given both ways)
        return os.path.commonpath([os.path.abspath(p) for p in given])
