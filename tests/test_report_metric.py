"""Reports in any metric: a run is judged by its spec.json `metric` (or --metric), lower or higher
is better as the metric says, and a report over several kinds shows each setting in its own."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from runfolders import write_run

from lrbench.report import analyse, build_report

LOSS = {"metric": "loss"}


def _loss_cell(root: Path, losses: dict[str, list[float | None]], **kwargs) -> None:
    """One language-model-like cell: {schedule: [final test_loss per seed]}, None = diverged."""
    for schedule, seeds in losses.items():
        for seed, loss in enumerate(seeds, start=1):
            write_run(
                root,
                schedule=schedule,
                seed=seed,
                test_loss=1.0 if loss is None else loss,
                status="diverged" if loss is None else "done",
                spec=LOSS,
                dataset="text",
                model="gpt4-128",
                optimizer="adamw",
                accuracy=False,
                **kwargs,
            )


def test_the_lowest_loss_wins(tmp_path: Path) -> None:
    _loss_cell(tmp_path, {"rex": [1.50, 1.52], "cosine": [1.60, 1.61], "step": [1.70, 1.72]})
    summary = analyse([tmp_path]).summary.set_index("schedule")
    assert summary["rank"].to_dict() == {"cosine": 2, "rex": 1, "step": 3}
    assert summary.loc["rex", "p_top1"] == 1.0


def test_equal_losses_tie_for_top1(tmp_path: Path) -> None:
    _loss_cell(tmp_path, {"rex": [1.5, 1.6], "wsd": [1.6, 1.5], "step": [1.9, 1.9]})
    summary = analyse([tmp_path]).summary.set_index("schedule")
    assert summary["rank"].to_dict() == {"rex": 1, "step": 3, "wsd": 1}


def test_a_diverged_seed_ranks_below_any_finished_loss(tmp_path: Path) -> None:
    _loss_cell(tmp_path, {"rex": [1.0, None], "step": [3.0, 3.1]})
    summary = analyse([tmp_path]).summary.set_index("schedule")
    assert summary["rank"].to_dict() == {"rex": 2, "step": 1}


def test_runs_without_accuracy_load_and_show_their_loss(tmp_path: Path) -> None:
    _loss_cell(tmp_path, {"rex": [1.25, 1.35], "step": [1.75, 1.85]})
    report = build_report([tmp_path / "sweep"], tmp_path / "out")
    assert not [p for p in report.problems if p.kind == "skipped"]
    assert "text · gpt4-128 · adamw — test loss (nats)" in report.markdown
    assert "**1.300 ± 0.071**" in report.markdown  # lowest loss bold, in nats
    rows = {r["schedule"]: r for r in csv.DictReader(io.StringIO(report.summary_csv))}
    assert rows["rex"]["metric"] == "loss"
    assert float(rows["rex"]["mean"]) == pytest.approx(1.30)
    assert float(rows["rex"]["ci_low"]) <= 1.30 <= float(rows["rex"]["ci_high"])
    assert rows["rex"]["mean_test_acc"] == ""  # the accuracy columns hold accuracy only


def test_bits_per_character_divide_nats_by_ln2(tmp_path: Path) -> None:
    _loss_cell(tmp_path, {"rex": [0.6931471805599453, 0.6931471805599453], "step": [2.0, 2.0]})
    report = build_report([tmp_path / "sweep"], tmp_path / "out", metric="bpc")
    rows = {r["schedule"]: r for r in csv.DictReader(io.StringIO(report.summary_csv))}
    assert float(rows["rex"]["mean"]) == pytest.approx(1.0)


def test_metric_option_ranks_every_setting_by_that_column(tmp_path: Path) -> None:
    # accuracy and loss disagree on purpose: --metric loss must follow the loss
    write_run(tmp_path, schedule="rex", test_acc=0.95, test_loss=2.0)
    write_run(tmp_path, schedule="step", test_acc=0.80, test_loss=1.0)
    by_error = analyse([tmp_path]).summary.set_index("schedule")["rank"].to_dict()
    by_loss = analyse([tmp_path], metric="loss").summary.set_index("schedule")["rank"].to_dict()
    assert by_error == {"rex": 1, "step": 2}
    assert by_loss == {"rex": 2, "step": 1}


def test_a_run_missing_its_metric_column_is_skipped_and_named(tmp_path: Path) -> None:
    _loss_cell(tmp_path, {"rex": [1.0]})
    found = analyse([tmp_path], metric="error")
    reasons = [p.reason for p in found.problems]
    assert any("has no test_acc column (metric error)" in r for r in reasons)


def test_a_mixed_report_shows_each_setting_in_its_metric_and_counts_finishes_across(
    tmp_path: Path,
) -> None:
    _loss_cell(tmp_path, {"rex": [1.5, 1.5], "step": [1.7, 1.7]}, sweep="lm")
    for seed in (1, 2):  # image classification: step wins here
        write_run(tmp_path, sweep="img", schedule="rex", seed=seed, test_acc=0.80)
        write_run(tmp_path, sweep="img", schedule="step", seed=seed, test_acc=0.90)
    report = build_report([tmp_path], tmp_path / "out")
    assert "text · gpt4-128 · adamw — test loss (nats)" in report.markdown
    assert "cifar10 · resnet20 · sgd — test error (%)" in report.markdown
    fin = report.finishes.set_index("schedule")
    assert fin.loc["rex", "cells"] == fin.loc["step", "cells"] == 2
    assert fin.loc["rex", "top1"] == fin.loc["step", "top1"] == 50.0


def test_the_performance_profile_divides_losses_for_loss_settings(tmp_path: Path) -> None:
    from lrbench.report.plots import error_ratios

    _loss_cell(tmp_path, {"rex": [1.5, 1.5], "step": [3.0, 3.0]})
    ratios = error_ratios(analyse([tmp_path]).summary)
    assert ratios.iloc[:, 0].to_dict() == {"rex": 1.0, "step": 2.0}
