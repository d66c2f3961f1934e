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
from typing import Any

from filelock import FileLock, Timeout

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
    return json.loads(path.read_text())


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

    def status(self) -> str:
        """done | diverged | failed (from summary.json), running/partial (has a checkpoint), new."""
        if self.summary.exists():
            try:
                return str(read_json(self.summary).get("status", "failed"))
            except (OSError, ValueError):
                return "corrupt"
        if self.checkpoint.exists() or self.metrics.exists():
            return "partial"
        return "new"

    def lock(self) -> FileLock:
        """An advisory lock so two sweeps on the same results never train one run twice."""
        self.path.mkdir(parents=True, exist_ok=True)
        return FileLock(self.lock_path, timeout=0)

    def is_locked(self) -> bool:
        if not self.lock_path.exists():
            return False
        probe = FileLock(self.lock_path, timeout=0)
        try:
            probe.acquire()
        except Timeout:
            return True
        probe.release()
        return False

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
        if not self.metrics.exists():
            return {}
        rows = list(csv.DictReader(self.metrics.open()))
        return {k: _parse(v) for k, v in rows[-1].items()} if rows else {}

    def truncate_metrics(self, epochs: int) -> None:
        """Keep the header and the first `epochs` rows: rows past the checkpoint are redone."""
        if not self.metrics.exists():
            return
        lines = self.metrics.read_text().splitlines(keepends=True)
        complete = [ln for ln in lines if ln.endswith("\n")]
        keep = complete[: 1 + epochs] if complete else []
        if keep != lines:
            atomic_write_text(self.metrics, "".join(keep))


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value)
    return "" if value is None else value


def _parse(value: str) -> Any:
    try:
        number = float(value)
    except ValueError:
        return value
    return int(number) if number.is_integer() and "." not in value and "e" not in value else number


def run_dirs(sweep_dir: Path) -> list[RunDir]:
    runs = sweep_dir / "runs"
    if not runs.is_dir():
        return []
    return [RunDir(p) for p in sorted(runs.iterdir()) if p.is_dir()]
