"""Steppers: what differs between training one plain model and G packed ones.

The loop (lrbench.train.loop) owns everything a run is; a stepper owns the model(s) and the
optimizer and answers a few questions, for every member (model) at once:

    batches(epoch)                  this epoch's (x, y) for every member
    begin_epoch(first_step, rates, momenta)   the epoch's rates (plateau's decay applied) and
                                    momenta (Adam: beta1), [steps, G] each
    step(i, x, y, active)           one optimizer step; ([G] losses, [G] correct) on the device
    units(y)                        how many units (images, characters) each member's loss averages
    for_training() / for_evaluation(batchnorm_from)   schedule-free optimizers move between
                                    y and x (and BatchNorm statistics are re-estimated at x on
                                    epoch `batchnorm_from`'s first training batches)
    evaluate(split) / predict_probs(split)      per member (lrbench.train.evaluation, for both)
    capture() / member_state(captured, index, step)   a member's checkpoint, off the training thread

`PlainStepper` is a run trained alone: an nn.Module and its torch.optim (or schedulefree)
optimizer. `lrbench.train.packed.stepper.PackedStepper` is G runs as one packed network. Both
are built, their models seeded or resumed, in one place: lrbench.train.build.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Protocol

import numpy as np
import torch

from lrbench.data import DeviceData
from lrbench.specs import RunSpec
from lrbench.tasks import CrossEntropy, Task
from lrbench.train.checkpoint import cpu_copy, rng_state
from lrbench.train.evaluation import (
    Forward,
    averaging_batchnorm,
    evaluate,
    inputs,
    plain_forward,
    predict_probs,
    reestimate_batchnorm,
)
from lrbench.train.optim import (
    clip_global_norm,
    for_evaluation,
    for_training,
    optimizer_state,
    set_hparams,
)
from lrbench.train.runtime import autocast_for, param_dtype

Batch = tuple[torch.Tensor, torch.Tensor]
CROSS_ENTROPY = CrossEntropy()


class Stepper(Protocol):
    models: int  # 1, or a pack's G

    def batches(self, epoch: int) -> Iterator[Batch]: ...
    def begin_epoch(self, first_step: int, rates: np.ndarray, momenta: np.ndarray) -> None: ...
    def step(self, i: int, x: torch.Tensor, y: torch.Tensor, active: torch.Tensor): ...
    def units(self, y: torch.Tensor) -> int: ...
    def for_training(self) -> None: ...
    def for_evaluation(self, batchnorm_from: int | None = None) -> None: ...
    def evaluate(self, split: str) -> tuple[list[float], list[float]]: ...
    def predict_probs(self, split: str) -> torch.Tensor: ...
    def capture(self) -> Any: ...
    def member_state(self, captured: Any, index: int, step: int) -> dict[str, Any]: ...


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

    def for_evaluation(self, batchnorm_from: int | None = None) -> None:
        """Schedule-free: the weights to x, and with `batchnorm_from` (an epoch) BatchNorm's
        statistics re-estimated there on that epoch's first training batches."""
        if for_evaluation(self.optimizer) and batchnorm_from is not None:
            averaging = averaging_batchnorm(self.model)
            reestimate_batchnorm(self.model, averaging, self.batches(batchnorm_from))

    @property
    def eval_forward(self) -> Forward:
        """Its model's outputs on an evaluation batch, as [1, B, ...]."""
        return plain_forward(self.model, self.autocast)

    def evaluate(self, split: str) -> tuple[list[float], list[float]]:
        return evaluate(self.model, self.eval_forward, self.data, split, self.task)

    def predict_probs(self, split: str) -> torch.Tensor:
        return predict_probs(self.model, self.eval_forward, self.data, split)

    def capture(self) -> Any:
        state = {"model": self.model.state_dict(), "optimizer": optimizer_state(self.optimizer)}
        return cpu_copy({**state, **rng_state()})

    def member_state(self, captured: Any, index: int, step: int) -> dict[str, Any]:
        return captured
