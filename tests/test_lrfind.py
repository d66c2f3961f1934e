"""The learning-rate range test: the ramp, the smoothing, the suggestions and the command."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.image import imread
from torch import nn

import lrbench.cli.lrfind_cmd  # noqa: F401  (registers the command)
from lrbench.tools.lrfind import (
    CSV_COLUMNS,
    lr_ramp,
    run_range_test,
    smooth,
    suggest,
    valley_index,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def test_exponential_and_linear_ramps() -> None:
    exp = lr_ramp(1e-5, 10.0, 200, "exp")
    assert exp[0] == pytest.approx(1e-5) and exp[-1] == pytest.approx(10.0)
    ratios = exp[1:] / exp[:-1]
    np.testing.assert_allclose(ratios, ratios[0])  # equal steps on a log axis
    assert ratios[0] == pytest.approx(1e6 ** (1 / 199))
    lin = lr_ramp(0.01, 1.0, 100, "linear")
    np.testing.assert_allclose(np.diff(lin), 0.99 / 99)
    assert lin[0] == 0.01 and lin[-1] == pytest.approx(1.0)
    for bad in [(1.0, 0.1, 10, "exp"), (0.0, 1.0, 10, "exp"), (1e-3, 1, 1, "exp")]:
        with pytest.raises(ValueError):
            lr_ramp(*bad)
    with pytest.raises(ValueError, match="mode"):
        lr_ramp(1e-3, 1.0, 10, "cubic")


def test_smoothing_is_a_bias_corrected_ema() -> None:
    beta = 0.98
    s = smooth([2.0, 1.0, 4.0], beta)
    assert s[0] == pytest.approx(2.0)  # bias correction: the first value is itself
    assert s[1] == pytest.approx((beta * 2.0 + 1.0) / (1 + beta))
    assert s[2] == pytest.approx((beta**2 * 2.0 + beta * 1.0 + 4.0) / (1 + beta + beta**2))
    np.testing.assert_allclose(smooth([3.0] * 50), 3.0)


def test_valley_index_matches_fastai() -> None:
    # longest decreasing subsequence 5, 4, 3, 2, 1 ends at index 5; fastai: start 0, 1/3+1/6 in
    assert valley_index(np.array([5.0, 4, 3, 4, 2, 1, 3])) == 1
    assert valley_index(np.arange(10.0)[::-1]) == 3  # start -1 + int(10/3) + int(10/6)


def _known_curve(steps: int = 300):
    """A smooth loss that is a known function of the rate: flat, falling fastest at 1e-2,
    lowest near 0.19, blowing up above 1; accuracy peaks at 0.1."""
    lrs = lr_ramp(1e-5, 10.0, steps)
    u = np.log10(lrs)
    loss = 2.3 - 1.6 / (1 + np.exp(-3.0 * (u + 2))) + np.exp(4.0 * (u - 0.2))
    acc = 0.1 + 0.6 * np.exp(-((u + 1) ** 2) / 1.5)
    return lrs, loss, acc


def test_suggestions_follow_their_rules_on_a_known_curve() -> None:
    lrs, loss, acc = _known_curve()
    sugg = suggest(lrs, loss, acc)  # already smooth: read directly
    step = 1e6 ** (1 / 299)  # one step of the ramp, as a factor
    assert 1e-2 / step <= sugg.steepest <= 1e-2 * step  # fastest fall of loss(log lr)
    i_min = int(np.argmin(loss))
    assert sugg.min_loss == pytest.approx(lrs[i_min])
    # fastai valley: the loss falls all the way from the first kept step (10%) to its minimum,
    # so the valley is half-way along that stretch, in steps: the geometric midpoint
    first = lrs[30]
    assert sugg.valley == pytest.approx(math.sqrt(first * lrs[i_min]), rel=step**2 - 1)
    assert sugg.peak == pytest.approx(sugg.min_loss / 10) and "/ 10" in sugg.peak_rule
    # triangular: high where accuracy has made 90% of its rise towards its peak at 0.1:
    # exp(-(u + 1)^2 / 1.5) = 0.9 at u = -1 - sqrt(1.5 ln(1/0.9)), about lr 0.040
    slows = 10 ** (-1 - math.sqrt(1.5 * math.log(1 / 0.9)))
    assert slows / step <= sugg.triangular_high <= slows * step
    assert "90% of its rise" in sugg.high_rule
    assert sugg.triangular_low == pytest.approx(sugg.triangular_high / 4)
    rises = 10 ** (-1 - math.sqrt(1.5 * math.log(10)))  # 10% of the rise: about 1.4e-3
    assert rises / step <= sugg.acc_rise <= rises * step
    assert not sugg.notes


def test_suggestions_from_a_noisy_range_test_via_the_moving_average() -> None:
    """Noisy batch losses smoothed as recorded: the suggestions keep their order and land
    near the truth, shifted right by the average's lag (about 49 steps, as in fastai)."""
    lrs, loss, acc = _known_curve()
    noisy = loss + 0.05 * np.random.default_rng(0).standard_normal(len(loss))
    sugg = suggest(lrs, smooth(noisy), smooth(acc))
    lag = (1e6 ** (1 / 299)) ** 49  # about 10x in rate at 300 steps over 6 decades
    assert 1e-2 < sugg.steepest < 1e-2 * lag * 1.5
    assert sugg.steepest < sugg.min_loss and sugg.valley < sugg.min_loss
    assert lrs[int(np.argmin(loss))] < sugg.min_loss < lrs[int(np.argmin(loss))] * lag * 1.5


def test_suggestion_without_accuracy_uses_the_lowest_loss() -> None:
    lrs, loss, _ = _known_curve()
    sugg = suggest(lrs, smooth(loss))
    assert sugg.triangular_high == sugg.min_loss and sugg.high_rule == "lowest smoothed loss"


def test_a_flat_bottom_is_reported() -> None:
    """Loss flat from 1e-2 to 3: the probe cannot rank those rates, and says so."""
    lrs = lr_ramp(1e-5, 10.0, 300)
    u = np.log10(lrs)
    loss = np.where(u < -2, 2.3 - 0.3 * (u + 5), 1.4) + np.where(u > 0.5, 3 * (u - 0.5), 0)
    loss = loss + 0.01 * np.sin(7 * u)
    sugg = suggest(lrs, loss)
    lo, hi = sugg.flat
    assert 0.005 < lo < 0.02 and 2 < hi < 6
    assert any("cannot rank" in n for n in sugg.notes)


def test_suggestion_notes_a_curve_still_falling() -> None:
    lrs = lr_ramp(1e-4, 1e-2, 100)
    sugg = suggest(lrs, smooth(3.0 - np.log10(lrs)))
    assert any("still falling" in n for n in sugg.notes)


class _Batches:
    """Three batches per epoch of a fixed random problem: enough to span epochs."""

    def __init__(self) -> None:
        gen = torch.Generator().manual_seed(0)
        self.x = torch.randn(48, 5, generator=gen)
        self.y = torch.randint(0, 3, (48,), generator=gen)
        self.epochs_seen: list[int] = []

    def train_batches(self, seed: int, epoch: int, batch_size: int):
        self.epochs_seen.append(epoch)
        for i in range(0, 48, batch_size):
            yield self.x[i : i + batch_size], self.y[i : i + batch_size]


def test_range_test_spans_epochs_follows_the_ramp_and_stops_on_divergence() -> None:
    torch.manual_seed(0)
    model = nn.Linear(5, 3)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    data = _Batches()
    result = run_range_test(model, opt, data, min_lr=1e-4, max_lr=1e4, steps=40, batch_size=16)
    assert 5 < len(result) < 40  # a rate of 1e4 makes it diverge before the end
    assert "4x its best" in result.stop_reason or "not finite" in result.stop_reason
    np.testing.assert_allclose(result.lrs, lr_ramp(1e-4, 1e4, 40)[: len(result)])
    assert data.epochs_seen[:3] == [0, 1, 2]
    assert [r["step"] for r in result.rows()][:3] == [1, 2, 3]

    torch.manual_seed(0)
    model = nn.Linear(5, 3)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4)
    result = run_range_test(
        model, opt, _Batches(), min_lr=1e-4, max_lr=1e-2, steps=20, batch_size=16, mode="linear"
    )
    assert len(result) == 20 and result.stop_reason == "all 20 steps ran"
    assert opt.param_groups[0]["lr"] == pytest.approx(1e-2)


def test_lr_find_command_end_to_end(cli, tmp_path: Path) -> None:
    out = tmp_path / "lrf"
    res = cli(
        "lr-find", "--dataset", "synthetic", "--model", "resnet8", "--steps", "30",
        "--batch-size", "16", "--device", "cpu", "--out", out,
    )  # fmt: skip
    assert res.code == 0, res.output
    assert "suggested peak rate" in res.out and "triangular bounds" in res.out
    rows = list(csv.DictReader((out / "lr_find.csv").open()))
    assert list(rows[0]) == CSV_COLUMNS
    assert 3 <= len(rows) <= 30 and rows[0]["step"] == "1"
    assert float(rows[0]["lr"]) == pytest.approx(1e-5)
    assert all(0.0 <= float(r["acc"]) <= 1.0 for r in rows)
    pixels = imread(out / "lr_find.png")
    assert pixels.shape[0] > 300 and (abs(pixels[..., 0] - pixels[..., 2]) > 0.2).mean() > 0.001


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--mode", "cubic"], "--mode 'cubic' is not valid"),
        (["--min-lr", "1", "--max-lr", "0.1"], "--max-lr must be above --min-lr"),
        (["--optimizer", "lion"], "--optimizer: 'lion' is not one of"),
        (["--model", "resnet7"], "resnet"),
        (["--steps", "3"], "--steps must be at least 10"),
    ],
)
def test_lr_find_bad_input_is_one_line_and_exit_2(cli, tmp_path, args, message) -> None:
    res = cli("lr-find", "--dataset", "synthetic", "--out", tmp_path / "o", *args)
    assert res.code == 2, res.output
    assert message in res.err and res.err.count("\n") == 1 and "Traceback" not in res.err
