"""Your own task: a loss by import path, your tensors as they are, your model by its args."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from helpers import metrics_rows

from lrbench.config import expand, load_config

TASK = """\
import torch
from torch import nn


def waves(n=600, dim=4):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(n, dim, generator=gen)
    y = torch.sin(x.sum(1)) + 0.05 * torch.randn(n, generator=gen)
    return (x[:500], y[:500]), (x[500:], y[500:])


def mlp(dim=4, hidden=16):
    return nn.Sequential(nn.Linear(dim, hidden), nn.Tanh(), nn.Linear(hidden, 1), nn.Flatten(0))


def squared_error(outputs, targets):
    return (outputs - targets) ** 2
"""

CONFIG = """\
name: regression
dataset: {import: "mytask:waves", val_fraction: 0.1}
models: [{import: "mytask:mlp", label: mlp16, args: {hidden: 16}}]
loss: {import: "mytask:squared_error"}
optimizers: [{name: adam, lr: 1.0e-2}]
full_epochs: 2
budgets: [1.0]
seeds: 2
batch_size: 50
schedules: [cosine, constant]
"""


@pytest.fixture
def study(user_code: Path) -> Path:
    (user_code / "mytask.py").write_text(TASK)
    (user_code / "sweep.yaml").write_text(CONFIG)
    return user_code


def test_a_regression_task_by_import_path_trains(study, cli, one_thread):
    result = cli("sweep", study / "sweep.yaml", "--results", study / "results", "--device", "cpu")
    assert result.code == 0, result.err
    runs = sorted((study / "results" / "regression" / "runs").iterdir())
    assert len(runs) == 4
    first = metrics_rows(runs[0])
    assert list(first[0]) == ["epoch", "step", "lr", "momentum", "train_loss", "test_loss",
                              "val_loss"]  # fmt: skip
    assert float(first[-1]["train_loss"]) < float(first[0]["train_loss"])
    spec = json.loads((runs[0] / "spec.json").read_text())
    assert spec["metric"] == "loss" and spec["loss"]["import"] == "mytask:squared_error"
    assert spec["dataset"]["tensors"] is True
    summary = json.loads((runs[0] / "summary.json").read_text())
    assert set(summary["final"]) == {"test_loss", "val_loss"}


def test_status_and_report_work_with_the_module_deleted(study, cli, one_thread):
    cli("sweep", study / "sweep.yaml", "--results", study / "results", "--device", "cpu")
    (study / "mytask.py").unlink()
    shutil.rmtree(study / "__pycache__", ignore_errors=True)
    result = cli("status", study / "results")
    assert result.code == 0, result.err
    assert "4" in result.out and "done" in result.out
    out = study / "report"
    result = cli("report", study / "results" / "regression", "--out", out)
    assert result.code == 0, result.err
    with open(out / "summary.csv") as fh:
        summary = list(csv.DictReader(fh))
    assert {r["schedule"] for r in summary} == {"cosine", "constant"}
    assert {r["metric"] for r in summary} == {"loss"}  # ranked by test loss, lower is better
    assert all(float(r["mean"]) > 0 for r in summary)


def test_own_loss_runs_pack_exactly(study, cli, one_thread):
    alone = study / "alone"
    packed = study / "packed"
    assert cli("sweep", study / "sweep.yaml", "--results", alone, "--device", "cpu").code == 0
    result = cli("sweep", study / "sweep.yaml", "--results", packed, "--device", "cpu",
                 "--pack", "4")  # fmt: skip
    assert result.code == 0, result.err
    for run in (alone / "regression" / "runs").iterdir():
        assert metrics_rows(run) == metrics_rows(packed / "regression" / "runs" / run.name)


def test_the_metric_key_names_what_reports_rank_by_and_not_the_run(study):
    (study / "ranked.yaml").write_text(CONFIG + "metric: val_loss\n")
    plain = expand(load_config(study / "sweep.yaml"))
    ranked = expand(load_config(study / "ranked.yaml"))
    assert [s.run_id for s in plain] == [s.run_id for s in ranked]
    assert {s.default_metric for s in plain} == {"loss"}
    assert {s.default_metric for s in ranked} == {"val_loss"}


@pytest.mark.parametrize(
    ("change", "says"),
    [
        (("dataset: {import: \"mytask:waves\", val_fraction: 0.1}", "dataset: synthetic"),
         "your own loss trains on your own data"),
        (("models: [{import: \"mytask:mlp\", label: mlp16, args: {hidden: 16}}]",
          "models: [resnet8]"), "with your own loss, models are your own factories"),
        (("mytask:squared_error", "mytask:squared_eror"), "has no 'squared_eror'"),
        (("schedules: [cosine, constant]",
          "schedules: [cosine]\nearly_stop: {metric: val_acc, patience: 2}"),
         "your own loss records no accuracy"),
    ],
)  # fmt: skip
def test_each_bad_own_task_is_one_line_and_exit_2(study, cli, change, says):
    (study / "sweep.yaml").write_text(CONFIG.replace(*change))
    result = cli("sweep", study / "sweep.yaml", "--dry-run", "--results", study / "results")
    assert result.code == 2 and result.err.count("\n") == 1 and says in result.err, result.err
