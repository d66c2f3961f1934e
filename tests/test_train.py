"""The training loop: deterministic, exactly resumable after kill -9, and careful with folders."""

import csv
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import helpers
import pytest
from helpers import CPU, kill_when, metrics_rows

from lrbench.errors import UserError
from lrbench.results import RunDir
from lrbench.specs import DatasetSpec, OptimizerSpec
from lrbench.train import train_run

tiny_spec = functools.partial(
    helpers.spec,
    dataset=DatasetSpec(name="synthetic", limit_train=320),
    full_epochs=3,
    epochs=3,
    batch_size=64,
)


def run_cli(out: Path, *extra: str) -> subprocess.Popen:
    args = [
        sys.executable, "-m", "lrbench", "run", "--model", "resnet8", "--dataset", "synthetic",
        "--limit-train", "1280", "--batch-size", "64", "--lr", "0.05", "--weight-decay", "5e-4",
        "--schedule", "rex", "--epochs", "4", "--seed", "0", "--device", "cpu", "--out", str(out),
        *extra,
    ]  # fmt: skip
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_run_writes_the_documented_folder(tmp_path):
    summary = train_run(tiny_spec(), tmp_path / "run", CPU)
    run = tmp_path / "run"
    assert summary["status"] == "done" and summary["epochs_completed"] == 3
    spec = json.loads((run / "spec.json").read_text())
    for key in (
        "model",
        "dataset",
        "optimizer",
        "schedule",
        "budget",
        "epochs",
        "seed",
        "batch_size",
    ):
        assert key in spec
    assert spec["provenance"]["device"] == "cpu" and spec["provenance"]["torch"]
    assert spec["run_id"] == tiny_spec().run_id
    rows = list(csv.DictReader((run / "metrics.csv").read_text().splitlines()))
    assert list(rows[0]) == [
        "epoch", "step", "lr", "momentum", "train_loss", "train_acc",
        "test_loss", "test_acc", "epoch_time_s",
    ]  # fmt: skip
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert [int(r["step"]) for r in rows] == [5, 10, 15]
    assert all(0 <= float(r["test_acc"]) <= 1 for r in rows)
    assert (run / "checkpoint.pt").exists()


def test_the_rate_in_the_csv_is_the_schedules(tmp_path):
    from lrbench.schedules import build_schedule

    train_run(tiny_spec(), tmp_path, CPU)
    table = 0.05 * build_schedule({"name": "rex", "beta": 0.5}).multipliers(15, 5)
    lrs = [float(r["lr"]) for r in metrics_rows(tmp_path)]
    assert lrs == pytest.approx([table[4], table[9], table[14]], rel=1e-12)


def test_same_spec_and_seed_give_identical_metrics(tmp_path):
    train_run(tiny_spec(), tmp_path / "a", CPU)
    train_run(tiny_spec(), tmp_path / "b", CPU)
    assert metrics_rows(tmp_path / "a") == metrics_rows(tmp_path / "b")


def test_a_validation_split_adds_its_columns(tmp_path):
    spec = tiny_spec(
        dataset=DatasetSpec(name="synthetic", limit_train=320, val_fraction=0.2), epochs=1
    )
    train_run(spec, tmp_path, CPU)
    row = metrics_rows(tmp_path)[0]
    assert {"val_loss", "val_acc"} <= set(row)


def test_a_finished_run_is_not_trained_again(tmp_path):
    spec = tiny_spec(epochs=1)
    first = train_run(spec, tmp_path, CPU)
    mtime = (tmp_path / "metrics.csv").stat().st_mtime_ns
    assert train_run(spec, tmp_path, CPU) == first
    assert (tmp_path / "metrics.csv").stat().st_mtime_ns == mtime


def test_a_run_stopped_between_its_row_and_its_checkpoint_says_where_it_really_resumes(tmp_path):
    """Epoch 2's row is written, its checkpoint is not: the run resumes after epoch 1 (the
    checkpoint's), says so, trains epoch 2 again and ends equal to an untouched run."""

    def stop_at_epoch_two(event):
        if event.kind == "epoch" and event.epoch == 2:
            raise KeyboardInterrupt  # after the row, before the checkpoint is submitted

    spec = tiny_spec()
    with pytest.raises(KeyboardInterrupt):
        train_run(spec, tmp_path / "run", CPU, on_event=stop_at_epoch_two)
    assert len(metrics_rows(tmp_path / "run")) == 2
    events = []
    train_run(spec, tmp_path / "run", CPU, on_event=events.append)
    resumed = [(e.epoch, e.step, e.row) for e in events if e.kind == "resume"]
    assert resumed == [(1, 5, {"run_id": spec.run_id})]
    assert [e.epoch for e in events if e.kind == "epoch"] == [2, 3]
    train_run(spec, tmp_path / "untouched", CPU)
    assert metrics_rows(tmp_path / "run") == metrics_rows(tmp_path / "untouched")


def test_a_folder_holding_another_run_is_refused_untouched(tmp_path):
    train_run(tiny_spec(epochs=1), tmp_path, CPU)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    with pytest.raises(UserError, match="holds a different run"):
        train_run(tiny_spec(epochs=1, seed=1), tmp_path, CPU)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


def test_a_folder_of_other_files_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty"):
        train_run(tiny_spec(epochs=1), tmp_path, CPU)
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_a_non_finite_loss_stops_the_run_as_diverged(tmp_path):
    spec = tiny_spec(optimizer=OptimizerSpec(name="sgd", lr=1e6, momentum=0.9))
    summary = train_run(spec, tmp_path, CPU)
    assert summary["status"] == "diverged"
    assert summary["epochs_completed"] < 3
    assert json.loads((tmp_path / "summary.json").read_text())["status"] == "diverged"


def test_kill_minus_nine_in_epoch_two_then_resume_equals_an_uninterrupted_run(tmp_path):
    clean = run_cli(tmp_path / "clean")
    assert clean.wait(timeout=300) == 0, clean.stderr.read()

    victim = run_cli(tmp_path / "killed")
    checkpoint = tmp_path / "killed" / "checkpoint.pt"
    assert kill_when(victim, checkpoint.exists, "checkpoint of epoch one")  # in epoch two
    assert RunDir(tmp_path / "killed").state() == "partial"
    assert len(metrics_rows(tmp_path / "killed")) < 4

    resumed = run_cli(tmp_path / "killed")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read()
    assert metrics_rows(tmp_path / "killed") == metrics_rows(tmp_path / "clean")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "resnet21"], "got 21"),
        (["--model", "resnet2"], "resnet"),
        (["--dataset", "cifar1O"], "cifar10"),
        (["--optimizer", "lamb"], "optimizer"),
        (["--dataset", "imagefolder", "--data-root", "/nonexistent/cifar"], "/nonexistent/cifar"),
        (["--schedule", "rexx"], "rex"),
        (["--set", "beta=2"], "beta"),
        (["--epochs", "0"], "epochs"),
        (["--device", "cuda:7"], "cuda"),
    ],
)
def test_bad_input_is_one_line_and_exit_two(cli, tmp_path, args, message):
    out = tmp_path / "run"
    result = cli("run", "--dataset", "synthetic", "--epochs", "1", "--out", out, *args)
    assert result.code == 2, result.output
    assert message in result.err
    assert len(result.err.strip().splitlines()) == 1 or "Usage" in result.err
    assert "Traceback" not in result.output
    assert not (out / "metrics.csv").exists()


def test_an_unreadable_archive_is_exit_two(tmp_path):
    archive = tmp_path / "cifar.tar.xz"
    archive.write_bytes(b"not an archive at all")
    proc = subprocess.run(
        [sys.executable, "-m", "lrbench", "run", "--dataset", str(archive), "--epochs", "1",
         "--device", "cpu", "--out", str(tmp_path / "run")],
        capture_output=True, text=True, env={**os.environ, "LRBENCH_DATA": str(tmp_path / "cache")},
    )  # fmt: skip
    assert proc.returncode == 2
    assert str(archive) in proc.stderr
    assert "Traceback" not in proc.stderr


def test_snapshots_record_the_ensemble_at_each_cycle_end(tmp_path):
    spec = tiny_spec(
        schedule={"name": "sgdr", "label": "sgdr", "cycles": 2, "t_mult": 1.0},
        epochs=4,
        full_epochs=4,
        snapshots=True,
    )
    train_run(spec, tmp_path, CPU)
    rows = list(csv.DictReader((tmp_path / "metrics.csv").read_text().splitlines()))
    assert [r["ensemble_size"] for r in rows] == ["", "1", "", "2"]
    assert 0 <= float(rows[-1]["ensemble_test_acc"]) <= 1


def test_schedule_free_sgd_trains_and_evaluates_at_the_average(tmp_path):
    pytest.importorskip("schedulefree")
    spec = tiny_spec(
        optimizer=OptimizerSpec(name="sgd_schedulefree", lr=0.05, momentum=0.9),
        schedule={"name": "constant", "label": "none"},
        epochs=2,
    )
    summary = train_run(spec, tmp_path, CPU)
    assert summary["status"] == "done" and 0 <= summary["final"]["test_acc"] <= 1


def test_a_rate_of_1000_diverges_alone_and_in_a_pack(tmp_path):
    """SGD at lr 1000 on resnet8 ends with NaN evaluation losses: such a run is `diverged`,
    never `done`, whether it trains alone or beside a sane run in a pack."""
    from lrbench.train import train_runs

    wild = tiny_spec(optimizer=tiny_spec().optimizer.model_copy(update={"lr": 1000.0}))
    assert train_run(wild, tmp_path / "alone", CPU)["status"] == "diverged"
    sane = tiny_spec(seed=1)
    summaries = train_runs([sane, wild], [tmp_path / "p0", tmp_path / "p1"], CPU)
    assert [s["status"] for s in summaries] == ["done", "diverged"]
