"""The finish-table rule (docs/design.md, "Report rules") on hand-made run folders."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
from runfolders import write_cell, write_run

from lrbench.report import analyse


def _rows(summary: pd.DataFrame, **where: object) -> pd.DataFrame:
    mask = pd.Series(True, index=summary.index)
    for key, value in where.items():
        mask &= summary[key] == value
    return summary[mask]


def _by_schedule(summary: pd.DataFrame, column: str) -> dict[str, object]:
    return dict(zip(summary["schedule"], summary[column], strict=True))


def test_tied_schedules_are_both_top1(tmp_path: Path) -> None:
    write_cell(tmp_path, {"rex": [0.9, 0.8], "linear": [0.8, 0.9], "step": [0.7, 0.7]})
    summary = analyse([tmp_path / "sweep"]).summary
    assert _by_schedule(summary, "rank") == {"linear": 1, "rex": 1, "step": 3}
    assert _by_schedule(summary, "top1") == {"linear": True, "rex": True, "step": False}


def test_ties_do_not_depend_on_the_order_of_seeds(tmp_path: Path) -> None:
    # (0.1 + 0.2) + 0.3 != (0.3 + 0.2) + 0.1 in floating point; the means must still tie.
    write_cell(tmp_path, {"a": [0.1, 0.2, 0.3], "b": [0.3, 0.2, 0.1]})
    summary = analyse([tmp_path]).summary
    assert list(summary["top1"]) == [True, True]


def test_top3_counts_schedules_strictly_better(tmp_path: Path) -> None:
    write_cell(
        tmp_path,
        {"a": [0.9], "b": [0.9], "c": [0.8], "d": [0.8], "e": [0.7]},
        budget=0.05,
    )
    write_cell(
        tmp_path,
        {"a": [0.9], "b": [0.8], "c": [0.8], "d": [0.8], "e": [0.7]},
        budget=0.5,
    )
    summary = analyse([tmp_path]).summary
    low = _rows(summary, budget=0.05)
    assert _by_schedule(low, "rank") == {"a": 1, "b": 1, "c": 3, "d": 3, "e": 5}
    assert _by_schedule(low, "top3") == {"a": True, "b": True, "c": True, "d": True, "e": False}
    high = _rows(summary, budget=0.5)
    assert _by_schedule(high, "rank") == {"a": 1, "b": 2, "c": 2, "d": 2, "e": 5}
    assert _by_schedule(high, "top3") == {"a": True, "b": True, "c": True, "d": True, "e": False}


def test_budget_025_is_high_and_below_is_low(tmp_path: Path) -> None:
    write_cell(tmp_path, {"rex": [0.9], "step": [0.8]}, budget=0.25)
    write_cell(tmp_path, {"rex": [0.7], "step": [0.8]}, budget=0.249)
    fin = analyse([tmp_path]).finishes.set_index("schedule")
    assert fin.loc["rex", "high_top1"] == 100.0
    assert fin.loc["rex", "low_top1"] == 0.0
    assert fin.loc["step", "low_top1"] == 100.0
    assert fin.loc["step", "high_top1"] == 0.0
    assert fin.loc["rex", "top1"] == 50.0


def test_finish_percentages_are_of_the_cells_a_schedule_ran(tmp_path: Path) -> None:
    for budget in (0.01, 0.05, 0.5, 1.0):
        write_cell(tmp_path, {"step": [0.8], "linear": [0.85]}, budget=budget)
    # rex ran only two high-budget cells and won one of them
    write_run(tmp_path, schedule="rex", budget=0.5, test_acc=0.95)
    write_run(tmp_path, schedule="rex", budget=1.0, test_acc=0.5)
    fin = analyse([tmp_path]).finishes.set_index("schedule")
    assert fin.loc["rex", "cells"] == 2
    assert fin.loc["rex", "top1"] == 50.0
    assert fin.loc["rex", "high_top1"] == 50.0
    assert math.isnan(fin.loc["rex", "low_top1"])  # took part in no low-budget cell: not 0%
    assert fin.loc["linear", "cells"] == 4
    assert fin.loc["linear", "top1"] == 75.0
    assert fin.loc["linear", "low_top1"] == 100.0


def test_cells_are_split_by_dataset_model_and_optimizer(tmp_path: Path) -> None:
    write_cell(tmp_path, {"rex": [0.9], "step": [0.8]}, optimizer="sgd")
    write_cell(tmp_path, {"rex": [0.7], "step": [0.8]}, optimizer="adam", lr=1e-3)
    write_cell(tmp_path, {"rex": [0.7], "step": [0.8]}, dataset="cifar10", dataset_label="c10-5k")
    summary = analyse([tmp_path]).summary
    assert len(summary.groupby(["dataset", "model", "optimizer", "budget"])) == 3
    assert set(summary["dataset"]) == {"cifar10", "c10-5k"}
    assert _by_schedule(_rows(summary, optimizer="adam"), "top1") == {"rex": False, "step": True}


def test_missing_seeds_mean_over_those_present_and_noted(tmp_path: Path) -> None:
    write_cell(tmp_path, {"step": [0.8, 0.8, 0.8]})
    write_run(tmp_path, schedule="rex", seed=1, test_acc=0.9)
    write_run(tmp_path, schedule="rex", seed=3, test_acc=0.7)
    found = analyse([tmp_path])
    rex = _rows(found.summary, schedule="rex").iloc[0]
    assert rex["n"] == 2
    assert rex["mean_test_acc"] == pytest.approx(0.8)
    assert rex["seeds"] == "1 3"
    notes = [p.reason for p in found.problems if p.kind == "note" and "few seeds" not in p.reason]
    assert len(notes) == 2
    assert any("schedule rex: mean over seeds {1, 3} only, seeds {2} missing" in n for n in notes)
    assert any("P(top-1) and P(top-3) pair seeds {1, 3} only" in n for n in notes)


def test_std_is_sample_std_and_nan_for_one_seed(tmp_path: Path) -> None:
    write_cell(tmp_path, {"rex": [0.8, 0.9, 1.0], "step": [0.5]})
    summary = analyse([tmp_path]).summary.set_index("schedule")
    assert summary.loc["rex", "std_test_acc"] == pytest.approx(0.1)  # ddof=1; ddof=0 is 0.0816
    assert math.isnan(summary.loc["step", "std_test_acc"])


def test_diverged_seeds_rank_below_finished_schedules(tmp_path: Path) -> None:
    # rex's finished seeds are the best, but one seed diverged: it ranks below step and linear
    write_run(tmp_path, schedule="rex", seed=1, test_acc=0.99)
    write_run(tmp_path, schedule="rex", seed=2, test_acc=0.1, status="diverged")
    write_cell(tmp_path, {"step": [0.7, 0.7], "linear": [0.6, 0.6]})
    # cosine: both seeds diverged, below rex (which has one finished seed)
    write_cell(tmp_path, {"cosine": [0.1, 0.1]}, status="diverged")
    # exp: one diverged and a worse finished seed than rex: below rex, above cosine
    write_run(tmp_path, schedule="exp", seed=1, test_acc=0.5)
    write_run(tmp_path, schedule="exp", seed=2, test_acc=0.1, status="diverged")
    summary = analyse([tmp_path]).summary.set_index("schedule")
    assert summary["rank"].to_dict() == {"cosine": 5, "exp": 4, "linear": 2, "rex": 3, "step": 1}
    assert summary.loc["rex", "n"] == 2
    assert summary.loc["rex", "n_diverged"] == 1
    assert summary.loc["rex", "mean_test_acc"] == pytest.approx(0.99)
    assert math.isnan(summary.loc["cosine", "mean_test_acc"])


def test_lr_grid_is_chosen_on_validation_not_test(tmp_path: Path) -> None:
    # lr 0.3 has the better test accuracy, lr 0.1 the better validation accuracy
    for seed in (1, 2):
        write_run(tmp_path, schedule="rex", lr=0.1, seed=seed, val_acc=0.85, test_acc=0.80)
        write_run(tmp_path, schedule="rex", lr=0.3, seed=seed, val_acc=0.75, test_acc=0.95)
        write_run(tmp_path, schedule="step", lr=0.1, seed=seed, val_acc=0.8, test_acc=0.9)
    found = analyse([tmp_path])
    summary = found.summary.set_index("schedule")
    assert summary.loc["rex", "lr"] == 0.1
    assert summary.loc["rex", "lr_grid"] == "0.1 0.3"
    assert summary.loc["rex", "mean_test_acc"] == pytest.approx(0.80)
    assert summary.loc["rex", "n"] == 2
    # with lr 0.3, rex (0.95) would beat step (0.9); on validation it does not
    assert summary["top1"].to_dict() == {"rex": False, "step": True}
    assert not [p for p in found.problems if not p.reason.startswith("few seeds")]


def test_lr_grid_without_validation_is_skipped_not_chosen_on_test(tmp_path: Path) -> None:
    write_run(tmp_path, schedule="rex", lr=0.1, test_acc=0.8)
    write_run(tmp_path, schedule="rex", lr=0.3, test_acc=0.95)
    write_run(tmp_path, schedule="step", lr=0.1, test_acc=0.9)
    found = analyse([tmp_path])
    assert list(found.summary["schedule"]) == ["step"]
    [problem] = [p for p in found.problems if p.kind == "skipped"]
    assert problem.kind == "skipped"
    assert "no val_acc" in problem.reason and "rex" in problem.reason
    assert "runs" in problem.path


def test_unknown_schedule_labels_are_plain_strings(tmp_path: Path) -> None:
    write_cell(tmp_path, {"not-a-registered-schedule": [0.9]})
    write_run(tmp_path, schedule="onecycle", label="onecycle-rex", test_acc=0.8)
    summary = analyse([tmp_path]).summary
    assert set(summary["schedule"]) == {"not-a-registered-schedule", "onecycle-rex"}


def test_one_label_with_two_parameter_sets_is_two_rows_of_one_cell(tmp_path: Path) -> None:
    write_run(tmp_path, sweep="a", schedule="rex", schedule_params={"beta": 0.5}, test_acc=0.8)
    write_run(tmp_path, sweep="b", schedule="rex", schedule_params={"beta": 0.9}, test_acc=0.9)
    found = analyse([tmp_path])
    assert found.summary["n"].tolist() == [1, 1]
    assert found.summary["variant"].tolist() == ["schedule.beta=0.5", "schedule.beta=0.9"]
    assert found.summary["rank"].tolist() == [2, 1]  # they compete in one cell
    assert any("rex': runs differ in more than the seed" in p.reason for p in found.problems)
