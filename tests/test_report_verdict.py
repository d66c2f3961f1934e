"""The verdict: per cell the winner, its paired margin over the runner-up, P(top-1), coin flips;
and --baseline's paired, Holm-adjusted differences."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from runfolders import write_cell, write_run

from lrbench.errors import UserError
from lrbench.report import analyse, build_report
from lrbench.report.verdict import Paired, holm, lines


def test_verdict_csv_has_the_contract_columns_first(tmp_path: Path) -> None:
    write_cell(tmp_path, {"rex": [0.92, 0.93, 0.91], "step": [0.85, 0.86, 0.84]})
    build_report([tmp_path / "sweep"], tmp_path / "out")
    header = (tmp_path / "out" / "verdict.csv").read_text().splitlines()[0].split(",")
    assert header[:10] == [
        "dataset",
        "model",
        "optimizer",
        "budget",
        "winner",
        "runner_up",
        "margin",
        "margin_low",
        "margin_high",
        "p_top1",
    ]


def test_a_clear_winner_wins_by_its_paired_margin(tmp_path: Path) -> None:
    write_cell(
        tmp_path,
        {"rex": [0.92, 0.95, 0.91], "step": [0.85, 0.87, 0.84], "linear": [0.5, 0.5, 0.5]},
    )
    verdict = analyse([tmp_path]).verdict.iloc[0]
    assert (verdict["winner"], verdict["runner_up"]) == ("rex", "step")
    d = np.array([7.0, 8.0, 7.0])  # step's error minus rex's, seed by seed, in points
    half = scipy.stats.t.ppf(0.975, 2) * d.std(ddof=1) / math.sqrt(3)
    assert verdict["margin"] == pytest.approx(d.mean())
    assert (verdict["margin_low"], verdict["margin_high"]) == pytest.approx(
        (d.mean() - half, d.mean() + half)
    )
    assert verdict["p_top1"] == 1.0 and not verdict["coin_flip"]
    (line,) = lines(analyse([tmp_path]).verdict)
    assert line.startswith("cifar10 · resnet20 · sgd, budget 5%: rex wins, by 7.33 [")
    assert "over step (test error, points, paired over 3 seeds), P(top-1) 1.00" in line


def test_a_coin_flip_is_marked_with_the_seeds_that_would_settle_it(tmp_path: Path) -> None:
    write_cell(tmp_path, {"rex": [0.91, 0.90, 0.93], "step": [0.90, 0.91, 0.90]})
    verdict = analyse([tmp_path]).verdict.iloc[0]
    assert verdict["coin_flip"] and verdict["margin_low"] < 0 < verdict["margin"]
    # differences 1, -1, 3 points: mean 1, sd 2; t(0.975, n-1) * 2 / sqrt(n) < 1 first at 18
    assert verdict["seeds_needed"] == 18
    assert scipy.stats.t.ppf(0.975, 17) * 2 / math.sqrt(18) < 1
    assert scipy.stats.t.ppf(0.975, 16) * 2 / math.sqrt(17) >= 1
    (line,) = lines(analyse([tmp_path]).verdict)
    assert "≈ coin flip — rex ahead of step by 1.00 [" in line
    assert line.endswith("about 18 seeds would settle it")


def test_a_tie_is_a_coin_flip_no_number_of_seeds_settles(tmp_path: Path) -> None:
    write_cell(tmp_path, {"rex": [0.90, 0.92], "linear": [0.92, 0.90]})
    verdict = analyse([tmp_path]).verdict.iloc[0]
    assert verdict["coin_flip"] and verdict["margin"] == 0.0
    assert verdict["seeds_needed"] == math.inf
    assert "more seeds would not settle it" in lines(analyse([tmp_path]).verdict)[0]


def test_a_loss_margin_is_positive_when_the_winner_is_better(tmp_path: Path) -> None:
    for seed, (a, b) in enumerate([(1.50, 1.70), (1.52, 1.71), (1.49, 1.69)], start=1):
        for schedule, loss in (("rex", a), ("step", b)):
            write_run(
                tmp_path, schedule=schedule, seed=seed, test_loss=loss, spec={"metric": "loss"}
            )
    verdict = analyse([tmp_path]).verdict.iloc[0]
    assert verdict["winner"] == "rex" and verdict["metric"] == "loss"
    assert verdict["margin"] == pytest.approx(0.1967, abs=1e-4)
    assert verdict["margin_low"] > 0


def test_the_verdict_comes_first_in_tables_md_and_the_page(tmp_path: Path) -> None:
    write_cell(tmp_path, {"rex": [0.92, 0.93, 0.91], "step": [0.85, 0.86, 0.84]})
    report = build_report([tmp_path / "sweep"], tmp_path / "out")
    md = report.markdown
    assert md.index("## Verdict") < md.index("## Finishes")
    assert "- cifar10 · resnet20 · sgd, budget 5%: rex wins, by 7.00 [7.00, 7.00]" in md
    page = (tmp_path / "out" / "report.html").read_text()
    assert page.index('id="verdict"') < page.index('id="finishes"')
    assert report.rich_tables()[0].title == "Verdict"


# --- --baseline: Holm ---------------------------------------------------------------------


def test_holm_levels_and_adjusted_p_values_by_hand() -> None:
    levels, adjusted = holm([0.04, 0.01, 0.03])
    # sorted: 0.01 (x3), 0.03 (x2), 0.04 (x1); levels 1 - 0.05/3, 1 - 0.05/2, 1 - 0.05
    assert levels == pytest.approx([0.95, 1 - 0.05 / 3, 0.975])
    assert adjusted == pytest.approx([0.06, 0.03, 0.06])  # 0.04 * 1 < 0.06: stays at 0.06


def test_baseline_differences_are_paired_and_holm_adjusted(tmp_path: Path) -> None:
    scores = {
        "step": [0.80, 0.82, 0.81, 0.83],
        "rex": [0.85, 0.86, 0.86, 0.88],
        "cosine": [0.81, 0.84, 0.81, 0.84],
        "linear": [0.79, 0.83, 0.80, 0.82],
    }
    write_cell(tmp_path, scores)
    report = build_report([tmp_path / "sweep"], tmp_path / "out", baseline="step")
    table = pd.read_csv(tmp_path / "out" / "baseline.csv").set_index("schedule")
    base = np.array(scores["step"])
    p = {s: scipy.stats.ttest_rel(scores[s], base).pvalue for s in ("rex", "cosine", "linear")}
    order = sorted(p, key=p.get)  # smallest p first: judged at 0.05/3, then 0.05/2, then 0.05
    running = 0.0
    for i, s in enumerate(order):
        level = 1 - 0.05 / (3 - i)
        running = max(running, min(1.0, (3 - i) * p[s]))
        d = 100 * (np.array(scores[s]) - base)  # error points: positive = better than step
        half = scipy.stats.t.ppf(0.5 + level / 2, 3) * d.std(ddof=1) / 2
        row = table.loc[s]
        assert row["level"] == pytest.approx(level, abs=1e-6)
        assert row["p_holm"] == pytest.approx(running, abs=1e-6)
        assert row["difference"] == pytest.approx(d.mean(), abs=1e-6)
        assert (row["low"], row["high"]) == pytest.approx(
            (d.mean() - half, d.mean() + half), abs=1e-6
        )
    assert "## Against step" in report.markdown


def test_an_unknown_baseline_is_one_line(tmp_path: Path) -> None:
    write_cell(tmp_path, {"rex": [0.9, 0.91], "step": [0.8, 0.81]})
    with pytest.raises(UserError, match="--baseline stp: no schedule of that label"):
        build_report([tmp_path / "sweep"], tmp_path / "out", baseline="stp")


def test_paired_difference_needs_two_seeds_for_an_interval() -> None:
    assert all(math.isnan(v) for v in Paired(1, 0.5, math.nan).interval())
