"""Snapshot ensembles: where the snapshots fall, and the arithmetic of averaging their softmax."""

from __future__ import annotations

import math
from contextlib import nullcontext

import pytest
import torch
from torch import nn

from lrbench.data import DeviceData, load_splits
from lrbench.models import build_model
from lrbench.schedules import build_schedule
from lrbench.specs import DatasetSpec
from lrbench.tasks import CrossEntropy
from lrbench.train.evaluation import evaluate, plain_forward, predict_probs
from lrbench.train.snapshots import (
    SnapshotEnsemble,
    snapshot_epochs,
    snapshot_steps,
    split_labels,
)

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(
    ("schedule", "total", "steps_per_epoch", "expected"),
    [
        # sgdr, 3 cycles growing x2: 1/7, 2/7, 4/7 of 70 steps -> ends after 10, 30, 70
        ({"name": "sgdr", "cycles": 3, "t_mult": 2}, 70, 10, [10, 30, 70]),
        # equal cycles that do not divide T: 100/3 -> ends after 34, 67, 100 (ceil)
        ({"name": "sgdr", "cycles": 3, "t_mult": 1}, 100, 10, [34, 67, 100]),
        # triangular, half-cycle 1/8: a cycle every quarter of the budget
        ({"name": "triangular"}, 80, 10, [20, 40, 60, 80]),
        # triangular2 with 20% warmup: the cycles fill the last 80%, so each lasts 20 steps
        ({"name": "triangular2", "warmup": 0.2}, 100, 10, [40, 60, 80, 100]),
        ({"name": "sgdr", "cycles": 2, "t_mult": 1, "warmup": 0.5}, 40, 8, [30, 40]),
        # no cycles: one snapshot, the final model
        ({"name": "rex"}, 50, 10, [50]),
        ({"name": "cosine", "warmup": 0.1}, 50, 10, [50]),
    ],
)
def test_snapshot_steps_are_the_cycle_ends(schedule, total, steps_per_epoch, expected) -> None:
    steps = snapshot_steps(build_schedule(schedule), total, steps_per_epoch)
    assert steps == expected


def test_snapshot_steps_fall_where_the_rate_restarts() -> None:
    """After each snapshot step (not the last) sgdr's rate jumps back to its peak."""
    schedule = build_schedule({"name": "sgdr", "cycles": 4, "t_mult": 1.5})
    total = 391 * 3
    m = schedule.multipliers(total, 391)
    for k in snapshot_steps(schedule, total, 391)[:-1]:
        assert m[k] == pytest.approx(1.0, abs=1e-3)  # step k (0-based) starts the next cycle
        assert m[k - 1] < 0.01  # step k-1 ended the cycle near zero


def test_snapshot_epochs() -> None:
    assert snapshot_epochs([10, 30, 70], 10) == [1, 3, 7]
    assert snapshot_epochs([34, 67, 100], 10) == [4, 7, 10]
    assert snapshot_epochs([5, 8, 20], 10) == [1, 2]  # two snapshots in epoch 1: listed once


# Three test images, two classes. Hand computation:
#   snapshot A predicts [0, 1, 1] -> right on images 0 and 2 only  (labels 0, 0, 1): 2/3
#   snapshot B predicts [1, 0, 0] -> right on image 1 only: 1/3
#   mean(A, B) = [[.60,.40], [.45,.55], [.45,.55]] -> [0, 1, 1]: 2/3
#   adding C:   sum = [[1.4,1.6], [1.8,1.2], [1.3,1.7]] -> [1, 0, 1]: 2/3 (now right on 1, 2)
A = torch.tensor([[0.9, 0.1], [0.3, 0.7], [0.2, 0.8]])
B = torch.tensor([[0.3, 0.7], [0.6, 0.4], [0.7, 0.3]])
C = torch.tensor([[0.2, 0.8], [0.9, 0.1], [0.4, 0.6]])
LABELS = torch.tensor([0, 0, 1])


def test_ensemble_accuracy_and_loss_by_hand() -> None:
    ens = SnapshotEnsemble()
    ens.add(A)
    assert ens.count == 1 and ens.accuracy(LABELS) == pytest.approx(2 / 3)
    ens.add(B)
    assert ens.count == 2
    torch.testing.assert_close(
        ens.mean_probs(), torch.tensor([[0.6, 0.4], [0.45, 0.55], [0.45, 0.55]])
    )
    assert ens.accuracy(LABELS) == pytest.approx(2 / 3)
    # loss: -mean(log .60, log .45, log .55)
    assert ens.loss(LABELS) == pytest.approx(-(math.log(0.6) + math.log(0.45) + math.log(0.55)) / 3)
    ens.add(C)
    torch.testing.assert_close(ens.prob_sum, torch.tensor([[1.4, 1.6], [1.8, 1.2], [1.3, 1.7]]))
    assert ens.accuracy(LABELS) == pytest.approx(2 / 3)
    assert ens.accuracy(torch.tensor([1, 0, 1])) == pytest.approx(1.0)


def test_ensemble_state_round_trip_and_errors() -> None:
    ens = SnapshotEnsemble()
    with pytest.raises(ValueError, match="empty"):
        ens.accuracy(LABELS)
    ens.add(A)
    ens.add(B)
    again = SnapshotEnsemble()
    again.load_state_dict(ens.state_dict())
    again.add(C)
    ens.add(C)
    assert again.count == 3
    torch.testing.assert_close(again.prob_sum, ens.prob_sum, rtol=0, atol=0)
    with pytest.raises(ValueError, match="shape"):
        ens.add(torch.ones(2, 2))
    empty = SnapshotEnsemble()
    empty.load_state_dict(SnapshotEnsemble().state_dict())
    assert empty.count == 0 and empty.prob_sum is None


@pytest.fixture(scope="module")
def synthetic() -> DeviceData:
    return DeviceData(load_splits(DatasetSpec(name="synthetic")), "cpu", channels_last=False)


def test_predict_probs_matches_evaluate(synthetic: DeviceData) -> None:
    torch.manual_seed(0)
    model = build_model("resnet8", synthetic.num_classes)
    model.train()
    probs = predict_probs(model, plain_forward(model, nullcontext), synthetic, "test")[0]
    assert model.training  # mode restored
    assert probs.shape == (synthetic.size("test"), synthetic.num_classes)
    assert probs.dtype == torch.float32
    torch.testing.assert_close(probs.sum(1), torch.ones(len(probs)))
    labels = split_labels(synthetic, "test")
    ens = SnapshotEnsemble()
    ens.add(probs)
    _, [acc] = evaluate(model, plain_forward(model), synthetic, "test", CrossEntropy())
    assert ens.accuracy(labels) == pytest.approx(acc)  # an ensemble of one = the model


def test_ensemble_of_two_models_averages_their_softmax(synthetic: DeviceData) -> None:
    torch.manual_seed(1)
    models = [build_model("resnet8", synthetic.num_classes) for _ in range(2)]
    x = torch.cat([xb for xb, _ in synthetic.eval_batches("test", 1000)])
    with torch.no_grad():
        for m in models:
            m.eval()
        expected = (sum(nn.functional.softmax(m(x), 1) for m in models) / 2).argmax(1)
    ens = SnapshotEnsemble()
    for m in models:
        ens.add(predict_probs(m, plain_forward(m), synthetic, "test")[0])
    labels = split_labels(synthetic, "test")
    assert ens.accuracy(labels) == pytest.approx((expected == labels).float().mean().item())
