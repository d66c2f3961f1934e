"""The figures of "The Best Learning Rate Schedules" come out of `lrbench schedule`.

The post's code companion (github.com/wolfecameron/LRSchedules) draws four profiles between
max_lr 0.1 and min_lr 0.001: linear, cosine, exponential (exponent 4) and REX (its blend
0.1/0.9, i.e. beta 0.9), each at sampling intervals of 500/250/100/50/1 of 1,000 iterations, in
half-cycles of 250 of 1,000 iterations, and in restarts with T_0 = 200 and T_mult = 2 over 1,400.
The references below restate its formulas one iteration at a time, in window units: an
iteration k steps into a window of S iterations.
"""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest

MAX_LR, MIN_LR = 0.1, 0.001


def decay(profile: str, k: int, window: int) -> float:
    """The post's decay from MAX_LR to MIN_LR, k iterations into a window."""
    z = k / window
    if profile == "linear":
        shape = 1 - z
    elif profile == "cos":
        shape = (1 + math.cos(math.pi * z)) / 2
    elif profile == "exp":
        shape = math.exp(-4 * z)
    else:  # rex, with z counted from the window's end: left / (0.1 + 0.9 left)
        left = 1 - z
        shape = left / (0.1 + 0.9 * left)
    return MIN_LR + (MAX_LR - MIN_LR) * shape


def growth(profile: str, k: int, window: int) -> float:
    """The post's rise: the decay turned upside down between MIN_LR and MAX_LR."""
    return MAX_LR + MIN_LR - decay(profile, k, window)


def sampled(profile: str, every: int, total: int = 1000) -> list[float]:
    """MAX_LR until the first sample; at every `every`-th iteration the decay is read again."""
    rates, rate = [], MAX_LR
    for t in range(total):
        if t > 0 and t % every == 0:
            rate = decay(profile, t, total)
        rates.append(rate)
    return rates


def cyclical(profile: str, half: int = 250, total: int = 1000) -> list[float]:
    """Even half-cycles rise, odd ones fall."""
    return [
        (growth if (t // half) % 2 == 0 else decay)(profile, t % half, half) for t in range(total)
    ]


def warm_restarts(profile: str, first: int = 200, mult: int = 2, total: int = 1400) -> list:
    rates = []
    for t in range(total):
        k, window = t, first
        while k > window:
            k, window = k - window, window * mult
        rates.append(decay(profile, k % window, window))
    return rates


PROFILE = {  # the post's profile -> lrbench's name and the post's parameters
    "linear": ("linear", {}),
    "cos": ("cosine", {}),
    "exp": ("exponential", {"rate": 4}),
    "rex": ("rex", {"beta": 0.9}),
}
FLOOR = MIN_LR / MAX_LR


def preview(cli, name: str, steps: int, sets: dict[str, object]) -> np.ndarray:
    argv = ["schedule", name, "--steps", str(steps), "--lr", str(MAX_LR), "--format", "csv"]
    result = cli(*argv, *(arg for k, v in sets.items() for arg in ("--set", f"{k}={v}")))
    assert result.code == 0, result.output
    return np.array([float(r["lr"]) for r in csv.DictReader(io.StringIO(result.out))])


def as_profile(profile: str) -> str:
    """The profile as a --set value: '{name: rex, beta: 0.9}'."""
    name, params = PROFILE[profile]
    return "{" + ", ".join(f"{k}: {v}" for k, v in {"name": name, **params}.items()) + "}"


@pytest.mark.parametrize("profile", list(PROFILE))
@pytest.mark.parametrize("every", [500, 250, 100, 50, 1])
def test_each_profile_at_the_posts_sampling_intervals(cli, profile, every):
    name, params = PROFILE[profile]
    got = preview(cli, name, 1000, {**params, "final": FLOOR, "sample_every": every / 1000})
    np.testing.assert_allclose(got, sampled(profile, every), rtol=1e-12)


@pytest.mark.parametrize("profile", list(PROFILE))
def test_each_profile_in_half_cycles_of_250_of_1000(cli, profile):
    cycle = {"profile": as_profile(profile), "step_size": 0.25, "low": FLOOR}
    np.testing.assert_allclose(preview(cli, "cyclic", 1000, cycle), cyclical(profile), rtol=1e-12)


@pytest.mark.parametrize("profile", list(PROFILE))
def test_each_profile_in_restarts_from_200_doubling_over_1400(cli, profile):
    restart = {"profile": as_profile(profile), "cycles": 3, "t_mult": 2, "final": FLOOR}
    got = preview(cli, "restarts", 1400, restart)
    np.testing.assert_allclose(got, warm_restarts(profile), rtol=1e-12)
