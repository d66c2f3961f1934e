"""Steppers: what differs between training one plain model and G packed ones.

The loop (lrbench.train.loop) owns everything a run is; a stepper owns the model(s) and the
optimizer and answers a few questions, for every member (model) at once:

    batches(epoch)                  this epoch's (x, y) for every member
    begin_epoch(first_step, rates, momenta)   the epoch's rates (plateau's decay applied) and
                                    momenta (Adam: beta1), [steps, G] each
    step(i, x, y, active)           one optimizer step; ([G] losses, [G] correct) on the device
    units(y)                        how many units (images, characters) each member's loss averages
    for_training() / for_evaluation(bn_epoch)   schedule-free optimizers move between y and x
    evaluate(split) / predict_probs(split)      per member
    capture() / member_state(captured, index, step)   a member's checkpoint, off the training thread

`PlainStepper` is a run trained alone: an nn.Module and its torch.optim (or schedulefree)
optimizer. `lrbench.train.packed.stepper.PackedStepper` is G runs as one packed network. Both
are built, their models seeded or resumed, in one place: lrbench.train.build.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import numpy as np
import torch

from lrbench.data import DeviceData
from lrbench.specs import RunSpec
from lrbench.tasks import CrossEntropy, Task
from lrbench.train.checkpoint import cpu_copy, rng_state
from lrbench.train.optim import (
    clip_global_norm,
    for_evaluation,
    for_training,
    optimizer_state,
    set_hparams,
)
from lrbench.train.runtime import autocast_for, param_dtype
from lrbench.train.snapshots import predict_probs

BN_RECOMPUTE_BATCHES = 16  # schedule-free: BatchNorm statistics re-estimated at the averaged x

Batch = tuple[torch.Tensor, torch.Tensor]
CROSS_ENTROPY = CrossEntropy()


class Stepper(Protocol):
    models: int  # 1, or a pack's G

    def batches(self, epoch: int) -> Iterator[Batch]: ...
    def begin_epoch(self, first_step: int, rates: np.ndarray, momenta: np.ndarray) -> None: ...
    def step(self, i: int, x: torch.Tensor, y: torch.Tensor, active: torch.Tensor): ...
    def units(self, y: torch.Tensor) -> int: ...
    def for_training(self) -> None: ...
    def for_evaluation(self, bn_epoch: int | None = None) -> None: ...
    def evaluate(self, split: str) -> tuple[list[float], list[float]]: ...
    def predict_probs(self, split: str) -> torch.Tensor: ...
    def capture(self) -> Any: ...
    def member_state(self, captured: Any, index: int, step: int) -> dict[str, Any]: ...


def inputs(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A batch's inputs as the model takes them: floats in the parameters' dtype, token ids
    (integers, a language model's) as they are."""
    return x.to(dtype) if x.is_floating_point() or x.dtype == torch.uint8 else x


def train_step(
    model,
    optimizer,
    x,
    y,
    lr: float,
    momentum: float | None,
    autocast,
    dtype,
    task: Task = CROSS_ENTROPY,
    clip_norm: float | None = None,
):
    """One optimizer step at this rate (and momentum); returns the loss and the outputs.

    No host sync: the caller accumulates the loss and accuracy on the device.
    """
    set_hparams(optimizer, lr, momentum)
    with autocast():
        out = model(inputs(x, dtype))
        loss = task.loss(out.to(dtype), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if clip_norm is not None:
        clip_global_norm([p.grad for p in model.parameters() if p.grad is not None], clip_norm)
    optimizer.step()
    return loss, out


@torch.no_grad()
def evaluate(
    model, data: DeviceData, split: str, autocast, task: Task = CROSS_ENTROPY
) -> tuple[float, float]:
    """Mean loss and accuracy over a split: one host sync at the end, not per batch. The loss
    is taken in the parameters' dtype (float32 under bf16 autocast), as in training."""
    model.eval()
    loss_sum = torch.zeros((), device=data.device, dtype=torch.float64)
    correct = torch.zeros((), device=data.device, dtype=torch.int64)
    n = 0
    dtype = next(model.parameters()).dtype
    for x, y in data.eval_batches(split):
        with autocast():
            out = model(inputs(x, dtype))
        loss_sum += task.loss(out.to(dtype), y, reduction="sum")
        correct += task.correct(out, y)
        n += task.units(y)
    model.train()
    return loss_sum.item() / n, correct.item() / n


class PlainStepper:
    """One run's plain model and its optimizer: the stepper of a run trained alone."""

    models = 1

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        spec: RunSpec,
        data: DeviceData,
        task: Task,
        device: torch.device,
        precision: str,
    ) -> None:
        self.model, self.optimizer = model, optimizer
        self.seed, self.batch_size, self.data = spec.seed, spec.batch_size, data
        self.task, self.clip_norm = task, spec.optimizer.clip_norm
        self.autocast: Callable[[], Any] = autocast_for(precision, device)
        self.dtype = param_dtype(precision)
        self.rates: list[float] = []
        self.momenta: list[float] = []

    def batches(self, epoch: int) -> Iterator[Batch]:
        return self.data.train_batches(self.seed, epoch, self.batch_size)

    def begin_epoch(self, first_step: int, rates: np.ndarray, momenta: np.ndarray) -> None:
        self.rates, self.momenta = rates[:, 0].tolist(), momenta[:, 0].tolist()

    def step(self, i: int, x: torch.Tensor, y: torch.Tensor, active: torch.Tensor):
        loss, out = train_step(self.model, self.optimizer, x, y, self.rates[i], self.momenta[i],
                               self.autocast, self.dtype, self.task, self.clip_norm)  # fmt: skip
        return loss.detach().reshape(1), self.task.correct(out, y).reshape(1)

    def units(self, y: torch.Tensor) -> int:
        """The units (images, characters, examples) a training batch's loss averages over."""
        return self.task.units(y)

    def for_training(self) -> None:
        self.model.train()
        for_training(self.optimizer)

    def for_evaluation(self, bn_epoch: int | None = None) -> None:
        batches = None
        if bn_epoch is not None:
            batches = itertools.islice(self.batches(bn_epoch), BN_RECOMPUTE_BATCHES)
        for_evaluation(self.optimizer, self.model, batches)

    def evaluate(self, split: str) -> tuple[list[float], list[float]]:
        loss, acc = evaluate(self.model, self.data, split, self.autocast, self.task)
        return [loss], [acc]

    def predict_probs(self, split: str) -> torch.Tensor:
        return predict_probs(self.model, self.data, split, self.autocast)[None]

    def capture(self) -> Any:
        state = {"model": self.model.state_dict(), "optimizer": optimizer_state(self.optimizer)}
        return cpu_copy({**state, **rng_state()})

    def member_state(self, captured: Any, index: int, step: int) -> dict[str, Any]:
        return captured
