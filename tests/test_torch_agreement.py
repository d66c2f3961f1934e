"""Where T x (every boundary) is whole, schedules equal torch's schedulers stepped per step."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch.optim import lr_scheduler  # noqa: E402

from lrbench.schedules import build_schedule  # noqa: E402

LR = 0.1


def torch_rates(make: Callable, total: int, lr: float = LR) -> np.ndarray:
    """The lr torch's optimizer uses at steps 0..T-1, read from its param_groups."""
    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([weight], lr=lr, momentum=0.9)
    scheduler = make(optimizer)
    rates = []
    for _ in range(total):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return np.array(rates)


def ours(spec, total: int) -> np.ndarray:
    return LR * build_schedule(spec).multipliers(total, total)


@pytest.mark.parametrize(("total", "final"), [(200, 0.0), (97, 0.05)])
def test_cosine_equals_cosine_annealing(total, final):
    expect = torch_rates(
        lambda o: lr_scheduler.CosineAnnealingLR(o, T_max=total, eta_min=final * LR), total
    )
    np.testing.assert_allclose(ours({"name": "cosine", "final": final}, total), expect, rtol=1e-6)


@pytest.mark.parametrize(("total", "final"), [(200, 0.0), (64, 0.1)])
def test_linear_equals_linear_lr(total, final):
    expect = torch_rates(
        lambda o: lr_scheduler.LinearLR(o, start_factor=1.0, end_factor=final, total_iters=total),
        total,
    )
    np.testing.assert_allclose(ours({"name": "linear", "final": final}, total), expect, rtol=1e-6)


@pytest.mark.parametrize(
    ("total", "milestones", "gamma"),
    [
        (200, [0.5, 0.75], 0.1),
        (40, [0.5, 0.75], 0.1),
        (300, [0.3, 0.6, 0.9], 0.2),
        (70, [0.1, 0.7], 0.5),
    ],
)
def test_step_equals_multistep_lr(total, milestones, gamma):
    steps = [round(m * total) for m in milestones]
    assert all(math.isclose(s, m * total) for s, m in zip(steps, milestones, strict=True))
    expect = torch_rates(
        lambda o: lr_scheduler.MultiStepLR(o, milestones=steps, gamma=gamma), total
    )
    spec = {"name": "step", "milestones": milestones, "gamma": gamma}
    np.testing.assert_allclose(ours(spec, total), expect, rtol=1e-6)


def test_step_default_is_the_papers_50_75():
    expect = torch_rates(lambda o: lr_scheduler.MultiStepLR(o, milestones=[100, 150]), 200)
    np.testing.assert_allclose(ours("step", 200), expect, rtol=1e-6)


@pytest.mark.parametrize(("total", "rate"), [(200, 3.0), (50, 5.0)])
def test_exponential_equals_exponential_lr(total, rate):
    gamma = math.exp(-rate / total)
    expect = torch_rates(lambda o: lr_scheduler.ExponentialLR(o, gamma=gamma), total)
    np.testing.assert_allclose(
        ours({"name": "exponential", "rate": rate}, total), expect, rtol=1e-6
    )


@pytest.mark.parametrize(
    ("total", "cycles", "t_mult", "first", "final"),
    [(70, 3, 2, 10, 0.0), (100, 4, 1, 25, 0.1), (130, 3, 3, 10, 0.0), (310, 5, 2, 10, 0.01)],
)
def test_sgdr_equals_cosine_annealing_warm_restarts(total, cycles, t_mult, first, final):
    expect = torch_rates(
        lambda o: lr_scheduler.CosineAnnealingWarmRestarts(
            o, T_0=first, T_mult=t_mult, eta_min=final * LR
        ),
        total,
    )
    spec = {"name": "sgdr", "cycles": cycles, "t_mult": t_mult, "final": final}
    np.testing.assert_allclose(ours(spec, total), expect, rtol=1e-6)


@pytest.mark.parametrize("mode", ["triangular", "triangular2"])
@pytest.mark.parametrize(("total", "step_size", "low"), [(200, 0.125, 0.1), (120, 0.05, 0.25)])
def test_triangular_equals_cyclic_lr(mode, total, step_size, low):
    up = round(step_size * total)
    expect = torch_rates(
        lambda o: lr_scheduler.CyclicLR(
            o, base_lr=low * LR, max_lr=LR, step_size_up=up, mode=mode, cycle_momentum=False
        ),
        total,
    )
    spec = {"name": "triangular", "mode": mode, "step_size": step_size, "low": low}
    np.testing.assert_allclose(ours(spec, total), expect, rtol=1e-6)
