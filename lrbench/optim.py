"""Optimizers by name, and the one way the trainer sets their rate and momentum each step."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from lrbench.specs import OptimizerSpec

OPTIMIZERS = ("sgd", "adam", "adamw")


def build_optimizer(
    spec: OptimizerSpec, params: Iterable[torch.nn.Parameter]
) -> torch.optim.Optimizer:
    if spec.name == "sgd":
        return torch.optim.SGD(
            params,
            lr=spec.lr,
            momentum=spec.momentum,
            nesterov=spec.nesterov,
            weight_decay=spec.weight_decay,
        )
    cls = torch.optim.Adam if spec.name == "adam" else torch.optim.AdamW
    return cls(params, lr=spec.lr, betas=spec.betas, eps=spec.eps, weight_decay=spec.weight_decay)


def set_hparams(optimizer: torch.optim.Optimizer, lr: float, momentum: float | None) -> None:
    """Set the step's rate, and its momentum when the schedule moves it (Adam: beta1)."""
    for group in optimizer.param_groups:
        group["lr"] = lr
        if momentum is None:
            continue
        if "betas" in group:
            group["betas"] = (momentum, group["betas"][1])
        else:
            group["momentum"] = momentum


def current_momentum(optimizer: torch.optim.Optimizer) -> float:
    group = optimizer.param_groups[0]
    return float(group["betas"][0] if "betas" in group else group.get("momentum", 0.0))
