"""The local executor: worker processes spread over the visible GPUs (or CPU workers).

Each worker pulls packs (a pack of one is a run trained alone) from a shared queue and trains
them with `train_runs`, the same loop as `lrbench run`. A run is trained only under its file
lock, so two sweeps on the same results never train one run twice; a lock dies with its
process, so kill -9 leaves nothing stuck. A worker dies with the sweep that started it (a
SIGTERM or SIGKILL of the sweep stops its workers too), so no orphan trains on holding locks.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing as mp
import os
import queue
import re
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from filelock import Timeout

from lrbench.data import DeviceData, load_splits, on_device
from lrbench.errors import RunFailed, UserError
from lrbench.imports import add_search_path
from lrbench.results import RunDir
from lrbench.specs import RunSpec
from lrbench.sweep.plan import SKIP_STATES
from lrbench.train import Event, Runtime, resolve_device, train_runs

STEP_EVENT_INTERVAL_S = 0.5
PARENT_POLL_S = 1.0

Pack = list[tuple[RunSpec, Path]]


@dataclass
class Msg:
    """What a worker tells the display: start, event, end (with status), held, error."""

    kind: str
    worker: int
    run_id: str
    status: str | None = None
    event: Event | None = None
    detail: str | None = None
    epochs: int = 0


@dataclass
class Outcome:
    statuses: dict[str, str] = field(default_factory=dict)
    interrupted: bool = False

    def count(self, status: str) -> int:
        return sum(1 for s in self.statuses.values() if s == status)


DEVICES = re.compile(r"auto|cpu|cuda(:\d+( *, *\d+)*)?")


def check_device(device: str) -> None:
    """`--device` is spelt as a sweep takes it (whether this machine has it is checked when the
    sweep trains: a dry run or a Slurm submission may be made on a machine without GPUs)."""
    if not DEVICES.fullmatch(device):
        raise UserError(f"--device: {device!r} is not auto, cpu, cuda or cuda:0,1,...")


def parse_devices(device: str, jobs: int | None) -> list[str]:
    """One device name per worker: `auto`, `cpu`, `cuda` (every GPU), `cuda:0,1`."""
    if jobs is not None and jobs < 1:
        raise UserError(f"--jobs {jobs}: a sweep needs at least one worker")
    check_device(device)
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return ["cpu"] * (jobs or 1)
    if device == "cuda":
        gpus = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    else:
        gpus = [f"cuda:{i.strip()}" for i in device.removeprefix("cuda:").split(",")]
    if not gpus:
        raise UserError(f"--device {device}: no CUDA GPU is visible on this machine")
    for g in gpus:
        resolve_device(g)
    n = jobs or len(gpus)
    return [gpus[i % len(gpus)] for i in range(n)]


def work(
    worker: int,
    device: str,
    packs: Iterable[Pack | None],
    emit: Callable[[Msg], None],
    runtime: Runtime,
) -> None:
    """Train packs until one is None.

    Every run is trained only under its lock; runs another process holds are skipped (a pack
    trains without them), and runs found finished once the lock is taken are not trained again.
    """
    runtime = replace(runtime, device=device)
    add_search_path(*runtime.import_paths)
    datasets: dict[str, DeviceData] = {}
    for pack in packs:
        if pack is None:
            return
        locks, todo, finished = [], [], set()
        for spec, path in pack:
            run = RunDir(path)
            lock = run.lock()
            try:
                lock.acquire()
            except Timeout:
                emit(Msg("held", worker, spec.run_id))
                continue
            locks.append(lock)
            todo.append((spec, path))
            if run.status() in SKIP_STATES:
                finished.add(spec.run_id)
        if len(todo) == 1 and finished:
            spec, path = todo[0]
            status = RunDir(path).status()
            emit(Msg("end", worker, spec.run_id, status=status, detail="already finished"))
            todo = []
        try:
            if len(todo) > len(finished):
                _train_pack(worker, todo, finished, emit, runtime, datasets)
        except KeyboardInterrupt:
            for spec, _ in todo:
                if spec.run_id not in finished:
                    emit(Msg("end", worker, spec.run_id, status="interrupted"))
            return
        finally:
            for lock in locks:
                lock.release()


def _train_pack(worker, todo, finished, emit, runtime, datasets) -> None:
    """Train one pack (or one run); its finished members keep their slots (train_runs leaves
    them alone), since the grouped kernels' float32 results depend on the pack's size."""
    specs, paths = [s for s, _ in todo], [p for _, p in todo]
    name = specs[0].run_id if len(specs) == 1 else f"pack of {len(specs)}: {specs[0].run_id}, ..."
    try:
        key = specs[0].dataset.model_dump_json()
        if key not in datasets:
            splits = load_splits(specs[0].dataset, runtime.data_dir)
            device = resolve_device(runtime.device)
            datasets[key] = on_device(splits, device, runtime.channels_last)
        emit(Msg("start", worker, name, epochs=specs[0].epochs))
        summaries = train_runs(specs, paths, runtime, _throttled(worker, name, emit), datasets[key])
        for spec, summary in zip(specs, summaries, strict=True):
            if spec.run_id not in finished:
                emit(Msg("end", worker, spec.run_id, status=summary["status"]))
    except (RunFailed, UserError) as err:
        for spec in specs:
            if spec.run_id not in finished:
                emit(Msg("end", worker, spec.run_id, status="failed", detail=str(err)))


def _throttled(worker: int, run_id: str, emit: Callable[[Msg], None]) -> Callable[[Event], None]:
    last = [0.0]

    def on_event(event: Event) -> None:
        now = time.monotonic()
        if event.kind == "step" and now - last[0] < STEP_EVENT_INTERVAL_S:
            return
        last[0] = now
        emit(Msg("event", worker, run_id, event=event))

    return on_event


def _die_with_parent(parent: int) -> None:
    """Stop this worker when the sweep that started it dies, however it dies: the kernel sends
    SIGTERM (Linux's PR_SET_PDEATHSIG), and a watchdog thread checks the parent anyway."""
    signal.signal(signal.SIGTERM, lambda *_: _interrupt())
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True, name="lrbench-parent-watch").start()


def _interrupt() -> None:
    raise KeyboardInterrupt


def _process_main(
    worker: int, device: str, packs: Any, events: Any, runtime: Runtime, parent: int
) -> None:
    _die_with_parent(parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the sweep, which stops us
    with contextlib.suppress(KeyboardInterrupt):
        work(worker, device, iter(packs.get, None), events.put, runtime)


def run_local(
    todo: list[Pack],
    devices: list[str],
    runtime: Runtime,
    on_msg: Callable[[Msg], None],
) -> Outcome:
    """Train `todo` on one worker per entry of `devices`; in-process when there is one worker.

    Ctrl-C (or SIGTERM) stops every worker after keeping every finished epoch; the outcome
    says `interrupted`.
    """
    outcome = Outcome()

    def record(msg: Msg) -> None:
        if msg.kind == "end" and msg.status:
            outcome.statuses[msg.run_id] = msg.status
            outcome.interrupted |= msg.status == "interrupted"
        if msg.kind == "held":
            outcome.statuses[msg.run_id] = "held"
        on_msg(msg)

    if len(devices) == 1 or len(todo) <= 1:
        try:
            work(0, devices[0], [*todo, None], record, runtime)
        except KeyboardInterrupt:
            outcome.interrupted = True
        return outcome

    ctx = mp.get_context("spawn")
    packs, events = ctx.Queue(), ctx.Queue()
    for item in todo:
        packs.put(item)
    procs = []
    for i, device in enumerate(devices[: len(todo)]):
        packs.put(None)
        args = (i, device, packs, events, runtime, os.getpid())
        p = ctx.Process(target=_process_main, args=args, daemon=True)
        p.start()
        procs.append(p)
    try:
        while any(p.is_alive() for p in procs) or not events.empty():
            try:
                record(events.get(timeout=0.2))
            except queue.Empty:
                continue
    except KeyboardInterrupt:
        outcome.interrupted = True
        for p in procs:
            if p.is_alive() and p.pid is not None:
                os.kill(p.pid, signal.SIGTERM)
        for p in procs:
            p.join(timeout=60)
        while not events.empty():
            record(events.get_nowait())
    for p in procs:
        p.join()
    return outcome
