"""Optimizers by name, and the one way a stepper sets their rate and momentum each step.

Schedule-free SGD and AdamW (Defazio et al. 2024, "The Road Less Scheduled"; PyPI
`schedulefree`) keep two points: y, where gradients are taken, and x, an average of the
iterates that is the model to evaluate. The parameters hold y in train mode and x in eval mode,
so the stepper switches with `for_training` before its steps and `for_evaluation` before any
evaluation or checkpoint. Both are no-ops for the other optimizers.

"No schedule" for a schedule-free optimizer means the schedule `constant`, optionally with
`warmup: w`: lrbench's warmup ramps the rate linearly from 0, as schedulefree's own
`warmup_steps` does from 1/warmup_steps (lrbench leaves that at 0, so the rate comes from one
place). Any other schedule still works: schedulefree reads `group["lr"]` at every step and
weights its average by the largest rate seen so far, squared, so during a warmup the early
iterates count little, and a decaying schedule simply stacks on top of the averaging. A zero
rate at step 0 is handled (the average's weight is 0 and the step moves nothing).
Momentum (SGD's `momentum`, AdamW's beta1) is the interpolation constant and must not move:
see `check_schedule`.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Iterable
from typing import Any

import torch

from lrbench.errors import UserError
from lrbench.specs import OptimizerSpec

OPTIMIZERS = ("sgd", "adam", "adamw", "sgd_schedulefree", "adamw_schedulefree")
SCHEDULE_FREE = ("sgd_schedulefree", "adamw_schedulefree")
INSTALL_HINT = "pip install schedulefree (or lrbench[schedulefree])"


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
    if spec.name in SCHEDULE_FREE:
        return _schedule_free(spec, params)
    cls = torch.optim.Adam if spec.name == "adam" else torch.optim.AdamW
    return cls(params, lr=spec.lr, betas=spec.betas, eps=spec.eps, weight_decay=spec.weight_decay)


def decayed(model: torch.nn.Module) -> list[bool]:
    """Which of the model's parameters (named_parameters order) weight decay applies to: all of
    them, as torch.optim does, except for models that ask for matrices only (the GPTs, as
    language models are trained: no decay on LayerNorm weights or other vectors)."""
    only_matrices = getattr(model, "decay_matrices_only", False)
    return [not only_matrices or p.dim() >= 2 for p in model.parameters()]


def param_groups(model: torch.nn.Module) -> list[dict[str, Any]]:
    """The optimizer's parameter groups: one, or decayed and not decayed (`decayed`)."""
    flags, params = decayed(model), list(model.parameters())
    if all(flags):
        return [{"params": params}]
    groups = [{"params": [p for p, d in zip(params, flags, strict=True) if d]}]
    groups.append({"params": [p for p, d in zip(params, flags, strict=True) if not d]})
    groups[1]["weight_decay"] = 0.0
    return [g for g in groups if g["params"]]


def state_order(model: torch.nn.Module) -> list[int]:
    """For each index of the optimizer's state_dict (the order of `param_groups`), the
    parameter's index in named_parameters order."""
    flags = decayed(model)
    ranked = [i for i, d in enumerate(flags) if d] + [i for i, d in enumerate(flags) if not d]
    return ranked


@torch.no_grad()
def clip_global_norm(grads: list[torch.Tensor], max_norm: float) -> None:
    """Scale the gradients in place so that their global L2 norm is at most `max_norm`, as
    torch.nn.utils.clip_grad_norm_ (coefficient max_norm / (norm + 1e-6), capped at 1). No
    host sync. A run and its packed twin clip through this one function (per member)."""
    if not grads:
        return
    norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
    coef = (max_norm / (norm + 1e-6)).clamp(max=1.0)
    torch._foreach_mul_(grads, coef)


def check_schedule_free(spec: OptimizerSpec) -> None:
    """What schedule-free SGD needs of its settings (packed or not)."""
    if spec.name != "sgd_schedulefree":
        return
    if not 0.0 < spec.momentum < 1.0:
        raise UserError(
            f"optimizer sgd_schedulefree: momentum={spec.momentum:g} is not valid; it is "
            "the interpolation constant between the average and the SGD iterate and must "
            "lie strictly between 0 and 1 (0.9 is the usual value)"
        )
    if spec.nesterov:
        raise UserError("optimizer sgd_schedulefree: nesterov is not supported; drop it")


def base_momentum(spec: OptimizerSpec) -> float:
    """The momentum a schedule that does not move it leaves in place (Adam: beta1)."""
    return float(spec.momentum if spec.name in ("sgd", "sgd_schedulefree") else spec.betas[0])


def _schedule_free(spec: OptimizerSpec, params) -> torch.optim.Optimizer:
    try:
        schedulefree = importlib.import_module("schedulefree")
    except ImportError:
        raise UserError(
            f"optimizer {spec.name} needs the schedulefree package: {INSTALL_HINT}"
        ) from None
    check_schedule_free(spec)
    if spec.name == "sgd_schedulefree":
        # The rate is set by lrbench every step (set_hparams); warmup_steps stays 0.
        return schedulefree.SGDScheduleFree(
            params, lr=spec.lr, momentum=spec.momentum, weight_decay=spec.weight_decay
        )
    return schedulefree.AdamWScheduleFree(
        params, lr=spec.lr, betas=spec.betas, eps=spec.eps, weight_decay=spec.weight_decay
    )


def is_schedule_free(optimizer: torch.optim.Optimizer) -> bool:
    """True for optimizers with schedulefree's train/eval modes (their groups hold train_mode)."""
    groups = getattr(optimizer, "param_groups", None) or [{}]
    return "train_mode" in groups[0] and callable(getattr(optimizer, "train", None))


def for_training(optimizer: torch.optim.Optimizer) -> None:
    """Call before training steps (each epoch, and after any evaluation): parameters hold y."""
    if is_schedule_free(optimizer):
        optimizer.train()


def for_evaluation(optimizer: torch.optim.Optimizer) -> bool:
    """Call before evaluating or checkpointing: parameters hold x, the averaged model. True for
    a schedule-free optimizer (the weights moved: BatchNorm's running statistics, gathered at
    y, want re-estimating at x, lrbench.train.evaluation.reestimate_batchnorm); False, and
    nothing done, for the others."""
    if not is_schedule_free(optimizer):
        return False
    optimizer.eval()
    return True


def check_schedule(spec: OptimizerSpec, sets_momentum: bool, momenta=None) -> None:
    """Refuse a schedule that moves momentum for a schedule-free optimizer.

    Its momentum (AdamW: beta1) is the interpolation constant that converts y into x in
    `.eval()` and back in `.train()`; changing it between steps breaks that bookkeeping. A
    momentum schedule that holds the configured value (e.g. onecycle momentum=[0.9, 0.9]) is
    accepted. `momenta` is the schedule's per-step table, when the caller has it.
    """
    if spec.name not in SCHEDULE_FREE or not sets_momentum:
        return
    held = spec.momentum if spec.name == "sgd_schedulefree" else spec.betas[0]
    if momenta is not None and all(math.isclose(float(m), held) for m in momenta):
        return
    raise UserError(
        f"optimizer {spec.name} cannot follow a schedule that cycles momentum (its momentum "
        "is the averaging constant that .train()/.eval() convert with); use a schedule "
        "without momentum cycling, e.g. triangular with cycle_momentum: false, or onecycle "
        f"with momentum: [{held:g}, {held:g}]"
    )


def set_hparams(optimizer: torch.optim.Optimizer, lr: float, momentum: float | None) -> None:
    """Set the step's rate, and its momentum when the schedule moves it (Adam: beta1).

    For schedule-free optimizers (groups with `train_mode`) a momentum change is refused:
    see check_schedule, which a config or run should call before training starts.
    """
    for group in optimizer.param_groups:
        group["lr"] = lr
        if momentum is None:
            continue
        if "betas" in group:
            if "train_mode" in group and not math.isclose(group["betas"][0], momentum):
                raise ValueError("a schedule-free optimizer's beta1 cannot change mid-run")
            group["betas"] = (momentum, group["betas"][1])
        else:
            if "train_mode" in group and not math.isclose(group["momentum"], momentum):
                raise ValueError("a schedule-free optimizer's momentum cannot change mid-run")
            group["momentum"] = momentum


def optimizer_state(optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer's state for a checkpoint: torch.optim's state_dict, or for schedule-free
    optimizers lrbench's own layout, which packed training writes and reads too:
    {"schedule_free": {"k", "lr_max", "weight_sum", "z": [per parameter], "exp_avg_sq": [...]}}
    (taken in eval mode: the model's weights are x)."""
    if not is_schedule_free(optimizer):
        return optimizer.state_dict()
    group = optimizer.param_groups[0]
    out: dict[str, Any] = {
        "k": int(group["k"]),
        "lr_max": float(group["lr_max"]),
        "weight_sum": float(group["weight_sum"]),
    }
    params = group["params"]
    for name in ("z", "exp_avg_sq"):
        if params and name in optimizer.state[params[0]]:
            out[name] = [optimizer.state[p][name] for p in params]
    return {"schedule_free": out}


def load_optimizer_state(optimizer: torch.optim.Optimizer, saved: dict[str, Any]) -> None:
    """Inverse of optimizer_state: into a fresh optimizer over the same parameters."""
    if "schedule_free" not in saved:
        optimizer.load_state_dict(saved)
        return
    sf = saved["schedule_free"]
    group = optimizer.param_groups[0]
    group.update(k=int(sf["k"]), lr_max=float(sf["lr_max"]), weight_sum=float(sf["weight_sum"]))
    group["train_mode"] = False
    for name in ("z", "exp_avg_sq"):
        if name not in sf:  # SGD keeps no exp_avg_sq; nothing at all before the first step
            continue
        for p, value in zip(group["params"], sf[name], strict=True):
            optimizer.state[p][name] = value.to(device=p.device, dtype=p.dtype).clone()
