"""Threads and workers a CPU sweep gets by default: one thread per worker and one worker per
core, so that a run's numbers do not depend on the load, the cores or --jobs, and a loaded
machine does not stall a worker's threads on each other (benchmarks/README.md measures it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sweepconfigs import write_config

from lrbench.config import load_config
from lrbench.forked import usable_cores
from lrbench.results import run_dirs
from lrbench.sweep import Sweep, SweepOptions
from lrbench.train.runtime import default_threads


def _sweep(tmp_path: Path, **options) -> Sweep:
    return Sweep(
        load_config(write_config(tmp_path)), SweepOptions(results=tmp_path / "r", **options)
    )


def test_a_cpu_worker_trains_with_one_thread_whatever_the_workers(tmp_path: Path) -> None:
    sweep = _sweep(tmp_path, device="cpu")
    assert [sweep.runtime("cpu", workers).threads for workers in (1, 2, 64)] == [1, 1, 1]


def test_threads_given_are_kept(tmp_path: Path) -> None:
    assert _sweep(tmp_path, device="cpu", threads=3).runtime("cpu", 2).threads == 3


def test_gpu_workers_share_the_cores_out() -> None:
    assert default_threads("cuda:0", 1) == usable_cores()
    assert default_threads("cuda:0", 2 * usable_cores()) == 1


def test_a_slurm_task_takes_the_cpus_slurm_gave_it(tmp_path: Path) -> None:
    """None: the task uses SLURM_CPUS_PER_TASK (lrbench.executors.slurm)."""
    assert _sweep(tmp_path, device="cpu").runtime("cpu", 1, slurm=True).threads is None


@pytest.mark.slow
def test_a_cpu_sweep_starts_a_one_thread_worker_per_core_up_to_the_runs(cli, tmp_path) -> None:
    config = write_config(tmp_path, budgets=[0.5])  # two runs to train
    result = cli("sweep", config, "--results", tmp_path / "r", "--device", "cpu")
    assert result.code == 0, result.err
    assert f"on {min(usable_cores(), 2)} worker(s): cpu" in result.err
    runs = run_dirs(tmp_path / "r" / "tiny")
    assert [json.loads(r.spec.read_text())["provenance"]["threads"] for r in runs] == [1, 1]
