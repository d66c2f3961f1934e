"""Live curves: a run's TensorBoard log, written by the training loop beside metrics.csv.

metrics.csv stays the record of a run; the log is an addition that lets `tensorboard --logdir
<sweep>/tensorboard` follow a sweep while it trains. Nothing about it is part of a run's identity,
and nothing about it may stop a run: a missing `tensorboard` package, an unwritable folder or a
full disk is one warning, and that run trains on without its log.

The x-axis is the optimizer step. Each epoch writes its metrics.csv row (every numeric column but
epoch, step, lr and momentum) at the row's `step` (the steps done by the epoch's end), and the
rate and momentum of each of its steps at that step's 1-based number, so the per-step `lr` at a
row's step is the row's `lr`. An epoch's events are written and flushed at its end, on the
training thread (no writer thread: a failure surfaces here, as one warning), so a kill -9 loses
no finished epoch. The cost is the epoch's end only: about 15 ms for 391 steps on a slow CPU,
mostly the record checksums tensorboard computes in Python.

A resumed run opens a new event file that starts with a restart marker at the step after the last
row metrics.csv kept. TensorBoard reads a run's event files in name order, and hides what the
earlier attempt wrote from that step on (its Python reader by the marker, its Rust data server
because the steps start over): every epoch appears once, equal to metrics.csv.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import socket
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from lrbench.specs import LOGS, Log

AXES = ("epoch", "step", "lr", "momentum")  # the x-axis, and what is written per step
_opened = itertools.count()


def log_dir(run_path: Path) -> Path:
    """Where a run folder logs: `<sweep>/tensorboard/<run-id>/` for a sweep's run folder
    `<sweep>/runs/<run-id>/`, else `<run folder>/tensorboard/`."""
    if run_path.parent.name == "runs":
        return run_path.parent.parent / "tensorboard" / run_path.name
    return run_path / "tensorboard"


def open_run_log(log: Log | None, run_path: Path, kept_step: int) -> RunLog | None:
    """The run's log, or None when it does not log or cannot (after one warning). `kept_step`:
    the step of the last row metrics.csv keeps (0 for a run that starts over); the log shows
    nothing beyond it from earlier attempts."""
    if log is None:
        return None
    if log not in LOGS:
        raise ValueError(f"log {log!r} is not one of {', '.join(LOGS)}")
    try:
        from tensorboard.summary.writer.record_writer import RecordWriter
    except ImportError:
        warnings.warn(
            "log: tensorboard needs the tensorboard package (pip install 'lrbench[tensorboard]'); "
            "training without live curves",
            stacklevel=2,
        )
        return None
    where = log_dir(run_path)
    name = (
        f"events.out.tfevents.{int(time.time()):010d}.{socket.gethostname()}."
        f"{os.getpid()}.{next(_opened):06d}"
    )  # after an earlier attempt's file in name order: a later second, or in one process a later count
    try:
        where.mkdir(parents=True, exist_ok=True)
        file = open(where / name, "xb")  # noqa: SIM115 (RunLog closes it)
    except OSError as err:
        _warn(where, err)
        return None
    run_log = RunLog(where, RecordWriter(file))
    run_log.start(kept_step + 1)
    return run_log if run_log.writing else None


class RunLog:
    """One run's event file; after a failure it writes nothing more."""

    def __init__(self, where: Path, records: Any) -> None:
        self.where = where
        self._records = records

    @property
    def writing(self) -> bool:
        return self._records is not None

    def start(self, purge_step: int) -> None:
        """The file's header, and the restart marker that hides steps >= purge_step written
        by earlier attempts."""
        from tensorboard.compat.proto.event_pb2 import Event, SessionLog

        now = time.time()
        restart = SessionLog(status=SessionLog.START)
        self._write(
            [
                Event(wall_time=now, file_version="brain.Event:2"),
                Event(wall_time=now, step=purge_step, session_log=restart),
            ]
        )

    def epoch(self, row: dict[str, Any], rates: np.ndarray, momenta: np.ndarray) -> None:
        """An epoch's metrics.csv row and the rate and momentum of each of its steps."""
        if not self.writing:
            return
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary

        now, step = time.time(), int(row["step"])
        first = step - len(rates) + 1
        events = [
            Event(
                wall_time=now,
                step=first + i,
                summary=Summary(
                    value=[
                        Summary.Value(tag="lr", simple_value=lr),
                        Summary.Value(tag="momentum", simple_value=mom),
                    ]
                ),
            )
            for i, (lr, mom) in enumerate(zip(rates.tolist(), momenta.tolist(), strict=True))
        ]
        values = [
            Summary.Value(tag=key, simple_value=float(value))
            for key, value in row.items()
            if key not in AXES and isinstance(value, int | float) and not isinstance(value, bool)
        ]
        events.append(Event(wall_time=now, step=step, summary=Summary(value=values)))
        self._write(events)

    def _write(self, events: list) -> None:
        """Write and flush; any failure is one warning and the end of this log."""
        try:
            for event in events:
                self._records.write(event.SerializeToString())
            self._records.flush()
        except Exception as err:
            _warn(self.where, err)
            self.close()

    def close(self) -> None:
        records, self._records = self._records, None
        if records is not None:
            with contextlib.suppress(OSError):  # only after a failed write, and warned then
                records.close()


def _warn(where: Path, err: BaseException) -> None:
    warnings.warn(
        f"cannot write the TensorBoard log {where} ({err}); the run trains on without it",
        stacklevel=2,
    )
