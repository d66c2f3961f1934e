"""Work spread over this machine's cores in forked processes: the report's reading of run
folders and drawing of figures, and status's verdicts, which are each many independent pieces.

A forked worker starts in milliseconds and sees the parent's memory as it was when it was
forked (the list of run folders, the analysis, patched functions in a test) without pickling
it: workers take the next piece's index from a shared counter, and each result comes back
pickled in a file of a private temporary folder. Where fork is not the platform's way
(Windows; macOS, whose system libraries are not fork-safe) or no worker is asked for, the same
pieces run here, in order, with the same results.

No multiprocessing.Pool: stopping a pool at once (an error in the parent) raced with its own
threads and could hang (and lrbench's console turns SIGTERM, which a pool stops workers with,
into an exception). Here the parent has no thread of its own, and stopping is SIGKILL.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import shutil
import signal
import sys
import tempfile
import traceback
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


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
    with fork_start(work, items, workers) as started:
        return started.results()


class Forked(Generic[Result]):
    """Pieces of work under way in forked processes (or, without them, still to do here):
    `results()` waits for them and gives their results in the order of the items; leaving a
    `with` block ends the workers, done or not."""

    def __init__(
        self, work: Callable[[Any], Result], items: Sequence[Any], processes: int, niceness: int = 0
    ) -> None:
        self._work, self._items = work, items
        self._results: list[Result] | None = None
        self.pids: list[int] = []  # the workers, until they are waited for
        self._folder: Path | None = None
        processes = min(processes, len(items))
        if processes < 1 or not can_fork():
            return
        self._folder = Path(tempfile.mkdtemp(prefix="lrbench-forked-"))
        # the next piece's index, in shared memory kept (here) until the workers end: freed, its
        # block would be another Forked's counter
        taken = self._taken = multiprocessing.get_context("fork").Value("q", 0)
        with warnings.catch_warnings():
            # Python 3.12+ warns on fork in a process with threads (numpy's BLAS pool is one):
            # they hold no lock the workers take, and the workers start none
            warnings.filterwarnings(
                "ignore", "This process .* is multi-threaded", DeprecationWarning
            )
            try:
                for _ in range(processes):
                    pid = os.fork()
                    if pid == 0:
                        _worker(work, items, taken, self._folder, niceness)  # never returns
                    self.pids.append(pid)
            except BaseException:  # no fork left (a process limit): end those already forked
                self.stop()
                raise

    def results(self) -> list[Result]:
        if self._results is None:
            if self._folder is None:
                self._results = [self._work(item) for item in self._items]
            else:
                try:
                    self._results = self._collect()
                finally:
                    self.stop()
        return self._results

    def _collect(self) -> list[Result]:
        assert self._folder is not None
        endings = [os.waitpid(pid, 0)[1] for pid in self.pids]
        self.pids = []
        results = []
        for index in range(len(self._items)):
            path = self._folder / f"{index}.pickle"
            if not path.exists():
                how = ", ".join(sorted({_ending(status) for status in endings}))
                raise RuntimeError(
                    f"a worker process ended without piece {index}'s result (workers: {how})"
                )
            done, value = pickle.loads(path.read_bytes())
            if not done:
                raise value
            results.append(value)
        return results

    def stop(self) -> None:
        """End the workers now (what they were doing is lost) and remove their files."""
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        for pid in self.pids:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        self.pids = []
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def __enter__(self) -> Forked[Result]:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def fork_start(
    work: Callable[[Item], Result], items: Sequence[Item], processes: int, niceness: int = 0
) -> Forked:
    """Start [work(item) for item in items] in up to `processes` forked processes, one of them
    enough to work in the background, and return at once: the caller goes on with other work
    and asks `results()` when it needs them. With 0 processes (or no fork) the work is done
    here, when asked. `niceness`: how much lower the workers' priority is (os.nice), so that
    the work the caller goes on with, which it waits for first, is not slowed by them."""
    return Forked(work, items, processes, niceness)


def slices(items: Sequence[Item], workers: int, smallest: int = 256) -> list[Sequence[Item]]:
    """Contiguous slices of `items` to hand to workers: a few per worker (so that one slow
    slice does not keep the others waiting), each of at least `smallest` items; one slice for
    one worker."""
    if workers <= 1:
        return [items]
    size = max(smallest, -(-len(items) // (4 * workers)))
    return [items[i : i + size] for i in range(0, len(items), size)]


def _ending(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit code {os.waitstatus_to_exitcode(status)}"


def _worker(
    work: Callable[[Any], Any], items: Sequence[Any], taken: Any, folder: Path, niceness: int
) -> None:
    """A forked worker's life: take the next piece until none is left or one fails, write each
    outcome to `folder`, and end without running anything of the parent's (os._exit)."""
    code = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it stops us
        if niceness:
            with contextlib.suppress(OSError):
                os.nice(niceness)
        while True:
            with taken.get_lock():
                index = taken.value
                taken.value += 1
            if index >= len(items):
                break
            try:
                outcome = (True, work(items[index]))
            except BaseException as err:  # raised in the parent, as a loop would raise it
                outcome = (False, err)
            try:
                data = pickle.dumps(outcome)
            except Exception as err:  # an exception or result that cannot be pickled
                data = pickle.dumps((False, RuntimeError(f"piece {index}: {outcome[1]!r} ({err})")))
            partial = folder / f"{index}.partial"
            partial.write_bytes(data)
            partial.rename(folder / f"{index}.pickle")
            if not outcome[0]:
                break
    except BaseException:
        traceback.print_exc()  # the parent then says which piece has no result
        code = 1
    finally:
        sys.stderr.flush()
        os._exit(code)
