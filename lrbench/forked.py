"""Work spread over this machine's cores in forked processes: the report's reading of run
folders and drawing of figures, and status's verdicts, which are each many independent pieces.

A forked worker starts in milliseconds and sees the parent's memory as it was when the pool
started (the list of run folders, the analysis, patched functions in a test) without pickling
it: only each piece's index goes out, and only its result comes back. Where fork is not the
platform's way (Windows; macOS, whose system libraries are not fork-safe) or one worker is
asked for, the same pieces run here, in order, with the same results.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

_work: Callable[[Any], Any] | None = None
_items: Sequence[Any] = ()


def usable_cores() -> int:
    """The cores this process may run on (its affinity mask under Slurm or taskset), at least 1."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def can_fork() -> bool:
    return sys.platform.startswith("linux")


def fork_map(work: Callable[[Item], Result], items: Sequence[Item], workers: int) -> list[Result]:
    """[work(item) for item in items], in that order, over up to `workers` forked processes.

    `work` and the items need not pickle (the workers inherit them); each result must. An
    exception in a worker is raised here, as it would be in a loop."""
    if workers <= 1:
        return [work(item) for item in items]
    return fork_start(work, items, workers).results()


class Forked(Generic[Result]):
    """Pieces of work under way in forked processes (or, without them, still to do here):
    `results()` waits for them and gives their results in the order of the items."""

    def __init__(self, work: Callable[[Any], Result], items: Sequence[Any], processes: int) -> None:
        self._work, self._items = work, items
        self._results: list[Result] | None = None
        self._pool: Any = None
        processes = min(processes, len(items))
        if processes < 1 or not can_fork():
            return
        global _work, _items
        _work, _items = work, items  # what the workers see: they are forked right here
        try:
            with warnings.catch_warnings():
                # Python 3.12+ warns on fork in a process with threads (numpy's BLAS pool is
                # one): they hold no lock the workers take, and the workers start none
                warnings.filterwarnings(
                    "ignore", "This process .* is multi-threaded", DeprecationWarning
                )
                with _sigterm_held():
                    self._pool = multiprocessing.get_context("fork").Pool(
                        processes, _worker_signals
                    )
        finally:
            _work, _items = None, ()
        self._pending = self._pool.map_async(_run, range(len(items)), chunksize=1)

    def results(self) -> list[Result]:
        if self._results is None:
            if self._pool is None:
                self._results = [self._work(item) for item in self._items]
            else:
                try:
                    self._results = self._pending.get()
                finally:
                    self.stop()
        return self._results

    def stop(self) -> None:
        """End the workers: at once when their work is not done (what they were doing is lost),
        else as each takes the end of its queue."""
        if self._pool is None:
            return
        if self._results is None:
            self._pool.terminate()
        else:
            self._pool.close()
        self._pool.join()
        self._pool = None

    def __enter__(self) -> Forked[Result]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def fork_start(work: Callable[[Item], Result], items: Sequence[Item], processes: int) -> Forked:
    """Start [work(item) for item in items] in up to `processes` forked processes, one of them
    enough to work in the background, and return at once: the caller goes on with other work
    and asks `results()` when it needs them. With 0 processes (or no fork) the work is done
    here, when asked."""
    return Forked(work, items, processes)


def slices(items: Sequence[Item], workers: int, smallest: int = 256) -> list[Sequence[Item]]:
    """Contiguous slices of `items` to hand to workers: a few per worker (so that one slow
    slice does not keep the others waiting), each of at least `smallest` items; one slice for
    one worker."""
    if workers <= 1:
        return [items]
    size = max(smallest, -(-len(items) // (4 * workers)))
    return [items[i : i + size] for i in range(0, len(items), size)]


@contextlib.contextmanager
def _sigterm_held() -> Iterator[None]:
    """SIGTERM is held back while workers are forked: a worker is born holding it and lets it
    in once it ends at it (stopping a pool sends SIGTERM, maybe before a worker has set that
    up); here, one that came meanwhile arrives as the workers are forked."""
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)


def _worker_signals() -> None:
    """Ctrl-C is the parent's to handle: it stops the pool, and the workers with it, by SIGTERM,
    which must end a worker wherever it waits (not raise in it, as lrbench.console's handler
    would)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    if hasattr(signal, "pthread_sigmask"):
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


def _run(index: int) -> Any:
    assert _work is not None
    return _work(_items[index])
