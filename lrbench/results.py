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

from lrbench.errors import UserError
from lrbench.plainfiles import read_json_bounded
from lrbench.runfiles import RunFiles
from lrbench.verdict import Verdict, judge

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


def metric_columns(has_val: bool) -> list[str]:
    return [*METRIC_COLUMNS, *(VAL_COLUMNS if has_val else []), TIME_COLUMN]


@dataclass(frozen=True)
class RunDir(RunFiles):
    """One run folder (`<sweep>/runs/<run-id>/`): its files written so that a kill never tears
    one, its lock, and its verdict."""

    def verdict(self) -> Verdict:
        """The run's one verdict (lrbench.verdict): state, why damaged, and its parsed files;
        sweep, status and report all judge a run by it."""
        return judge(self)

    def state(self) -> str:
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


def _fmt(value: Any) -> Any:
    if isinstance(value, float):
        return repr(value)
    return "" if value is None else value


def run_dirs(sweep_dir: Path) -> list[RunDir]:
    runs = sweep_dir / "runs"
    if not runs.is_dir():
        return []
    with os.scandir(runs) as entries:  # kinds from the listing: no stat per run
        names = sorted(
            e.name for e in entries if not e.name.startswith(".") and (e.is_symlink() or e.is_dir())
        )
    return [RunDir(runs / name) for name in names]


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
