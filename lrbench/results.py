"""The on-disk layout of a sweep and its runs, written so that a kill -9 never leaves a torn file."""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from filelock import FileLock, Timeout

from lrbench.errors import UserError
from lrbench.plainfiles import (
    MAX_METRICS_BYTES,
    NotPlainFile,
    read_bounded,
    read_json_bounded,
)

if TYPE_CHECKING:
    from lrbench.verdict import Verdict

METRIC_COLUMNS = [
    "epoch",
    "step",
    "lr",
    "momentum",
    "train_loss",
    "train_acc",
    "test_loss",
    "test_acc",
]
VAL_COLUMNS = ["val_loss", "val_acc"]
TIME_COLUMN = "epoch_time_s"


_UMASK = os.umask(0)
os.umask(_UMASK)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temp file in the same folder, fsync, rename: readers see old or new, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: Path) -> Any:
    """A JSON file of a results folder, bounded in size and depth (lrbench.plainfiles)."""
    return read_json_bounded(path)


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


def metric_columns(has_val: bool) -> list[str]:
    return [*METRIC_COLUMNS, *(VAL_COLUMNS if has_val else []), TIME_COLUMN]


@dataclass(frozen=True)
class RunDir:
    """Paths of one run folder: `<sweep>/runs/<run-id>/`."""

    path: Path

    @property
    def spec(self) -> Path:
        return self.path / "spec.json"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def summary(self) -> Path:
        return self.path / "summary.json"

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint.pt"

    @property
    def log(self) -> Path:
        return self.path / "run.log"

    @property
    def lock_path(self) -> Path:
        return self.path / ".lock"

    def verdict(self) -> Verdict:
        """The run's one verdict (lrbench.verdict): state, why damaged, and its parsed files;
        sweep, status and report all judge a run by it."""
        from lrbench.verdict import judge

        return judge(self)

    def status(self) -> str:
        """done | diverged | failed (summary.json), damaged, partial (started), new."""
        return self.verdict().state

    def damage(self) -> str | None:
        """Why the run's files cannot be trusted (it is `damaged`), or None."""
        verdict = self.verdict()
        return verdict.reason if verdict.state == "damaged" else None

    def lock(self) -> FileLock:
        """An advisory lock so two sweeps on the same results never train one run twice."""
        self.path.mkdir(parents=True, exist_ok=True)
        if self.lock_path.is_dir():  # never ours: a stray folder where the lock file goes
            try:
                self.lock_path.rmdir()
            except OSError as err:
                raise UserError(
                    f"{self.lock_path} is a folder, not lrbench's lock file; move it away"
                ) from err
        return FileLock(self.lock_path, timeout=0)

    def is_locked(self) -> bool:
        if not self.lock_path.is_file():
            return False
        probe = FileLock(self.lock_path, timeout=0)
        try:
            probe.acquire()
        except Timeout:
            return True
        probe.release()
        return False

    def remove_temp_files(self) -> None:
        """Temp files a kill left between a write and its rename (checkpoint-sized ones too)."""
        for tmp in self.path.glob(".*.tmp"):
            tmp.unlink(missing_ok=True)

    def read_metrics(self) -> MetricsFile:
        return read_metrics(self.metrics)

    def complete_epochs(self) -> int:
        """Epochs 1..k whose rows metrics.csv holds whole and in order."""
        return len(self.read_metrics().rows)

    def append_metrics(self, row: Mapping[str, Any], columns: Sequence[str]) -> None:
        """Append one whole row and fsync; the header is written with the first row."""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(columns), lineterminator="\n")
        fresh = not self.metrics.exists() or self.metrics.stat().st_size == 0
        if fresh:
            writer.writeheader()
        writer.writerow({k: _fmt(row.get(k)) for k in columns})
        with open(self.metrics, "a") as fh:
            fh.write(buf.getvalue())
            fh.flush()
            os.fsync(fh.fileno())

    def last_metrics_row(self) -> dict[str, Any]:
        rows = self.read_metrics().rows
        return rows[-1] if rows else {}

    def truncate_metrics(self, epochs: int) -> None:
        """Keep the header and the first `epochs` whole rows: rows past the checkpoint (and a
        torn line a crash left) are dropped, to be trained again."""
        if not self.metrics.exists():
            return
        found = self.read_metrics()
        keep = found.lines[: 1 + epochs] if epochs > 0 else []
        if epochs == 0:
            self.metrics.unlink()
        elif keep != found.raw:
            atomic_write_text(self.metrics, "".join(keep))


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


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value)
    return "" if value is None else value


def _parse(value: str) -> Any:
    if value.isdigit() and value.isascii():  # epochs and steps: the common whole numbers
        return int(value)
    try:
        number = float(value)
    except ValueError:
        return value
    return int(number) if number.is_integer() and "." not in value and "e" not in value else number


def run_dirs(sweep_dir: Path) -> list[RunDir]:
    runs = sweep_dir / "runs"
    if not runs.is_dir():
        return []
    return [
        RunDir(p)
        for p in sorted(runs.iterdir())
        if not p.name.startswith(".") and (p.is_symlink() or p.is_dir())
    ]


SWEEP_FILES = ("sweep.yaml", "plan.json")


def is_sweep_folder(path: Path) -> bool:
    """A sweep's folder: it has runs/ and the files a sweep writes (or, from older versions,
    runs/ and no subfolder that is a sweep itself)."""
    if not (path / "runs").is_dir():
        return False
    if any((path / name).is_file() for name in SWEEP_FILES):
        return True
    return not any((c / "runs").is_dir() for c in _subfolders(path))


def sweep_folders(path: Path) -> list[Path]:
    """The sweeps a path names: itself when it is a sweep's folder, else the sweeps inside it
    (a results root). One sweep named `runs` among others does not hide them."""
    if is_sweep_folder(path):
        return [path]
    return [c for c in _subfolders(path) if is_sweep_folder(c)]


def _subfolders(path: Path) -> list[Path]:
    try:
        return sorted(c for c in path.iterdir() if c.is_dir() and not c.name.startswith("."))
    except OSError:
        return []
