"""Steppers: what differs between training one plain model and G packed ones.

The loop (lrbench.train.loop) owns everything a run is; a stepper owns the model(s) and the
optimizer and answers a few questions, for every slot at once:

    batches(epoch)                  this epoch's (x, y) for every slot
    begin_epoch(first_step, lrs)    the epoch's rates, [steps, G] (plateau's decay applied)
    step(i, x, y, active)           one optimizer step; ([G] losses, [G] correct) on the device
    for_training() / for_evaluation(bn_epoch)   schedule-free optimizers move between y and x
    evaluate(split) / predict_probs(split)      per slot
    capture() / member_state(captured, slot, step)   a slot's checkpoint, off the training thread

`PlainStepper` is a run trained alone: an nn.Module and its torch.optim (or schedulefree)
optimizer. `lrbench.packed.stepper.PackedStepper` is G runs as one packed network.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from lrbench.data import DeviceData
from lrbench.models import build_model
from lrbench.optim import (
    build_optimizer,
    for_evaluation,
    for_training,
    load_optimizer_state,
    optimizer_state,
    set_hparams,
)
from lrbench.snapshots import predict_probs
from lrbench.train.checkpoint import cpu_copy, restore_rng, rng_state
from lrbench.train.runtime import autocast_for, param_dtype

BN_RECOMPUTE_BATCHES = 16  # schedule-free: BatchNorm statistics re-estimated at the averaged x

Batch = tuple[torch.Tensor, torch.Tensor]


class Stepper(Protocol):
    groups: int

    def batches(self, epoch: int) -> Iterator[Batch]: ...
    def begin_epoch(self, first_step: int, lrs: np.ndarray) -> None: ...
    def step(self, i: int, x: torch.Tensor, y: torch.Tensor, active: torch.Tensor): ...
    def for_training(self) -> None: ...
    def for_evaluation(self, bn_epoch: int | None = None) -> None: ...
    def evaluate(self, split: str) -> tuple[list[float], list[float]]: ...
    def predict_probs(self, split: str) -> torch.Tensor: ...
    def capture(self) -> Any: ...
    def member_state(self, captured: Any, slot: int, step: int) -> dict[str, Any]: ...


def build_run_model(
    model: str | dict,
    num_classes: int,
    seed: int,
    device: torch.device,
    precision: str,
    channels_last: bool,
) -> torch.nn.Module:
    """The model a run trains: initialised from `seed`, on `device` in the run's dtype and memory
    format. The one place that decides it, so a run, a pack's member and a probe start alike."""
    torch.manual_seed(seed)
    net = build_model(model, num_classes).to(device=device, dtype=param_dtype(precision))
    return net.to(memory_format=torch.channels_last) if channels_last else net


def train_step(model, optimizer, x, y, lr: float, momentum: float | None, autocast, dtype):
    """One optimizer step at this rate (and momentum); returns the loss and the logits.

    No host sync: the caller accumulates the loss and accuracy on the device.
    """
    set_hparams(optimizer, lr, momentum)
    with autocast():
        out = model(x.to(dtype))
        loss = F.cross_entropy(out.to(dtype), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss, out


@torch.no_grad()
def evaluate(model, data: DeviceData, split: str, autocast) -> tuple[float, float]:
    """Mean loss and accuracy over a split: one host sync at the end, not per batch. The loss
    is taken in the parameters' dtype (float32 under bf16 autocast), as in training."""
    model.eval()
    loss_sum = torch.zeros((), device=data.device, dtype=torch.float64)
    correct = torch.zeros((), device=data.device, dtype=torch.int64)
    n = 0
    dtype = next(model.parameters()).dtype
    for x, y in data.eval_batches(split):
        with autocast():
            out = model(x.to(dtype))
        loss_sum += F.cross_entropy(out.to(dtype), y, reduction="sum")
        correct += (out.argmax(1) == y).sum()
        n += len(y)
    model.train()
    return loss_sum.item() / n, correct.item() / n


class PlainStepper:
    """One run's plain model and its optimizer: the stepper of a run trained alone."""

    groups = 1

    def __init__(
        self,
        member: Any,
        data: DeviceData,
        device: torch.device,
        precision: str,
        channels_last: bool,
    ) -> None:
        spec = member.spec
        self.seed, self.batch_size, self.data = spec.seed, spec.batch_size, data
        self.model = build_run_model(
            spec.model, data.num_classes, spec.seed, device, precision, channels_last
        )
        self.optimizer = build_optimizer(spec.optimizer, self.model.parameters())
        self.autocast: Callable[[], Any] = autocast_for(precision, device)
        self.dtype = param_dtype(precision)
        self.moms = member.moms
        self.first, self.lrs = 0, []
        if member.state is not None:
            self.model.load_state_dict(member.state["model"])
            load_optimizer_state(self.optimizer, member.state["optimizer"])
            restore_rng(member.state)

    def batches(self, epoch: int) -> Iterator[Batch]:
        return self.data.train_batches(self.seed, epoch, self.batch_size)

    def begin_epoch(self, first_step: int, lrs: np.ndarray) -> None:
        self.first, self.lrs = first_step, lrs[:, 0].tolist()

    def step(self, i: int, x: torch.Tensor, y: torch.Tensor, active: torch.Tensor):
        momentum = float(self.moms[self.first + i]) if self.moms is not None else None
        loss, out = train_step(
            self.model, self.optimizer, x, y, self.lrs[i], momentum, self.autocast, self.dtype
        )
        return loss.detach().reshape(1), (out.argmax(1) == y).sum().reshape(1)

    def for_training(self) -> None:
        self.model.train()
        for_training(self.optimizer)

    def for_evaluation(self, bn_epoch: int | None = None) -> None:
        batches = None
        if bn_epoch is not None:
            batches = itertools.islice(self.batches(bn_epoch), BN_RECOMPUTE_BATCHES)
        for_evaluation(self.optimizer, self.model, batches)

    def evaluate(self, split: str) -> tuple[list[float], list[float]]:
        loss, acc = evaluate(self.model, self.data, split, self.autocast)
        return [loss], [acc]

    def predict_probs(self, split: str) -> torch.Tensor:
        return predict_probs(self.model, self.data, split, self.autocast)[None]

    def capture(self) -> Any:
        state = {"model": self.model.state_dict(), "optimizer": optimizer_state(self.optimizer)}
        return cpu_copy({**state, **rng_state()})

    def member_state(self, captured: Any, slot: int, step: int) -> dict[str, Any]:
        return captured
