"""`lrbench sweep --executor slurm` against a real Slurm cluster (scripts/slurm/start.sh).

    sudo bash scripts/slurm/start.sh
    LRBENCH_SLURM=1 .venv/bin/python -m pytest -m slurm tests/test_slurm_cluster.py

Skipped unless LRBENCH_SLURM=1 and `sinfo` answers. Jobs ask for one CPU each, and the local
reference runs use one thread too: CPU results then agree bit for bit.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import metrics_rows, wait_for

from lrbench.config import expand, load_config
from lrbench.results import RunDir, run_dirs


def _cluster_up() -> bool:
    if os.environ.get("LRBENCH_SLURM") != "1" or not shutil.which("sinfo"):
        return False
    try:
        return subprocess.run(["sinfo", "-h"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


pytestmark = [
    pytest.mark.slurm,
    pytest.mark.skipif(not _cluster_up(), reason="needs LRBENCH_SLURM=1 and a Slurm cluster"),
]

ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
JOB_FLAGS = ["--executor", "slurm", "--device", "cpu", "--cpus-per-job", "1", "--time", "10"]

SMOKE = {  # smoke.yaml in small: 4 runs, 2 epochs
    "name": "smoke-slurm",
    "dataset": {"name": "synthetic", "limit_train": 128, "limit_test": 100},
    "models": ["resnet8"],
    "optimizers": [{"name": "sgd", "lr": 0.1, "momentum": 0.9, "weight_decay": 5.0e-4}],
    "full_epochs": 2,
    "budgets": [1.0],
    "seeds": 2,
    "batch_size": 64,
    "schedules": ["cosine", {"name": "rex", "beta": 0.5}],
}
LONG = {  # one run long enough to be interrupted twice
    **SMOKE,
    "name": "long-slurm",
    "dataset": {"name": "synthetic", "limit_train": 1024, "limit_test": 100},
    "full_epochs": 16,
    "seeds": 1,
    "schedules": ["cosine"],
}


def lrbench(*args, env: dict | None = None, timeout: float = 180) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "lrbench", *map(str, args)]
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=timeout)


def write(tmp_path: Path, config: dict) -> Path:
    path = tmp_path / f"{config['name']}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def squeue(job: str) -> str:
    out = subprocess.run(["squeue", "-h", "-j", job, "-o", "%t"], capture_output=True, text=True)
    return out.stdout.strip()


def job_id(stdout: str) -> str:
    match = re.search(r"as job(?: array)? (\d+)", stdout)
    assert match, stdout
    return match.group(1)


def test_a_sweep_on_slurm_equals_the_same_sweep_run_locally(tmp_path):
    config = write(tmp_path, SMOKE)
    on_slurm, local = tmp_path / "slurm", tmp_path / "local"
    result = lrbench("sweep", config, "--results", on_slurm, *JOB_FLAGS, "--runs-per-job", "2",
                     "--max-concurrent", "2", "--wait")  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    job = job_id(result.stdout)
    assert f"job array {job} (2 task(s): {job}_0 … {job}_1)" in result.stdout
    assert "4 done, 0 diverged, 0 failed; results in" in result.stderr
    assert re.search(r"epoch 2/2 loss \d", result.stderr)  # --wait's progress lines

    reference = lrbench("sweep", config, "--results", local, "--device", "cpu", env=ONE_THREAD)
    assert reference.returncode == 0, reference.stderr
    a, b = run_dirs(on_slurm / "smoke-slurm"), run_dirs(local / "smoke-slurm")
    assert [r.path.name for r in a] == [r.path.name for r in b] and len(a) == 4
    for x, y in zip(a, b, strict=True):
        assert sorted(p.name for p in x.path.iterdir()) == sorted(p.name for p in y.path.iterdir())
        assert (
            x.state() == "done" and metrics_rows(x) == metrics_rows(y) and len(metrics_rows(x)) == 2
        )
    for task in (0, 1):
        log = (on_slurm / "smoke-slurm" / "slurm" / f"{job}_{task}_0_log.out").read_text()
        assert log.count(": done") == 2 and "1 CPU thread(s)" in log

    status = lrbench("status", on_slurm)
    assert re.search(r"smoke-slurm\s*│\s*4\s*│", status.stdout), status.stdout
    report = lrbench("report", on_slurm / "smoke-slurm", "--out", tmp_path / "report")
    assert report.returncode == 0, report.stderr
    again = lrbench("sweep", config, "--results", on_slurm, *JOB_FLAGS)
    assert again.returncode == 0 and "nothing to submit" in again.stderr


def test_a_requeued_or_cancelled_job_resumes_from_its_checkpoint(tmp_path):
    config = write(tmp_path, LONG)
    results = tmp_path / "results"
    (spec,) = expand(load_config(config))
    run = RunDir(results / "long-slurm" / "runs" / spec.run_id)
    logs = results / "long-slurm" / "slurm"

    first = lrbench("sweep", config, "--results", results, *JOB_FLAGS)
    assert first.returncode == 0, first.stderr
    job = job_id(first.stdout)
    assert f"scancel {job}" in first.stderr

    # 1. Preemption, as Slurm signals it: USR2 -> submitit checkpoints and requeues the job.
    wait_for(lambda: run.metrics.exists() and len(metrics_rows(run)) >= 2, what="two epochs")
    subprocess.run(["scancel", "--signal=USR2", job], check=True)
    before_requeue = metrics_rows(run, keep_time=True)
    wait_for(lambda: squeue(job) == "PD", timeout=60, what="the requeued job")
    # Slurm holds a requeued job back for two minutes; let it start now.
    subprocess.run(["scontrol", "update", f"jobid={job}", "starttime=now"], check=True)
    log1 = logs / f"{job}_0_log.out"
    wait_for(lambda: "restart 1" in log1.read_text(), what="the restart")
    wait_for(lambda: "resume after epoch" in log1.read_text(), what="the resume")
    k1 = int(re.findall(r"resume after epoch (\d+)", log1.read_text())[0])
    wait_for(
        lambda: run.metrics.exists() and len(metrics_rows(run)) >= k1 + 1,
        what="an epoch after the resume",
    )

    # 2. Cancelled outright (submitit ignores SIGTERM; Slurm kills it KillWait later): the job
    #    is gone, and the same command submits the run again.
    subprocess.run(["scancel", job], check=True)
    wait_for(lambda: squeue(job) == "", timeout=60, what="the cancelled job to leave")
    assert run.state() == "partial", "the run finished before it could be cancelled"
    before_rerun = metrics_rows(run, keep_time=True)
    assert k1 < len(before_rerun) < 16
    again = lrbench("sweep", config, "--results", results, *JOB_FLAGS)
    assert again.returncode == 0, again.stdout + again.stderr
    job2 = job_id(again.stdout)
    assert job2 != job
    log2 = logs / f"{job2}_0_log.out"
    wait_for(lambda: log2.exists() and "resume after epoch" in log2.read_text(), what="job 2")
    # the checkpoint's epoch: the last row may have been written without its checkpoint
    k2 = int(re.findall(r"resume after epoch (\d+)", log2.read_text())[0])
    assert k1 <= k2 <= len(before_rerun)

    # while it trains, `lrbench status` sees the run from the results folder alone, and
    # `lrbench sweep --wait` follows the queued job instead of submitting the run once more
    # (on an idle machine job 2 may already have finished: both answers mean "not again")
    status = lrbench("status", results)
    # columns: done, diverged, failed, damaged, running
    running = r"long-slurm\s*│\s*0\s*│\s*0\s*│\s*0\s*│\s*0\s*│\s*1\s*│"
    finished = r"long-slurm\s*│\s*1\s*│\s*0\s*│\s*0\s*│\s*0\s*│\s*0\s*│"
    assert re.search(running, status.stdout) or re.search(finished, status.stdout), status.stdout
    follow = lrbench("sweep", config, "--results", results, *JOB_FLAGS, "--wait")
    assert follow.returncode == 0, follow.stdout + follow.stderr
    followed = f"1 run(s) are still queued or running in job {job2}; not submitted again"
    assert (followed in follow.stderr and "1 done" in follow.stderr) or (
        "finished; nothing to submit" in follow.stderr
    ), follow.stderr
    assert "submitted" not in follow.stdout

    text1, text2 = log1.read_text(), log2.read_text()
    assert "checkpoint: 0 of 1 run(s) finished; requeueing the other 1" in text1
    # after each resume training starts at the checkpoint's next epoch; none before it again
    after1 = text1.split("resume after epoch")[1]
    assert re.search(rf"epoch {k1 + 1}/16 ", after1) and not re.search(rf"epoch {k1}/16 ", after1)
    after2 = text2.split("resume after epoch")[1]
    assert re.search(rf"epoch {k2 + 1}/16 ", after2) and not re.search(rf"epoch {k2}/16 ", after2)
    final = metrics_rows(run, keep_time=True)
    assert len(final) == 16 and run.state() == "done"
    assert final[:k1] == before_requeue[:k1]  # rows before each interruption, timings included,
    assert final[:k2] == before_rerun[:k2]  # were not trained again

    reference = lrbench(
        "sweep", config, "--results", tmp_path / "ref", "--device", "cpu", env=ONE_THREAD
    )
    assert reference.returncode == 0, reference.stderr
    (ref,) = run_dirs(tmp_path / "ref" / "long-slurm")
    assert metrics_rows(run) == metrics_rows(
        ref
    )  # and the interrupted run equals an uninterrupted one
