"""G runs as one packed network: the stepper the loop uses for a pack (lrbench.train.steppers).

One step of every model, whatever G is: ~10 ops to draw the G batches (lrbench.train.packed.data), the
packed forward/backward (lrbench.train.packed.models), ~10 whole-buffer ops for the fused optimizer
(lrbench.train.packed.optim). Losses and accuracies stay on the device; the loop syncs once an epoch.

Members keep their index for the pack's whole life: a finished, diverged or stopped model rides
along as a passenger at rate 0 (in float32 the grouped kernels' blocking depends on G, and a
fixed G is what makes resume bit-exact). Each member's checkpoint is written in a plain run's
format, so a run trained packed resumes alone and the other way round. The pack is built, its
models seeded or resumed, in lrbench.train.build.

The forward+loss (grouped layers) and the optimizer update go through torch.compile in mode
`compile` (Runtime.compile, resolved; None: eager); a compiler failure falls back to eager
with a warning.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from lrbench.data import DeviceData
from lrbench.specs import RunSpec
from lrbench.tasks import Task
from lrbench.train.checkpoint import rng_state
from lrbench.train.evaluation import (
    correct_per_model,
    evaluate,
    inputs,
    predict_probs,
    reestimate_batchnorm,
)
from lrbench.train.optim import build_optimizer, clip_global_norm, param_groups, set_hparams
from lrbench.train.packed.data import PackEpoch, pack_eval_input
from lrbench.train.packed.models import PackedModel, packed_forward
from lrbench.train.packed.optim import PackedOptimizer, PackedScheduleFree
from lrbench.train.runtime import autocast_for, param_dtype
from lrbench.train.steppers import CROSS_ENTROPY


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
    """One packed model and its fused optimizer (see the module docstring): model g trains
    run `specs[g]` (its seed's batches; everything else the runs share)."""

    def __init__(
        self,
        model: PackedModel,
        optimizer: PackedOptimizer | PackedScheduleFree,
        specs: Sequence[RunSpec],
        data: DeviceData,
        task: Task,
        device: torch.device,
        precision: str,
        compile: str | None,
    ) -> None:
        self.model = model
        self.task = task
        self.clip_norm = optimizer.spec.clip_norm
        self.optimizer = optimizer
        self.device = device
        self.precision = precision
        self.dtype = param_dtype(precision)
        self.autocast = autocast_for(precision, device)
        self.data, self.seeds, self.batch_size = data, [s.seed for s in specs], specs[0].batch_size
        self.impl = model.layout.impl
        self.eager_update = optimizer.update_fn
        self.compiled: str | None = None
        self.proven = False
        self.plain_optimizer: torch.optim.Optimizer | None = None
        self.last_rates = np.zeros(model.groups)
        self.last_momenta = np.zeros(model.groups)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # picks the fastest grouped-conv algorithms
        self.forward_loss = self._eager_forward_loss
        if compile:
            if self.impl == "grouped":
                self.forward_loss = _compiled("forward_loss", _grouped_forward_loss, compile)
            name = self.eager_update.__name__
            optimizer.update_fn = _compiled(name, self.eager_update, compile)
            self.compiled = compile

    @property
    def models(self) -> int:
        return self.model.groups

    def _eager_forward_loss(self, layout, flat, buffers, x, y):
        out = packed_forward(layout, flat, buffers, x, True, self.model.template)
        return out, per_model_loss(out, y, flat.dtype, exact=self.impl == "loop", task=self.task)

    # --- training -----------------------------------------------------------------------

    def batches(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self.data.stacked:  # each model's own batch, exactly as its run alone draws it
            each = [self.data.train_batches(s, epoch, self.batch_size) for s in self.seeds]
            return (
                (torch.stack([x for x, _ in b]), torch.stack([y for _, y in b]))
                for b in zip(*each, strict=True)
            )
        return iter(PackEpoch(self.data, self.seeds, epoch, self.batch_size))

    def units(self, y: torch.Tensor) -> int:
        return self.task.units(y[0])

    def begin_epoch(self, first_step: int, rates: np.ndarray, momenta: np.ndarray) -> None:
        self.optimizer.set_rates(first_step, rates, momenta)
        self.last_rates, self.last_momenta = rates[-1].copy(), momenta[-1].copy()

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
        with self.autocast():
            out = self.model(inputs(pack_eval_input(x, self.models, self.data), self.dtype))
        return out.to(self.dtype)

    def evaluate(self, split: str) -> tuple[list[float], list[float]]:
        exact = self.impl == "loop"
        return evaluate(self.model, self.eval_forward, self.data, split, self.task, exact)

    def predict_probs(self, split: str) -> torch.Tensor:
        return predict_probs(self.model, self.eval_forward, self.data, split)

    # --- checkpoints ----------------------------------------------------------------------

    def capture(self) -> Any:
        hparams = self.last_rates.copy(), self.last_momenta.copy()  # the last step's
        return self.model.snapshot(), self.optimizer.snapshot(), rng_state(), hparams

    def member_state(self, captured: Any, index: int, step: int) -> dict[str, Any]:
        """Member `index`'s checkpoint content in a plain run's format, from `capture()`."""
        model_snap, opt_snap, rng, (rates, momenta) = captured
        model_state = {k: v.clone() for k, v in self.model.member_state(index, model_snap).items()}
        views = lambda t: self.model.member_views(t, index)  # noqa: E731
        per_param = self.optimizer.member_state(views, step, index, opt_snap)
        if isinstance(self.optimizer, PackedScheduleFree):
            opt_state = per_param
        else:
            opt_state = self._torch_format(per_param, float(rates[index]), float(momenta[index]))
        return {"model": model_state, "optimizer": opt_state, **rng}

    def _torch_format(self, per_param, lr: float, momentum: float) -> dict[str, Any]:
        """torch.optim's state_dict for one model, through a plain optimizer of the same kind."""
        if self.plain_optimizer is None:
            plain = self.model.build_plain()
            self.plain_params = list(plain.parameters())
            self.plain_optimizer = build_optimizer(self.optimizer.spec, param_groups(plain))
        opt = self.plain_optimizer
        set_hparams(opt, lr, momentum)
        opt.state.clear()
        for p, entry in zip(self.plain_params, per_param, strict=False):
            opt.state[p] = {k: v.clone() for k, v in entry.items()}
        return opt.state_dict()
