"""G models side by side in one module: the packed model, for any architecture.

All parameters live in ONE flat tensor, `flat`, param-major: the segment of each parameter holds
model 0's copy, then model 1's, ... (so a segment is also that parameter stacked over the G
models, [G, *shape]). The gradient arrives as one flat tensor too, and the optimizer updates
every parameter of every model with a handful of whole-buffer ops (lrbench.train.packed.optim).
`owner` maps each element of `flat` to its model, for per-model learning rates. Buffers
(BatchNorm's running statistics and counters) are stacked per buffer, [G, *shape].

How the G models run (`impl`):
- `loop`: each model in turn, through the plain model's own module (torch.func.functional_call
  with that model's views of the packed tensors): it runs exactly the kernels its unpacked twin
  runs, so it is bit-identical to it, for any architecture. The CPU's way: oneDNN's grouped
  convolutions cost ~2x per model what the plain ones cost.
- `grouped`: every layer holds all G models (a [B, G*C, H, W] activation carries model g in
  channels [g*C, (g+1)*C); grouped convolutions, BatchNorm over G*C channels, batched-matmul
  heads): few, big kernels, the GPU's way. For the built-in models that define a
  `grouped_forward` (lrbench.models.grouped: the ResNets, VGG, Wide ResNets), called on one
  weightless template per architecture (`grouped_template`); rounding differs from the plain
  model's (another summation order), exact in float64.
- `vmap`: torch.func.vmap over functional_call: grouped kernels for any architecture, slower
  than `grouped` (the model dimension moves in and out of the channels at every layer).
`auto` is `loop` on the CPU, and `grouped` where the architecture has it (else `vmap`) on CUDA.

With channels_last, a convolution's segment is stored in (out, kh, kw, in) order, so its views
are channels_last weights and no layout conversion happens per step.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call
from torch.nn.modules.batchnorm import _BatchNorm

from lrbench.errors import UserError
from lrbench.models import build_model
from lrbench.models.grouped import BN_MOMENTUM, has_grouped_form, run_grouped
from lrbench.train.evaluation import in_mode

IMPLS = ("auto", "grouped", "vmap", "loop")


@dataclass(frozen=True)
class ParamSlot:
    """One parameter of the plain model and where the pack keeps its G copies."""

    name: str  # the plain model's state_dict key
    shape: tuple[int, ...]  # the plain model's shape
    offset: int  # start of the segment in `flat` (G * numel elements)
    numel: int  # elements per model
    kind: str  # conv | norm | linear | other: how a grouped forward reads it

    @property
    def is_conv(self) -> bool:
        return self.kind == "conv" and len(self.shape) == 4


@dataclass(frozen=True)
class BufferSlot:
    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype


@dataclass(frozen=True)
class PackLayout:
    """Static structure of a pack: hashable, so compiled code can guard on it."""

    arch: tuple  # what the architecture's grouped forward needs, () when it has none
    groups: int
    channels_last: bool
    params: tuple[ParamSlot, ...]
    buffers: tuple[BufferSlot, ...]
    impl: str = "loop"  # grouped | vmap | loop, resolved (resolve_impl)
    stacked: bool = False  # inputs [G, B, ...] (text, your own tensors), not [B, G*C, H, W]

    @property
    def total(self) -> int:
        return sum(p.numel for p in self.params) * self.groups

    def buffer_indices(self, suffix: str) -> list[int]:
        return [i for i, b in enumerate(self.buffers) if b.name.endswith(suffix)]


def _kinds(template: nn.Module) -> dict[str, str]:
    kinds = {}
    for prefix, module in template.named_modules():
        kind = (
            "conv"
            if isinstance(module, nn.Conv2d)
            else "norm"
            if isinstance(module, nn.modules.batchnorm._NormBase)
            else "linear"
            if isinstance(module, nn.Linear)
            else "other"
        )
        for name, _ in module.named_parameters(recurse=False):
            kinds[f"{prefix}.{name}" if prefix else name] = kind
    return kinds


def make_layout(
    template: nn.Module,
    arch: tuple,
    groups: int,
    channels_last: bool,
    impl: str = "loop",
    stacked: bool = False,
) -> PackLayout:
    if impl not in IMPLS[1:]:  # auto is resolved before (resolve_impl)
        raise UserError(f"pack implementation must be one of {', '.join(IMPLS[1:])}, got {impl!r}")
    if groups < 1:
        raise UserError(f"a pack needs at least one model, got {groups}")
    if impl == "grouped" and not arch:
        raise UserError(f"{type(template).__name__} has no grouped form; use impl vmap or loop")
    kinds = _kinds(template)
    slots, offset = [], 0
    for name, p in template.named_parameters():
        slots.append(ParamSlot(name, tuple(p.shape), offset, p.numel(), kinds.get(name, "other")))
        offset += p.numel() * groups
    buffers = tuple(BufferSlot(n, tuple(b.shape), b.dtype) for n, b in template.named_buffers())
    return PackLayout(arch, groups, channels_last, tuple(slots), buffers, impl, stacked)


def resolve_impl(impl: str, device: torch.device, model: str | dict, stacked: bool) -> str:
    """The implementation a pack of `model` runs on `device` (`auto` resolved: see the module
    docstring); done once, when the pack is built: its layout holds the answer."""
    if impl not in IMPLS:
        raise UserError(f"pack implementation must be one of {', '.join(IMPLS)}, got {impl!r}")
    if impl != "auto":
        return impl
    if device.type != "cuda":
        return "loop"
    return "grouped" if not stacked and grouped_arch(model) else "vmap"


def stacked_views(layout: PackLayout, flat: torch.Tensor) -> list[torch.Tensor]:
    """Each parameter stacked over the models, [G, *shape], as views of `flat` (one split)."""
    g = layout.groups
    chunks = torch.split(flat, [p.numel * g for p in layout.params])
    out = []
    for slot, chunk in zip(layout.params, chunks, strict=True):
        if slot.is_conv and layout.channels_last:
            o, i, kh, kw = slot.shape
            out.append(chunk.view(g, o, kh, kw, i).permute(0, 1, 4, 2, 3))
        else:
            out.append(chunk.view(g, *slot.shape))
    return out


def grouped_views(layout: PackLayout, stacked: list[torch.Tensor]) -> list[torch.Tensor]:
    """The layers' packed tensors a grouped forward reads: convolutions (and their biases) and
    norms with the models side by side in the channels ([G*O, I, kh, kw], [G*C]), linear
    layers stacked ([G, out, in], [G, out])."""
    return [
        s if slot.kind == "linear" else s.flatten(0, 1)
        for slot, s in zip(layout.params, stacked, strict=True)
    ]


def member_view(layout: PackLayout, tensor: torch.Tensor, slot: ParamSlot, g: int) -> torch.Tensor:
    """Model g's copy of `slot` inside a flat tensor shaped like `flat`, in the plain shape
    (a channels_last view for convolutions with channels_last). Read or written in place."""
    block = tensor[slot.offset + g * slot.numel : slot.offset + (g + 1) * slot.numel]
    if slot.is_conv and layout.channels_last:
        o, i, kh, kw = slot.shape
        return block.view(o, kh, kw, i).permute(0, 3, 1, 2)
    return block.view(slot.shape)


def owner_index(layout: PackLayout, device: torch.device | str) -> torch.Tensor:
    """For each element of `flat`, the index of the model it belongs to (int64)."""
    models = torch.arange(layout.groups, device=device)
    return torch.cat([models.repeat_interleave(slot.numel) for slot in layout.params])


def packed_forward(
    layout: PackLayout,
    flat: torch.Tensor,
    buffers: list[torch.Tensor],
    x: torch.Tensor,
    training: bool,
    template: nn.Module | None = None,
    bn_momentum: float | None = BN_MOMENTUM,
) -> torch.Tensor:
    """x [B, G*C, H, W] (model g in channels [g*C, (g+1)*C)), or [G, B, ...] for a stacked
    layout -> outputs [G, B, ...].

    Updates the BatchNorm running statistics when training; `bn_momentum` None averages them
    cumulatively, as nn.BatchNorm does with momentum None. `template` (the plain model) is
    needed by the loop and vmap implementations.
    """
    impl = layout.impl
    g = layout.groups
    stacked = stacked_views(layout, flat)
    if impl == "grouped":
        tracked = [buffers[i] for i in layout.buffer_indices("num_batches_tracked")]
        if training and tracked:
            torch._foreach_add_(tracked, 1)
        momentum = bn_momentum
        if momentum is None:  # cumulative average: 1 / batches seen (every model has seen as many)
            momentum = 1.0 / float(tracked[0][0]) if tracked else 0.0
        stats = [
            buffers[i].view(-1)
            for i, b in enumerate(layout.buffers)
            if b.name.endswith(("running_mean", "running_var"))
        ]
        weightless = grouped_template(layout.arch)
        views = grouped_views(layout, stacked)
        return run_grouped(weightless, views, stats, x, training, g, momentum)
    assert template is not None, "the loop and vmap implementations need the plain model"
    names = [p.name for p in layout.params]
    buffer_names = [b.name for b in layout.buffers]
    with _bn_momentum(template, bn_momentum), in_mode(template, training):
        if impl == "vmap":
            xs = x if layout.stacked else x.unflatten(1, (g, x.shape[1] // g))

            def one(params, bufs, xi):
                state = {
                    **dict(zip(names, params, strict=True)),
                    **dict(zip(buffer_names, bufs, strict=True)),
                }
                return functional_call(template, state, (xi,))

            in_x = 0 if layout.stacked else 1
            return torch.func.vmap(one, in_dims=(0, 0, in_x), randomness="different")(
                stacked, buffers, xs
            )
        c = x.shape[1] // g
        outs = []
        for m in range(g):
            state = {n: p[m] for n, p in zip(names, stacked, strict=True)}
            state.update({n: b[m] for n, b in zip(buffer_names, buffers, strict=True)})
            xm = x[m] if layout.stacked else x[:, c * m : c * (m + 1)]
            outs.append(functional_call(template, state, (xm,)))
        return torch.stack(outs)


@contextlib.contextmanager
def _bn_momentum(template: nn.Module, momentum: float | None) -> Iterator[None]:
    if momentum == BN_MOMENTUM:
        yield
        return
    norms = [m for m in template.modules() if isinstance(m, _BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.momentum = momentum
    try:
        yield
    finally:
        for m, value in zip(norms, saved, strict=True):
            m.momentum = value


class PackedModel(nn.Module):
    """G models of one architecture in one module; see the module docstring."""

    def __init__(
        self,
        model: str | dict,
        num_classes: int | None,
        groups: int,
        channels_last: bool = True,
        impl: str = "loop",
        context: int | None = None,
        stacked: bool = False,
    ) -> None:
        super().__init__()
        template = build_model(model, num_classes, context=context)
        self.model_spec, self.num_classes, self.context = model, num_classes, context
        arch = () if stacked else grouped_arch(model)
        self.layout = make_layout(template, arch, groups, channels_last, impl, stacked)
        object.__setattr__(self, "template", template)  # its own weights are never used
        self.flat = nn.Parameter(torch.zeros(self.layout.total))
        for i, b in enumerate(self.layout.buffers):
            self.register_buffer(f"buf{i}", torch.zeros(groups, *b.shape, dtype=b.dtype))
        self.bn_momentum: float | None = BN_MOMENTUM

    @property
    def groups(self) -> int:
        return self.layout.groups

    def buffer_list(self) -> list[torch.Tensor]:
        return [getattr(self, f"buf{i}") for i in range(len(self.layout.buffers))]

    def _apply(self, fn, recurse=True):  # the template follows the pack to its device and dtype
        super()._apply(fn, recurse)
        self.template._apply(fn, recurse)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return packed_forward(
            self.layout,
            self.flat,
            self.buffer_list(),
            x,
            self.training,
            self.template,
            self.bn_momentum,
        )

    @contextlib.contextmanager
    def averaging_batchnorm(self) -> Iterator[bool]:
        """Every BatchNorm's statistics reset, then averaging the batches run inside exactly
        (momentum None), as lrbench.train.evaluation.averaging_batchnorm does for a plain model;
        yields whether the models have any BatchNorm."""
        norms = {n for n, m in self.template.named_modules() if isinstance(m, _BatchNorm)}
        stats = [
            (b.name, buf)
            for b, buf in zip(self.layout.buffers, self.buffer_list(), strict=True)
            if b.name.rpartition(".")[0] in norms
        ]
        with torch.no_grad():
            for name, buf in stats:
                buf.fill_(1 if name.endswith("running_var") else 0)
        self.bn_momentum = None
        try:
            yield bool(stats)
        finally:
            self.bn_momentum = BN_MOMENTUM

    @torch.no_grad()
    def load_member(self, g: int, state: dict[str, torch.Tensor]) -> None:
        """Copy a plain model's state_dict into slot g."""
        for slot in self.layout.params:
            member_view(self.layout, self.flat, slot, g).copy_(state[slot.name])
        for b, buf in zip(self.layout.buffers, self.buffer_list(), strict=True):
            buf[g].copy_(state[b.name])

    @torch.no_grad()
    def snapshot(self) -> dict[str, torch.Tensor]:
        """A CPU copy of the pack's state in a few tensors (not one per member and tensor), for
        `member_state`: many members' checkpoints cheaply, also while the pack trains on."""
        names = ["flat", *(f"buf{i}" for i in range(len(self.layout.buffers)))]
        return {n: getattr(self, n).detach().to("cpu", copy=True) for n in names}

    def member_state(
        self, g: int, source: dict[str, torch.Tensor] | None = None
    ) -> dict[str, torch.Tensor]:
        """Slot g as a plain model's state_dict: views into the pack (or into `source`, a
        `snapshot()`), so copy them before the pack trains on."""
        src = source or {
            "flat": self.flat,
            **{f"buf{i}": b for i, b in enumerate(self.buffer_list())},
        }
        state = {s.name: member_view(self.layout, src["flat"], s, g) for s in self.layout.params}
        for i, b in enumerate(self.layout.buffers):
            state[b.name] = src[f"buf{i}"][g]
        return state

    def build_plain(self) -> nn.Module:
        """A fresh plain model of the pack's architecture (from torch's global RNG)."""
        return build_model(self.model_spec, self.num_classes, context=self.context)

    def member_views(self, tensor: torch.Tensor, g: int) -> list[torch.Tensor]:
        """Model g's parameters inside a tensor shaped like `flat`, in named_parameters order."""
        return [member_view(self.layout, tensor, s, g) for s in self.layout.params]


_TEMPLATES: dict[tuple, nn.Module] = {}  # arch -> a weightless model with a grouped_forward


def grouped_arch(model: str | dict) -> tuple:
    """The key of `model`'s grouped form (its name and a digest of its parameters' names and
    shapes), () when it has none: the user's own models, and built-in ones without a
    `grouped_forward`, pack with the vmap or loop implementation."""
    if not isinstance(model, str):
        return ()
    with torch.device("meta"), torch.random.fork_rng(devices=[]):
        template = build_model(model, 1)
    if not has_grouped_form(template):
        return ()
    shapes = repr([(n, tuple(p.shape)) for n, p in template.named_parameters()])
    arch = (model, hashlib.sha256(shapes.encode()).hexdigest()[:16])
    _TEMPLATES.setdefault(arch, template)
    return arch


def grouped_template(arch: tuple) -> nn.Module:
    """The one weightless model (meta device, kept for the process) whose grouped_forward
    packs of `arch` run: torch.compile sees the same object in every such pack."""
    return _TEMPLATES[arch]
