"""Schedules against the README's table in closed form, the modifiers, validation and the API."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lrbench.config import expand, parse_config
from lrbench.errors import UserError
from lrbench.schedules import (
    Schedule,
    ScheduleError,
    build_schedule,
    describe_modifiers,
    describe_schedules,
    schedule_names,
)

DESIGN_NAMES = [
    "constant",
    "step",
    "exponential",
    "linear",
    "cosine",
    "rex",
    "poly",
    "onecycle",
    "triangular",
    "sgdr",
    "wsd",
]


SWEEP = {
    "name": "ids",
    "dataset": "synthetic",
    "models": ["resnet8"],
    "optimizers": [{"name": "sgd", "lr": 0.1}],
    "full_epochs": 10,
    "budgets": [1.0],
    "schedules": ["rex"],
}


def table(spec, total: int = 100, spe: int | None = None) -> np.ndarray:
    return build_schedule(spec).multipliers(total, spe or total)


def progress(total: int) -> np.ndarray:
    return np.arange(total) / total


# --- profiles in closed form -------------------------------------------------------------


@pytest.mark.parametrize("beta", [0.5, 0.9])
def test_rex_is_one_minus_p_over_one_minus_beta_p(beta):
    p = progress(1000)
    got = table({"name": "rex", "beta": beta}, 1000)
    np.testing.assert_allclose(got, (1 - p) / (1 - beta * p), rtol=1e-12)
    assert got[0] == 1.0
    assert got[-1] == pytest.approx(0.001 / (1 - beta * 0.999))


def test_rex_default_is_the_papers_half():
    p = progress(50)
    np.testing.assert_allclose(table("rex", 50), (1 - p) / (1 - p / 2), rtol=1e-12)


def test_onecycle_rate_and_momentum_follow_the_three_phases():
    sched = build_schedule("onecycle")
    p = progress(200)
    knots = [0.0, 0.45, 0.9, 1.0]
    np.testing.assert_allclose(
        sched.multipliers(200, 200), np.interp(p, knots, [0.1, 1.0, 0.1, 0.001]), rtol=1e-12
    )
    np.testing.assert_allclose(
        sched.momenta(200, 200), np.interp(p, knots, [0.95, 0.85, 0.95, 0.95]), rtol=1e-12
    )
    assert sched.sets_momentum


def test_onecycle_pct_half_final_div_ten_is_the_rex_papers_symmetric_triangle():
    sched = build_schedule({"name": "onecycle", "pct_start": 0.5, "final_div": 10})
    rate, mom = sched.multipliers(100, 10), sched.momenta(100, 10)
    np.testing.assert_allclose(rate, np.interp(progress(100), [0, 0.5, 1], [0.1, 1, 0.1]))
    np.testing.assert_allclose(mom, np.interp(progress(100), [0, 0.5, 1], [0.95, 0.85, 0.95]))
    assert rate[50] == 1.0 and mom[50] == pytest.approx(0.85)
    np.testing.assert_allclose(rate[1:], rate[1:][::-1], rtol=1e-12)
    np.testing.assert_allclose(mom[1:], mom[1:][::-1], rtol=1e-12)


def test_onecycle_custom_momentum_and_div():
    sched = build_schedule({"name": "onecycle", "div": 25, "momentum": [0.9, 0.8]})
    assert sched.multipliers(100, 100)[0] == pytest.approx(1 / 25)
    mom = sched.momenta(100, 100)
    assert mom[0] == 0.9 and mom[45] == pytest.approx(0.8) and mom[95] == 0.9


@pytest.mark.parametrize(
    ("shape", "cooldown"),
    [
        ("1-sqrt", lambda q: 1 - np.sqrt(q)),
        ("linear", lambda q: 1 - q),
        ("cosine", lambda q: (1 + np.cos(np.pi * q)) / 2),
    ],
)
def test_wsd_holds_then_cools_down_over_the_last_decay(shape, cooldown):
    got = table({"name": "wsd", "decay": 0.25, "shape": shape}, 200)
    p = progress(200)
    assert np.all(got[:150] == 1.0)
    np.testing.assert_allclose(got[150:], cooldown((p[150:] - 0.75) / 0.25), rtol=1e-12, atol=1e-15)


def test_wsd_linear_is_the_papers_linear_delayed():
    np.testing.assert_allclose(
        table({"name": "wsd", "decay": 0.5, "shape": "linear"}, 100),
        np.minimum(1.0, 2 * (1 - progress(100))),
        rtol=1e-12,
    )


@pytest.mark.parametrize(("power", "final"), [(2.0, 0.0), (0.5, 0.1), (3, 0.2)])
def test_poly(power, final):
    p = progress(120)
    got = table({"name": "poly", "power": power, "final": final}, 120)
    np.testing.assert_allclose(got, final + (1 - final) * (1 - p) ** power, rtol=1e-12)


def test_constant_and_exponential():
    assert np.all(table("constant", 7) == 1.0)
    np.testing.assert_allclose(
        table({"name": "exponential", "rate": 2}, 50), np.exp(-2 * progress(50))
    )


def test_step_counts_milestones_reached_and_hits_them_on_whole_steps():
    got = table({"name": "step", "milestones": [0.3, 0.6, 0.7], "gamma": 0.5}, 10)
    np.testing.assert_allclose(got, [1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.125, 0.125, 0.125])


def test_triangular_exp_range_shrinks_by_gamma_per_half_cycle():
    sched = build_schedule({"name": "exp_range", "gamma": 0.8, "low": 0.2, "step_size": 0.1})
    got = sched.multipliers(100, 100)
    half_cycles = np.arange(100) / 10
    wave = 1 - np.abs(half_cycles % 2 - 1)
    np.testing.assert_allclose(got, 0.2 + 0.8 * wave * 0.8**half_cycles, rtol=1e-12, atol=1e-15)
    assert sched.label == "exp_range" and sched.params["mode"] == "exp_range"


def test_triangular_cycle_momentum_moves_opposite_between_max_and_min():
    sched = build_schedule(
        {"name": "triangular", "cycle_momentum": True, "momentum": [0.95, 0.85], "low": 0.25}
    )
    rate, mom = sched.multipliers(80, 10), sched.momenta(80, 10)
    assert sched.sets_momentum
    assert rate[0] == 0.25 and mom[0] == 0.95
    assert rate[10] == 1.0 and mom[10] == pytest.approx(0.85)
    np.testing.assert_allclose((rate - 0.25) / 0.75, (0.95 - mom) / 0.1, atol=1e-12)
    assert build_schedule("triangular").momenta(80, 10) is None


def test_sgdr_cycles_fill_the_budget():
    got = table({"name": "sgdr", "cycles": 3, "t_mult": 2, "final": 0.1}, 70)
    restarts = [t for t in range(1, 70) if got[t] > got[t - 1]]
    assert restarts == [10, 30]
    assert got[0] == got[10] == got[30] == 1.0
    assert got[69] == pytest.approx(0.1 + 0.9 * (1 + np.cos(np.pi * 39 / 40)) / 2)
    equal = table({"name": "sgdr", "cycles": 4, "t_mult": 1}, 100)
    assert [t for t in range(1, 100) if equal[t] > equal[t - 1]] == [25, 50, 75]


@pytest.mark.parametrize("final", [0.0, 0.01, 0.3])
def test_rex_and_exponential_decay_to_their_floor(final):
    p = progress(200)
    rex = table({"name": "rex", "beta": 0.9, "final": final}, 200)
    np.testing.assert_allclose(rex, final + (1 - final) * (1 - p) / (1 - 0.9 * p), rtol=1e-12)
    exp = table({"name": "exponential", "rate": 4, "final": final}, 200)
    np.testing.assert_allclose(exp, final + (1 - final) * np.exp(-4 * p), rtol=1e-12)


def test_piecewise_draws_straight_lines_between_its_points():
    got = table({"name": "piecewise", "points": [[0, 1], [0.5, 0.2], [1, 0]]}, 10)
    np.testing.assert_allclose(got, [1, 0.84, 0.68, 0.52, 0.36, 0.2, 0.16, 0.12, 0.08, 0.04])
    assert np.array_equal(table("piecewise", 37), table({"name": "linear"}, 37))


@pytest.mark.parametrize(("step_size", "low", "total"), [(0.125, 0.1, 400), (0.25, 0.01, 1000),
                                                         (0.3, 0.0, 97), (1.0, 0.5, 50)])  # fmt: skip
def test_cyclic_with_a_linear_profile_is_smiths_triangular(step_size, low, total):
    clr = {"step_size": step_size, "low": low, "warmup": 0.1}
    cyclic = build_schedule({"name": "cyclic", "profile": "linear", **clr})
    triangular = build_schedule({"name": "triangular", **clr})
    np.testing.assert_allclose(
        cyclic.multipliers(total, 7), triangular.multipliers(total, 7), rtol=1e-12, atol=1e-15
    )
    assert cyclic.cycle_end_steps(total, 7) == triangular.cycle_end_steps(total, 7)


def test_cyclic_rises_with_the_decay_upside_down_then_falls_with_it():
    got = table({"name": "cyclic", "profile": "cosine", "step_size": 0.25, "low": 0.2}, 400)
    u = np.arange(100) / 100
    decay = (1 + np.cos(np.pi * u)) / 2
    rise, fall = 0.2 + 0.8 * (1 - decay), 0.2 + 0.8 * decay
    np.testing.assert_allclose(got, np.concatenate([rise, fall, rise, fall]), atol=1e-12)
    assert build_schedule("cyclic").params["profile"] == {"name": "linear", "final": 0.0}


@pytest.mark.parametrize(
    "restart", [{}, {"cycles": 4, "t_mult": 1}, {"cycles": 5, "t_mult": 1.5, "final": 0.05}]
)
def test_restarts_with_a_cosine_profile_is_sgdr(restart):
    sgdr = build_schedule({"name": "sgdr", "warmup": 0.05, **restart})
    restarts = build_schedule({"name": "restarts", "profile": "cosine", "warmup": 0.05, **restart})
    assert np.array_equal(restarts.multipliers(700, 9), sgdr.multipliers(700, 9))
    assert restarts.cycle_end_steps(700, 9) == sgdr.cycle_end_steps(700, 9)


def test_restarts_run_the_profile_from_1_to_final_in_every_cycle():
    got = table({"name": "restarts", "profile": {"name": "rex", "beta": 0.9}, "final": 0.1}, 70)
    cycles = [np.arange(10) / 10, np.arange(20) / 20, np.arange(40) / 40]
    rex = [0.1 + 0.9 * (1 - u) / (1 - 0.9 * u) for u in cycles]
    np.testing.assert_allclose(got, np.concatenate(rex), rtol=1e-12)


def test_a_cycles_floor_is_its_own_key_not_the_profiles():
    with pytest.raises(ScheduleError, match=r"final=0.3 is not used here.*set restarts's final"):
        build_schedule({"name": "restarts", "profile": {"name": "cosine", "final": 0.3}})
    with pytest.raises(ScheduleError, match="set cyclic's low"):
        build_schedule({"name": "cyclic", "profile": {"name": "rex", "final": 0.1}})
    explicit = build_schedule({"name": "cyclic", "profile": {"name": "cosine", "final": 0.0}})
    assert explicit == build_schedule({"name": "cyclic", "profile": "cosine"})


# --- modifiers ---------------------------------------------------------------------------


def test_warmup_ramps_from_zero_then_runs_the_compressed_profile():
    got = table({"name": "rex", "warmup": 0.1}, 100)
    np.testing.assert_allclose(got[:10], np.arange(10) / 10)
    q = (progress(100)[10:] - 0.1) / 0.9
    np.testing.assert_allclose(got[10:], (1 - q) / (1 - q / 2), rtol=1e-12)
    assert got[10] == 1.0


def test_warmup_rises_to_the_profiles_start_and_holds_momentum():
    sched = build_schedule({"name": "onecycle", "warmup": 0.2})
    rate, mom = sched.multipliers(50, 50), sched.momenta(50, 50)
    np.testing.assert_allclose(rate[:10], 0.1 * np.arange(10) / 10)
    assert rate[10] == pytest.approx(0.1)
    assert np.all(mom[:11] == 0.95)
    assert mom[10 + 18] == pytest.approx(0.85)


def test_warmup_compression_hits_milestones_on_whole_steps():
    got = table({"name": "step", "milestones": [0.5], "warmup": 0.2}, 100)
    assert got[59] == 1.0 and got[60] == pytest.approx(0.1)


def test_sample_every_iteration_is_the_plain_schedule():
    assert np.array_equal(table({"name": "cosine", "sample_every": "iteration"}), table("cosine"))


def test_sample_every_epoch_holds_the_value_from_each_epochs_first_step():
    got = table({"name": "linear", "sample_every": "epoch"}, 100, spe=30)
    expect = 1 - (np.arange(100) // 30 * 30) / 100
    np.testing.assert_allclose(got, expect, rtol=1e-12)


def test_sample_every_fraction_starts_intervals_on_whole_steps():
    got = table({"name": "linear", "sample_every": 0.1}, 100)
    expect = 1 - (np.arange(100) // 10 * 10) / 100
    np.testing.assert_allclose(got, expect, rtol=1e-12)
    assert got[30] == pytest.approx(0.7) and got[29] == pytest.approx(0.8)


def test_sample_every_includes_the_warmup():
    got = table({"name": "constant", "warmup": 0.5, "sample_every": 0.25}, 8)
    np.testing.assert_allclose(got, [0, 0, 0.5, 0.5, 1, 1, 1, 1])


def test_sample_every_fraction_not_on_a_step_reads_the_interval_start():
    got = table({"name": "linear", "sample_every": 0.3}, 10)
    np.testing.assert_allclose(got, [1, 1, 1, 0.7, 0.7, 0.7, 0.4, 0.4, 0.4, 0.1], rtol=1e-12)


def test_sample_at_reads_the_largest_listed_point_reached():
    got = table({"name": "exponential", "sample_at": [0.5, 0.75]}, 100)
    np.testing.assert_allclose(got[:50], 1.0)
    np.testing.assert_allclose(got[50:75], np.exp(-1.5))
    np.testing.assert_allclose(got[75:], np.exp(-2.25))


def test_sample_at_with_warmup_and_zero_listed():
    got = table({"name": "linear", "sample_at": [0.0, 0.3, 0.6], "warmup": 0.0}, 10)
    np.testing.assert_allclose(got, [1, 1, 1, 0.7, 0.7, 0.7, 0.4, 0.4, 0.4, 0.4], rtol=1e-12)


# --- validation --------------------------------------------------------------------------

BAD = [
    ("rexx", ["unknown schedule", "'rex'"]),
    ({"name": "cosin"}, ["did you mean 'cosine'"]),
    ({"beta": 0.9}, ["'name'"]),
    (3, ["name or a mapping"]),
    ({"name": 3}, ["name"]),
    ({"name": "rex", "bta": 0.9}, ["unknown parameter 'bta'", "did you mean 'beta'"]),
    ({"name": "rex", "beta": 1.0}, ["beta=1.0", "[0, 1)"]),
    ({"name": "rex", "beta": -0.1}, ["beta", "[0, 1)"]),
    ({"name": "rex", "beta": "0.9"}, ["beta", "a number"]),
    ({"name": "rex", "beta": True}, ["beta"]),
    ({"name": "rex", "beta": float("nan")}, ["beta"]),
    ({"name": "step", "milestones": [0.75, 0.5]}, ["milestones", "increasing"]),
    ({"name": "step", "milestones": [0.5, 1.0]}, ["milestones", "(0, 1)"]),
    ({"name": "step", "milestones": 0.5}, ["milestones", "list"]),
    ({"name": "step", "gamma": 0}, ["gamma", "(0, 1]"]),
    ({"name": "exponential", "rate": -1}, ["rate", ">= 0"]),
    ({"name": "linear", "final": 1.5}, ["final", "[0, 1]"]),
    ({"name": "poly", "power": 0}, ["power", "> 0"]),
    ({"name": "sgdr", "cycles": 0}, ["cycles", "whole number"]),
    ({"name": "sgdr", "cycles": 2.5}, ["cycles", "whole number"]),
    ({"name": "sgdr", "t_mult": 0.5}, ["t_mult", ">= 1"]),
    ({"name": "sgdr", "cycles": 1000, "t_mult": 2}, ["first cycle"]),
    ({"name": "sgdr", "cycles": 400, "t_mult": 10}, ["first cycle"]),
    ({"name": "onecycle", "pct_start": 0.6}, ["pct_start", "(0, 0.5]"]),
    ({"name": "onecycle", "momentum": [0.95]}, ["momentum", "two numbers"]),
    ({"name": "onecycle", "momentum": [0.95, 1.2]}, ["momentum", "two numbers"]),
    ({"name": "triangular", "mode": "tri"}, ["mode", "triangular2"]),
    ({"name": "triangular", "step_size": 0}, ["step_size", "(0, 1]"]),
    ({"name": "triangular", "cycle_momentum": "yes"}, ["cycle_momentum", "true or false"]),
    ({"name": "triangular2", "mode": "exp_range"}, ["contradicts", "mode"]),
    ({"name": "wsd", "shape": "sqrt"}, ["shape", "1-sqrt"]),
    ({"name": "wsd", "decay": 0}, ["decay", "(0, 1]"]),
    ({"name": "rex", "warmup": 1.0}, ["warmup", "[0, 1)"]),
    ({"name": "rex", "warmup": -0.05}, ["warmup", "[0, 1)"]),
    ({"name": "rex", "sample_every": 0}, ["sample_every", "iteration, epoch"]),
    ({"name": "rex", "sample_every": 1.5}, ["sample_every", "(0, 1]"]),
    ({"name": "rex", "sample_every": "epochs"}, ["sample_every", "iteration, epoch"]),
    ({"name": "rex", "sample_at": [0.5, 0.2]}, ["sample_at", "increasing"]),
    ({"name": "rex", "sample_at": [0.5, 1.0]}, ["sample_at", "[0, 1)"]),
    ({"name": "rex", "sample_at": [0.5], "sample_every": "epoch"}, ["sample_every or sample_at"]),
    ({"name": "rex", "label": ""}, ["label"]),
    ({"name": "rex", "label": 5}, ["label"]),
    ({"name": "rex", "final": 1.5}, ["final=1.5", "[0, 1]"]),
    ({"name": "exponential", "final": -0.1}, ["final", "[0, 1]"]),
    ({"name": "piecewise", "points": [[0, 1], [0.5], [1, 0]]}, ["points[1]=[0.5]", "[p, m]"]),
    ({"name": "piecewise", "points": [[0.1, 1], [1, 0]]}, ["points=", "first point's p must be 0"]),
    ({"name": "piecewise", "points": [[0, 1], [0.5, 1]]}, ["last's 1"]),
    ({"name": "piecewise", "points": [[0, 1], [0.6, 1], [0.5, 1], [1, 0]]}, ["points[2]", "0.5"]),
    ({"name": "piecewise", "points": [[0, 1], [1, -0.5]]}, ["points[1]", "m must be >= 0"]),
    ({"name": "piecewise", "points": 0.5}, ["points", "list"]),
    ({"name": "cyclic", "profile": "onecycle"}, ["'onecycle' is not a decaying profile", "rex"]),
    ({"name": "cyclic", "profile": "cosin"}, ["profile", "did you mean 'cosine'"]),
    ({"name": "cyclic", "profile": {"name": "rex", "bta": 0.9}}, ["profile", "'bta'", "'beta'"]),
    ({"name": "cyclic", "profile": {"name": "rex", "beta": 2}}, ["profile", "beta=2", "[0, 1)"]),
    ({"name": "cyclic", "profile": {"name": "rex", "warmup": 0.1}}, ["profile", "'warmup'"]),
    ({"name": "cyclic", "profile": 3}, ["profile=3", "decaying profile"]),
    ({"name": "cyclic", "step_size": 0}, ["step_size", "(0, 1]"]),
    ({"name": "cyclic", "low": 1.5}, ["low", "[0, 1]"]),
    ({"name": "restarts", "profile": "restarts"}, ["not a decaying profile"]),
    ({"name": "restarts", "cycles": 0}, ["cycles", "whole number"]),
    ({"name": "restarts", "cycles": 1000, "t_mult": 2}, ["first cycle"]),
    ({"name": "import"}, ["import is required", "module:function"]),
    ({"import": "no colon"}, ["'no colon' is not an import path", "module:function"]),
]


@pytest.mark.parametrize(("spec", "words"), BAD, ids=[repr(s) for s, _ in BAD])
def test_bad_specs_name_the_key_and_what_it_accepts(spec, words):
    with pytest.raises(ScheduleError) as info:
        build_schedule(spec)
    message = str(info.value)
    assert isinstance(info.value, UserError)
    assert "\n" not in message
    for word in words:
        assert word in message


@pytest.mark.parametrize(("total", "spe"), [(0, 1), (10, 0), (-5, 1), (10.0, 1), (True, 1)])
def test_tables_need_whole_positive_budgets(total, spe):
    with pytest.raises(ScheduleError, match="whole number"):
        build_schedule("rex").multipliers(total, spe)


# --- the public API ----------------------------------------------------------------------


def test_every_design_schedule_is_registered_with_aliases_after():
    names = schedule_names()
    assert names[: len(DESIGN_NAMES)] == DESIGN_NAMES
    assert {"triangular2", "exp_range"} <= set(names)
    assert "plateau" in names  # reactive: see tests/test_reactive.py


@pytest.mark.parametrize(
    "name", [*DESIGN_NAMES, "triangular2", "exp_range", "piecewise", "cyclic", "restarts"]
)
def test_to_dict_is_json_and_round_trips(name):
    sched = build_schedule(name)
    data = json.loads(json.dumps(sched.to_dict()))
    assert data["name"] == sched.name and data["label"] == name
    assert build_schedule(data) == sched
    assert hash(build_schedule(data)) == hash(sched)
    assert np.array_equal(build_schedule(data).multipliers(37, 5), sched.multipliers(37, 5))


def test_params_resolve_defaults_and_modifiers():
    sched = build_schedule({"name": "step", "gamma": 0.2, "label": "step-0.2"})
    assert sched.label == "step-0.2"
    assert sched.params == {
        "milestones": [0.5, 0.75],
        "gamma": 0.2,
        "warmup": 0.0,
        "sample_every": "iteration",
        "sample_at": None,
    }
    assert Schedule("step", "step-0.2", {"gamma": 0.2}) == sched
    with pytest.raises(ScheduleError, match="not a parameter"):
        Schedule("step", "step", {"label": "x"})
    assert build_schedule({"name": "rex", "beta": 0.5}) == build_schedule("rex")
    assert build_schedule({"name": "rex", "label": "other"}) != build_schedule("rex")


def test_a_parameter_added_later_keeps_the_specs_and_run_ids_of_existing_runs():
    """rex and exponential gained `final`: at its default it stays out of spec.json, whose
    hash is in the run id, so runs recorded before keep their ids."""
    before = {"warmup": 0.0, "sample_every": "iteration", "sample_at": None}
    assert build_schedule("rex").to_dict() == {"name": "rex", "label": "rex", "beta": 0.5, **before}
    assert build_schedule("exponential").to_dict() == {
        "name": "exponential",
        "label": "exponential",
        "rate": 3.0,
        **before,
    }
    assert build_schedule({"name": "rex", "final": 0.0}) == build_schedule("rex")
    assert build_schedule({"name": "rex", "final": 0.01}).to_dict()["final"] == 0.01
    assert build_schedule("rex").params["final"] == 0.0
    assert build_schedule("linear").to_dict()["final"] == 0.0  # recorded from the start

    old = {"name": "rex", "label": "rex", "beta": 0.5, **before}
    recorded = expand(parse_config(SWEEP))[0]
    assert recorded.schedule == old
    assert recorded.run_id == recorded.model_copy(update={"schedule": old}).run_id


def test_to_dict_is_a_copy():
    sched = build_schedule("step")
    sched.to_dict()["milestones"].append(0.9)
    assert sched.params["milestones"] == [0.5, 0.75]


def test_tuples_and_numpy_numbers_are_accepted_from_python():
    sched = build_schedule(
        {"name": "step", "milestones": (0.5, np.float64(0.75)), "gamma": np.float32(0.5)}
    )
    assert sched.params["milestones"] == [0.5, 0.75]
    assert build_schedule({"name": "sgdr", "cycles": np.int64(2)}).params["cycles"] == 2


def test_tables_are_float64_of_length_t_and_pure():
    sched = build_schedule({"name": "onecycle", "warmup": 0.1, "sample_every": "epoch"})
    first = sched.multipliers(391, 17)
    assert first.dtype == np.float64 and first.shape == (391,)
    assert np.array_equal(first, sched.multipliers(391, 17))
    assert sched.momenta(391, 17).shape == (391,)
    assert build_schedule("cosine").momenta(10, 10) is None


def test_describe_lists_parameters_with_the_design_defaults():
    described = {d["name"]: d for d in describe_schedules()}
    assert list(described) == [
        *DESIGN_NAMES,
        "plateau",
        "piecewise",
        "cyclic",
        "restarts",
        "import",
    ]
    defaults = {n: {p["name"]: p["default"] for p in d["parameters"]} for n, d in described.items()}
    assert defaults["step"] == {"milestones": [0.5, 0.75], "gamma": 0.1}
    assert defaults["onecycle"] == {
        "pct_start": 0.45,
        "div": 10.0,
        "final_div": 1000.0,
        "momentum": [0.95, 0.85],
    }
    assert defaults["sgdr"] == {"cycles": 3, "t_mult": 2.0, "final": 0.0}
    assert defaults["wsd"] == {"decay": 0.2, "shape": "1-sqrt"}
    assert defaults["triangular"]["step_size"] == 0.125 and defaults["triangular"]["low"] == 0.1
    assert defaults["cyclic"] == {"profile": "linear", "step_size": 0.125, "low": 0.1}
    assert defaults["restarts"] == {"cycles": 3, "t_mult": 2.0, "final": 0.0, "profile": "cosine"}
    assert defaults["rex"] == {"beta": 0.5, "final": 0.0}
    assert defaults["import"] == {"import": None, "source_hash": None}
    assert all(d["doc"] and all(p["accepts"] for p in d["parameters"]) for d in described.values())
    assert [m["name"] for m in describe_modifiers()] == [
        "warmup",
        "sample_every",
        "sample_at",
        "label",
    ]
