"""Sweeps: safe to kill at any moment, safe to run again, never training one run twice."""

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import yaml
from helpers import kill_after_new_row, metrics_rows, wait_for
from sweepconfigs import write_config

from lrbench.results import RunDir, run_dirs


def sweep_cmd(config: Path, results: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "lrbench", "sweep", str(config), "--results", str(results),
            "--device", "cpu", *extra]  # fmt: skip


def final_metrics(sweep: Path) -> dict[str, list[dict]]:
    """Every run's metrics rows, timings dropped: what must not depend on interruptions."""
    return {run.path.name: metrics_rows(run) for run in run_dirs(sweep)}


def test_dry_run_lists_the_runs_and_trains_nothing(cli, tmp_path):
    config = write_config(tmp_path)
    result = cli("sweep", config, "--results", tmp_path / "results", "--dry-run")
    assert result.code == 0, result.output
    assert "4 runs" in result.out and "to run 4" in result.out
    assert "6 epochs to train" in result.out
    assert not (tmp_path / "results" / "tiny" / "runs").exists()


def test_a_sweep_trains_every_run_then_skips_them(cli, tmp_path):
    config, results = write_config(tmp_path), tmp_path / "results"
    first = cli("sweep", config, "--results", results, "--device", "cpu")
    assert first.code == 0, first.output
    runs = run_dirs(results / "tiny")
    assert len(runs) == 4 and all(r.state() == "done" for r in runs)
    assert yaml.safe_load((results / "tiny" / "sweep.yaml").read_text())["name"] == "tiny"
    stamps = {r.path.name: r.metrics.stat().st_mtime_ns for r in runs}

    again = cli("sweep", config, "--results", results, "--device", "cpu")
    assert again.code == 0 and "nothing to train" in again.err
    assert {r.path.name: r.metrics.stat().st_mtime_ns for r in runs} == stamps

    dry = cli("sweep", config, "--results", results, "--dry-run")
    assert "done 4" in dry.out and "estimate" in dry.out and "unknown" not in dry.out

    status = cli("status", results)
    assert status.code == 0 and "tiny" in status.out


def test_only_selects_runs_by_pattern(cli, tmp_path):
    config, results = write_config(tmp_path), tmp_path / "results"
    result = cli("sweep", config, "--results", results, "--device", "cpu", "--only", "*-rex-*")
    assert result.code == 0, result.output
    assert sorted(r.path.name.split("-")[3] for r in run_dirs(results / "tiny")) == ["rex", "rex"]
    none = cli("sweep", config, "--results", results, "--only", "nothing-matches")
    assert none.code == 2


def test_a_failed_run_is_recorded_and_the_sweep_goes_on(cli, tmp_path, monkeypatch):
    import lrbench.train.build as train

    real = train.build_model

    def flaky(name, num_classes, **kw):
        if flaky.calls == 0:
            flaky.calls += 1
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(name, num_classes, **kw)

    flaky.calls = 0
    monkeypatch.setattr(train, "build_model", flaky)
    config, results = write_config(tmp_path), tmp_path / "results"
    result = cli("sweep", config, "--results", results, "--device", "cpu", "--jobs", "1")
    assert result.code == 1
    assert "1 run(s) failed" in result.err and "run.log" in result.err
    states = sorted(r.state() for r in run_dirs(results / "tiny"))
    assert states == ["done", "done", "done", "failed"]
    failed = next(r for r in run_dirs(results / "tiny") if r.state() == "failed")
    assert "simulated" in json.loads(failed.summary.read_text())["error"]
    assert "Traceback" in failed.log.read_text()
    assert "simulated" in cli("status", results).out

    assert cli("sweep", config, "--results", results, "--device", "cpu").code == 0
    assert failed.state() == "failed"
    assert cli("sweep", config, "--results", results, "--device", "cpu", "--retry-failed").code == 0
    assert failed.state() == "done"


def test_kill_minus_nine_in_training_then_resume_equals_an_uninterrupted_sweep(tmp_path):
    """Killed four times, each time as soon as it has written one more epoch row (in training,
    never while python and torch start), then run to the end: every run's rows are those of a
    sweep never interrupted."""
    bigger = {"name": "synthetic", "limit_train": 640}
    config = write_config(tmp_path, dataset=bigger, full_epochs=4, budgets=[0.5, 1.0])
    clean = subprocess.run(sweep_cmd(config, tmp_path / "clean"), capture_output=True, text=True)
    assert clean.returncode == 0, clean.stderr

    killed = tmp_path / "killed"
    for kill in range(4):
        proc = subprocess.Popen(
            sweep_cmd(config, killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        assert kill_after_new_row(proc, killed), f"the sweep ended before kill {kill + 1}"
        assert proc.returncode == -signal.SIGKILL
    final = subprocess.run(sweep_cmd(config, killed), capture_output=True, text=True)
    assert final.returncode == 0, final.stderr
    assert final_metrics(killed / "tiny") == final_metrics(tmp_path / "clean" / "tiny")
    for run in run_dirs(killed / "tiny"):
        assert not list(run.path.glob(".*.tmp")), "a torn temp file was left behind"


def test_two_sweeps_at_once_train_each_run_once(tmp_path):
    config = write_config(tmp_path)
    results = tmp_path / "results"
    procs = [
        subprocess.Popen(
            sweep_cmd(config, results), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(2)
    ]
    logs = [p.communicate(timeout=600) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], logs
    starts = [line for _, err in logs for line in err.splitlines() if "] start " in line]
    started = sorted(line.split("] start ")[1] for line in starts)
    assert len(started) == len(set(started)) == 4
    assert all(RunDir(p).state() == "done" for p in (results / "tiny" / "runs").iterdir())


def test_a_packed_sweep_writes_the_same_runs_as_an_unpacked_one(cli, tmp_path):
    config = write_config(tmp_path, budgets=[1.0], seeds=2)
    for name, pack in (("single", "1"), ("packed", "4")):
        result = cli(
            "sweep", config, "--results", tmp_path / name, "--device", "cpu", "--pack", pack
        )
        assert result.code == 0, result.output
    assert "packing up to 4 runs" in result.err
    packed = final_metrics(tmp_path / "packed" / "tiny")
    assert len(packed) == 4
    assert packed == final_metrics(tmp_path / "single" / "tiny")
    assert cli("sweep", config, "--results", tmp_path / "x", "--pack", "zero").code == 2


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def two_workers_training(config: Path, results: Path) -> tuple[subprocess.Popen, list[int]]:
    proc = subprocess.Popen(
        sweep_cmd(config, results, "--jobs", "2"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    runs = results / "tiny" / "runs"
    wait_for(
        lambda: sum(RunDir(p).is_locked() for p in runs.glob("*")) == 2 if runs.is_dir() else False
    )
    workers = [
        p for p in children(proc.pid) if Path(f"/proc/{p}/cmdline").read_bytes().find(b"spawn") >= 0
    ]
    return proc, workers


def test_a_killed_sweep_takes_its_workers_with_it(tmp_path):
    """SIGKILL leaves the sweep no chance to clean up: its workers notice and stop, and the
    runs' locks are free for the next sweep."""
    config = write_config(tmp_path, dataset={"name": "synthetic", "limit_train": 1280},
                          full_epochs=40, budgets=[1.0])  # fmt: skip
    results = tmp_path / "results"
    proc, workers = two_workers_training(config, results)
    assert len(workers) == 2
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    wait_for(lambda: not any(alive(w) for w in workers), timeout=30)
    runs = list((results / "tiny" / "runs").iterdir())
    assert not any(RunDir(p).is_locked() for p in runs)


def test_sigterm_stops_a_sweep_like_ctrl_c(tmp_path):
    config = write_config(tmp_path, dataset={"name": "synthetic", "limit_train": 1280},
                          full_epochs=40, budgets=[1.0])  # fmt: skip
    results = tmp_path / "results"
    proc, workers = two_workers_training(config, results)
    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=120) == 130
    assert not any(alive(w) for w in workers)
    again = subprocess.run(sweep_cmd(config, results, "--dry-run"), capture_output=True, text=True)
    assert "to resume" in again.stdout or "to run" in again.stdout


def test_dry_run_times_from_the_sweeps_own_runs_and_checks_the_data(cli, tmp_path):
    config = write_config(tmp_path, budgets=[0.5])
    results = tmp_path / "results"
    assert cli("sweep", config, "--results", results, "--device", "cpu").code == 0
    more = write_config(tmp_path, budgets=[0.5, 1.0])
    dry = cli("sweep", more, "--results", results, "--dry-run")
    assert dry.code == 0, dry.output
    assert "from this sweep's epoch times" in " ".join(dry.out.split())
    missing = write_config(tmp_path, dataset={"name": "imagefolder", "root": str(tmp_path / "no")})
    refused = cli("sweep", missing, "--results", results, "--dry-run")
    assert refused.code == 2 and str(tmp_path / "no") in refused.err
    too_many = write_config(tmp_path, dataset={"name": "synthetic", "limit_train": 10**6})
    refused = cli("sweep", too_many, "--results", results, "--dry-run")
    assert refused.code == 2 and "limit_train" in refused.err


def test_spec_json_records_how_each_run_trained(cli, tmp_path):
    config = write_config(tmp_path, budgets=[1.0], seeds=2)
    assert (
        cli("sweep", config, "--results", tmp_path / "r", "--device", "cpu", "--pack", "4").code
        == 0
    )
    slots = []
    for run in run_dirs(tmp_path / "r" / "tiny"):
        provenance = json.loads(run.spec.read_text())["provenance"]
        assert provenance["pack"]["size"] == 4
        slots.append(provenance["pack"]["slot"])
        assert provenance["threads"] >= 1 and provenance["cpu"]
        assert "git_commit" in provenance and provenance["device"] == "cpu"
    assert sorted(slots) == [0, 1, 2, 3]
    plan = json.loads((tmp_path / "r" / "tiny" / "plan.json").read_text())
    assert sorted(plan["run_ids"]) == sorted(r.path.name for r in run_dirs(tmp_path / "r" / "tiny"))


def test_status_shows_how_far_each_unfinished_run_is_and_the_time_left(cli, tmp_path):
    """A run stopped after its first epoch: status gives its epoch of epochs and an estimate
    at its own epoch time, and the sweep's time left."""
    from lrbench.config import expand, load_config
    from lrbench.train import Runtime, train_run

    config = write_config(tmp_path, budgets=[1.0], schedules=["cosine"], full_epochs=3)
    assert cli("sweep", config, "--results", tmp_path / "r", "--dry-run").code == 0
    (spec,) = expand(load_config(config))
    folder = tmp_path / "r" / "tiny" / "runs" / spec.run_id

    def stop_after_epoch_one(event):
        if event.kind == "epoch":
            raise KeyboardInterrupt

    (tmp_path / "r" / "tiny").mkdir(parents=True, exist_ok=True)
    from lrbench.sweep import write_sweep_files

    write_sweep_files(load_config(config), tmp_path / "r")
    with contextlib.suppress(KeyboardInterrupt):
        train_run(spec, folder, Runtime(device="cpu"), on_event=stop_after_epoch_one)
    status = cli("status", tmp_path / "r")
    assert status.code == 0, status.output
    text = " ".join(status.out.split())
    assert f"partial tiny/{spec.run_id}: epoch 1/3, " in text and " left" in text
    # done, diverged, failed, damaged, running, partial, new, total
    assert re.search(r"tiny\s*│(\s*0\s*│){5}\s*1\s*│\s*0\s*│\s*1\s*│", status.out), status.out
