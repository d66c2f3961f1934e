"""Schedules that react to metrics: decay on plateau and early stopping that respects cycles."""

import csv

import helpers
import pytest
import torch
from helpers import CPU
from hypothesis import given, settings
from hypothesis import strategies as st

from lrbench.config import parse_config
from lrbench.errors import UserError
from lrbench.schedules import build_schedule
from lrbench.specs import DatasetSpec, OptimizerSpec, RunSpec
from lrbench.train import train_run
from lrbench.train.reactive import EarlyStopState, PlateauState, Reactions, check_epochs


def torch_plateau_lrs(metrics, lr, **kw) -> list[float]:
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=lr)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", threshold_mode="rel", **kw)
    out = []
    for m in metrics:
        sched.step(m)
        out.append(opt.param_groups[0]["lr"])
    return out


def our_plateau_lrs(metrics, lr, **kw) -> list[float]:
    state, out = PlateauState(), []
    for m in metrics:
        state = state.update(m, base_lr=lr, **kw)
        out.append(lr * state.scale)
    return out


@settings(max_examples=200, deadline=None)
@given(
    metrics=st.lists(st.floats(0.01, 10.0), min_size=1, max_size=60),
    factor=st.sampled_from([0.1, 0.5, 0.3]),
    patience=st.integers(0, 5),
    threshold=st.sampled_from([0.0, 1e-4, 0.01, 0.1]),
    cooldown=st.integers(0, 3),
    min_lr=st.sampled_from([0.0, 1e-4, 0.01]),
)
def test_plateau_decides_exactly_as_torch_reduce_lr_on_plateau(
    metrics, factor, patience, threshold, cooldown, min_lr
):
    kw = dict(
        factor=factor, patience=patience, threshold=threshold, cooldown=cooldown, min_lr=min_lr
    )
    assert our_plateau_lrs(metrics, 0.1, **kw) == pytest.approx(
        torch_plateau_lrs(metrics, 0.1, **kw), rel=1e-12
    )


def test_plateau_preview_is_the_rate_before_any_decay():
    schedule = build_schedule({"name": "plateau", "warmup": 0.1})
    m = schedule.multipliers(100, 10)
    assert schedule.reactive
    assert m[0] == 0.0 and m[10:].tolist() == [1.0] * 90


def test_plateau_patience_as_a_fraction_of_the_budget():
    assert build_schedule({"name": "plateau", "patience": 0.1}).profile.patience_epochs(30) == 3
    assert build_schedule({"name": "plateau", "patience": 5}).profile.patience_epochs(30) == 5
    with pytest.raises(UserError, match="patience"):
        build_schedule({"name": "plateau", "patience": 2.5})


def plateau_spec(val_fraction=0.0, **schedule) -> RunSpec:
    return helpers.spec(
        dataset=DatasetSpec(name="synthetic", limit_train=128, val_fraction=val_fraction),
        optimizer=OptimizerSpec(name="sgd", lr=0.05),
        schedule={"name": "plateau", "patience": 0, "threshold": 0.5, **schedule},
        full_epochs=4,
        epochs=4,
        batch_size=64,
    )


def test_the_spec_records_what_plateau_monitors_and_never_a_test_metric():
    assert plateau_spec().schedule["monitor"] == "train_loss"
    assert plateau_spec(val_fraction=0.2).schedule["monitor"] == "val_loss"
    with pytest.raises(UserError, match="monitor"):
        build_schedule({"name": "plateau", "monitor": "test_loss"})


def lrs_of(run_dir) -> list[float]:
    return [float(r["lr"]) for r in csv.DictReader(open(run_dir / "metrics.csv"))]


def test_a_plateau_run_decays_and_a_resumed_one_decides_the_same(tmp_path):
    spec = plateau_spec()
    train_run(spec, tmp_path / "clean", CPU)
    lrs = lrs_of(tmp_path / "clean")
    assert lrs[0] == pytest.approx(0.05) and min(lrs) < 0.05, "a 50% threshold must trigger decay"

    def stop_in_epoch_three(event):
        if event.kind == "step" and event.epoch == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_run(spec, tmp_path / "cut", CPU, on_event=stop_in_epoch_three)
    train_run(spec, tmp_path / "cut", CPU)
    assert lrs_of(tmp_path / "cut") == lrs


def reactions(schedule: dict, epochs: int = 12, spe: int = 10, patience: int = 2) -> Reactions:
    run = helpers.spec(
        dataset=DatasetSpec(name="synthetic"),
        optimizer=OptimizerSpec(name="sgd", lr=0.1),
        schedule=build_schedule(schedule).to_dict(),
        full_epochs=epochs,
        epochs=epochs,
        batch_size=64,
        early_stop={"metric": "train_loss", "patience": patience, "min_delta": 0.0},
    )
    return Reactions(run, build_schedule(run.schedule), spe)


def stop_epoch(react: Reactions, epochs: int = 12) -> int | None:
    for epoch in range(1, epochs + 1):
        react.after_epoch(epoch, {"train_loss": 1.0 + epoch})  # never improves after epoch 1
        if react.stopped_epoch:
            return react.stopped_epoch
    return None


def test_early_stopping_judges_every_epoch_for_a_plain_schedule():
    assert stop_epoch(reactions({"name": "cosine"})) == 3


def test_early_stopping_fires_only_at_cycle_ends_for_cyclical_schedules():
    # sgdr, 3 cycles doubling over 120 steps: cycles end after steps 18 (120/7), 52 (360/7), 120
    sgdr = reactions({"name": "sgdr", "cycles": 3, "t_mult": 2})
    assert sgdr.checks == {2, 6, 12}
    assert stop_epoch(sgdr) == 6
    tri = reactions({"name": "triangular", "step_size": 0.125})
    assert tri.checks == {3, 6, 9, 12}
    assert stop_epoch(tri) == 6


def test_check_epochs_with_warmup_compress_the_cycles():
    schedule = build_schedule({"name": "sgdr", "cycles": 2, "t_mult": 1, "warmup": 0.2})
    ends = schedule.cycle_end_steps(100, 10)
    assert ends == [60, 100]
    assert check_epochs(ends, 10, 10, cyclical=True) == {6, 10}


def test_early_stop_state_counts_epochs_since_the_best():
    s = EarlyStopState()
    for epoch, acc in enumerate([0.5, 0.6, 0.6, 0.59], start=1):
        s = s.update(acc, epoch, maximize=True, min_delta=0.0)
    assert (s.best, s.best_epoch) == (0.6, 2)
    assert s.should_stop(4, 2) and not s.should_stop(3, 2)


def test_an_early_stopped_run_is_done_with_its_epoch_in_the_summary(tmp_path):
    spec = plateau_spec(val_fraction=0.25).model_copy(
        update={
            "schedule": build_schedule("constant").to_dict(),
            "early_stop": {"metric": "val_acc", "patience": 1, "min_delta": 1.0},
        }
    )
    summary = train_run(spec, tmp_path, CPU)
    assert summary["status"] == "done"
    assert summary["stopped_early"] is True and summary["stopped_epoch"] == 2
    assert summary["epochs_completed"] == 2


def test_configs_refuse_val_metrics_without_a_validation_split():
    base = {
        "name": "t", "dataset": "synthetic", "models": ["resnet8"],
        "optimizers": [{"name": "sgd", "lr": 0.1}], "full_epochs": 4, "budgets": [1.0],
        "schedules": ["plateau"], "early_stop": {"metric": "val_acc", "patience": 2},
    }  # fmt: skip
    with pytest.raises(UserError, match=r"early_stop\.metric: val_acc needs a validation split"):
        parse_config(base)
    with pytest.raises(UserError, match=r"early_stop\.metric"):
        parse_config({**base, "early_stop": {"metric": "test_acc", "patience": 2}})
    ok = parse_config({**base, "dataset": {"name": "synthetic", "val_fraction": 0.1}})
    assert ok.early_stop.metric == "val_acc"
