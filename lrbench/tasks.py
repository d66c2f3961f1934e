"""A task: what a run's loss is, over what it averages, and whether it has an accuracy.

The loop and both steppers take every loss and accuracy through a run's task, so one loop
serves all tasks (packs, resume, divergence, plateau, early stopping, snapshots, TensorBoard):

- `CrossEntropy`: image classification (logits [B, K], labels [B]; one unit per image) and
  character-level language modelling (logits [B, T, V], next characters [B, T]; one unit per
  character). Losses in nats per unit; accuracy = the argmax is the label. For images it takes
  exactly the calls it always took (F.cross_entropy over [B, K]), so classification runs are
  bit-identical to the ones before tasks existed.
- `OwnLoss`: `loss: {import: "module:function"}`: the function maps (outputs, targets) to
  per-example losses [B]; a unit is an example; no accuracy.

Metrics of every task: train_loss, test_loss (val_loss) per epoch; *_acc where `accuracy`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
import torch.nn.functional as F

from lrbench.errors import UserError
from lrbench.specs import ImportedLoss, RunSpec


class Task(Protocol):
    accuracy: bool

    def loss(self, out: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """The batch's loss, a mean (or sum) over its units."""
        ...

    def correct(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """How many units the outputs get right (an int64 scalar; 0 without an accuracy)."""
        ...

    def units(self, y: torch.Tensor) -> int:
        """How many units one model's batch of targets holds."""
        ...

    def per_model(
        self, out: torch.Tensor, y: torch.Tensor, reduction: str = "mean", exact: bool = True
    ) -> torch.Tensor:
        """[G] losses of G models' outputs [G, B, ...] and targets [G, B, ...]."""
        ...


class CrossEntropy:
    """Classification and language modelling: cross-entropy per label, and accuracy."""

    accuracy = True

    def loss(self, out: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        if out.dim() == 2:  # images: the very call classification always made
            return F.cross_entropy(out, y, reduction=reduction)
        return F.cross_entropy(out.flatten(0, -2), y.flatten(), reduction=reduction)

    def correct(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return (out.argmax(-1) == y).sum()

    def units(self, y: torch.Tensor) -> int:
        return y.numel()

    def per_model(
        self, out: torch.Tensor, y: torch.Tensor, reduction: str = "mean", exact: bool = True
    ) -> torch.Tensor:
        """`exact`: one call per model, each bit-identical to its unpacked twin's (a mean over
        another shape sums in another order); else one call for all G models (6 kernels a step
        instead of 6G, rounding differently)."""
        if not exact:
            g = y.shape[0]
            each = F.cross_entropy(out.flatten(0, -2), y.flatten(), reduction="none").view(g, -1)
            return each.sum(1) if reduction == "sum" else each.mean(1)
        return torch.stack(
            [self.loss(o, t, reduction) for o, t in zip(out.unbind(0), y.unbind(0), strict=True)]
        )


class OwnLoss:
    """The user's loss function: per-example losses [B], averaged (or summed) over the batch."""

    accuracy = False

    def __init__(self, fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor], ref: str):
        self.fn, self.ref = fn, ref

    def loss(self, out: torch.Tensor, y: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        each = self.fn(out, y)
        if not isinstance(each, torch.Tensor) or tuple(each.shape) != (y.shape[0],):
            got = tuple(each.shape) if isinstance(each, torch.Tensor) else type(each).__name__
            raise UserError(
                f"loss {self.ref} returned {got} for a batch of {y.shape[0]}; it must return "
                f"per-example losses [{y.shape[0]}]"
            )
        return each.sum() if reduction == "sum" else each.mean()

    def correct(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.zeros((), dtype=torch.int64, device=out.device)

    def units(self, y: torch.Tensor) -> int:
        return y.shape[0]

    def per_model(
        self, out: torch.Tensor, y: torch.Tensor, reduction: str = "mean", exact: bool = True
    ) -> torch.Tensor:
        return torch.stack(
            [self.loss(o, t, reduction) for o, t in zip(out.unbind(0), y.unbind(0), strict=True)]
        )


def import_loss(loss: ImportedLoss, where: str = "loss") -> OwnLoss:
    """The user's loss function, from the very source the run was planned with."""
    from lrbench.imports import import_planned

    imported = import_planned(loss.ref, loss.source, where)
    return OwnLoss(imported.obj, loss.ref)


def task_for(spec: RunSpec) -> Task:
    """The run's task: its own loss when the spec names one, else cross-entropy."""
    if spec.loss is not None:
        return import_loss(spec.loss)
    return CrossEntropy()
