"""The local executor: worker processes spread over the visible GPUs (or CPU workers).

Each worker pulls runs from a shared queue and trains them with `train_run`, the same loop as
`lrbench run`. A run is trained only under its file lock, so two sweeps on the same results
never train one run twice; a lock dies with its process, so kill -9 leaves nothing stuck.
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import queue
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from filelock import Timeout

from lrbench.data import DeviceData, load_splits
from lrbench.errors import RunFailed, UserError
from lrbench.results import RunDir
from lrbench.specs import RunSpec
from lrbench.sweep import SKIP_STATES
from lrbench.train import Event, Runtime, resolve_device, train_runs

STEP_EVENT_INTERVAL_S = 0.5


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


def parse_devices(device: str, jobs: int | None) -> list[str]:
    """One device name per worker: `auto`, `cpu`, `cuda` (every GPU), `cuda:0,1`."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return ["cpu"] * (jobs or 1)
    if device == "cuda":
        gpus = [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    elif device.startswith("cuda:"):
        gpus = [f"cuda:{i.strip()}" for i in device.removeprefix("cuda:").split(",")]
    else:
        raise UserError(f"--device: {device!r} is not auto, cpu, cuda or cuda:0,1,...")
    if not gpus:
        raise UserError(f"--device {device}: no CUDA GPU is visible on this machine")
    for g in gpus:
        resolve_device(g)
    n = jobs or len(gpus)
    return [gpus[i % len(gpus)] for i in range(n)]


Task = tuple[RunSpec, Path] | tuple[list[RunSpec], list[Path]]


def work(
    worker: int,
    device: str,
    tasks: Iterable[Task | None],
    emit: Callable[[Msg], None],
    runtime: Runtime,
) -> None:
    """Train tasks until one is None; a task is one run or a pack of runs trained as one.

    Every run is trained only under its lock; runs another process holds are skipped, and runs
    found finished once the lock is taken are not trained again.
    """
    runtime = replace(runtime, device=device)
    datasets: dict[str, DeviceData] = {}
    for item in tasks:
        if item is None:
            return
        specs, paths = (item[0], item[1]) if isinstance(item[0], list) else ([item[0]], [item[1]])
        locks, todo, finished = [], [], set()
        for spec, path in zip(specs, paths, strict=True):
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
            spec = todo[0][0]
            emit(
                Msg(
                    "end",
                    worker,
                    spec.run_id,
                    status=RunDir(todo[0][1]).status(),
                    detail="already finished",
                )
            )
            todo = []
        try:
            if len(todo) > len(finished):
                _train_task(worker, device, todo, finished, emit, runtime, datasets)
        except KeyboardInterrupt:
            for spec, _ in todo:
                if spec.run_id not in finished:
                    emit(Msg("end", worker, spec.run_id, status="interrupted"))
            return
        finally:
            for lock in locks:
                lock.release()


def _train_task(worker, device, todo, finished, emit, runtime, datasets) -> None:
    """Train one run, or a pack; a pack keeps its finished members in their slots (train_runs
    leaves them alone), since the grouped kernels' float32 results depend on the pack's size."""

    specs, paths = [s for s, _ in todo], [p for _, p in todo]
    name = specs[0].run_id if len(specs) == 1 else f"pack of {len(specs)}: {specs[0].run_id}, ..."
    try:
        key = specs[0].dataset.model_dump_json()
        if key not in datasets:
            splits = load_splits(specs[0].dataset, runtime.data_dir)
            datasets[key] = DeviceData(splits, resolve_device(device), runtime.channels_last)
        emit(Msg("start", worker, name, epochs=specs[0].epochs))
        on_event = _throttled(worker, name, emit)
        summaries = train_runs(specs, paths, runtime, on_event, datasets[key])
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


def _process_main(
    worker: int, device: str, tasks: Any, events: Any, runtime: Runtime, threads: int
) -> None:
    torch.set_num_threads(threads)
    with contextlib.suppress(KeyboardInterrupt):
        work(worker, device, iter(tasks.get, None), events.put, runtime)


def run_local(
    todo: list[Task],
    devices: list[str],
    runtime: Runtime,
    on_msg: Callable[[Msg], None],
) -> Outcome:
    """Train `todo` on one worker per entry of `devices`; in-process when there is one worker."""
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
    tasks, events = ctx.Queue(), ctx.Queue()
    for item in todo:
        tasks.put(item)
    procs = []
    workers = devices[: len(todo)]
    threads = max(1, (os.cpu_count() or 1) // len(workers))
    for i, device in enumerate(workers):
        tasks.put(None)
        args = (i, device, tasks, events, runtime, threads)
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
            p.join(timeout=30)
        while not events.empty():
            record(events.get_nowait())
    for p in procs:
        p.join()
    return outcome
