"""Hardening, round two: a sweep accounts for every run it started, one verdict per run is
shared by sweep, status and report, a results folder is a tree of plain files of its own, read
with bounds, and names reach the terminal as text. Each test reproduces one defect an attack
found, on the tiny trained sweep of test_hardening (ResNet8, 64 synthetic images, 3 epochs)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import epoch_rows, metrics_rows, wait_for
from test_hardening import CONFIG, killed_in_epoch_3, results, trained

from lrbench.report.load import RETRAIN
from lrbench.results import RunDir, run_dirs

REPO = Path(__file__).parents[1]
FIXTURES = (trained, results)  # test_hardening's trained sweep and a copy of it per test


def last_row_set(run: RunDir, column: str, value: str) -> None:
    lines = run.metrics.read_text().splitlines(keepends=True)
    header = lines[0].rstrip("\n").split(",")
    cells = lines[-1].rstrip("\n").split(",")
    cells[header.index(column)] = value
    run.metrics.write_text("".join([*lines[:-1], ",".join(cells) + "\n"]))


def spec_set(run: RunDir, key: str, value: str) -> None:
    """Set a spec.json key to raw JSON text (NaN, 1e12, ...)."""
    spec = json.loads(run.spec.read_text())
    spec[key] = "@@"
    run.spec.write_text(json.dumps(spec).replace('"@@"', value))


def header_with_nul(run: RunDir) -> None:
    text = run.metrics.read_text()
    run.metrics.write_text(text.replace("lr,", "l\0r,", 1))


DAMAGE = {
    "a NaN test_acc": (lambda r: last_row_set(r, "test_acc", "nan"), "test_acc is nan"),
    "a word for test_acc": (lambda r: last_row_set(r, "test_acc", "abc"), "test_acc is 'abc'"),
    "a percentage for test_acc": (
        lambda r: last_row_set(r, "test_acc", "42.0"),
        "test_acc is 42.0",
    ),
    "an infinite loss in a done run": (
        lambda r: last_row_set(r, "test_loss", "inf"),
        "test_loss is inf",
    ),
    "a loss of 400 digits": (
        lambda r: last_row_set(r, "test_loss", "1" * 400),
        "test_loss is 1111",
    ),
    "a NUL byte in the header": (header_with_nul, "control character"),
    "a NaN budget in spec.json": (
        lambda r: spec_set(r, "budget", "NaN"),
        "spec.json holds nan at budget",
    ),
    "epochs 0 in spec.json": (lambda r: spec_set(r, "epochs", "0"), "spec.json: epochs is 0"),
    "steps_per_epoch 1e12": (
        lambda r: spec_set(r, "steps_per_epoch", "1e12"),
        "steps_per_epoch is 1000000000000.0",
    ),
    "an edited last test_acc": (
        lambda r: last_row_set(r, "test_acc", "0.999"),
        "summary.json's final test_acc is",
    ),
    "JSON nested 100,000 deep": (
        lambda r: r.summary.write_text("[" * 100_000 + "]" * 100_000),
        "nested deeper than 32 levels",
    ),
    "a spec.json that is a folder": (
        lambda r: (r.spec.unlink(), r.spec.mkdir()),
        "spec.json is a folder, not a plain file",
    ),
}


@pytest.mark.parametrize(("damage", "why"), DAMAGE.values(), ids=list(DAMAGE))
def test_sweep_status_and_report_give_a_damaged_run_one_verdict(
    cli, results, tmp_path, damage, why
):
    run = results.runs[0]
    damage(run)
    verdict = run.verdict()
    assert verdict.state == "damaged" and why in verdict.reason, verdict.reason

    status = cli("status", results.results)
    assert status.code == 0, status.output
    assert f"damaged {run.path}: {verdict.reason}" in status.out.splitlines()
    dry = cli("sweep", results.config, "--results", results.results, "--dry-run")
    assert dry.code == 0 and "damaged 1" in dry.out, dry.output
    report = cli("report", results.results, "--out", tmp_path / "report")
    assert report.code == 0, report.output
    hint = "" if verdict.foreign else f"; {RETRAIN}"  # a foreign file is the user's to remove
    assert f"  {run.path}: damaged: {verdict.reason}{hint}" in report.err.splitlines()


@pytest.mark.parametrize("damage", ["a NaN test_acc", "an edited last test_acc"])
def test_retry_failed_trains_a_damaged_run_again_to_the_untouched_end(
    cli, results, trained, damage
):
    run = results.runs[0]
    DAMAGE[damage][0](run)
    again = results.sweep(cli)
    assert again.code == 0 and "--retry-failed trains" in again.err, again.output
    assert results.sweep(cli, "--retry-failed").code == 0
    assert run.state() == "done" and metrics_rows(run) == trained.rows(run.path.name)


def test_a_custom_column_is_not_judged_and_a_missing_test_acc_is_no_damage(tmp_path):
    from runfolders import write_run

    folder = write_run(tmp_path, accs=[0.1, 0.2, 0.3], budget=0.05)
    lines = (folder / "metrics.csv").read_text().splitlines()
    header = lines[0].replace("test_acc", "perplexity")
    (folder / "metrics.csv").write_text("\n".join([header, *lines[1:]]) + "\n")
    summary = json.loads((folder / "summary.json").read_text())
    summary["final"] = {"perplexity": 0.3}  # the last row's
    (folder / "summary.json").write_text(json.dumps(summary))
    assert RunDir(folder).verdict().state == "done"


def test_status_reads_each_file_of_a_run_once(results, monkeypatch):
    import lrbench.plainfiles
    from lrbench.sweep.status import sweep_status

    reads: list[str] = []
    real = lrbench.plainfiles.read_bounded

    def counted(path, limit):
        reads.append(str(path))
        return real(path, limit)

    monkeypatch.setattr(lrbench.plainfiles, "read_bounded", counted)
    import lrbench.runfiles

    monkeypatch.setattr(lrbench.runfiles, "read_bounded", counted)
    sweep_status(results.results)
    per_file = {p: reads.count(p) for p in reads}
    assert per_file and max(per_file.values()) == 1, per_file


def test_status_by_several_workers_is_the_status_of_one(results, monkeypatch):
    """Twins: each run judged in its own forked worker gives the same counts, problems and
    progress as every run judged here."""
    from lrbench.sweep import status

    monkeypatch.setattr(status, "SMALLEST_SHARE", 1)
    DAMAGE["a NaN test_acc"][0](results.runs[0])
    results.runs[1].summary.unlink()  # unfinished: its epochs and time left
    one, several = status.sweep_status(results.results), status.sweep_status(results.results, 3)
    assert one == several
    assert one[0].counts["damaged"] == 1 and one[0].counts["partial"] == 1


# --- checkpoints belong to their run --------------------------------------------------------


def test_checkpoints_swapped_between_two_runs_are_refused_and_both_end_untouched(
    cli,
    results,
    trained,
):
    a, b = results.runs
    killed_in_epoch_3(a, trained)
    killed_in_epoch_3(b, trained)
    a.checkpoint.write_bytes(trained.epoch2[b.path.name])
    b.checkpoint.write_bytes(trained.epoch2[a.path.name])
    assert results.sweep(cli).code == 0
    for run in (a, b):
        assert run.state() == "done" and metrics_rows(run) == trained.rows(run.path.name)


@pytest.mark.parametrize("epoch", [-2, "x"])
def test_a_checkpoint_with_an_impossible_epoch_retrains_its_run(cli, results, trained, epoch):
    import torch

    run = results.runs[0]
    killed_in_epoch_3(run, trained)
    state = torch.load(run.checkpoint, weights_only=True)
    torch.save({**state, "epoch": epoch}, run.checkpoint)
    result = results.sweep(cli)
    assert result.code == 0, result.output
    assert run.state() == "done" and metrics_rows(run) == trained.rows(run.path.name)


def test_a_finished_run_keeps_no_checkpoint_unless_asked(cli, results, trained, tmp_path):
    for run in results.runs:
        killed_in_epoch_3(run, trained)
    ids = {r.path.name for r in results.runs}
    assert results.sweep(cli).code == 0
    assert not any(r.checkpoint.exists() for r in results.runs)
    assert {r.path.name for r in results.runs} == ids

    config = tmp_path / "keep.yaml"
    config.write_text(yaml.safe_dump({**CONFIG, "keep_checkpoints": True}))
    for run in results.runs:
        killed_in_epoch_3(run, trained)
    assert cli("sweep", config, "--results", results.results, "--device", "cpu").code == 0
    assert {r.path.name for r in results.runs} == ids  # the key changes no run id
    assert all(r.checkpoint.exists() and r.state() == "done" for r in results.runs)


# --- a results folder is a tree of plain files of its own ---------------------------------------


def test_a_run_folder_that_is_a_link_is_never_written_through(cli, results, tmp_path):
    run = results.runs[0]
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "metrics.csv").write_text("mine\n")
    (victim / "keep.txt").write_text("mine\n")
    before = {p.name: p.read_bytes() for p in victim.iterdir()}
    import shutil

    shutil.rmtree(run.path)
    run.path.symlink_to(victim)

    for extra in ([], ["--retry-failed"]):
        result = results.sweep(cli, *extra)
        assert result.code == 0 and "left alone" in result.err, result.output
    assert {p.name: p.read_bytes() for p in victim.iterdir()} == before
    status = cli("status", results.results)
    assert f"damaged {run.path}: the run folder is a symbolic link" in status.out


@pytest.mark.parametrize("target", ["link", "fifo", "zero"])
def test_a_lock_or_metrics_that_is_no_plain_file_is_damage_and_no_hang(
    cli, results, tmp_path, target
):
    run = results.runs[0]
    if target == "link":
        run.lock_path.unlink(missing_ok=True)
        run.lock_path.symlink_to(run.lock_path)  # ELOOP
        name, what = ".lock", "a symbolic link"
    elif target == "fifo":
        run.metrics.unlink()
        os.mkfifo(run.metrics)
        name, what = "metrics.csv", "a FIFO"
    else:
        run.metrics.unlink()
        run.metrics.symlink_to("/dev/zero")
        name, what = "metrics.csv", "a symbolic link"
    why = f"{name} is {what}, not a plain file; lrbench leaves this run alone"
    assert run.damage() == why
    status = cli("status", results.results)
    assert status.code == 0 and f"damaged {run.path}: {why}" in status.out, status.output
    report = cli("report", results.results, "--out", tmp_path / "r")
    assert report.code == 0 and f"  {run.path}: damaged: {why}" in report.err.splitlines()
    assert results.sweep(cli, "--retry-failed").code == 0
    assert run.damage() == why


def test_a_metrics_file_beyond_the_bound_is_damage_not_a_slow_read(results):
    from lrbench.plainfiles import MAX_METRICS_BYTES

    run = results.runs[0]
    with open(run.metrics, "ab") as fh:
        fh.truncate(MAX_METRICS_BYTES + 1)
    assert "holds more than" in run.damage()


# --- names reach the terminal as text ---------------------------------------------------------


def test_status_prints_folder_names_literally(cli, results):
    odd = results.results / "[bold red]boom\x1b[31m"
    (results.results / "h").rename(odd)
    status = cli("status", results.results)
    assert status.code == 0, status.output
    assert "[bold red]boom\\x1b[31m" in status.out and "\x1b" not in status.out


@pytest.mark.parametrize("name", [".hidden", "report"])
def test_a_sweep_name_status_or_report_would_miss_is_refused(cli, tmp_path, name):
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump({**CONFIG, "name": name}))
    result = cli("sweep", config, "--dry-run")
    assert result.code == 2 and "name" in result.err, result.output


# --- the sweep accounts for every run -----------------------------------------------------


def lrbench(*args: object, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "lrbench", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **kw,
    )


def worker_pids(parent: int) -> list[int]:
    """The sweep's worker processes (multiprocessing's spawned children)."""
    children = Path(f"/proc/{parent}/task/{parent}/children").read_text().split()
    return [int(c) for c in children if "spawn_main" in Path(f"/proc/{c}/cmdline").read_text()]


def two_workers_training(tmp_path: Path) -> subprocess.Popen:
    """A sweep of two workers, once the first metrics row is on disk (an event, not a sleep)."""
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump({**CONFIG, "seeds": 3}))
    sweep = lrbench("sweep", config, "--results", tmp_path / "r", "--device", "cpu",
                    "--jobs", "2", "--threads", "1")  # fmt: skip
    wait_for(lambda: epoch_rows(tmp_path / "r" / "h") >= 1)
    return sweep


@pytest.mark.slow
def test_a_killed_worker_leaves_its_runs_unfinished_and_the_sweep_exits_1(tmp_path):
    sweep = two_workers_training(tmp_path)
    victim = worker_pids(sweep.pid)[0]
    os.kill(victim, signal.SIGKILL)
    out, err = sweep.communicate(timeout=300)
    assert sweep.returncode == 1, err
    assert "killed by signal 9 (SIGKILL" in err and "1 unfinished" in err, out + err
    assert (
        "partial"
        in subprocess.run(
            [sys.executable, "-m", "lrbench", "status", tmp_path / "r"],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        ).stdout
    )
    assert "Traceback" not in err


@pytest.mark.slow
def test_ctrl_c_with_a_stopped_worker_exits_130_in_bounded_time(tmp_path):
    sweep = two_workers_training(tmp_path)
    stopped = worker_pids(sweep.pid)[0]
    os.kill(stopped, signal.SIGSTOP)
    sweep.send_signal(signal.SIGINT)
    _, err = sweep.communicate(timeout=120)
    assert sweep.returncode == 130, err
    assert "Traceback" not in err
    with pytest.raises(ProcessLookupError):
        os.kill(stopped, 0)


def _wait_until_it_catches(pid: int, sig: signal.Signals, timeout: float = 60.0) -> None:
    """Until the process has a handler for `sig` (SigCgt in /proc/PID/status): an event, not a
    guess at how long the interpreter takes to start on a loaded machine."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = Path(f"/proc/{pid}/status").read_text()
        caught = int(
            next(ln for ln in status.splitlines() if ln.startswith("SigCgt:")).split()[1], 16
        )
        if caught >> (int(sig) - 1) & 1:
            return
        time.sleep(0.005)
    raise AssertionError(f"process {pid} never caught signal {sig!r}")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_at_start_up_is_exit_130_without_a_traceback(tmp_path, sig):
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    sweep = lrbench("sweep", config, "--results", tmp_path / "r", "--device", "cpu")
    _wait_until_it_catches(sweep.pid, signal.SIGTERM)  # lrbench's first act: then it imports
    sweep.send_signal(sig)
    _, err = sweep.communicate(timeout=120)
    assert sweep.returncode == 130 and "Traceback" not in err, err


# --- every case one line, checked where the config is read --------------------------------------


LABELS = {
    "300 characters": ("x" * 300, "has 300 characters (1 to 64)"),
    "a NUL byte": ("a\0b", "holds '\\x00'"),
    "a newline": ("a\nb", "holds '\\n'"),
    "a Markdown cell's bar": ("a|b", "holds '|'"),
}


@pytest.mark.parametrize(("label", "says"), LABELS.values(), ids=list(LABELS))
def test_a_label_no_file_name_or_table_can_hold_is_one_line_at_dry_run(cli, tmp_path, label, says):
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump({**CONFIG, "schedules": [{"name": "cosine", "label": label}]}))
    result = cli("sweep", config, "--dry-run")
    assert result.code == 2 and "Traceback" not in result.output, result.output
    [line] = result.err.splitlines()
    assert "schedules[0].label" in line and says in line


def test_budgets_that_print_the_same_are_refused(cli, tmp_path):
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump({**CONFIG, "budgets": [0.5, 0.5000000001]}))
    result = cli("sweep", config, "--dry-run")
    assert result.code == 2 and "both print as 0.5" in result.err, result.output


USER_CODE = """
import math
import sys

from torch import nn


def holes(p):
    return math.nan if 0.4101 < p < 0.4102 else 1.0 - p


def exits(p):
    if p > 0.5:
        sys.exit(3)
    return 1.0


def eleven(num_classes):
    return nn.Sequential(nn.Flatten(), nn.LazyLinear(11))


def data():
    import torch

    x = torch.randint(0, 256, (24, 1, 8, 8), dtype=torch.uint8)
    y = torch.arange(24) % 10
    return (x[:16], y[:16]), (x[16:], y[16:])
"""


@pytest.fixture
def user_sweep(user_code, tmp_path):
    """A config next to the user's module (usercode.py); `write(**changes)` writes it."""
    (user_code / "usercode.py").write_text(USER_CODE)

    def write(**changes) -> Path:
        config = user_code / "sweep.yaml"
        config.write_text(yaml.safe_dump({**CONFIG, "seeds": 1, **changes}))
        return config

    return write


def test_a_user_schedule_is_checked_at_every_step_at_dry_run(cli, user_sweep):
    config = user_sweep(schedules=[{"import": "usercode:holes"}], batch_size=1, full_epochs=4)
    result = cli("sweep", config, "--dry-run")
    assert result.code == 2, result.output
    assert "returned nan at p=0.41015625" in result.err.splitlines()[-1]


def test_a_user_functions_system_exit_is_one_line_naming_it_not_exit_3(
    cli, user_sweep, tmp_path, one_thread
):
    config = user_sweep(schedules=[{"import": "usercode:exits"}], batch_size=1, full_epochs=1)
    result = cli("sweep", config, "--results", tmp_path / "r", "--device", "cpu", "--dry-run")
    assert result.code == 2 and "usercode:exits" in result.err and "SystemExit" in result.err


def test_an_imported_model_is_probed_on_the_imported_datas_shape(cli, user_sweep):
    config = user_sweep(
        dataset={"import": "usercode:data"}, models=[{"import": "usercode:eleven", "label": "e11"}]
    )
    result = cli("sweep", config, "--dry-run")
    assert result.code == 2, result.output
    assert "models[0]: e11 returned [2, 11]" in result.err and "[2, 10]" in result.err


def test_early_stopping_that_cannot_act_says_so_at_dry_run(cli, tmp_path):
    config = tmp_path / "sweep.yaml"
    early = {"metric": "train_loss", "patience": 2}
    config.write_text(yaml.safe_dump({**CONFIG, "snapshots": True, "early_stop": early}))
    result = cli("sweep", config, "--dry-run")
    assert result.code == 0, result.output
    assert "early stopping cannot stop the 3-epoch runs of 'cosine'" in result.out


def test_a_rerun_with_a_failed_run_does_not_say_all_finished(cli, results):
    run = results.runs[0]
    run.summary.write_text(json.dumps({"status": "failed", "error": "RuntimeError: boom"}))
    again = results.sweep(cli)
    assert again.code == 0, again.output
    assert "nothing to train: 1 of 2 runs of h are finished, 1 failed" in again.err
    assert "all 2 runs" not in again.err


def test_the_report_names_an_imported_model_by_its_label(tmp_path):
    from runfolders import write_run

    from lrbench.report.load import load_runs

    model = {"import": "mynets:small_cnn", "label": "cnn32", "args": {}, "source": "abc"}
    write_run(tmp_path, model=model)
    loaded = load_runs([tmp_path / "sweep"])
    assert list(loaded.runs["model"]) == ["cnn32"]


@pytest.mark.slow
def test_a_lock_a_stopped_orphan_worker_holds_is_taken_over(cli, tmp_path, one_thread):
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump({**CONFIG, "seeds": 3}))
    results = tmp_path / "r"
    sweep = lrbench("sweep", config, "--results", results, "--device", "cpu",
                    "--jobs", "2", "--threads", "1")  # fmt: skip
    wait_for(lambda: epoch_rows(results / "h") >= 1)
    stopped = worker_pids(sweep.pid)[0]
    os.kill(stopped, signal.SIGSTOP)
    sweep.kill()
    sweep.wait()  # not communicate(): the stopped worker holds the pipes open
    sweep.stdout.close()
    sweep.stderr.close()

    again = cli("sweep", config, "--results", results, "--device", "cpu")
    assert again.code == 0 and "held by another sweep" not in again.err, again.output
    assert all(r.state() == "done" for r in run_dirs(results / "h"))
    wait_for(
        lambda: (
            not Path(f"/proc/{stopped}").exists()
            or "Z" in Path(f"/proc/{stopped}/stat").read_text().split(")")[1][:3]
        ),
        30,
    )


def test_an_interrupt_after_a_packs_last_epoch_counts_its_runs_done(results, monkeypatch):
    """SIGINT between a pack's summaries and the worker's end messages: the runs are done."""
    import lrbench.executors.local as local
    from lrbench.config import expand, load_config
    from lrbench.train import Runtime

    summaries = {r.path.name: r.summary.read_bytes() for r in results.runs}
    for run in results.runs:
        run.summary.unlink()

    def trains_then_interrupted(worker, todo, finished, emit, runtime, datasets):
        for _, path in todo:
            (path / "summary.json").write_bytes(summaries[path.name])
        raise KeyboardInterrupt

    monkeypatch.setattr(local, "_train_pack", trains_then_interrupted)
    specs = expand(load_config(results.config))
    pack = [(s, results.results / "h" / "runs" / s.run_id) for s in specs]
    ended: dict[str, str | None] = {}
    local.work(
        0,
        "cpu",
        [pack, None],
        lambda m: ended.update({m.run_id: m.state}) if m.kind == "end" else None,
        Runtime(),
    )
    assert ended == {s.run_id: "done" for s in specs}


# --- a checkpoint's run is judged by all three commands, without torch ---------------------------


def swap_checkpoints(results, trained) -> dict[RunDir, str]:
    """The attack: two runs killed in epoch 3, their checkpoint.pt swapped. Each run with the
    reason its verdict must give."""
    a, b = results.runs
    reasons = {}
    for run, other in ((a, b), (b, a)):
        killed_in_epoch_3(run, trained)
        run.checkpoint.write_bytes(trained.epoch2[other.path.name])
        reasons[run] = (
            f"checkpoint.pt belongs to another run (its run_id is {other.path.name!r}, "
            f"not {run.path.name!r})"
        )
    return reasons


def says_damaged(cli, results, tmp_path, reasons: dict[RunDir, str]) -> None:
    """status and report name each run damaged, in its verdict's words."""
    status = cli("status", results.results)
    assert status.code == 0, status.output
    report = cli("report", results.results, "--out", tmp_path / "report")
    for run, why in reasons.items():
        assert run.verdict().state == "damaged" and run.damage() == why
        assert f"damaged {run.path}: {why}" in status.out.splitlines(), status.out
        assert f"  {run.path}: damaged: {why}; {RETRAIN}" in report.err.splitlines(), report.err


@pytest.mark.parametrize("retry", [[], ["--retry-failed"]], ids=["sweep", "retry-failed"])
def test_swapped_checkpoints_are_damaged_in_the_same_words_for_status_report_and_sweep(
    cli, results, trained, tmp_path, retry
):
    reasons = swap_checkpoints(results, trained)
    says_damaged(cli, results, tmp_path, reasons)
    dry = cli("sweep", results.config, "--results", results.results, "--dry-run", *retry)
    assert dry.code == 0 and "damaged 2" in dry.out, dry.output
    assert dry.out.count("damaged (to run from the start)") == 2, dry.out

    swept = results.sweep(cli, *retry)

    assert swept.code == 0, swept.output
    for run, why in reasons.items():
        assert f"damaged {run.path}: {why}; training it again from the start" in swept.err
        assert run.state() == "done" and metrics_rows(run) == trained.rows(run.path.name)


@pytest.mark.parametrize("epoch", [-2, "x"])
def test_a_checkpoint_with_an_impossible_epoch_is_damaged_for_status_and_report(
    cli, results, trained, tmp_path, epoch
):
    import torch

    run = results.runs[0]
    killed_in_epoch_3(run, trained)
    state = torch.load(run.checkpoint, weights_only=True)
    torch.save({**state, "epoch": epoch}, run.checkpoint)
    why = (
        f"checkpoint.pt records epoch {epoch!r} and step {state['step']!r}, which this run "
        "never reaches"
    )
    says_damaged(cli, results, tmp_path, {run: why})


def test_a_checkpoint_of_an_older_version_without_its_run_still_resumes(cli, results, trained):
    import torch

    run = results.runs[0]
    killed_in_epoch_3(run, trained)
    state = torch.load(run.checkpoint, weights_only=True)
    for key in ("run_id", "spec_sha256", "seed"):
        del state[key]
    torch.save(state, run.checkpoint)
    kept = run.metrics.read_text().splitlines()[:3]  # header and epochs 1-2, timings included
    assert run.verdict().state == "partial"

    assert results.sweep(cli).code == 0

    assert run.metrics.read_text().splitlines()[:3] == kept  # resumed, not trained again
    assert run.state() == "done" and metrics_rows(run) == trained.rows(run.path.name)


def test_status_judges_checkpoints_without_torch_and_runs_none_of_their_code(
    results, trained, tmp_path
):
    import torch
    from test_hardening import Payload
    from test_light_commands import _light

    swap_checkpoints(results, trained)
    crafted = tmp_path / "crafted"
    shutil.copytree(results.results, crafted)
    marker = tmp_path / "code-ran"
    run = run_dirs(crafted / "h")[0]
    torch.save({"model": Payload(marker), "optimizer": {}, "epoch": 2, "step": 4}, run.checkpoint)
    assert run.verdict().state == "partial" and not marker.exists()

    done = _light([["status", str(results.results)], ["status", str(crafted)]])

    assert done.returncode == 0, done.stderr
    assert not marker.exists(), "the checkpoint's code ran"


# --- a worker that exits with a code ---------------------------------------------------------


EXITS_IN_A_WORKER = """
import multiprocessing
import os

from torch import nn


class ExitsWhileTraining(nn.Module):
    \"\"\"Exits with code 3 at its first training step in a sweep's worker process (what a
    library calling exit() does); the sweep's own probe of it runs in the parent.\"\"\"

    def __init__(self, num_classes):
        super().__init__()
        self.net = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, num_classes))

    def forward(self, x):
        if self.training and multiprocessing.parent_process() is not None:
            os._exit(3)
        return self.net(x)
"""


@pytest.mark.slow
def test_a_worker_exiting_with_a_code_fails_its_run_and_the_others_finish(user_code, tmp_path):
    (user_code / "exits.py").write_text(EXITS_IN_A_WORKER)
    config = user_code / "sweep.yaml"
    crasher = {"import": "exits:ExitsWhileTraining", "label": "exits"}
    config.write_text(yaml.safe_dump({**CONFIG, "seeds": 1, "models": ["resnet8", crasher]}))

    sweep = lrbench("sweep", config, "--results", tmp_path / "r", "--device", "cpu",
                    "--jobs", "2", "--threads", "1", "--pack", "1")  # fmt: skip
    _, err = sweep.communicate(timeout=300)

    assert sweep.returncode == 1, err
    assert "1 done, 0 diverged, 1 failed" in err and "Traceback" not in err, err
    runs = {r.path.name.split("-")[0]: r for r in run_dirs(tmp_path / "r" / "h")}
    assert runs["resnet8"].state() == "done"
    failed = runs["exits"].verdict()
    assert failed.state == "failed" and re.fullmatch(r"worker \d exited with code 3", failed.reason)


def test_a_checkpoint_is_read_for_its_run_within_a_bound(results, trained, monkeypatch):
    import lrbench.checkpoint_identity as ci

    a, b = swap_checkpoints(results, trained)
    assert ci.read_header(a.checkpoint)["run_id"] == b.path.name
    monkeypatch.setattr(ci, "MAX_READ_BYTES", 64)  # below its zip directory and data.pkl
    assert ci.read_header(a.checkpoint) is None
    assert a.verdict().state == "partial"  # unread, not judged: resuming says what it finds
