"""One verdict per run folder, read once, shared by `sweep`, `status` and `report`.

    verdict = RunDir(path).verdict()    # state, reason, and the files it read
    verdict.state   # done | diverged | failed | damaged | partial | new
    verdict.reason  # why damaged (or a failed run's error), one line naming the file
    verdict.spec, verdict.summary, verdict.metrics   # parsed: nobody reads them again

A run is `damaged` when its files cannot be trusted: the folder or one of its files is not a
plain file of its own (a link, FIFO, device: then `foreign`, and lrbench leaves it alone), a
summary or spec that is unreadable or holds a value no run writes (a NaN, epochs 0), or, for a
run that ended done, metrics.csv rows that are torn, missing, repeated, hold a value outside its
column's range (accuracies are fractions, losses finite) or disagree with summary.json's final;
for an unfinished run, a checkpoint.pt that records another run or an epoch it never reaches
(`restart`: a sweep trains it again from the start, as resuming would).
A diverged run is judged by its summary and spec alone (its rows may end in any value).
"""

from __future__ import annotations

import functools
import json
import math
import sys
from dataclasses import dataclass
from typing import Any

from lrbench.plainfiles import kind_of, kinds_in
from lrbench.runfiles import (
    CHECKPOINT,
    METRICS,
    SPEC,
    SUMMARY,
    MetricsFile,
    RunFiles,
    read_json_object,
)

FINISHED = ("done", "diverged", "failed")
# What a sweep does with a run in each state (lrbench.sweep plans by them, executors train by them)
TRAIN_STATES = ("new", "partial")  # trained; a partial run resumes
SKIP_STATES = ("done", "diverged")  # ended for good: never trained again
RETRY_STATES = ("failed", "damaged")  # trained again from the start with --retry-failed
RUN_FILES = (SPEC, METRICS, SUMMARY, CHECKPOINT, "run.log")
MAX_EPOCHS = 1_000_000
MAX_STEPS_PER_EPOCH = 1_000_000_000
NUMBER_COLUMNS = ("lr", "momentum", "epoch_time_s")  # numbers (momentum may be empty)
MAX_FLOAT = sys.float_info.max
OPTIONAL_PREFIX = "ensemble_"  # filled only in epochs that took a snapshot


@dataclass(frozen=True)
class Verdict:
    """What a run folder holds and whether it can be trusted (module docstring)."""

    state: str
    reason: str | None = None
    spec: dict[str, Any] | None = None
    summary: dict[str, Any] | None = None
    metrics: MetricsFile | None = None
    foreign: bool = False  # not lrbench's to touch: never trained, written or deleted
    restart: bool = False  # unfinished, its checkpoint not its own: trained again from the start

    @property
    def rows(self) -> list[dict[str, Any]]:
        return self.metrics.rows if self.metrics is not None else []


def judge(run: RunFiles) -> Verdict:
    """The verdict on one run folder; each of its files is read at most once, and the folder
    listed once (no stat per file)."""
    what = kind_of(run.path)
    if what is not None and what != "a folder":
        why = f"the run folder is {what}, not a folder of its own; lrbench leaves it alone"
        return Verdict("damaged", why, foreign=True)
    present = kinds_in(run.path) if what == "a folder" else {}
    foreign = _foreign(present)
    if foreign:
        return Verdict("damaged", foreign, foreign=True)
    metrics = run.read_metrics() if METRICS in present else MetricsFile([], [], [], [])
    if SUMMARY not in present:
        spec, _ = read_json_object(run.spec)
        why = _checkpoint_fault(run, spec) if CHECKPOINT in present else None
        if why:
            return Verdict("damaged", why, spec=spec, metrics=metrics, restart=True)
        started = CHECKPOINT in present or METRICS in present
        return Verdict("partial" if started else "new", spec=spec, metrics=metrics)
    summary, why = read_json_object(run.summary)
    if summary is None:
        return Verdict("damaged", why, metrics=metrics)
    status = summary.get("status")
    if status not in FINISHED:
        return Verdict("damaged", f"summary.json names no known status ({status!r})", None, summary)
    spec, why = read_json_object(run.spec)
    if status == "failed":
        return Verdict("failed", _error_line(summary), spec, summary, metrics)
    why = why or spec_fault(spec)  # type: ignore[arg-type]
    if why is None and status == "done":
        why = metrics_fault(METRICS, metrics, summary, METRICS in present)
    if why:
        return Verdict("damaged", why, spec, summary, metrics)
    return Verdict(status, None, spec, summary, metrics)


def _checkpoint_fault(run: RunFiles, spec: dict[str, Any] | None) -> str | None:
    """Why an unfinished run's checkpoint.pt is not its own (another run's, an epoch it never
    reaches): what resuming refuses, in the same words, read without torch."""
    if spec is None:
        return None
    from lrbench.checkpoint_identity import recorded_fault

    return recorded_fault(run.checkpoint, spec)


def _foreign(present: dict[str, str | None]) -> str | None:
    """Why a run folder is not lrbench's to touch: one of its files is a link, FIFO, device or
    folder where a file goes (`present`: the folder's entries, plainfiles.kinds_in)."""
    for name in (*RUN_FILES, ".lock"):
        what = present.get(name)
        if what is not None and not (name == ".lock" and what == "a folder"):
            return f"{name} is {what}, not a plain file; lrbench leaves this run alone"
    return None


def _error_line(summary: dict[str, Any]) -> str:
    lines = str(summary.get("error") or "").strip().splitlines()
    return lines[-1] if lines else "no error message in summary.json"


def spec_fault(spec: dict[str, Any]) -> str | None:
    """Why a finished run's spec.json holds what no run writes, or None."""
    bad = _non_finite(spec)
    if bad is not None:
        return f"spec.json holds {bad[1]} at {bad[0]}"
    epochs = spec.get("epochs")
    if not _whole(epochs) or not 1 <= epochs <= MAX_EPOCHS:
        return f"spec.json: epochs is {epochs!r}, not a whole number from 1 to {MAX_EPOCHS:,}"
    spe = spec.get("steps_per_epoch")
    if spe is not None and (not _whole(spe) or not 1 <= spe <= MAX_STEPS_PER_EPOCH):
        return (
            f"spec.json: steps_per_epoch is {spe!r}, not a whole number from 1 to "
            f"{MAX_STEPS_PER_EPOCH:,}"
        )
    budget = spec.get("budget")
    if budget is not None and (not _number(budget) or budget <= 0):
        return f"spec.json: budget is {budget!r}, not a positive number"
    return None


def _non_finite(value: Any, where: str = "") -> tuple[str, str] | None:
    """Where a JSON value holds NaN or an infinity, and which; None when it holds none (asked
    of the C encoder first: a search only when there is something to find)."""
    if not where:
        try:
            json.dumps(value, allow_nan=False)
        except (ValueError, TypeError):
            pass
        else:
            return None
    if isinstance(value, float) and not math.isfinite(value):
        return where or "the top", repr(value)
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for key, item in items:
        found = _non_finite(item, f"{where}.{key}" if where else str(key))
        if found:
            return found
    return None


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    """A finite number that is one as a float too (an integer of 400 digits is not)."""
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) <= MAX_FLOAT


def metrics_fault(
    name: str, found: MetricsFile, summary: dict[str, Any], exists: bool = True
) -> str | None:
    """Why a run that ended done has a metrics.csv that is not its whole, sane record."""
    if not exists:
        return f"{name} is missing"
    if found.damage:
        return f"{name} {found.damage}"
    if not found.raw:
        return f"{name} is empty"
    bad_name = next((c for c in found.header if not c.isprintable()), None)
    if bad_name is not None:
        return f"{name}: the header holds a column name with a control character ({bad_name!r})"
    if not found.rows:
        return f"{name} has a header but no rows"
    expected = summary.get("epochs_completed")
    if _whole(expected) and len(found.rows) != expected:
        return f"{name} ends at epoch {len(found.rows)} but summary.json counts {expected} epochs"
    checks = [(column, kind) for column in found.header if (kind := column_kind(column))]
    for column, kind in checks:  # column by column: one pass over each column
        if not kind.all_ok([row[column] for row in found.rows]):
            break
    else:
        return _final_fault(found.rows[-1], summary.get("final"))
    for row in found.rows:  # the first bad value, in the order of the file
        for column, kind in checks:
            if not kind.ok(row[column]):
                return f"{name}, epoch {row['epoch']}: {column} is {row[column]!r}, not {kind.what}"
    raise AssertionError("a bad value was found and then not found")


@dataclass(frozen=True)
class ColumnKind:
    """What a metrics.csv column's values must be: finite numbers from `low` to `high`, whole
    numbers where `whole`, empty ("") where `empty_ok`."""

    what: str
    low: float = -math.inf
    high: float = math.inf
    whole: bool = False
    empty_ok: bool = False

    def ok(self, value: Any) -> bool:
        if self.empty_ok and value == "":
            return True
        number = _whole(value) if self.whole else _number(value)
        return number and self.low <= value <= self.high

    def all_ok(self, values: list[Any]) -> bool:
        """Whether every value is ok: for a column of plain numbers (every column lrbench
        writes) a few passes in C (their types, sum, min and max), not a call per value."""
        if self.empty_ok:
            values = [v for v in values if v != ""]
        if not values:
            return True
        if set(map(type, values)) <= ({int} if self.whole else {int, float}):
            try:
                finite = self.whole or math.isfinite(sum(values, 0.0))  # NaN and inf spread
            except OverflowError:  # an integer past any float
                finite = False
            if finite and self.low <= min(values) and max(values) <= self.high:
                return True
        return all(map(self.ok, values))  # a sum of finite values past any float lands here


@functools.cache  # a study's runs share a few column names
def column_kind(column: str) -> ColumnKind | None:
    """How a column's values are judged (None: not judged). Accuracies are fractions in [0, 1],
    losses finite (a run whose loss is not finite is diverged, not done), steps whole, rates
    numbers; columns of other kinds (a custom task's) are not judged; snapshot columns and
    momentum may be empty."""
    empty_ok = column.startswith(OPTIONAL_PREFIX) or column == "momentum"
    if column.endswith("_acc"):
        return ColumnKind("a fraction in [0, 1]", 0.0, 1.0, empty_ok=empty_ok)
    if column.endswith("_loss"):
        return ColumnKind("a finite number (the run is done, not diverged)", empty_ok=empty_ok)
    if column in ("step", "ensemble_size"):
        return ColumnKind("a whole number from 1", 1, whole=True, empty_ok=empty_ok)
    if column in NUMBER_COLUMNS:
        return ColumnKind("a finite number", empty_ok=empty_ok)
    return None


def _final_fault(last: dict[str, Any], final: Any) -> str | None:
    """summary.json's final metrics are the last row's: any disagreement is an edit."""
    if not isinstance(final, dict):
        return None
    for key, value in final.items():
        if key not in last or value is None:
            continue
        row_value = last[key]
        same = (
            _number(value) and _number(row_value) and math.isclose(value, row_value, rel_tol=1e-9)
        )
        if not same and value != row_value:
            return (
                f"summary.json's final {key} is {value!r} but metrics.csv's last row holds "
                f"{row_value!r}"
            )
    return None
