"""Live curves: the TensorBoard log a run writes holds its metrics.csv, read back by TensorBoard's
own event reader; it is never part of a run and never stops one."""

from __future__ import annotations

import errno
import functools
import json
import math
import sys
import warnings
from pathlib import Path

import helpers
import numpy as np
import pytest
from helpers import CPU, metrics_rows
from sweepconfigs import tiny
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.summary.writer.record_writer import RecordWriter

from lrbench.config import expand, parse_config
from lrbench.errors import UserError
from lrbench.runfiles import read_metrics
from lrbench.schedules import build_schedule
from lrbench.specs import DatasetSpec, RunSpec
from lrbench.train import Runtime, train_run, train_runs
from lrbench.train import loop as train_loop

pytestmark = pytest.mark.usefixtures("one_thread")

LOGGING = Runtime(device="cpu", log="tensorboard")
PER_STEP = ("lr", "momentum")
SCHEDULES = [
    {"name": "onecycle", "label": "onecycle"},  # moves momentum every step
    {"name": "plateau", "label": "plateau", "factor": 0.5, "patience": 0, "threshold": 1.0},
    {"name": "rex", "label": "rex", "beta": 0.5},
]


spec = functools.partial(
    helpers.spec, dataset=DatasetSpec(name="synthetic", limit_train=128, limit_test=64)
)


def pack(**changes) -> list[RunSpec]:
    """Three runs of one cell, with a validation split and snapshots (every column)."""
    data = DatasetSpec(name="synthetic", limit_train=128, limit_test=64, val_fraction=0.25)
    return [
        spec(schedule=s, seed=i, dataset=data, snapshots=True, epochs=3, full_epochs=3, **changes)
        for i, s in enumerate(SCHEDULES)
    ]


def scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar series of a log folder as TensorBoard reads it: (step, value) in order."""
    reader = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    reader.Reload()
    return {
        tag: [(e.step, e.value) for e in reader.Scalars(tag)] for tag in reader.Tags()["scalars"]
    }


def f32(value: float) -> float:
    return float(np.float32(value))


def same(a: float, b: float) -> bool:
    return a == b or (math.isnan(a) and math.isnan(b))


def assert_log_holds_metrics(log: Path, run: Path) -> dict[str, list[tuple[int, float]]]:
    """Each metrics.csv column once per row at the row's step, and the rate and momentum of
    every step once, agreeing with the rows at their steps; returns the series."""
    rows = read_metrics(run / "metrics.csv").rows
    series = scalars(log)
    columns = {k for r in rows for k, v in r.items() if v != ""} - {"epoch", "step", *PER_STEP}
    assert set(series) == columns | set(PER_STEP)
    for column in columns:
        expected = [(r["step"], f32(r[column])) for r in rows if r[column] != ""]
        assert len(series[column]) == len(expected), column
        assert all(
            s == t and same(v, w) for (s, v), (t, w) in zip(series[column], expected, strict=True)
        ), column
    for tag in PER_STEP:
        assert [s for s, _ in series[tag]] == list(range(1, rows[-1]["step"] + 1))
        at = dict(series[tag])
        assert [at[r["step"]] for r in rows] == [f32(r[tag]) for r in rows]
    return series


def tensorboard_warnings(caught: list[warnings.WarningMessage]) -> list[str]:
    return [str(w.message) for w in caught if "tensorboard" in str(w.message).lower()]


# --- what the log holds ----------------------------------------------------------------------


def test_lrbench_run_logs_its_metrics_under_out_tensorboard(cli, tmp_path):
    out = tmp_path / "one"
    result = cli(
        "run", "--model", "resnet8", "--dataset", "synthetic", "--limit-train", "128",
        "--limit-test", "64", "--batch-size", "32", "--epochs", "2", "--schedule", "onecycle",
        "--device", "cpu", "--log", "tensorboard", "--out", out,
    )  # fmt: skip
    assert result.code == 0, result.output
    series = assert_log_holds_metrics(out / "tensorboard", out)
    schedule = build_schedule({"name": "onecycle"})
    assert [v for _, v in series["momentum"]] == [f32(m) for m in schedule.momenta(8, 4)]
    assert [v for _, v in series["lr"]] == [f32(0.1 * m) for m in schedule.multipliers(8, 4)]


def test_each_run_of_a_pack_logs_its_own_curves_under_the_sweep(tmp_path):
    specs = pack()
    runs = [tmp_path / "sweep" / "runs" / s.run_id for s in specs]
    assert [s["status"] for s in train_runs(specs, runs, LOGGING)] == ["done"] * 3
    logs = [tmp_path / "sweep" / "tensorboard" / s.run_id for s in specs]
    onecycle, plateau, rex = (
        assert_log_holds_metrics(log, run) for log, run in zip(logs, runs, strict=True)
    )
    assert {"val_acc", "ensemble_test_acc"} <= set(rex)
    spe = json.loads((runs[0] / "spec.json").read_text())["steps_per_epoch"]
    steps = 3 * spe
    momenta = build_schedule(SCHEDULES[0]).momenta(steps, spe)
    assert [v for _, v in onecycle["momentum"]] == [f32(m) for m in momenta]
    # the rates the steps used: plateau halves the rate after every epoch here
    decayed = [0.05 * 0.5 ** ((s - 1) // spe) for s in range(1, steps + 1)]
    assert [v for _, v in plateau["lr"]] == [f32(r) for r in decayed]
    rex_rates = 0.05 * build_schedule(SCHEDULES[2]).multipliers(steps, spe)
    assert [v for _, v in rex["lr"]] == [f32(r) for r in rex_rates]


def test_a_resumed_pack_logs_each_epoch_once_as_metrics_csv_keeps_it(tmp_path, monkeypatch):
    """Killed between the runs' checkpoint writes, two runs had logged epochs past their
    checkpoint; after the resume TensorBoard shows each epoch once, equal to metrics.csv."""
    specs = pack()
    runs = [tmp_path / "sweep" / "runs" / s.run_id for s in specs]
    saves = {"n": 0}
    real_write = train_loop.write_checkpoint

    def write_then_die(*args):
        real_write(*args)
        saves["n"] += 1
        if saves["n"] == 4:  # epoch 2: run 0 saved, runs 1 and 2 not
            raise KeyboardInterrupt

    monkeypatch.setattr(train_loop, "write_checkpoint", write_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_runs(specs, runs, LOGGING)
    monkeypatch.setattr(train_loop, "write_checkpoint", real_write)
    logs = [tmp_path / "sweep" / "tensorboard" / s.run_id for s in specs]
    assert len(scalars(logs[1])["test_acc"]) == 3  # logged beyond its epoch-1 checkpoint

    train_runs(specs, runs, LOGGING)
    for log, run in zip(logs, runs, strict=True):
        assert len(list(log.glob("events.out.tfevents.*"))) == 2
        assert_log_holds_metrics(log, run)


# --- what the log is not ---------------------------------------------------------------------


def test_logging_changes_no_run_id_and_no_number(tmp_path):
    on = [s.run_id for s in expand(parse_config(tiny(log="tensorboard")))]
    assert on == [s.run_id for s in expand(parse_config(tiny()))]
    train_run(spec(), tmp_path / "on", LOGGING)
    train_run(spec(), tmp_path / "off", CPU)
    assert not (tmp_path / "off" / "tensorboard").exists()

    assert metrics_rows(tmp_path / "on") == metrics_rows(tmp_path / "off")


def full_disk(monkeypatch, tmp_path):
    """Writes fail once the log's header is written: the first epoch's events find no space."""
    written = {"n": 0}
    real = RecordWriter.write

    def write(self, data):
        written["n"] += 1
        if written["n"] > 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(self, data)

    monkeypatch.setattr(RecordWriter, "write", write)
    return "No space left on device"


def no_folder(monkeypatch, tmp_path):
    (tmp_path / "sweep" / "tensorboard").write_text("a file where the log's folder goes")
    return "sweep/tensorboard"


def no_package(monkeypatch, tmp_path):
    for name in [n for n in sys.modules if n == "tensorboard" or n.startswith("tensorboard.")]:
        monkeypatch.setitem(sys.modules, name, None)
    return "pip install 'lrbench[tensorboard]'"


@pytest.mark.parametrize("breakage", [full_disk, no_folder, no_package])
def test_a_log_that_cannot_be_written_is_one_warning_and_the_run_trains_on(
    tmp_path, monkeypatch, breakage
):
    (tmp_path / "sweep" / "runs").mkdir(parents=True)
    said = breakage(monkeypatch, tmp_path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = train_run(spec(), tmp_path / "sweep" / "runs" / "r", LOGGING)
    assert summary["status"] == "done"
    assert len(read_metrics(tmp_path / "sweep" / "runs" / "r" / "metrics.csv").rows) == 2
    [message] = tensorboard_warnings(caught)
    assert said in message


def test_a_bad_log_choice_is_one_line(cli, tmp_path):
    result = cli("run", "--log", "tensorbord", "--out", tmp_path / "r")
    assert result.code == 2
    assert result.err.strip() == (
        "error: --log: 'tensorbord' is not one of tensorboard (did you mean 'tensorboard'?)"
    )
    with pytest.raises(UserError, match=r"log: .*got 'wandb'"):
        parse_config(tiny(log="wandb"))
