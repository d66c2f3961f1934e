"""Published numbers beside ours: a reference CSV matched to the report's rows.

A reference file has the columns `dataset, model, optimizer, budget, schedule` and either
`test_error_pct` (percent) or `test_acc` (a fraction in [0, 1], as in metrics.csv), optionally
`std` in the same unit; other columns are ignored. Rows match the report's rows by those five
keys, the schedule by its label (every variant of a label gets the label's number). A reference
is held when it lies inside our 95% interval. `--reference NAME` reads a reference shipped with
lrbench (lrbench/report/references/NAME.csv) when no file NAME exists.
"""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import pandas as pd

from lrbench.errors import UserError, did_you_mean
from lrbench.report.metric import in_metric, interval_in_metric, rounded
from lrbench.report.rank import CELL, ROW

KEYS = ["dataset", "model", "optimizer", "budget", "schedule"]
VALUE_COLUMNS = ("test_error_pct", "test_acc")
HELD_TOLERANCE = 1e-9
COMPARED_COLUMNS = [*ROW, "n", "epochs", "mean_test_acc", "ci_low_test_acc", "ci_high_test_acc"]
REFERENCE_CSV_COLUMNS = [
    *CELL,
    "schedule",
    "n",
    "mean",
    "ci_low",
    "ci_high",
    "reference",
    "reference_std",
    "held",
]


@dataclass(frozen=True)
class Reference:
    """A reference read and checked: `table` has KEYS, `ref_acc` and `ref_std_acc` (fractions)."""

    name: str
    table: pd.DataFrame


def shipped() -> list[str]:
    """The names --reference accepts without a file."""
    folder = resources.files("lrbench.report").joinpath("references")
    return sorted(p.name[: -len(".csv")] for p in folder.iterdir() if p.name.endswith(".csv"))


def load_reference(given: str | Path) -> Reference:
    """Read a reference file (a path, or the name of a shipped reference); UserError if bad."""
    path = Path(given)
    if not path.exists():
        names = shipped()
        if str(given) not in names:
            raise UserError(
                f"--reference {given}: no such file, and no reference shipped by that name "
                f"(shipped: {', '.join(names)}){did_you_mean(given, names)}"
            )
        text = resources.files("lrbench.report").joinpath(f"references/{given}.csv").read_text()
        return Reference(str(given), _parse(text, str(given)))
    if not path.is_file():  # a folder, or a named pipe that would block the reader forever
        raise UserError(f"--reference {path}: is not a regular file")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise UserError(f"--reference {path}: cannot be read ({err})") from err
    return Reference(path.stem, _parse(text, str(path)))


def _parse(text: str, where: str) -> pd.DataFrame:
    try:
        lines = list(csv.reader(text.splitlines()))
    except csv.Error as err:
        raise UserError(f"{where}: not a CSV file ({err})") from err
    if not lines or not lines[0]:
        raise UserError(f"{where}: empty; a reference starts with a header ({_needs()})")
    header = [h.strip() for h in lines[0]]
    for key in KEYS:
        if key not in header:
            raise UserError(f"{where}: no column {key!r} ({_needs()})")
    given = [c for c in VALUE_COLUMNS if c in header]
    if len(given) != 1:
        why = "both" if given else "neither of"
        raise UserError(f"{where}: {why} columns 'test_error_pct' and 'test_acc'; give one")
    value_column = given[0]
    rows: list[dict[str, Any]] = []
    first: dict[tuple, int] = {}
    for lineno, fields in enumerate(lines[1:], start=2):
        if not any(f.strip() for f in fields):
            continue
        record = dict(zip(header, (f.strip() for f in fields), strict=False))
        at = f"{where} line {lineno}"
        row: dict[str, Any] = {k: _text(record, k, at) for k in KEYS if k != "budget"}
        row["budget"] = _number(record, "budget", at, low=0.0, high=1.0)
        value = _number(record, value_column, at, *_bounds(value_column))
        std = _number(record, "std", at, 0.0, math.inf) if record.get("std") else math.nan
        scale = 100.0 if value_column == "test_error_pct" else 1.0
        row["ref_acc"] = 1 - value / 100 if value_column == "test_error_pct" else value
        row["ref_std_acc"] = std / scale
        key = tuple(row[k] for k in KEYS)
        if key in first:
            raise UserError(
                f"{at}: a second row for {'/'.join(map(str, key[:3]))} budget {key[3]:g} "
                f"schedule {key[4]} (the first is on line {first[key]})"
            )
        first[key] = lineno
        rows.append(row)
    return pd.DataFrame(rows, columns=[*KEYS, "ref_acc", "ref_std_acc"])


def _needs() -> str:
    return f"a reference needs {', '.join(KEYS)} and test_error_pct or test_acc"


def _bounds(column: str) -> tuple[float, float]:
    return (0.0, 100.0) if column == "test_error_pct" else (0.0, 1.0)


def _text(record: dict[str, str | None], column: str, at: str) -> str:
    value = record.get(column)
    if not value:
        raise UserError(f"{at}: column {column!r} is empty")
    return value


def _number(record: dict[str, str | None], column: str, at: str, low: float, high: float) -> float:
    text = _text(record, column, at)
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"{at}: column {column!r} is {text!r}, not a number") from None
    if not (math.isfinite(value) and low <= value <= high):
        hint = " (percentages go in test_error_pct)" if column == "test_acc" else ""
        raise UserError(f"{at}: column {column!r} is {text}, outside [{low:g}, {high:g}]{hint}")
    return value


def compare(summary: pd.DataFrame, reference: Reference) -> pd.DataFrame:
    """Our rows that the reference has a number for, with it and whether our interval holds it
    (`held` is None where we have no interval)."""
    ours = summary[COMPARED_COLUMNS].assign(_budget=summary["budget"].round(9))
    theirs = reference.table.assign(_budget=reference.table["budget"].round(9)).drop(
        columns="budget"
    )
    keys = ["dataset", "model", "optimizer", "_budget", "schedule"]
    matched = ours.merge(theirs, on=keys, how="inner").drop(columns="_budget")
    held = []
    for low, high, ref in zip(
        matched["ci_low_test_acc"], matched["ci_high_test_acc"], matched["ref_acc"], strict=True
    ):
        if math.isnan(low):
            held.append(None)
        else:
            held.append(bool(low - HELD_TOLERANCE <= ref <= high + HELD_TOLERANCE))
    return matched.assign(held=pd.Series(held, index=matched.index, dtype=object))


def reference_table(compared: pd.DataFrame, metric: str) -> pd.DataFrame:
    """reference.csv: ours and the reference's number in the report's metric, and `held`."""
    rows = []
    for r in compared.to_dict("records"):
        low, high = interval_in_metric(r["ci_low_test_acc"], r["ci_high_test_acc"], metric)
        rows.append(
            {
                **{c: r[c] for c in [*CELL, "schedule", "n"]},
                "mean": rounded(in_metric(r["mean_test_acc"], metric)),
                "ci_low": rounded(low),
                "ci_high": rounded(high),
                "reference": rounded(in_metric(r["ref_acc"], metric)),
                "reference_std": rounded(100 * r["ref_std_acc"]),
                "held": r["held"],
                "variant": r["variant"],
            }
        )
    columns = list(REFERENCE_CSV_COLUMNS)
    if (compared["variant"] != "").any():
        columns.append("variant")
    return pd.DataFrame(rows, columns=[*REFERENCE_CSV_COLUMNS, "variant"])[columns]
