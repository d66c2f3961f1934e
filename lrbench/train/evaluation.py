"""Evaluation, snapshot predictions and BatchNorm re-estimation: each written once, for G models.

A run alone is a pack of one. The steppers (lrbench.train.steppers, lrbench.train.packed.stepper)
hand these functions their model(s) as one nn.Module (whose train/eval mode is switched here)
and a forward function: an evaluation batch's inputs, as the data yields them, to the G models'
outputs [G, B, ...] in the parameters' dtype, computed as training computes them (autocast).
`plain_forward` is a run alone's ([1, B, ...]); a pack's repeats the batch for its G models.
Both take the same calls per model, so a pack's member evaluates as its run alone does.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch
from torch import nn

from lrbench.tasks import Task

Forward = Callable[[torch.Tensor], torch.Tensor]
Batch = tuple[torch.Tensor, torch.Tensor]

BATCHNORM_BATCHES = 16  # schedule-free: training batches that re-estimate BatchNorm at x


def inputs(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A batch's inputs as the model takes them: floats in the parameters' dtype, token ids
    (integers, a language model's) as they are."""
    return x.to(dtype) if x.is_floating_point() or x.dtype == torch.uint8 else x


def plain_forward(model: nn.Module, autocast: Callable[[], Any] = nullcontext) -> Forward:
    """The forward function of one plain model: outputs [1, B, ...]."""
    dtype = next(model.parameters()).dtype

    def forward(x: torch.Tensor) -> torch.Tensor:
        with autocast():
            out = model(inputs(x, dtype))
        return out.to(dtype)[None]

    return forward


def correct_per_model(task: Task, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """[G] counts of right predictions of outputs [G, B, ...] (zeros for a task without an
    accuracy)."""
    if not task.accuracy:
        return torch.zeros(y.shape[0], dtype=torch.int64, device=y.device)
    return (out.argmax(-1) == y).flatten(1).sum(1)


@contextlib.contextmanager
def in_mode(model: nn.Module, training: bool) -> Iterator[None]:
    """`model` in train (or eval) mode inside, in its own mode again after."""
    was = model.training
    model.train(training)
    try:
        yield
    finally:
        model.train(was)


@torch.no_grad()
def evaluate(
    model: nn.Module, forward: Forward, data: Any, split: str, task: Task, exact: bool = True
) -> tuple[list[float], list[float]]:
    """Each model's mean loss and accuracy over `split` (a DeviceData's), one host sync at the
    end. `exact`: each model's loss in its own call (Task.per_model), bit-identical to its run
    alone's; a plain model needs it."""
    loss_sum: Any = 0  # [G] float64 sums once the first batch is in; correct [G] int64
    correct: Any = 0
    n = 0
    with in_mode(model, False):
        for x, y in data.eval_batches(split):
            out = forward(x)
            ys = y.expand(out.shape[0], *y.shape)
            loss_sum = loss_sum + task.per_model(out, ys, "sum", exact).double()
            correct = correct + correct_per_model(task, out, ys)
            n += task.units(y)
    return [v / n for v in loss_sum.tolist()], [c / n for c in correct.tolist()]


@torch.no_grad()
def predict_probs(model: nn.Module, forward: Forward, data: Any, split: str = "test"):
    """Each model's softmax probabilities on `split`, in the split's order: [G, N, C] float32
    on the data's device, no host sync (a snapshot of lrbench.train.snapshots)."""
    with in_mode(model, False):
        parts = [torch.softmax(forward(x).float(), dim=-1) for x, _ in data.eval_batches(split)]
    return torch.cat(parts, 1)


@contextlib.contextmanager
def averaging_batchnorm(model: nn.Module) -> Iterator[bool]:
    """Every BatchNorm of a plain model reset, then averaging the batches run inside exactly
    (momentum None: a cumulative average), its momentum restored after; yields whether the
    model has any. (The packed model's own: PackedModel.averaging_batchnorm.)"""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    try:
        yield bool(norms)
    finally:
        for m, momentum in zip(norms, saved, strict=True):
            m.momentum = momentum


@torch.no_grad()
def reestimate_batchnorm(
    model: nn.Module,
    averaging: AbstractContextManager[bool],
    batches: Iterable[Batch | torch.Tensor],
    limit: int = BATCHNORM_BATCHES,
) -> int:
    """Re-estimate the BatchNorm statistics of `model` as the exact average over the first
    `limit` of `batches` (inputs, or (inputs, targets) pairs, as the model takes them in
    training), in train mode without gradients, inside `averaging` (`averaging_batchnorm`, or a
    pack's). Schedule-free optimizers need it: the statistics were gathered at y, the model
    evaluated is x (schedulefree's README). Returns the batches used; 0, with nothing run, for a
    model without BatchNorm."""
    dtype = next(model.parameters()).dtype
    used = 0
    with averaging as has_batchnorm, in_mode(model, True):
        if not has_batchnorm:
            return 0
        for batch in itertools.islice(batches, limit):
            model(inputs(batch[0] if isinstance(batch, (tuple, list)) else batch, dtype))
            used += 1
    return used
