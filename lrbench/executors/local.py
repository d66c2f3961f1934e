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
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from filelock import Timeout

from lrbench.data import DeviceData, load_splits, on_device
from lrbench.errors import RunFailed, UserError, one_line
from lrbench.executors.base import Msg, Outcome, Pack
from lrbench.imports import add_search_path
from lrbench.locks import wake_orphan
from lrbench.results import RunDir, atomic_write_json
from lrbench.train import Event, Runtime, resolve_device, train_runs
from lrbench.verdict import SKIP_STATES, TRAIN_STATES

STEP_EVENT_INTERVAL_S = 0.5
PARENT_POLL_S = 1.0
STOP_GRACE_S = 10.0  # how long Ctrl-C waits for workers to keep their epochs before killing
TAKEOVER_WAIT_S = 30.0  # how long a woken orphan worker may take to end its runs
LOG_LINES = 3  # lines of a crashed worker's traceback that its runs' cause quotes


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
            if not _acquire(lock, run):
                emit(Msg("held", worker, spec.run_id))
                continue
            locks.append(lock)
            todo.append((spec, path))
            if run.state() in SKIP_STATES:
                finished.add(spec.run_id)
        if len(todo) == 1 and finished:
            spec, path = todo[0]
            state = RunDir(path).state()
            emit(Msg("end", worker, spec.run_id, state=state, detail="already finished"))
            todo = []
        for spec, _ in todo:
            if spec.run_id not in finished:
                emit(Msg("take", worker, spec.run_id))
        try:
            if len(todo) > len(finished):
                _train_pack(worker, todo, finished, emit, runtime, datasets)
        except KeyboardInterrupt:
            for spec, path in todo:  # a run that ended just before the signal says so
                if spec.run_id not in finished:
                    state = RunDir(path).state()
                    ended = state if state in SKIP_STATES else "interrupted"
                    emit(Msg("end", worker, spec.run_id, state=ended))
            return
        finally:
            for lock in locks:
                lock.release()


def _acquire(lock: Any, run: RunDir) -> bool:
    """Take a run's lock; one held by a stopped worker whose sweep is gone is taken over."""
    try:
        lock.acquire()
        return True
    except Timeout:
        if not wake_orphan(run.lock_path):
            return False
    try:
        lock.acquire(timeout=TAKEOVER_WAIT_S)
        return True
    except Timeout:
        return False


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
                emit(Msg("end", worker, spec.run_id, state=summary["status"]))
    except (RunFailed, UserError) as err:
        for spec in specs:
            if spec.run_id not in finished:
                emit(Msg("end", worker, spec.run_id, state="failed", detail=str(err)))
    except (Exception, SystemExit) as err:  # a full disk, say: the runs fail, the worker goes on
        _record_failure(todo, finished, err)
        for spec in specs:
            if spec.run_id not in finished:
                emit(Msg("end", worker, spec.run_id, state="failed", detail=one_line(err)))


def _record_failure(todo: Pack, finished: set[str], err: BaseException) -> None:
    """summary.json `failed` and run.log for runs that failed outside the training loop (which
    records its own failures), so status, report and --retry-failed see them."""
    for spec, path in todo:
        run = RunDir(path)
        if spec.run_id in finished or run.state() in ("failed", *SKIP_STATES):
            continue
        with contextlib.suppress(OSError):
            run.log.write_text("".join(traceback.format_exception(err)))
            atomic_write_json(run.summary, {"status": "failed", "error": one_line(err)})


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
    try:
        work(worker, device, iter(packs.get, None), events.put, runtime)
    except KeyboardInterrupt:
        pass
    except BaseException as err:  # the sweep marks this worker's runs with the cause
        tail = "".join(traceback.format_exception(err)).strip().splitlines()[-LOG_LINES:]
        events.put(Msg("crash", worker, "", detail="\n".join(tail)))
        raise SystemExit(1) from None


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
        if msg.kind == "end" and msg.state:
            outcome.states[msg.run_id] = msg.state
            outcome.interrupted |= msg.state == "interrupted"
            if msg.state in ("failed", "unfinished") and msg.detail:
                outcome.causes[msg.run_id] = msg.detail
        if msg.kind == "held":
            outcome.states[msg.run_id] = "held"
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
    watch = _Watch(outcome, record, {spec.run_id: path for pack in todo for spec, path in pack})
    try:
        for i, device in enumerate(devices[: len(todo)]):
            packs.put(None)
            args = (i, device, packs, events, runtime, os.getpid())
            p = ctx.Process(target=_process_main, args=args, daemon=True)
            p.start()
            watch.procs[i] = p
        while watch.alive() or not events.empty():
            with contextlib.suppress(queue.Empty):
                watch.take(events.get(timeout=0.2))
            watch.bury(events)
    except KeyboardInterrupt:
        outcome.interrupted = True
        watch.stop(events)
    _unstarted(todo, outcome)
    return outcome


def _unstarted(todo: list[Pack], outcome: Outcome) -> None:
    """Runs no worker ended (every worker died first): unfinished, so the sweep says so."""
    if outcome.interrupted:
        return
    for pack in todo:
        for spec, _ in pack:
            if spec.run_id not in outcome.states:
                outcome.states[spec.run_id] = "unfinished"
                outcome.causes.setdefault(spec.run_id, "no worker was left to train it")


@dataclass
class _Watch:
    """The sweep's view of its worker processes: which runs each has taken and not ended, so a
    worker that dies (killed, out of memory, crashed) has its runs accounted for at once."""

    outcome: Outcome
    record: Callable[[Msg], None]
    paths: dict[str, Path]
    procs: dict[int, Any] = field(default_factory=dict)
    taken: dict[int, set[str]] = field(default_factory=dict)
    crashes: dict[int, str] = field(default_factory=dict)

    def alive(self) -> bool:
        return any(p.is_alive() for p in self.procs.values())

    def take(self, msg: Msg) -> None:
        if msg.kind == "take":
            self.taken.setdefault(msg.worker, set()).add(msg.run_id)
        elif msg.kind == "crash":
            self.crashes[msg.worker] = msg.detail or ""
            return
        elif msg.kind == "end":
            self.taken.get(msg.worker, set()).discard(msg.run_id)
        self.record(msg)

    def drain(self, events: Any) -> None:
        with contextlib.suppress(queue.Empty, OSError, EOFError, ValueError):
            while True:
                self.take(events.get(timeout=0.05))

    def bury(self, events: Any) -> None:
        """Account for the runs of workers that ended without ending them."""
        for worker, p in list(self.procs.items()):
            if p.is_alive():
                continue
            self.drain(events)  # what it said before it died
            del self.procs[worker]
            lost = self.taken.pop(worker, set())
            if not lost:
                continue
            cause = _death(worker, p.exitcode, self.crashes.get(worker))
            state = "unfinished" if (p.exitcode or 0) < 0 else "failed"
            for run_id in sorted(lost):
                if state == "failed":
                    _record_crash(RunDir(self.paths[run_id]), cause)
                self.outcome.states[run_id] = state
                self.outcome.causes[run_id] = cause
                self.record(Msg("end", worker, run_id, state=state, detail=cause))

    def stop(self, events: Any) -> None:
        """Ctrl-C: SIGTERM every worker (each keeps its finished epochs and ends its runs
        interrupted); a worker that has not exited after STOP_GRACE_S (stopped with SIGSTOP,
        say) is killed, and a second Ctrl-C kills them at once."""
        for p in self.procs.values():
            _signal(p, signal.SIGTERM)
            _signal(p, signal.SIGCONT)
        deadline = time.monotonic() + STOP_GRACE_S
        try:
            while self.alive() and time.monotonic() < deadline:
                self.drain(events)
                time.sleep(0.05)
        except KeyboardInterrupt:
            pass
        for p in self.procs.values():
            if p.is_alive():
                _signal(p, signal.SIGKILL)
            p.join(timeout=5)
        self.drain(events)
        for lost in self.taken.values():
            for run_id in lost:
                self.outcome.states.setdefault(run_id, "interrupted")


def _record_crash(run: RunDir, cause: str) -> None:
    """A run whose worker crashed is failed on disk too (status, report and --retry-failed see
    it), written under its lock, which died with the worker."""
    lock = run.lock()
    try:
        lock.acquire()
    except (Timeout, OSError):
        return
    try:
        if run.state() in TRAIN_STATES:
            atomic_write_json(run.summary, {"status": "failed", "error": cause})
    finally:
        lock.release()


def _signal(p: Any, sig: int) -> None:
    if p.pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, sig)


def _death(worker: int, code: int | None, log: str | None) -> str:
    """How a worker ended, for the runs it left: its signal, or its exit code and last lines."""
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "unknown"
        how = f"worker {worker} was killed by signal {-code} ({name}"
        how += ": out of memory?)" if -code == signal.SIGKILL else ")"
        return how
    how = f"worker {worker} exited with code {code}"
    return how + (f": {' | '.join(log.splitlines()[-LOG_LINES:])}" if log else "")
