"""A run folder's files: where each one is, and the one reader of each (bounded, plain files
only, through lrbench.plainfiles). The verdict on a run (lrbench.verdict) and the writers of its
files (lrbench.results) both stand on this.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lrbench.plainfiles import MAX_METRICS_BYTES, NotPlainFile, read_bounded, read_json_bounded

SPEC, METRICS, SUMMARY, CHECKPOINT = "spec.json", "metrics.csv", "summary.json", "checkpoint.pt"


@dataclass(frozen=True)
class RunFiles:
    """The paths of one run folder, `<sweep>/runs/<run-id>/`, and its metrics as read."""

    path: Path

    @property
    def spec(self) -> Path:
        return self.path / SPEC

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def summary(self) -> Path:
        return self.path / SUMMARY

    @property
    def checkpoint(self) -> Path:
        return self.path / CHECKPOINT

    @property
    def log(self) -> Path:
        return self.path / "run.log"

    @property
    def lock_path(self) -> Path:
        return self.path / ".lock"

    def read_metrics(self) -> MetricsFile:
        return read_metrics(self.metrics)


def read_json_object(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """A JSON file's object, or None and why not (missing, not JSON, not an object)."""
    try:
        value = read_json_bounded(path)
    except FileNotFoundError:
        return None, f"{path.name} is missing"
    except NotPlainFile as err:
        return None, str(err)
    except (OSError, UnicodeDecodeError, ValueError) as err:
        first = str(err).splitlines()[0] if str(err) else type(err).__name__
        return None, f"{path.name} is not valid JSON ({first})"
    if not isinstance(value, dict):
        return None, f"{path.name} is not a JSON object"
    return value, None


@dataclass(frozen=True)
class MetricsFile:
    """What metrics.csv holds that can be trusted: the header and rows for epochs 1, 2, ..., k,
    each a whole line with every field; `damage` says why reading stopped before the end (a
    torn line a crash left, a missing or repeated epoch), None when the file is whole."""

    header: list[str]
    rows: list[dict[str, Any]]
    lines: list[str]  # the header's and the rows' raw lines
    raw: list[str]  # every line of the file
    damage: str | None = None


def read_metrics(path: Path) -> MetricsFile:
    """The one reader of metrics.csv (training, resume, status, the Slurm display and the
    report all go through it)."""
    try:
        raw = _lines(read_bounded(path, MAX_METRICS_BYTES).decode(errors="replace"))
    except FileNotFoundError:
        return MetricsFile([], [], [], [])
    except NotPlainFile as err:
        return MetricsFile([], [], [], [], str(err).removeprefix(f"{path.name} "))
    except OSError as err:
        return MetricsFile([], [], [], [], f"cannot be read ({err.strerror or err})")
    if not raw or not raw[0].endswith("\n"):
        return MetricsFile([], [], [], raw, "line 1 (the header) is truncated" if raw else None)
    header = _fields(raw[0])
    if header is None or len(set(header)) != len(header):
        return MetricsFile([], [], [], raw, "line 1 is not a header of distinct column names")
    rows: list[dict[str, Any]] = []
    for lineno, line in enumerate(raw[1:], start=2):
        fields = _fields(line)
        why = None
        if not line.endswith("\n"):
            why = f"line {lineno} is truncated (no line end)"
        elif fields is None or len(fields) != len(header):
            why = f"line {lineno} has {len(fields or [])} fields, the header has {len(header)}"
        else:
            row = {k: _parse(v) for k, v in zip(header, fields, strict=True)}
            if row.get("epoch") != len(rows) + 1:
                why = f"line {lineno} holds epoch {row.get('epoch')!r}, expected {len(rows) + 1}"
        if why:
            return MetricsFile(header, rows, raw[: 1 + len(rows)], raw, why)
        rows.append(row)
    return MetricsFile(header, rows, raw[: 1 + len(rows)], raw)


def _lines(text: str) -> list[str]:
    """Lines as the writer ends them (\\n), each with its end; the last may have none."""
    parts = text.split("\n")
    return [p + "\n" for p in parts[:-1]] + ([parts[-1]] if parts[-1] else [])


def _fields(line: str) -> list[str] | None:
    """A line's CSV fields, or None when it is not one CSV record. A line without quotes,
    carriage returns or NULs (every line the trainer writes) is split as the csv module would."""
    if not ('"' in line or "\r" in line or "\0" in line):
        bare = line.removesuffix("\n")
        return bare.split(",") if bare else []
    try:
        return next(csv.reader([line]), [])
    except csv.Error:
        return None


def _parse(value: str) -> Any:
    if value.isdigit() and value.isascii():  # epochs and steps: the common whole numbers
        return int(value)
    try:
        number = float(value)
    except ValueError:
        return value
    return int(number) if number.is_integer() and "." not in value and "e" not in value else number
