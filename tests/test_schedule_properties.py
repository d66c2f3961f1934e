"""Property tests over random parameters and budgets.

The oracle is a scalar reference written from the README's table, deciding every boundary in
exact rational arithmetic (a parameter means the decimal the user typed: 0.1 is 1/10). The
vectorised tables must match it at every step, so milestones, cycle ends, sampling intervals and
the end of warmup land on the same steps however the floats round.
"""

from __future__ import annotations

import itertools
import json
import math
from fractions import Fraction
from typing import Any

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from lrbench.schedules import build_schedule

checked = settings(max_examples=150, deadline=None)


def exact(x: float) -> Fraction:
    return Fraction(repr(x))


def thousandths(low: int, high: int) -> st.SearchStrategy[float]:
    return st.integers(low, high).map(lambda k: k / 1000)


def increasing(
    low: int, high: int, max_size: int, min_size: int = 0
) -> st.SearchStrategy[list[float]]:
    return st.lists(st.integers(low, high), min_size=min_size, max_size=max_size, unique=True).map(
        lambda ks: [k / 1000 for k in sorted(ks)]
    )


unit = st.floats(0.0, 1.0, allow_subnormal=False)  # a 5e-324 floor breaks ramps by rounding
pair = st.lists(st.floats(0.5, 0.99), min_size=2, max_size=2)

PROFILES: dict[str, st.SearchStrategy[dict[str, Any]]] = {
    "constant": st.fixed_dictionaries({}),
    "step": st.fixed_dictionaries(
        {"milestones": increasing(1, 999, 4), "gamma": st.floats(0.01, 1.0)}
    ),
    "exponential": st.fixed_dictionaries({"rate": st.floats(0.0, 10.0)}, optional={"final": unit}),
    "linear": st.fixed_dictionaries({"final": unit}),
    "cosine": st.fixed_dictionaries({"final": unit}),
    "rex": st.fixed_dictionaries({"beta": st.floats(0.0, 0.99)}, optional={"final": unit}),
    "poly": st.fixed_dictionaries({"power": st.floats(0.1, 5.0), "final": unit}),
    "onecycle": st.fixed_dictionaries(
        {
            "pct_start": thousandths(1, 500),
            "div": st.floats(1.0, 100.0),
            "final_div": st.floats(1.0, 1e4),
            "momentum": pair,
        }
    ),
    "triangular": st.fixed_dictionaries(
        {
            "mode": st.sampled_from(["triangular", "triangular2", "exp_range"]),
            "low": unit,
            "step_size": thousandths(1, 1000),
            "gamma": st.floats(0.5, 1.0),
            "cycle_momentum": st.booleans(),
            "momentum": pair,
        }
    ),
    "sgdr": st.fixed_dictionaries(
        {"cycles": st.integers(1, 6), "t_mult": st.integers(1, 3), "final": unit}
    ),
    "wsd": st.fixed_dictionaries(
        {
            "decay": thousandths(1, 1000),
            "shape": st.sampled_from(["1-sqrt", "linear", "cosine"]),
        }
    ),
    "piecewise": st.builds(
        lambda inside, ms: {"points": [[p, m] for p, m in zip([0, *inside, 1], ms, strict=False)]},
        increasing(1, 999, 4),
        st.lists(unit, min_size=6, max_size=6),
    ),
}
DECAYING = ["step", "exponential", "linear", "cosine", "rex", "poly", "wsd", "piecewise"]


@st.composite
def decaying(draw) -> dict[str, Any]:
    """A decaying profile as cycles run it: its floor at 0."""
    name = draw(st.sampled_from(DECAYING))
    params = draw(PROFILES[name])
    return {"name": name, **{k: 0.0 if k == "final" else v for k, v in params.items()}}


PROFILES["cyclic"] = st.fixed_dictionaries(
    {"profile": decaying(), "step_size": thousandths(1, 1000), "low": unit}
)
PROFILES["restarts"] = st.fixed_dictionaries(
    {
        "profile": decaying(),
        "cycles": st.integers(1, 6),
        "t_mult": st.integers(1, 3),
        "final": unit,
    }
)

SAMPLING = st.one_of(
    st.just({}),
    st.just({"sample_every": "epoch"}),
    st.builds(lambda s: {"sample_every": s}, thousandths(1, 1000)),
    st.builds(lambda a: {"sample_at": a}, increasing(0, 999, 4, min_size=1)),
)


@st.composite
def specs(draw, warmup: bool = True, sampling: bool = True) -> dict[str, Any]:
    name = draw(st.sampled_from(sorted(PROFILES)))
    spec = {"name": name, **draw(PROFILES[name])}
    if warmup and draw(st.booleans()):
        spec["warmup"] = draw(st.integers(0, 90)) / 100
    if sampling:
        spec.update(draw(SAMPLING))
    return spec


@st.composite
def budgets(draw) -> tuple[int, int]:
    total = draw(st.integers(1, 400))
    return total, draw(st.integers(1, total))


# --- the scalar reference ----------------------------------------------------------------


def start_value(spec: dict[str, Any]) -> float:
    """m(0) of the profile: where warmup rises to."""
    return profile(spec, Fraction(0))[0]


def profile(spec: dict[str, Any], q: Fraction) -> tuple[float, float | None]:
    """(m, momentum) at progress q of the profile."""
    name, p = spec["name"], float(q)
    if name == "constant":
        return 1.0, None
    if name == "step":
        return spec["gamma"] ** sum(q >= exact(m) for m in spec["milestones"]), None
    if name == "exponential":
        return floor(spec, math.exp(-spec["rate"] * p)), None
    if name == "linear":
        return 1 - (1 - spec["final"]) * p, None
    if name == "cosine":
        return spec["final"] + (1 - spec["final"]) * (1 + math.cos(math.pi * p)) / 2, None
    if name == "rex":
        return floor(spec, (1 - p) / (1 - spec["beta"] * p)), None
    if name == "poly":
        return spec["final"] + (1 - spec["final"]) * (1 - p) ** spec["power"], None
    if name == "onecycle":
        return onecycle(spec, q)
    if name == "triangular":
        return triangular(spec, q)
    if name == "sgdr":
        return sgdr(spec, q), None
    if name == "piecewise":
        return piecewise(spec, q), None
    if name == "cyclic":
        return cyclic(spec, q), None
    if name == "restarts":
        return restarts(spec, q), None
    return wsd(spec, q), None


def floor(spec: dict[str, Any], decay: float) -> float:
    return spec.get("final", 0.0) + (1 - spec.get("final", 0.0)) * decay


def onecycle(spec: dict[str, Any], q: Fraction) -> tuple[float, float]:
    a, low, end = exact(spec["pct_start"]), 1 / spec["div"], 1 / spec["final_div"]
    high_m, low_m = spec["momentum"]
    if q < a:
        f = float(q / a)
        return low + (1 - low) * f, high_m - (high_m - low_m) * f
    if q < 2 * a:
        f = float((q - a) / a)
        return 1 - (1 - low) * f, low_m + (high_m - low_m) * f
    return low + (end - low) * float((q - 2 * a) / (1 - 2 * a)), high_m


def triangular(spec: dict[str, Any], q: Fraction) -> tuple[float, float | None]:
    s = exact(spec["step_size"])
    cycle = math.floor(q / (2 * s)) + 1
    height = max(0.0, 1 - abs(float(q / s - 2 * cycle + 1)))
    if spec["mode"] == "triangular2":
        height /= 2 ** (cycle - 1)
    elif spec["mode"] == "exp_range":
        height *= spec["gamma"] ** float(q / s)
    high_m, low_m = spec["momentum"]
    mom = high_m - (high_m - low_m) * height if spec["cycle_momentum"] else None
    return spec["low"] + (1 - spec["low"]) * height, mom


def within_cycle(spec: dict[str, Any], q: Fraction) -> Fraction:
    """How far into its restart cycle q is (cycles growing by t_mult fill the budget)."""
    n, k = spec["cycles"], spec["t_mult"]
    lengths = [Fraction(k**i, sum(k**j for j in range(n))) for i in range(n)]
    start, cycle = Fraction(0), 0
    while cycle + 1 < n and q >= start + lengths[cycle]:
        start += lengths[cycle]
        cycle += 1
    return (q - start) / lengths[cycle]


def sgdr(spec: dict[str, Any], q: Fraction) -> float:
    inside = float(within_cycle(spec, q))
    return spec["final"] + (1 - spec["final"]) * (1 + math.cos(math.pi * inside)) / 2


def restarts(spec: dict[str, Any], q: Fraction) -> float:
    return floor(spec, profile(spec["profile"], within_cycle(spec, q))[0])


def cyclic(spec: dict[str, Any], q: Fraction) -> float:
    """Half-cycles alternate rise (1 - decay) and fall (decay), starting with a rise."""
    s = exact(spec["step_size"])
    half = math.floor(q / s)
    decay = profile(spec["profile"], q / s - half)[0]
    shape = 1 - decay if half % 2 == 0 else decay
    return spec["low"] + (1 - spec["low"]) * shape


def piecewise(spec: dict[str, Any], q: Fraction) -> float:
    """Linear between the [p, m] points around q."""
    points = [(exact(float(p)), m) for p, m in spec["points"]]
    for (p0, m0), (p1, m1) in itertools.pairwise(points):
        if p0 <= q <= p1:
            return m0 + (m1 - m0) * float((q - p0) / (p1 - p0))
    raise AssertionError(f"{q} outside the points")


def wsd(spec: dict[str, Any], q: Fraction) -> float:
    start = 1 - exact(spec["decay"])
    if q < start:
        return 1.0
    x = float((q - start) / exact(spec["decay"]))
    return {"1-sqrt": 1 - math.sqrt(x), "linear": 1 - x, "cosine": (1 + math.cos(math.pi * x)) / 2}[
        spec["shape"]
    ]


def read_at(spec: dict[str, Any], step: int, total: int, spe: int) -> Fraction:
    """The progress step `step` reads the schedule at (sample-and-hold)."""
    p = Fraction(step, total)
    if "sample_at" in spec:
        return max(a for a in [Fraction(0), *map(exact, spec["sample_at"])] if a <= p)
    every = spec.get("sample_every", "iteration")
    if every == "epoch":
        return Fraction(step // spe * spe, total)
    if every == "iteration":
        return p
    width = exact(every)
    return math.floor(p / width) * width


def reference(spec: dict[str, Any], step: int, total: int, spe: int) -> tuple[float, float | None]:
    p = read_at(spec, step, total, spe)
    w = exact(spec.get("warmup", 0.0))
    if p < w:
        mom = profile(spec, Fraction(0))[1]
        return start_value(spec) * float(p / w), mom
    return profile(spec, (p - w) / (1 - w))


# --- properties --------------------------------------------------------------------------


@checked
@given(specs(), budgets())
def test_tables_match_the_reference_at_every_step(spec, budget):
    total, spe = budget
    sched = build_schedule(spec)
    rates, moms = sched.multipliers(total, spe), sched.momenta(total, spe)
    expect = [reference(spec, t, total, spe) for t in range(total)]
    np.testing.assert_allclose(rates, [r for r, _ in expect], rtol=1e-9, atol=1e-12)
    if moms is None:
        assert all(m is None for _, m in expect)
    else:
        np.testing.assert_allclose(moms, [m for _, m in expect], rtol=1e-9, atol=1e-12)


@checked
@given(specs(), budgets())
def test_tables_are_finite_non_negative_and_momentum_a_fraction(spec, budget):
    total, spe = budget
    sched = build_schedule(spec)
    rates = sched.multipliers(total, spe)
    assert rates.shape == (total,) and rates.dtype == np.float64
    assert np.all(np.isfinite(rates)) and np.all(rates >= 0)
    assert np.all(rates <= 1 + 1e-12)
    moms = sched.momenta(total, spe)
    assert (moms is not None) == sched.sets_momentum
    if moms is not None:
        assert moms.shape == (total,) and np.all((moms >= 0) & (moms < 1))


@checked
@given(specs(), budgets())
def test_first_step_is_zero_under_warmup_else_the_profiles_start(spec, budget):
    total, spe = budget
    first = build_schedule(spec).multipliers(total, spe)[0]
    expected = 0.0 if spec.get("warmup", 0.0) > 0 else start_value(spec)
    assert math.isclose(first, expected, rel_tol=1e-12)


@checked
@given(specs(warmup=False, sampling=False), st.integers(2, 400), st.data())
def test_warmup_ramp_reaches_the_profiles_start_where_warmup_ends(spec, total, data):
    ramp = data.draw(st.integers(1, total - 1))
    warm = {**spec, "warmup": ramp / total}
    rates = build_schedule(warm).multipliers(total, total)
    plain = build_schedule(spec).multipliers(total, total)
    m0 = plain[0]
    np.testing.assert_allclose(rates[:ramp], m0 * np.arange(ramp) / ramp, rtol=1e-12, atol=1e-15)
    assert math.isclose(rates[ramp], m0, rel_tol=1e-12)
    assert np.all(rates[:ramp] <= m0)


@checked
@given(specs(), budgets())
def test_to_dict_round_trips_through_json(spec, budget):
    total, spe = budget
    sched = build_schedule({**spec, "label": "x"})
    again = build_schedule(json.loads(json.dumps(sched.to_dict())))
    assert again == sched and again.label == "x"
    assert np.array_equal(again.multipliers(total, spe), sched.multipliers(total, spe))
