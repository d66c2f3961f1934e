"""Schedule-free SGD / AdamW: built by name, switched between y (train) and x (eval) correctly."""

from __future__ import annotations

import copy
import sys

import numpy as np
import pytest
import torch
from torch import nn

from lrbench.errors import UserError
from lrbench.schedules import build_schedule
from lrbench.specs import OptimizerSpec
from lrbench.train.evaluation import averaging_batchnorm, reestimate_batchnorm
from lrbench.train.optim import (
    build_optimizer,
    check_schedule,
    for_evaluation,
    for_training,
    is_schedule_free,
    set_hparams,
)

pytest.importorskip("schedulefree")


pytestmark = pytest.mark.usefixtures("one_thread")


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))


def _data(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return torch.randn(n, 4, generator=gen), torch.randint(0, 3, (n,), generator=gen)


def _train(model, opt, steps: int, lr: float | None = None) -> None:
    x, y = _data()
    for _ in range(steps):
        if lr is not None:
            set_hparams(opt, lr, None)
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def _flat(model: nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten().clone() for p in model.parameters()])


@pytest.mark.parametrize("name", ["sgd_schedulefree", "adamw_schedulefree"])
def test_eval_mode_holds_the_average_x_and_train_mode_gives_y_back(name: str) -> None:
    model = _model()
    spec = OptimizerSpec(name=name, lr=0.05 if name.startswith("sgd") else 1e-2)
    opt = build_optimizer(spec, model.parameters())
    assert is_schedule_free(opt)
    with pytest.raises(Exception, match="train mode"):  # schedulefree refuses to step in eval
        _train(model, opt, 1)
    for_training(opt)
    _train(model, opt, 5)
    y = _flat(model)
    z = torch.cat([opt.state[p]["z"].flatten() for p in model.parameters()])
    beta = 0.9  # SGD's momentum and AdamW's beta1 both default to 0.9
    for_evaluation(opt)
    x = _flat(model)
    # y = (1 - beta) z + beta x  (the paper's interpolation), so x = (y - (1 - beta) z) / beta
    torch.testing.assert_close(x, (y - (1 - beta) * z) / beta, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(x, y)
    for_evaluation(opt)  # idempotent: a second call must not move the parameters again
    torch.testing.assert_close(_flat(model), x)
    for_training(opt)
    torch.testing.assert_close(_flat(model), y, rtol=1e-5, atol=1e-6)


def test_switching_is_a_no_op_for_ordinary_optimizers() -> None:
    model = _model()
    opt = build_optimizer(OptimizerSpec(name="sgd", lr=0.1), model.parameters())
    assert not is_schedule_free(opt)
    _train(model, opt, 2)
    before = _flat(model)
    assert not for_evaluation(opt)  # nothing to re-estimate either
    for_training(opt)
    torch.testing.assert_close(_flat(model), before, rtol=0, atol=0)


def test_rate_set_each_step_equals_the_configured_rate() -> None:
    """set_hparams with a constant schedule must train exactly as the optimizer alone."""
    results = []
    for per_step in (False, True):
        model = _model()
        opt = build_optimizer(OptimizerSpec(name="sgd_schedulefree", lr=0.3), model.parameters())
        for_training(opt)
        _train(model, opt, 6, lr=0.3 if per_step else None)
        for_evaluation(opt)
        results.append(_flat(model))
    torch.testing.assert_close(results[0], results[1], rtol=0, atol=0)


def test_rate_schedule_reaches_the_optimizer() -> None:
    """A zero rate (as lrbench's warmup gives at step 0) leaves y and z where they are."""
    model = _model()
    opt = build_optimizer(OptimizerSpec(name="sgd_schedulefree", lr=0.3), model.parameters())
    for_training(opt)
    before = _flat(model)
    _train(model, opt, 1, lr=0.0)
    torch.testing.assert_close(_flat(model), before, rtol=0, atol=0)
    _train(model, opt, 1, lr=0.3)
    assert not torch.allclose(_flat(model), before)


def test_checkpoint_in_eval_mode_resumes_exactly() -> None:
    """The trainer checkpoints after evaluating (eval mode); resuming must continue the run."""
    model = _model()
    spec = OptimizerSpec(name="adamw_schedulefree", lr=1e-2)
    opt = build_optimizer(spec, model.parameters())
    for_training(opt)
    _train(model, opt, 3)
    for_evaluation(opt)
    state = copy.deepcopy({"model": model.state_dict(), "opt": opt.state_dict()})
    for_training(opt)
    _train(model, opt, 3)
    for_evaluation(opt)
    straight = _flat(model)

    resumed = _model()
    opt2 = build_optimizer(spec, resumed.parameters())
    resumed.load_state_dict(state["model"])
    opt2.load_state_dict(state["opt"])
    for_training(opt2)
    _train(resumed, opt2, 3)
    for_evaluation(opt2)
    torch.testing.assert_close(_flat(resumed), straight, rtol=0, atol=0)


def test_batchnorm_statistics_are_recomputed_at_x() -> None:
    model = _model()
    opt = build_optimizer(OptimizerSpec(name="sgd_schedulefree", lr=0.5), model.parameters())
    for_training(opt)
    _train(model, opt, 5)
    batches = [torch.randn(16, 4, generator=torch.Generator().manual_seed(s)) for s in range(3)]
    assert for_evaluation(opt)
    assert reestimate_batchnorm(model, averaging_batchnorm(model), batches) == 3
    # expected: the mean over all 48 inputs of the BN layer's input, computed with x's weights
    with torch.no_grad():
        feats = torch.cat([model[0](b) for b in batches])
    torch.testing.assert_close(model[1].running_mean, feats.mean(0), rtol=1e-5, atol=1e-6)
    # running_var is the mean of per-batch unbiased variances (cumulative average)
    var = torch.stack([model[0](b).detach().var(0, unbiased=True) for b in batches]).mean(0)
    torch.testing.assert_close(model[1].running_var, var, rtol=1e-5, atol=1e-6)
    assert model[1].momentum == 0.1  # restored
    assert model.training  # mode restored


def test_reestimating_batchnorm_without_batchnorm_runs_nothing() -> None:
    model = nn.Linear(4, 2)
    assert reestimate_batchnorm(model, averaging_batchnorm(model), [torch.zeros(2, 4)]) == 0


def test_momentum_cycling_schedules_are_refused() -> None:
    spec = OptimizerSpec(name="sgd_schedulefree", lr=1.0, momentum=0.9)
    onecycle = build_schedule("onecycle")
    with pytest.raises(UserError, match="cycles momentum"):
        check_schedule(spec, onecycle.sets_momentum, onecycle.momenta(100, 10))
    held = build_schedule({"name": "onecycle", "momentum": [0.9, 0.9]})
    check_schedule(spec, held.sets_momentum, held.momenta(100, 10))  # accepted
    check_schedule(OptimizerSpec(name="sgd", lr=1.0), True, None)  # ordinary SGD: fine
    model = _model()
    opt = build_optimizer(spec, model.parameters())
    set_hparams(opt, 0.5, 0.9)
    with pytest.raises(ValueError, match="cannot change"):
        set_hparams(opt, 0.5, 0.85)


def test_bad_momentum_and_missing_package_are_user_errors(monkeypatch) -> None:
    with pytest.raises(UserError, match="strictly between 0 and 1"):
        build_optimizer(OptimizerSpec(name="sgd_schedulefree", lr=1, momentum=0.0), [])
    monkeypatch.setitem(sys.modules, "schedulefree", None)  # import now fails
    with pytest.raises(UserError, match=r"pip install schedulefree \(or lrbench\[schedulefree\]\)"):
        build_optimizer(OptimizerSpec(name="adamw_schedulefree", lr=1e-3), _model().parameters())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name", ["sgd_schedulefree", "adamw_schedulefree"])
def test_the_packed_step_equals_the_package_after_a_hundred_steps(name, dtype) -> None:
    """lrbench's fused schedule-free step for G models (lrbench.train.packed.optim) against the
    package stepping each model alone: 100 steps, every model its own rates (a warmup from 0,
    then a decay, changed epoch by epoch as plateau may), weight decay, a train/eval switch
    every epoch, one model frozen halfway (as an early stop freezes it). On the CPU the two
    are bit-identical (largest relative difference seen: 0, in float32 and float64), since
    lerp with a tensor weight and addcmul by a tensor round as lerp and add(alpha=) do."""
    from lrbench.train.packed.models import PackedModel, owner_index
    from lrbench.train.packed.optim import PackedScheduleFree

    groups, epochs, steps = 3, 4, 25
    spec = OptimizerSpec(name=name, lr=0.1, weight_decay=1e-3)
    torch.manual_seed(0)
    packed = PackedModel("resnet8", 10, groups, channels_last=False).to(dtype)
    with torch.no_grad():
        packed.flat.normal_()
    start = packed.flat.detach().clone()
    plain = [
        [p.detach().clone() for p in packed.member_views(packed.flat, g)] for g in range(groups)
    ]
    alone = [build_optimizer(spec, params) for params in plain]
    fused = PackedScheduleFree(spec, packed.flat, owner_index(packed.layout, "cpu"), groups)
    active = torch.ones(groups, dtype=torch.bool)
    t = torch.arange(epochs * steps, dtype=torch.float64)
    rates = torch.stack(
        [torch.clamp(t / 40, max=1) * 0.1 * 0.99 ** (g * t / 10) for g in range(groups)], 1
    )
    for epoch in range(epochs):
        table = rates[epoch * steps : (epoch + 1) * steps].numpy()
        fused.set_rates(epoch * steps, table, np.full_like(table, fused.beta))
        fused.train()
        for opt in alone:
            for_training(opt)
        for i in range(steps):
            if epoch * steps + i == epochs * steps // 2:
                active[1] = False  # frozen: rate 0 from here, as the loop freezes a stopped run
            grad = torch.randn_like(packed.flat)
            fused.step(grad, i, active)
            for g, (opt, params) in enumerate(zip(alone, plain, strict=True)):
                if not active[g]:
                    continue
                for p, view in zip(params, packed.member_views(grad, g), strict=True):
                    p.grad = view.clone()
                set_hparams(opt, float(table[i, g]), None)
                opt.step()
        fused.eval()
        for opt in alone:
            for_evaluation(opt)

    pairs = []  # (packed, alone): x, and every state buffer, of every model
    for g, (opt, params) in enumerate(zip(alone, plain, strict=True)):
        views = lambda t, g=g: packed.member_views(t, g)  # noqa: E731
        state = fused.member_state(views, 0, g)["schedule_free"]
        pairs += zip(views(packed.flat), params, strict=True)
        # a frozen model's second moments go on averaging its gradients: nothing reads them
        for buffer in ("z", "exp_avg_sq") if "adamw" in name and active[g] else ("z",):
            pairs += zip(state[buffer], [opt.state[p][buffer] for p in params], strict=True)
    worst = max(((a - b).abs().max() / b.abs().max()).item() for a, b in pairs)
    print(f"{name} {dtype}: packed vs package after {epochs * steps} steps: {worst:.1e}")
    assert worst == 0.0
    assert not torch.equal(packed.flat, start)
