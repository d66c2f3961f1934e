"""How sure each finish is: intervals, P(top-1) and P(top-3) from a paired bootstrap over seeds."""

from __future__ import annotations

import csv
import io
import itertools
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from runfolders import write_cell, write_run

from lrbench.report import analyse, build_report, uncertainty
from lrbench.report.rank import summarize
from lrbench.report.uncertainty import (
    bootstrap_interval,
    paired_bootstrap,
    resamples,
    uncertainty_table,
)


def _csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def _uncertainty(root: Path, metric: str = "error") -> pd.DataFrame:
    """uncertainty.csv's rows without drawing the plots, indexed by schedule."""
    return uncertainty_table(analyse([root]).summary, metric).set_index("schedule")


def test_uncertainty_csv_has_exactly_the_contract_columns(tmp_path: Path) -> None:
    write_cell(tmp_path, {"rex": [0.90, 0.91, 0.92], "step": [0.85, 0.86, 0.84]})
    table = uncertainty_table(analyse([tmp_path]).summary, "error")
    assert list(table.columns) == [
        "dataset",
        "model",
        "optimizer",
        "budget",
        "schedule",
        "n",
        "mean",
        "ci_low",
        "ci_high",
        "p_top1",
        "p_top3",
        "interval",
    ]


def test_a_clear_winner_is_top1_in_every_resample(tmp_path: Path) -> None:
    write_cell(
        tmp_path,
        {"rex": [0.92, 0.93, 0.91], "step": [0.85, 0.86, 0.84], "linear": [0.80, 0.82, 0.81]},
    )
    table = _uncertainty(tmp_path)
    assert table["p_top1"].to_dict() == {"linear": 0.0, "rex": 1.0, "step": 0.0}
    assert table["p_top3"].to_dict() == {"linear": 1.0, "rex": 1.0, "step": 1.0}


def test_a_coin_flip_between_two_schedules_is_well_inside_0_and_1(tmp_path: Path) -> None:
    # each wins on half the seeds by the same margin: neither is sure to be top-1
    write_cell(
        tmp_path,
        {
            "rex": [0.90, 0.92, 0.90, 0.92, 0.90, 0.92],
            "linear": [0.92, 0.90, 0.92, 0.90, 0.92, 0.90],
            "step": [0.80] * 6,
        },
    )
    found = analyse([tmp_path])
    p = found.summary.set_index("schedule")["p_top1"]
    assert 0.25 < p["rex"] < 0.75 and 0.25 < p["linear"] < 0.75
    assert p["step"] == 0.0
    assert p["rex"] + p["linear"] >= 1.0  # a tie makes both top-1


def test_one_seed_leaves_interval_and_probabilities_empty_and_says_why(tmp_path: Path) -> None:
    write_cell(tmp_path, {"rex": [0.9], "step": [0.8]})
    report = build_report([tmp_path / "sweep"], tmp_path / "out")
    rows = _csv(tmp_path / "out" / "uncertainty.csv")
    assert [r["schedule"] for r in rows] == ["rex", "step"]
    assert [r["mean"] for r in rows] == ["10.0", "20.0"]
    for r in rows:
        assert r["n"] == "1"
        assert r["ci_low"] == r["ci_high"] == r["p_top1"] == r["p_top3"] == ""
    notes = [p.reason for p in report.problems if p.kind == "note"]
    assert any("no 95% interval" in n and "fewer than two finished seeds" in n for n in notes)
    assert any("fewer than two seeds run by all their schedules" in n for n in notes)
    assert "**10.00** |" in report.markdown  # no interval printed
    fin = _csv(tmp_path / "out" / "finishes.csv")
    assert fin[0]["top1"] == "100.0" and fin[0]["expected_top1"] == ""


def test_three_seeds_give_the_t_interval_of_the_mean(tmp_path: Path) -> None:
    # a bootstrap over 3 seeds could not reach past their range [5, 10] and would cover ~75%:
    # the row's interval is mean ± t(0.975, 2) · s / √3 instead
    write_cell(tmp_path, {"rex": [0.90, 0.95, 0.91], "step": [0.80, 0.85, 0.83]})
    rex = _uncertainty(tmp_path).loc["rex"]
    half = scipy.stats.t.ppf(0.975, 2) * np.std([10.0, 5.0, 9.0], ddof=1) / math.sqrt(3)
    assert (rex["ci_low"], rex["mean"], rex["ci_high"]) == pytest.approx((8 - half, 8, 8 + half))


def test_few_seeds_are_a_finding_that_says_what_a_bootstrap_covers(tmp_path: Path) -> None:
    write_cell(tmp_path, {"rex": [0.90, 0.95, 0.91], "step": [0.80, 0.85, 0.83]})
    report = build_report([tmp_path / "sweep"], tmp_path / "out")
    notes = [p.reason for p in report.problems if p.kind == "note"]
    assert any(
        n.startswith("few seeds: 2 row(s) have 3 finished seeds") and "75%" in n for n in notes
    )
    assert _csv(tmp_path / "out" / "uncertainty.csv")[0]["interval"] == "t"
    assert "few seeds" in (tmp_path / "out" / "report.html").read_text()


def test_five_seeds_give_the_exact_bootstrap_interval(tmp_path: Path) -> None:
    accs = [0.90, 0.95, 0.91, 0.93, 0.92]
    write_cell(tmp_path, {"rex": accs, "step": [0.8] * 5})
    rows = {r["schedule"]: r for r in _csv_rows(tmp_path)}
    assert rows["rex"]["interval"] == "bootstrap"
    low, high = _brute_force_interval(np.array(accs))
    assert float(rows["rex"]["ci_high"]) == pytest.approx(100 * (1 - low))
    assert float(rows["rex"]["ci_low"]) == pytest.approx(100 * (1 - high))


def _csv_rows(root: Path) -> list[dict[str, str]]:
    return uncertainty_table(analyse([root]).summary, "error").to_dict("records")


def _brute_force_interval(scores: np.ndarray) -> tuple[float, float]:
    """Every ordered draw of n indices out of n, equally likely: the percentile interval."""
    n = len(scores)
    draws = np.array(list(itertools.product(range(n), repeat=n)))
    means = np.round(scores[draws].mean(axis=1), 12)
    return tuple(np.percentile(means, [2.5, 97.5], method="inverted_cdf"))


def _brute_force_top1(scores: np.ndarray) -> np.ndarray:
    """P(top-1) per row (rows x seeds, no divergence) over every ordered paired draw."""
    n = scores.shape[1]
    draws = np.array(list(itertools.product(range(n), repeat=n)))
    means = np.round(scores[:, draws].mean(axis=2), 12)  # rows x draws
    return (means == means.max(axis=0)).mean(axis=1)


@pytest.mark.parametrize("n", [2, 3, 4, 5, 6])
def test_exact_enumeration_equals_brute_force(n: int) -> None:
    rng = np.random.default_rng(n)
    scores = np.round(0.9 + 0.01 * rng.standard_normal((3, n)), 3)
    chosen = _chosen(scores.tolist())
    summary = summarize(chosen)
    out = summary.join(paired_bootstrap(chosen, summary).intervals)
    assert out["p_top1"].to_numpy() == pytest.approx(_brute_force_top1(scores), abs=1e-9)
    counts, weights = resamples(n, np.random.default_rng(0))
    assert len(counts) == math.comb(2 * n - 1, n) and weights.sum() == pytest.approx(1.0)
    interval = bootstrap_interval(scores[0], np.random.default_rng(0))
    assert interval == pytest.approx(_brute_force_interval(scores[0]), abs=1e-12)


def test_monte_carlo_agrees_with_exact_enumeration_within_its_error(monkeypatch) -> None:
    n = 11  # C(21, 11) = 352,716 distinct resamples: above the limit, drawn at random
    rng = np.random.default_rng(11)
    scores = np.round(0.9 + 0.01 * rng.standard_normal((2, n)), 4)
    chosen = _chosen(scores.tolist())
    summary = summarize(chosen)
    drawn = summary.join(paired_bootstrap(chosen, summary).intervals)["p_top1"].to_numpy()
    monkeypatch.setattr(uncertainty, "EXACT_LIMIT", 10**6)
    exact = summary.join(paired_bootstrap(chosen, summary).intervals)["p_top1"].to_numpy()
    error = np.sqrt(exact * (1 - exact) / uncertainty.N_RESAMPLES)
    assert np.all(np.abs(drawn - exact) <= 4 * error + 1e-9)
    assert 0.05 < exact[0] < 0.95  # a close call, where drawing matters


def test_a_diverged_seed_is_the_worst_result_inside_a_resample(tmp_path: Path) -> None:
    # rex's finished seeds are far better, but seed 3 diverged: rex is top-1 only in the
    # resamples that do not draw seed 3, (2/3)^3 = 8/27 of them
    write_run(tmp_path, schedule="rex", seed=1, test_acc=0.95)
    write_run(tmp_path, schedule="rex", seed=2, test_acc=0.95)
    write_run(tmp_path, schedule="rex", seed=3, status="diverged")
    write_cell(tmp_path, {"step": [0.80, 0.80, 0.80]})
    summary = analyse([tmp_path]).summary.set_index("schedule")
    assert summary.loc["rex", "rank"] == 2  # the observed ranking: a diverged seed loses
    assert summary.loc["rex", "p_top1"] == pytest.approx(8 / 27, abs=0.04)
    assert summary.loc["step", "p_top1"] == pytest.approx(1 - 8 / 27, abs=0.04)
    assert summary.loc["rex", "ci_low_test_acc"] == summary.loc["rex", "ci_high_test_acc"] == 0.95


def test_missing_seeds_are_left_out_of_the_pairing_with_a_note(tmp_path: Path) -> None:
    write_cell(tmp_path, {"rex": [0.90, 0.91, 0.99], "step": [0.95, 0.96]})
    found = analyse([tmp_path])
    notes = [p.reason for p in found.problems if p.kind == "note"]
    assert any(
        "seeds {3} are not run by every schedule (missing for step); P(top-1) and P(top-3) "
        "pair seeds {1, 2} only" in n
        for n in notes
    )
    p = found.summary.set_index("schedule")["p_top1"]
    assert p.to_dict() == {"rex": 0.0, "step": 1.0}  # seed 3 (rex's best) is not paired
    # rex's interval still uses all three of its own seeds
    rex = found.summary.set_index("schedule").loc["rex"]
    assert rex["ci_low_test_acc"] < 0.90 and rex["ci_high_test_acc"] == 1.0  # cut at 100%


def test_expected_finishes_are_percent_of_cells_with_an_interval(tmp_path: Path) -> None:
    sure = {"rex": [0.92, 0.93, 0.91], "step": [0.85, 0.86, 0.84]}
    write_cell(tmp_path, sure, budget=0.05)
    write_cell(tmp_path, sure, budget=0.5)
    fin = analyse([tmp_path]).finishes.set_index("schedule")
    assert fin.loc[
        "rex", ["expected_top1", "expected_top1_low", "expected_top1_high"]
    ].tolist() == [
        100.0,
        100.0,
        100.0,
    ]
    assert fin.loc["step", "expected_top1"] == 0.0
    assert fin.loc["step", "expected_top3"] == 100.0


def test_expected_top1_of_a_coin_flip_cell_has_a_wide_interval(tmp_path: Path) -> None:
    flip = {"rex": [0.90, 0.92, 0.90, 0.92], "linear": [0.92, 0.90, 0.92, 0.90]}
    write_cell(tmp_path, flip, budget=0.05)
    write_cell(tmp_path, {"rex": [0.92, 0.93, 0.91, 0.92], "linear": [0.8] * 4}, budget=0.5)
    fin = analyse([tmp_path]).finishes.set_index("schedule")
    low, mean, high = fin.loc["rex", ["expected_top1_low", "expected_top1", "expected_top1_high"]]
    assert low == 50.0 and high == 100.0  # one cell sure, the other either way
    assert 50.0 < mean < 100.0


def test_a_report_is_reproducible_byte_for_byte(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    scores = {
        s: [float(v) for v in np.round(0.9 + 0.01 * rng.standard_normal(3), 4)] for s in "abc"
    }
    write_cell(tmp_path, scores)
    first = build_report([tmp_path / "sweep"], tmp_path / "one")
    build_report([tmp_path / "sweep"], tmp_path / "two")
    names = sorted(p.name for p in first.files)
    assert {"uncertainty.csv", "finishes.csv", "p_top1.png", "performance_profile.png"} <= set(
        names
    )
    for name in names:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "two" / name).read_bytes()


# --- laws, on cells built in memory ------------------------------------------------------------


def _chosen(scores: list[list[float | None]]) -> pd.DataFrame:
    """One cell: scores[schedule][seed], None for a diverged seed."""
    rows = []
    for s, seeds in enumerate(scores):
        for seed, score in enumerate(seeds, start=1):
            rows.append(
                {
                    "dataset": "d",
                    "model": "m",
                    "optimizer": "sgd",
                    "budget": 0.5,
                    "setup": "",
                    "schedule": f"s{s}",
                    "schedule_variant": "",
                    "variant": "",
                    "seed": seed,
                    "status": "diverged" if score is None else "done",
                    "score": math.nan if score is None else score,
                    "path": f"/r/s{s}-{seed}",
                    "lr": 0.1,
                    "lr_grid": "0.1",
                    "epochs": 10,
                    "stopped_early": False,
                    "ensemble_score": math.nan,
                    "ensemble_size": math.nan,
                    "metric": "error",
                }
            )
    return pd.DataFrame(rows)


score = st.one_of(st.none(), st.sampled_from([0.5, 0.8, 0.81, 0.9]), st.floats(0.0, 1.0))


@st.composite
def cells(draw: st.DrawFn) -> list[list[float | None]]:
    n_seeds = draw(st.integers(2, 4))
    n_schedules = draw(st.integers(1, 5))
    return [draw(st.lists(score, min_size=n_seeds, max_size=n_seeds)) for _ in range(n_schedules)]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cells())
def test_finish_probabilities_and_intervals_obey_their_laws(
    scores: list[list[float | None]],
) -> None:
    chosen = _chosen(scores)
    summary = summarize(chosen)
    out = summary.join(paired_bootstrap(chosen, summary).intervals)
    p1, p3 = out["p_top1"].to_numpy(), out["p_top3"].to_numpy()
    assert np.all((p1 >= 0) & (p1 <= p3) & (p3 <= 1))
    assert p1.sum() >= 1 - 1e-9  # every resample has a top-1 (ties count for all)
    assert p3.sum() >= min(3, len(out)) - 1e-9
    for r in out.itertuples():
        if math.isnan(r.ci_low_test_acc):
            assert r.n - r.n_diverged < 2  # only rows with fewer than two finished seeds
            continue
        assert r.ci_low_test_acc - 1e-9 <= r.mean_test_acc <= r.ci_high_test_acc + 1e-9
