"""Published numbers beside ours: a reference CSV matched to the report's rows.

A reference file holds one row per published number, with the columns
- `dataset, model, optimizer, budget, schedule` (required): the row it is compared with;
- `test_error_pct` (percent) or `test_acc` (a fraction in [0, 1], as in metrics.csv): the
  number; optionally `std` in the same unit;
- the full run's length: `full_epochs`, or `epochs` (the budget's epochs, as the paper's tables
  give them: full length = epochs / budget); without either, lengths are not checked;
- optionally `train_size`: the training examples the number was measured with.
Other columns are ignored. A number is compared with our row only where the setting is the
same: dataset, model, optimizer, budget, schedule (through SCHEDULE_ALIASES: the paper's
`none` is lrbench's `constant`, ...), the full run's length, and the training data (our
`limit_train`, where set, must equal `train_size`). Where our rows match on the names but
differ in length or data, nothing is compared and one line says how they differ. Only rows
ranked by test accuracy (error or accuracy) are compared. A reference is held when it lies
inside our 95% interval. `--reference NAME` reads a reference shipped with lrbench
(lrbench/report/references/NAME.csv) when no file NAME exists.
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
from lrbench.report.metric import in_metric, interval_in_metric, metric_named, rounded
from lrbench.report.rank import CELL, ROW

KEYS = ["dataset", "model", "optimizer", "budget", "schedule"]
# other names of one schedule: published tables and lrbench spell some differently
SCHEDULE_ALIASES = {
    "none": "constant",
    "const": "constant",
    "fixed": "constant",
    "exp": "exponential",
    "cos": "cosine",
    "1cycle": "onecycle",
    "one-cycle": "onecycle",
    "one_cycle": "onecycle",
    "reduce-on-plateau": "plateau",
    "reducelronplateau": "plateau",
    "multistep": "step",
    "step-decay": "step",
}
VALUE_COLUMNS = ("test_error_pct", "test_acc")
HELD_TOLERANCE = 1e-9
COMPARED_COLUMNS = [
    *ROW,
    "n",
    "epochs",
    "mean_test_acc",
    "ci_low_test_acc",
    "ci_high_test_acc",
    "interval",
    "metric",
    "full_epochs",
    "limit_train",
]
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
        row["ref_full_epochs"] = _full_epochs(record, row["budget"], at)
        row["ref_train_size"] = (
            _number(record, "train_size", at, 1.0, math.inf)
            if record.get("train_size")
            else math.nan
        )
        key = tuple(row[k] for k in KEYS)
        if key in first:
            raise UserError(
                f"{at}: a second row for {'/'.join(map(str, key[:3]))} budget {key[3]:g} "
                f"schedule {key[4]} (the first is on line {first[key]})"
            )
        first[key] = lineno
        rows.append(row)
    return pd.DataFrame(
        rows, columns=[*KEYS, "ref_acc", "ref_std_acc", "ref_full_epochs", "ref_train_size"]
    )


def _full_epochs(record: dict[str, str | None], budget: float, at: str) -> float:
    """The full run's length in epochs: `full_epochs`, or `epochs` / budget; NaN if neither."""
    if record.get("full_epochs"):
        return _number(record, "full_epochs", at, 1.0, math.inf)
    if record.get("epochs") and budget > 0:
        return round(_number(record, "epochs", at, 0.0, math.inf) / budget)
    return math.nan


def canonical_schedule(name: str) -> str:
    """One spelling per schedule (SCHEDULE_ALIASES), case aside."""
    low = name.strip().lower()
    return SCHEDULE_ALIASES.get(low, low)


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
    """Our rows that the reference has a number for in the same setting (names, full length
    and data), with it and whether our interval holds it (`held`: None without an interval)."""
    matched = _by_names(summary, reference)
    matched = matched[_same_length(matched) & _same_data(matched)]
    held = []
    for low, high, ref in zip(
        matched["ci_low_test_acc"], matched["ci_high_test_acc"], matched["ref_acc"], strict=True
    ):
        if math.isnan(low):
            held.append(None)
        else:
            held.append(bool(low - HELD_TOLERANCE <= ref <= high + HELD_TOLERANCE))
    return matched.assign(held=pd.Series(held, index=matched.index, dtype=object))


def differences(summary: pd.DataFrame, reference: Reference) -> str | None:
    """One line when rows match the reference by name but not in full length or data size."""
    matched = _by_names(summary, reference)
    length, data = _same_length(matched), _same_data(matched)
    differ = matched[~(length & data)]
    if differ.empty:
        return None
    theirs, ours = [], []
    if not length[differ.index].all():
        theirs.append(f"{_values(differ['ref_full_epochs'])}-epoch full runs")
        ours.append(f"{_values(differ['full_epochs'])}-epoch full runs")
    if not data[differ.index].all():
        theirs.append(f"{_values(differ['ref_train_size'])} training examples")
        ours.append(f"{_values(differ['limit_train'])} training examples")
    settings = sorted({f"{r.dataset}/{r.model}/{r.optimizer}" for r in differ.itertuples()})
    return (
        f"reference {reference.name}: its numbers for {', '.join(settings)} are for "
        f"{' on '.join(theirs)}; {len(differ)} of our row(s) are of {' on '.join(ours)}: "
        "not compared (a published number holds for its own setting only)"
    )


def _values(column: pd.Series) -> str:
    values = sorted({int(v) for v in column if math.isfinite(v)})
    return "/".join(f"{v:,}" for v in values) if values else "unrecorded"


def _by_names(summary: pd.DataFrame, reference: Reference) -> pd.DataFrame:
    """Our accuracy-ranked rows joined with the reference's rows of the same names."""
    by_accuracy = [metric_named(m).column == "test_acc" for m in summary["metric"]]
    ours = summary.loc[by_accuracy, COMPARED_COLUMNS]
    ours = ours.assign(
        _budget=ours["budget"].round(9), _schedule=ours["schedule"].map(canonical_schedule)
    )
    theirs = reference.table.assign(
        _budget=reference.table["budget"].round(9),
        _schedule=reference.table["schedule"].map(canonical_schedule),
    ).drop(columns=["budget", "schedule"])
    keys = ["dataset", "model", "optimizer", "_budget", "_schedule"]
    return ours.merge(theirs, on=keys, how="inner").drop(columns=["_budget", "_schedule"])


def _same_length(matched: pd.DataFrame) -> pd.Series:
    ref = matched["ref_full_epochs"]
    return ref.isna() | (ref == matched["full_epochs"])


def _same_data(matched: pd.DataFrame) -> pd.Series:
    ref, ours = matched["ref_train_size"], matched["limit_train"]
    return ref.isna() | ours.isna() | (ref == ours)


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
