"""Steppers are built here, and only here: the loop's, the benchmark's and `--pack auto`'s.

`build_stepper(specs, data, device, precision, runtime, states)` gives the stepper of one run
alone (lrbench.train.steppers.PlainStepper) or of G runs as one pack
(lrbench.train.packed.stepper.PackedStepper). Model g resumes from `states[g]` (its run's
checkpoint) or starts fresh from its run's seed through `seeded_model`: the one place a
model is initialised, so a run alone, a pack's member and a probe start alike. How a pack's
models run (`Runtime.impl`) and compile (`Runtime.compile`) is resolved here, once per stepper.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from lrbench.data import DeviceData
from lrbench.models import build_model
from lrbench.specs import RunSpec
from lrbench.tasks import task_for
from lrbench.train.checkpoint import restore_rng
from lrbench.train.optim import (
    build_optimizer,
    check_schedule_free,
    decayed,
    load_optimizer_state,
    param_groups,
    state_order,
)
from lrbench.train.packed.models import PackedModel, owner_index, resolve_impl
from lrbench.train.packed.optim import PackedScheduleFree, build_packed_optimizer
from lrbench.train.packed.stepper import PackedStepper
from lrbench.train.runtime import Runtime, param_dtype, resolve_compile
from lrbench.train.steppers import PlainStepper, Stepper

State = dict[str, Any]  # a run's checkpoint content (lrbench.train.checkpoint)


def seeded_model(
    model: str | dict, num_classes: int | None, seed: int, context: int | None = None
) -> nn.Module:
    """A run's model as it starts: built from torch's generator seeded with `seed`, on the CPU
    in float32 (the one place a model is initialised)."""
    torch.manual_seed(seed)
    return build_model(model, num_classes, context=context)


def build_run_model(
    model: str | dict,
    num_classes: int | None,
    seed: int,
    device: torch.device,
    precision: str,
    channels_last: bool,
    context: int | None = None,
) -> nn.Module:
    """The model a run trains alone (or a probe): `seeded_model` on `device`, in the run's dtype
    and memory format."""
    net = seeded_model(model, num_classes, seed, context)
    net = net.to(device=device, dtype=param_dtype(precision))
    return net.to(memory_format=torch.channels_last) if channels_last else net


def build_stepper(
    specs: Sequence[RunSpec],
    data: DeviceData,
    device: torch.device,
    precision: str,
    runtime: Runtime,
    states: Sequence[State | None] | None = None,
) -> Stepper:
    """The stepper of `specs`' runs: one run alone, or several (that may share a pack:
    lrbench.train.packed.sharing) as one pack, model g resuming from `states[g]` when given."""
    states = list(states) if states is not None else [None] * len(specs)
    if len(specs) != len(states):
        raise ValueError(f"{len(specs)} runs but {len(states)} states")
    if len(specs) == 1:
        return _plain_stepper(specs[0], data, device, precision, runtime, states[0])
    return _packed_stepper(specs, data, device, precision, runtime, states)


def _plain_stepper(
    spec: RunSpec,
    data: DeviceData,
    device: torch.device,
    precision: str,
    runtime: Runtime,
    state: State | None,
) -> PlainStepper:
    model = build_run_model(spec.model, data.num_classes, spec.seed, device, precision,
                            runtime.channels_last, data.context)  # fmt: skip
    optimizer = build_optimizer(spec.optimizer, param_groups(model))
    if state is not None:
        model.load_state_dict(state["model"])
        load_optimizer_state(optimizer, state["optimizer"])
        restore_rng(state)
    return PlainStepper(model, optimizer, spec, data, task_for(spec), device, precision)


def _packed_stepper(
    specs: Sequence[RunSpec],
    data: DeviceData,
    device: torch.device,
    precision: str,
    runtime: Runtime,
    states: Sequence[State | None],
) -> PackedStepper:
    spec = specs[0]  # what the runs of a pack share
    check_schedule_free(spec.optimizer)
    impl = resolve_impl(runtime.impl, device, spec.model, data.stacked)
    weights = [state["model"] if state is not None else None for state in states]
    model = build_packed_model(spec.model, data.num_classes, [s.seed for s in specs], device,
                               precision, runtime.channels_last, impl, weights, data.context,
                               data.stacked)  # fmt: skip
    optimizer = build_packed_optimizer(spec.optimizer, model.flat, owner_index(model.layout, device),
                                       len(specs), decay_mask(model, device))  # fmt: skip
    for g, state in enumerate(states):
        if state is None:
            continue
        views = lambda t, g=g: model.member_views(t, g)  # noqa: E731
        saved = state["optimizer"]
        if isinstance(optimizer, PackedScheduleFree):
            optimizer.load_member_state(views, g, saved)
        else:
            per_param: list[dict] = [{} for _ in model.layout.params]
            for k, named in enumerate(state_order(model.template)):
                per_param[named] = saved.get("state", {}).get(k, {})
            optimizer.load_member_state(views, g, per_param)
    compile = resolve_compile(runtime.compile, device)
    return PackedStepper(model, optimizer, specs, data, task_for(spec), device, precision, compile)


def build_packed_model(
    model: str | dict,
    num_classes: int | None,
    seeds: Sequence[int],
    device: torch.device,
    precision: str,
    channels_last: bool,
    impl: str,
    weights: Sequence[dict[str, torch.Tensor] | None] | None = None,
    context: int | None = None,
    stacked: bool = False,
) -> PackedModel:
    """G models as one (lrbench.train.packed.models, implementation `impl`: grouped | vmap |
    loop): model g from `weights[g]` (a plain model's state_dict) when given, else fresh from
    `seeds[g]` exactly as that run alone starts (`seeded_model`). Filled on the CPU in the
    run's dtype (a float64 checkpoint loads unrounded), then moved to `device` at once."""
    pack = PackedModel(model, num_classes, len(seeds), channels_last, impl, context, stacked)
    pack = pack.to(dtype=param_dtype(precision))
    for g, seed in enumerate(seeds):
        start = weights[g] if weights is not None else None
        if start is None:
            start = seeded_model(model, num_classes, seed, context).state_dict()
        pack.load_member(g, start)
    return pack.to(device=device)


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
