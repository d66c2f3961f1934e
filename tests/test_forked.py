"""Work spread over forked processes (lrbench.forked) gives what a loop gives, in its order,
raises what the loop would raise, and leaves no process behind, however it ends."""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
import threading
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lrbench.forked import can_fork, fork_map, fork_start

pytestmark = pytest.mark.skipif(not can_fork(), reason="forked workers are Linux's")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@settings(max_examples=15, deadline=None)
@given(items=st.lists(st.integers(-1000, 1000), max_size=12), workers=st.integers(1, 4))
def test_forked_work_gives_what_a_loop_gives_in_its_order(items: list[int], workers: int) -> None:
    assert fork_map(lambda x: (x * x, x), items, workers) == [(x * x, x) for x in items]


def test_workers_see_the_parents_memory_unpickled() -> None:
    lock = threading.Lock()  # cannot be pickled: the workers inherit it
    assert fork_map(lambda i: (i, lock.locked()), [1, 2, 3], 2) == [
        (1, False),
        (2, False),
        (3, False),
    ]


def test_an_error_in_a_worker_is_raised_in_the_parent() -> None:
    def work(i: int) -> int:
        if i == 3:
            raise ValueError(f"piece {i} is bad")
        return i

    with pytest.raises(ValueError, match="piece 3 is bad"):
        fork_map(work, range(6), 2)


def test_the_first_error_in_the_items_order_is_the_one_raised() -> None:
    def work(i: int) -> int:
        if i in (2, 4):
            raise KeyError(i)
        return i

    with pytest.raises(KeyError, match="2"):
        fork_map(work, range(6), 3)


def test_started_work_goes_on_in_the_background_while_the_parent_works() -> None:
    go = multiprocessing.get_context("fork").Event()  # the worker waits for the parent's word
    with fork_start(lambda _: go.wait(timeout=120), [0], 1) as started:
        workers = list(started.pids)
        go.set()  # reached only because starting the work did not wait for it
        assert started.results() == [True]
    assert workers and not any(map(_alive, workers))


def test_work_started_side_by_side_keeps_each_its_own_pieces() -> None:
    """Each start shares its next-piece counter with its own workers only (a counter freed
    early was once reused by the next start, whose workers then took the first's pieces)."""
    with (
        fork_start(lambda i: ("a", i), range(8), 1) as a,
        fork_start(lambda i: ("b", i), range(8), 1) as b,
    ):
        assert a.results() == [("a", i) for i in range(8)]
        assert b.results() == [("b", i) for i in range(8)]


def test_work_left_unasked_is_stopped_with_its_workers() -> None:
    with fork_start(lambda _: time.sleep(60), range(4), 2) as started:
        workers = list(started.pids)
        assert len(workers) == 2 and all(map(_alive, workers))
    assert not any(map(_alive, workers))


def test_no_process_is_forked_for_one_worker_or_none() -> None:
    here = os.getpid()
    assert set(fork_map(lambda _: os.getpid(), range(3), 1)) == {here}
    started = fork_start(lambda _: os.getpid(), range(3), 0)
    assert started.pids == [] and set(started.results()) == {here}


def test_each_piece_is_done_by_a_worker_not_here() -> None:
    assert os.getpid() not in fork_map(lambda _: os.getpid(), range(5), 2)


def test_background_workers_give_way_to_the_parent_and_the_parent_keeps_its_priority() -> None:
    here = os.nice(0)
    with fork_start(lambda _: os.nice(0), range(3), 2, niceness=5) as started:
        assert set(started.results()) == {min(19, here + 5)}
    assert os.nice(0) == here
    assert fork_start(lambda _: os.nice(0), range(2), 0, niceness=5).results() == [here, here]


def test_workers_end_under_lrbench_s_own_signal_handlers() -> None:
    """lrbench's console turns SIGTERM into KeyboardInterrupt; a pool that ended its workers
    that way once hung in a worker's wait. Many short pools under that handler all end."""
    script = (
        "import signal\n"
        "from lrbench.console import _interrupt\n"
        "from lrbench.forked import fork_map, fork_start\n"
        "signal.signal(signal.SIGTERM, _interrupt)\n"
        "for n in range(150):\n"
        "    assert fork_map(lambda i: i, range(n % 7 + 2), 2) == list(range(n % 7 + 2))\n"
        "    with fork_start(lambda i: i, range(3), 2):\n"
        "        pass\n"
    )
    done = subprocess.run([sys.executable, "-c", script], timeout=240, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()
