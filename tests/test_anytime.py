"""Anytime performance and time-to-target from hand-made run folders.

Cyclical schedules are judged only at their cycle ends; runs that stopped early count as they
stand; a run that never reaches the target scores inf (AlgoPerf).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.image import imread
from runfolders import write_run

from lrbench.report import build_report
from lrbench.report.anytime import (
    CYCLE_ENDS,
    EVERY,
    UNKNOWN,
    best_by_fraction,
    judged_epochs,
    time_to_target,
)

SGDR2 = {"name": "sgdr", "cycles": 2, "t_mult": 1}


@pytest.mark.parametrize(
    ("schedule", "epochs", "spe", "expected", "how"),
    [
        ({"name": "rex"}, 4, 10, [1, 2, 3, 4], EVERY),
        ({"name": "plateau"}, 3, 10, [1, 2, 3], EVERY),
        # sgdr 3 cycles x2 over 14 epochs: ends at 2, 6, 14 epochs exactly
        ({"name": "sgdr", "cycles": 3, "t_mult": 2}, 14, 10, [2, 6, 14], CYCLE_ENDS),
        # over 15 epochs the ends fall inside epochs 3 and 7 (2.14, 6.43): judged at the last
        # epoch before each end (2, 6), not after the restart
        ({"name": "sgdr", "cycles": 3, "t_mult": 2}, 15, 10, [2, 6, 15], CYCLE_ENDS),
        ({"name": "triangular"}, 8, 391, [2, 4, 6, 8], CYCLE_ENDS),
        ({"name": "triangular2", "warmup": 0.2}, 10, 5, [4, 6, 8, 10], CYCLE_ENDS),
        # cycles shorter than an epoch: every epoch holds a cycle end
        ({"name": "triangular"}, 3, 10, [1, 2, 3], CYCLE_ENDS),
        # spec.json without steps_per_epoch: a fine nominal grid
        ({"name": "sgdr", "cycles": 3, "t_mult": 2}, 15, None, [2, 6, 15], CYCLE_ENDS),
        ({"name": "from-the-future", "x": 1}, 3, 10, [1, 2, 3], UNKNOWN),
        ({"name": "sgdr", "cycles": "many"}, 3, 10, [1, 2, 3], UNKNOWN),
    ],
)
def test_judged_epochs(schedule, epochs, spe, expected, how) -> None:
    assert judged_epochs(schedule, epochs, spe) == (expected, how)


def _curve(accs: list[float], times: list[float] | None = None) -> pd.DataFrame:
    epochs = list(range(1, len(accs) + 1))
    return pd.DataFrame(
        {"epoch": epochs, "score": accs, "epoch_time_s": times or [1.5] * len(accs)}
    )


def test_best_by_fraction_and_time_to_target_by_hand() -> None:
    curve = _curve([0.3, 0.5, 0.45, 0.6, 0.7, 0.65, 0.8, 0.78], [1, 1, 1, 1, 2, 2, 2, 2])
    every = list(range(1, 9))
    best = best_by_fraction(curve, 8, every)
    # 10% of 8 epochs = 0.8: no epoch yet; 25% -> epochs 1-2; 50% -> 1-4; 75% -> 1-6
    assert math.isnan(best[0])
    assert best[1:] == [0.5, 0.6, 0.7, 0.8]
    assert time_to_target(curve, every, 0.7) == (5.0, 6.0)  # 1+1+1+1+2 seconds
    assert time_to_target(curve, every, 0.8) == (7.0, 10.0)
    assert time_to_target(curve, every, 0.81) == (math.inf, math.inf)


def test_cyclical_runs_are_judged_at_cycle_ends_only() -> None:
    # a spike to 0.75 in epoch 2, mid-cycle, must not count: judged at epochs 4 and 8 only
    curve = _curve([0.2, 0.75, 0.4, 0.6, 0.3, 0.72, 0.5, 0.9])
    judged, how = judged_epochs(SGDR2, 8, 10)
    assert (judged, how) == ([4, 8], CYCLE_ENDS)
    best = best_by_fraction(curve, 8, judged)
    assert math.isnan(best[1])  # 25%: epochs 1-2 hold no cycle end
    assert best[2:] == [0.6, 0.6, 0.9]
    assert time_to_target(curve, judged, 0.7) == (8.0, 12.0)
    assert time_to_target(curve, list(range(1, 9)), 0.7) == (2.0, 3.0)  # what it is not


def test_stopped_early_runs_count_as_they_stand() -> None:
    curve = _curve([0.3, 0.5, 0.55])  # stopped after epoch 3 of 8
    best = best_by_fraction(curve, 8, list(range(1, 9)), stopped_early=True)
    assert best[1:] == [0.5, 0.55, 0.55, 0.55]
    # cyclical and stopped before its first cycle end: judged at its last epoch
    assert best_by_fraction(curve, 8, [4, 8], stopped_early=True)[2:] == [0.55] * 3
    assert time_to_target(curve, [4, 8], 0.55, stopped_early=True) == (3.0, 4.5)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One cell (8 epochs): rex every epoch, sgdr judged at 4 and 8, one stopped, one diverged."""
    root = tmp_path_factory.mktemp("anytime")
    common = {"budget": 0.5, "full_epochs": 16}
    write_run(root, schedule="rex", seed=1, accs=[0.3, 0.5, 0.45, 0.6, 0.7, 0.65, 0.8, 0.78],
              epoch_times=[1, 1, 1, 1, 2, 2, 2, 2], **common)  # fmt: skip
    write_run(root, schedule="rex", seed=2, accs=[0.4, 0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.62],
              **common)  # fmt: skip
    write_run(root, schedule="sgdr", label="sgdr2", schedule_params=SGDR2, seed=1,
              accs=[0.2, 0.75, 0.4, 0.6, 0.3, 0.72, 0.5, 0.9], **common)  # fmt: skip
    write_run(root, schedule="sgdr", label="sgdr2", schedule_params=SGDR2, seed=2,
              accs=[0.2, 0.3, 0.4, 0.5, 0.3, 0.6, 0.5, 0.8], **common)  # fmt: skip
    write_run(root, schedule="wsd", seed=1, accs=[0.3, 0.6, 0.72], stopped_epoch=3, **common)
    write_run(root, schedule="wsd", seed=2, accs=[0.3, 0.6, 0.65, 0.7, 0.7, 0.7, 0.7, 0.75],
              **common)  # fmt: skip
    write_run(root, schedule="cosine", seed=1, status="diverged", **common)
    write_run(root, schedule="cosine", seed=2, accs=[0.3] * 8, **common)
    return root / "sweep"


def err(acc: float) -> float:
    """A test accuracy as the default report shows it: test error in percent."""
    return 100 * (1 - acc)


def _csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def test_report_writes_anytime_and_time_to_target(sweep: Path, tmp_path: Path) -> None:
    report = build_report([sweep], tmp_path / "out")
    out = tmp_path / "out"
    # default target: median over schedules of the final means
    # rex (0.78+0.62)/2 = 0.70, sgdr2 0.85, wsd (0.72+0.75)/2 = 0.735, cosine 0.3 -> 0.7175
    rows = {r["schedule"]: r for r in _csv(out / "anytime.csv")}
    assert float(rows["rex"]["target"]) == pytest.approx(err(0.7175))  # in the report's metric
    assert rows["rex"]["target_source"] == "median of final means"
    assert rows["sgdr2"]["judged"] == CYCLE_ENDS and rows["rex"]["judged"] == EVERY
    # rex: seed 1 best by 25/50/75/100% = .5/.6/.7/.8, seed 2 = .5/.6/.6/.62
    assert float(rows["rex"]["best_at_25"]) == pytest.approx(err(0.5))
    assert float(rows["rex"]["best_at_75"]) == pytest.approx(err(0.65))
    assert float(rows["rex"]["best_at_100"]) == pytest.approx(err(0.71))
    assert rows["rex"]["best_at_10"] == ""  # no epoch inside 10% of 8
    # sgdr2 at its cycle ends (4, 8): seed 1 .6 then .9, seed 2 .5 then .8
    assert rows["sgdr2"]["best_at_25"] == ""
    assert float(rows["sgdr2"]["best_at_50"]) == pytest.approx(err(0.55))
    assert float(rows["sgdr2"]["best_at_100"]) == pytest.approx(err(0.85))
    # wsd seed 1 stopped at epoch 3 with 0.72: counts as it stands at 50..100%
    assert float(rows["wsd"]["best_at_100"]) == pytest.approx(err((0.72 + 0.75) / 2))
    # time to target 0.7175: rex seed 1 at epoch 7 (0.8; 0.7 < target), seed 2 never -> inf
    assert rows["rex"]["n_reached"] == "1"
    assert float(rows["rex"]["median_epochs_to_target"]) == math.inf
    # sgdr2 both seeds at epoch 8 (judged at 4 and 8 only; epoch 2's 0.75 is mid-cycle)
    assert float(rows["sgdr2"]["median_epochs_to_target"]) == 8.0
    assert float(rows["sgdr2"]["median_seconds_to_target"]) == pytest.approx(12.0)
    # wsd: seed 1 at epoch 3 (stopped there, 0.72), seed 2 at epoch 8 -> median 5.5
    assert float(rows["wsd"]["median_epochs_to_target"]) == 5.5
    # cosine: one diverged seed, one at 0.3: never
    assert rows["cosine"]["n_reached"] == "0" and rows["cosine"]["best_at_100"] != ""

    per_run = _csv(out / "time_to_target.csv")
    assert len(per_run) == 8
    rex1 = next(r for r in per_run if r["schedule"] == "rex" and r["seed"] == "1")
    assert (rex1["epochs_to_target"], rex1["seconds_to_target"]) == ("7.0", "10.0")
    assert rex1["reached"] == "True"
    diverged = next(r for r in per_run if r["status"] == "diverged")
    assert diverged["epochs_to_target"] == "inf" and diverged["reached"] == "False"

    md = (out / "anytime.md").read_text()
    assert "## cifar10 · resnet20 · sgd" in md
    assert "| 50% | sgdr2 |" in md and "cycle ends" in md
    assert "inf" in md
    assert {"anytime.md", "anytime.csv", "time_to_target.csv", "anytime.png"} <= {
        p.name for p in report.files
    }
    pixels = imread(out / "anytime.png")
    assert pixels.shape[0] > 300 and (abs(pixels[..., 0] - pixels[..., 2]) > 0.2).mean() > 0.001


def test_fixed_target_and_terminal_tables(sweep: Path, tmp_path: Path) -> None:
    from rich.console import Console

    report = build_report([sweep], tmp_path / "out", metric="accuracy", target=0.6)
    rows = {r["schedule"]: r for r in _csv(tmp_path / "out" / "anytime.csv")}
    assert rows["rex"]["target_source"] == "--target"
    assert float(rows["rex"]["median_epochs_to_target"]) == 3.5  # epochs 4 and 3
    assert float(rows["sgdr2"]["median_epochs_to_target"]) == 6.0  # epochs 4 and 8
    console = Console(width=200, record=True)
    for table in report.rich_tables():
        console.print(table)
    text = console.export_text()
    assert "anytime: best test accuracy (%) by fraction" in text and "@50%" in text
    assert "Finishes" in text


def test_stopped_early_is_counted_in_summary_tables_and_notes(sweep: Path, tmp_path: Path) -> None:
    report = build_report([sweep], tmp_path / "out")
    summary = {r["schedule"]: r for r in _csv(tmp_path / "out" / "summary.csv")}
    assert summary["wsd"]["n_stopped_early"] == "1"
    assert summary["rex"]["n_stopped_early"] == "0"
    assert "(1/2 stopped early)" in report.markdown
    notes = [p.reason for p in report.problems if p.kind == "note"]
    assert any(
        "schedule wsd: 1 of 2 run(s) stopped early (seed 1 at epoch 3 of 8)" in n for n in notes
    )


def test_unknown_schedule_is_judged_every_epoch_with_a_note(tmp_path: Path) -> None:
    write_run(tmp_path, schedule="mystery", schedule_params={"wiggle": 3}, budget=0.1)
    report = build_report([tmp_path / "sweep"], tmp_path / "out")
    assert list(report.anytime.table["judged"]) == [UNKNOWN]
    assert any("'mystery' cannot be rebuilt" in p.reason for p in report.problems)


def test_bad_target_is_a_user_error(sweep: Path, tmp_path: Path) -> None:
    from lrbench.errors import UserError

    with pytest.raises(UserError, match="--target"):
        build_report([sweep], tmp_path / "out", target=90)
