"""G runs as one packed network: the stepper the loop uses for a pack (lrbench.train.steppers).

One step of every model, whatever G is: ~10 ops to draw the G batches (lrbench.train.packed.data), the
packed forward/backward (lrbench.train.packed.models), ~10 whole-buffer ops for the fused optimizer
(lrbench.train.packed.optim). Losses and accuracies stay on the device; the loop syncs once an epoch.

Slots keep their place for the pack's whole life: a finished, diverged or stopped model rides
along as a passenger at rate 0 (in float32 the grouped kernels' blocking depends on G, and a
fixed G is what makes resume bit-exact). Each slot's checkpoint is written in a plain run's
format, so a run trained packed resumes alone and the other way round.

The forward+loss (grouped layers) and the optimizer update go through torch.compile in mode
`compile` ("auto": $LRBENCH_COMPILE, default 'default' on CUDA and off on the CPU; None:
eager); a compiler failure falls back to eager with a warning.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from lrbench.data import DeviceData
from lrbench.tasks import Task
from lrbench.train.checkpoint import rng_state
from lrbench.train.evaluation import (
    correct_per_model,
    evaluate,
    inputs,
    predict_probs,
    reestimate_batchnorm,
)
from lrbench.train.optim import (
    base_momentum,
    build_optimizer,
    check_schedule_free,
    clip_global_norm,
    decayed,
    param_groups,
    set_hparams,
    state_order,
)
from lrbench.train.packed.data import PackEpoch, pack_eval_input
from lrbench.train.packed.models import PackedModel, owner_index, packed_forward, resolve_impl
from lrbench.train.packed.optim import PackedOptimizer, PackedScheduleFree, build_packed_optimizer
from lrbench.train.runtime import autocast_for, param_dtype
from lrbench.train.steppers import CROSS_ENTROPY

COMPILE_ENV = "LRBENCH_COMPILE"  # off | default | reduce-overhead | max-autotune-no-cudagraphs
COMPILE_DEFAULT = "default"


def per_model_loss(
    out: torch.Tensor,
    y: torch.Tensor,
    dtype: torch.dtype,
    reduction: str = "mean",
    exact: bool = True,
    task: Task = CROSS_ENTROPY,
) -> torch.Tensor:
    """[G] losses: model g's loss of `out_g.to(dtype)` against `y_g`, as a plain run takes it.

    `exact`: one call per model, so that each loss is bit-identical to its unpacked twin's (a
    mean over another shape sums in another order): what the CPU's `loop` layers need. Else one
    call for all G models (the `grouped` layers, already rounding differently): 6 kernels a step
    instead of 6G, which is what eager mode (and the pack-size measurement) pays for.
    """
    return task.per_model(out.to(dtype), y, reduction, exact)


def _grouped_forward_loss(layout, flat, buffers, x, y):
    """The compiled unit (grouped layers only): no module in its arguments, so packs of the
    same layout share the compiled code."""
    out = packed_forward(layout, flat, buffers, x, True)
    return out, per_model_loss(out, y, flat.dtype, exact=False)


_COMPILED: dict[str, Any] = {}


def compile_mode() -> str | None:
    mode = os.environ.get(COMPILE_ENV, COMPILE_DEFAULT).strip().lower()
    return None if mode in ("", "0", "off", "none", "false", "no") else mode


def _compiled(name: str, fn, mode: str):
    """torch.compile'd `fn`, once per process (not per run or pack): packs of the same layout
    reuse the compiled code; a new layout (another G or model) is one more guarded variant."""
    key = f"{name}:{mode}"
    if key not in _COMPILED:
        import torch._dynamo

        for limit in ("recompile_limit", "cache_size_limit"):  # the name changed across versions
            if hasattr(torch._dynamo.config, limit):
                setattr(torch._dynamo.config, limit, max(getattr(torch._dynamo.config, limit), 64))
        # static shapes: the last, short batch of an epoch gets its own variant instead of
        # turning every step's graph dynamic
        _COMPILED[key] = torch.compile(fn, mode=None if mode == "default" else mode, dynamic=False)
    return _COMPILED[key]


class PackedStepper:
    """One packed model and its fused optimizer (see the module docstring)."""

    def __init__(
        self,
        model: PackedModel,
        optimizer: PackedOptimizer | PackedScheduleFree,
        device: torch.device,
        precision: str,
        compile: str | None = "auto",
        data: DeviceData | None = None,
        seeds: Sequence[int] = (),
        batch_size: int = 0,
        task: Task = CROSS_ENTROPY,
    ) -> None:
        self.model = model
        self.task = task
        self.clip_norm = optimizer.spec.clip_norm
        self.optimizer = optimizer
        self.device = device
        self.precision = precision
        self.dtype = param_dtype(precision)
        self.autocast = autocast_for(precision, device)
        self.data, self.seeds, self.batch_size = data, list(seeds), batch_size
        self.impl = resolve_impl(model.layout, device)
        self.eager_update = optimizer.update_fn
        self.compiled: str | None = None
        self.proven = False
        self.template_optimizer: torch.optim.Optimizer | None = None
        self.last_rates = np.zeros(model.groups)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # picks the fastest grouped-conv algorithms
        if compile == "auto":  # the CPU compiles only when asked to ($LRBENCH_COMPILE set)
            asked = COMPILE_ENV in os.environ
            compile = compile_mode() if device.type == "cuda" or asked else None
        self.forward_loss = self._eager_forward_loss
        if compile:
            if self.impl == "grouped":
                self.forward_loss = _compiled("forward_loss", _grouped_forward_loss, compile)
            name = self.eager_update.__name__
            optimizer.update_fn = _compiled(name, self.eager_update, compile)
            self.compiled = compile

    @property
    def groups(self) -> int:
        return self.model.groups

    def _eager_forward_loss(self, layout, flat, buffers, x, y):
        out = packed_forward(layout, flat, buffers, x, True, self.model.template)
        return out, per_model_loss(out, y, flat.dtype, exact=self.impl == "loop", task=self.task)

    # --- training -----------------------------------------------------------------------

    def batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        assert self.data is not None
        if self.data.stacked:  # each model's own batch, exactly as its run alone draws it
            each = [self.data.train_batches(s, epoch, self.batch_size) for s in self.seeds]
            return (
                (torch.stack([x for x, _ in b]), torch.stack([y for _, y in b]))
                for b in zip(*each, strict=True)
            )
        return iter(PackEpoch(self.data, self.seeds, epoch, self.batch_size))

    def units(self, y: torch.Tensor) -> int:
        return self.task.units(y[0])

    def begin_epoch(self, first_step: int, lrs: np.ndarray) -> None:
        self.optimizer.set_rates(first_step, lrs)
        self.last_rates = lrs[-1].copy()

    def step(
        self, i: int, x: torch.Tensor, y: torch.Tensor, active: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step of every model (row i of the epoch's rates); returns ([G] losses,
        [G] correct), on the device. `active` [G] bool is updated in place: a model whose loss
        is not finite is frozen before this step's update (no host sync)."""
        if self.compiled and not self.proven:
            try:
                result = self._step(i, x, y, active)
            except Exception as err:  # a compiler failure must not cost the runs: go eager
                warnings.warn(
                    f"torch.compile ({self.compiled}) failed, training eagerly: "
                    f"{type(err).__name__}: {err}",
                    stacklevel=2,
                )
                self.forward_loss, self.optimizer.update_fn = (
                    self._eager_forward_loss,
                    self.eager_update,
                )
                self.compiled = None
                result = self._step(i, x, y, active)
            self.proven = True
            return result
        return self._step(i, x, y, active)

    def _step(self, i, x, y, active):
        m = self.model
        with self.autocast():
            out, losses = self.forward_loss(
                m.layout, m.flat, m.buffer_list(), inputs(x, self.dtype), y
            )
        m.flat.grad = None
        losses.sum().backward()
        active &= torch.isfinite(losses.detach())
        if self.clip_norm is not None:  # per member, as each run alone clips its own
            for g in range(m.groups):
                clip_global_norm(m.member_views(m.flat.grad, g), self.clip_norm)
        self.optimizer.step(m.flat.grad, i, active)
        return losses.detach(), correct_per_model(self.task, out, y)

    def for_training(self) -> None:
        self.model.train()
        self.optimizer.train()

    def for_evaluation(self, batchnorm_from: int | None = None) -> None:
        """Schedule-free: the weights to x, and with `batchnorm_from` (an epoch) BatchNorm's
        statistics re-estimated there on each model's first batches of it (as a plain run)."""
        if not isinstance(self.optimizer, PackedScheduleFree):
            return
        self.optimizer.eval()
        if batchnorm_from is not None:
            averaging = self.model.averaging_batchnorm()
            reestimate_batchnorm(self.model, averaging, self.batches(batchnorm_from))

    def eval_forward(self, x: torch.Tensor) -> torch.Tensor:
        """An evaluation batch through the G models: outputs [G, B, ...] (lrbench.train.
        evaluation's Forward)."""
        assert self.data is not None
        with self.autocast():
            out = self.model(inputs(pack_eval_input(x, self.groups, self.data), self.dtype))
        return out.to(self.dtype)

    def evaluate(self, split: str) -> tuple[list[float], list[float]]:
        exact = self.impl == "loop"
        return evaluate(self.model, self.eval_forward, self.data, split, self.task, exact)

    def predict_probs(self, split: str) -> torch.Tensor:
        return predict_probs(self.model, self.eval_forward, self.data, split)

    # --- checkpoints ----------------------------------------------------------------------

    def capture(self) -> Any:
        rates = self.last_rates.copy()
        return self.model.snapshot(), self.optimizer.snapshot(), rng_state(), rates

    def member_state(self, captured: Any, slot: int, step: int) -> dict[str, Any]:
        """Slot `slot`'s checkpoint content in a plain run's format, from `capture()`."""
        model_snap, opt_snap, rng, rates = captured
        model_state = {k: v.clone() for k, v in self.model.member_state(slot, model_snap).items()}
        views = lambda t: self.model.member_views(t, slot)  # noqa: E731
        per_param = self.optimizer.member_state(views, step, slot, opt_snap)
        if isinstance(self.optimizer, PackedScheduleFree):
            opt_state = per_param
        else:
            opt_state = self._torch_format(per_param, float(rates[slot]), slot, step)
        return {"model": model_state, "optimizer": opt_state, **rng}

    def _torch_format(self, per_param, lr: float, slot: int, step: int) -> dict[str, Any]:
        """torch.optim's state_dict for one model, through a plain optimizer of the same kind."""
        if self.template_optimizer is None:
            template = self.model.build_plain()
            self.template_params = list(template.parameters())
            self.template_optimizer = build_optimizer(self.optimizer.spec, param_groups(template))
        opt = self.template_optimizer
        set_hparams(opt, lr, float(self.optimizer.momenta[step - 1, slot]))
        opt.state.clear()
        for p, entry in zip(self.template_params, per_param, strict=False):
            opt.state[p] = {k: v.clone() for k, v in entry.items()}
        return opt.state_dict()


def packed_stepper(
    members: Sequence[Any],
    trainees: set[int],
    data: DeviceData,
    device: torch.device,
    precision: str,
    channels_last: bool,
    impl: str = "auto",
) -> PackedStepper:
    """The pack of `members` (every slot, in order): trainees from their checkpoints (or fresh
    from their seeds), passengers (finished, or ahead of the others) fresh from their seeds."""
    spec0 = members[0].spec
    check_schedule_free(spec0.optimizer)
    model = PackedModel(spec0.model, data.num_classes, len(members), channels_last, impl,
                        data.context, data.stacked)  # fmt: skip
    for m in members:
        if m.slot in trainees and m.state is not None:
            model.load_member(m.slot, m.state["model"])
        else:
            torch.manual_seed(m.spec.seed)
            model.load_member(m.slot, model.build_plain().state_dict())
    model = model.to(device=device, dtype=param_dtype(precision))
    base = base_momentum(spec0.optimizer)
    steps = len(members[0].lrs)
    momenta = np.stack([m.moms if m.moms is not None else np.full(steps, base) for m in members], 1)
    owner = owner_index(model.layout, device)
    mask = decay_mask(model, device)
    optimizer = build_packed_optimizer(spec0.optimizer, model.flat, owner, momenta, mask)
    for m in members:
        if m.slot in trainees and m.state is not None:
            views = lambda t, g=m.slot: model.member_views(t, g)  # noqa: E731
            saved = m.state["optimizer"]
            if isinstance(optimizer, PackedScheduleFree):
                optimizer.load_member_state(views, m.slot, saved)
            else:
                per_param: list[dict] = [{} for _ in model.layout.params]
                for k, named in enumerate(state_order(model.template)):
                    per_param[named] = saved.get("state", {}).get(k, {})
                optimizer.load_member_state(views, per_param)
    seeds = [m.spec.seed for m in members]
    return PackedStepper(model, optimizer, device, precision, "auto", data, seeds,
                         spec0.batch_size, next(m for m in members if m.slot in trainees).task)  # fmt: skip


def decay_mask(model: PackedModel, device: torch.device) -> torch.Tensor | None:
    """Which elements of `flat` weight decay applies to (lrbench.train.optim.decayed); None: all."""
    flags = decayed(model.template)
    if all(flags):
        return None
    g = model.groups
    parts = [
        torch.full((s.numel * g,), f, dtype=torch.bool)
        for s, f in zip(model.layout.params, flags, strict=True)
    ]
    return torch.cat(parts).to(device)
