"""G CIFAR ResNets side by side in one network: the packed model.

Every layer holds all G models. A [B, G*C, H, W] activation carries model g in channels
[g*C, (g+1)*C); convolutions are grouped (groups=G), so each model's filters see only its own
channels; BatchNorm over G*C channels is per model for free (its statistics are per channel); the
option-A shortcut pads each model's channels separately; the head is one batched matmul
([G, B, 64] x [G, 64, classes]). Model g of the pack computes exactly what `build_model` computes
(in float64 on the CPU the two agree to rounding; see tests/test_packed.py).

All parameters live in ONE flat tensor, `flat` (param-major: the segment of each parameter holds
model 0's copy, then model 1's, ...). The forward splits it into per-layer views (one `split`,
whose backward is one `cat`), so the gradient arrives as one flat tensor too, and the optimizer
updates every parameter of every model with a handful of whole-buffer ops (lrbench.packed.optim).
`owner` maps each element of `flat` to its model, for per-model learning rates.

With channels_last, a convolution's segment is stored in (out, kh, kw, in) order, so its view is
a channels_last weight and no layout conversion happens per step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lrbench.errors import UserError
from lrbench.models import _blocks_per_stage, build_model, parse_model_name

# How the G models run. grouped: every layer holds all G models (grouped convolutions, per-model
# BatchNorm over G*C channels, one batched matmul head): few, big kernels, the GPU's way.
# loop: the layers of one model at a time, on views of the same packed parameters: on the CPU
# (oneDNN) a grouped convolution and BatchNorm over G*C channels cost ~2x per model what the
# single model's kernels cost (bigger working sets fall out of cache), so the CPU loops, and
# then each model runs the very kernels its unpacked twin runs (bit-identical in float32 too).
IMPLS = ("auto", "grouped", "loop")
BN_MOMENTUM = 0.1
BN_EPS = 1e-5


@dataclass(frozen=True)
class ParamSlot:
    """One parameter of the plain model and where the pack keeps its G copies."""

    name: str  # the plain model's state_dict key
    shape: tuple[int, ...]  # the plain model's shape
    offset: int  # start of the segment in `flat` (G * numel elements)
    numel: int  # elements per model

    @property
    def is_conv(self) -> bool:
        return len(self.shape) == 4


@dataclass(frozen=True)
class PackLayout:
    """Static structure of a packed CIFAR ResNet: hashable, so compiled code can guard on it."""

    depth: int
    num_classes: int
    groups: int
    channels_last: bool
    params: tuple[ParamSlot, ...]
    buffers: tuple[tuple[str, int], ...]  # BN running stats: (name, channels per model)
    tracked: tuple[str, ...]  # BN num_batches_tracked names (one shared counter in the pack)
    impl: str = "auto"  # grouped | loop | auto (see IMPLS)

    @property
    def total(self) -> int:
        return sum(p.numel for p in self.params) * self.groups

    @property
    def blocks(self) -> int:
        return _blocks_per_stage(self.depth)


def make_layout(
    model: str, num_classes: int, groups: int, channels_last: bool, impl: str = "auto"
) -> PackLayout:
    depth = parse_model_name(model)
    if impl not in IMPLS:
        raise UserError(f"pack implementation must be one of {', '.join(IMPLS)}, got {impl!r}")
    if groups < 1:
        raise UserError(f"a pack needs at least one model, got {groups}")
    template = build_model(model, num_classes)
    slots, offset = [], 0
    for name, p in template.named_parameters():
        slots.append(ParamSlot(name, tuple(p.shape), offset, p.numel()))
        offset += p.numel() * groups
    buffers = tuple(
        (name, b.numel())
        for name, b in template.named_buffers()
        if name.endswith(("running_mean", "running_var"))
    )
    tracked = tuple(n for n, _ in template.named_buffers() if n.endswith("num_batches_tracked"))
    return PackLayout(
        depth, num_classes, groups, channels_last, tuple(slots), buffers, tracked, impl
    )


def param_views(layout: PackLayout, flat: torch.Tensor) -> list[torch.Tensor]:
    """The packed per-layer tensors, as differentiable views of `flat` (one split)."""
    g = layout.groups
    chunks = torch.split(flat, [p.numel * g for p in layout.params])
    out = []
    for slot, chunk in zip(layout.params, chunks, strict=True):
        if slot.is_conv:
            o, i, kh, kw = slot.shape
            if layout.channels_last:
                out.append(chunk.view(g * o, kh, kw, i).permute(0, 3, 1, 2))
            else:
                out.append(chunk.view(g * o, i, kh, kw))
        elif slot.name == "fc.weight":
            out.append(chunk.view(g, *slot.shape))  # [G, classes, 64]
        elif slot.name == "fc.bias":
            out.append(chunk.view(g, *slot.shape))  # [G, classes]
        else:  # BatchNorm weight / bias
            out.append(chunk)
    return out


def member_view(layout: PackLayout, tensor: torch.Tensor, slot: ParamSlot, g: int) -> torch.Tensor:
    """Model g's copy of `slot` inside a flat tensor shaped like `flat`, in the plain shape.

    A view, so it can be read (into a plain model) or written (from one) in place.
    """
    block = tensor[slot.offset + g * slot.numel : slot.offset + (g + 1) * slot.numel]
    if slot.is_conv and layout.channels_last:
        o, i, kh, kw = slot.shape
        return block.view(o, kh, kw, i).permute(0, 3, 1, 2)
    return block.view(slot.shape)


def owner_index(layout: PackLayout, device: torch.device | str) -> torch.Tensor:
    """For each element of `flat`, the index of the model it belongs to (int64)."""
    g = layout.groups
    models = torch.arange(g, device=device)
    return torch.cat([models.repeat_interleave(slot.numel) for slot in layout.params])


class PackedLinear(torch.autograd.Function):
    """G linear layers as batched matmuls: feats [G, B, in], weight [G, out, in], bias [G, out].

    Autograd's own backward of `baddbmm` computes the weight gradient as (feats^T @ grad)^T,
    whose float64 sums differ from F.linear's grad^T @ x in the last bit; this backward uses
    the same products as F.linear's, so a packed model's gradient equals its twin's exactly in
    float64 on the CPU.
    """

    @staticmethod
    def forward(ctx, feats: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor):
        ctx.save_for_backward(feats, weight)
        return torch.baddbmm(bias.unsqueeze(1), feats, weight.transpose(1, 2))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        feats, weight = ctx.saved_tensors
        return torch.bmm(grad, weight), torch.bmm(grad.transpose(1, 2), feats), grad.sum(1)


def _shortcut_a(x: torch.Tensor, groups: int, planes: int) -> torch.Tensor:
    """Option A per model: subsample by 2, zero-pad each model's channels to `planes`.

    Keeps x's memory format (a channels_last activation stays channels_last, so the layers
    after it keep their channels_last kernels). One model: exactly the plain model's op.
    """
    x = x[:, :, ::2, ::2]
    c = x.shape[1] // groups
    extra = planes - c
    half = extra // 2
    if groups == 1:
        return F.pad(x, (0, 0, 0, 0, half, extra - half))
    if x.stride(1) == 1:  # channels_last: pad inside [B, H, W, G, C]
        nhwc = x.permute(0, 2, 3, 1).unflatten(3, (groups, c))
        return F.pad(nhwc, (half, extra - half)).flatten(3).permute(0, 3, 1, 2)
    return F.pad(x.unflatten(1, (groups, c)), (0, 0, 0, 0, half, extra - half)).flatten(1, 2)


def _features(
    layout: PackLayout,
    weights: list[torch.Tensor],
    stats: list[torch.Tensor],
    x: torch.Tensor,
    training: bool,
    groups: int,
) -> torch.Tensor:
    """CifarResNet.forward up to the pooled features, for `groups` models side by side."""
    ws, st = iter(weights), iter(stats)

    def conv(x: torch.Tensor, stride: int) -> torch.Tensor:
        return F.conv2d(x, next(ws), None, stride, 1, 1, groups)

    def bn(x: torch.Tensor) -> torch.Tensor:
        weight, bias = next(ws), next(ws)
        mean, var = next(st), next(st)
        return F.batch_norm(x, mean, var, weight, bias, training, BN_MOMENTUM, BN_EPS)

    x = F.relu(bn(conv(x, 1)))
    in_planes = 16
    for stage, planes in enumerate((16, 32, 64)):
        for i in range(layout.blocks):
            stride = 2 if stage > 0 and i == 0 else 1
            out = F.relu(bn(conv(x, stride)))
            out = bn(conv(out, 1))
            short = x if stride == 1 and in_planes == planes else _shortcut_a(x, groups, planes)
            x = F.relu(out + short)
            in_planes = planes
    return F.adaptive_avg_pool2d(x, 1).flatten(1)


def resolve_impl(impl: str, device: torch.device) -> str:
    """`auto`: grouped layers on CUDA, a loop over the models on the CPU (see IMPLS)."""
    if impl == "auto":
        return "grouped" if device.type == "cuda" else "loop"
    return impl


def packed_forward(
    layout: PackLayout,
    flat: torch.Tensor,
    stats: list[torch.Tensor],
    num_batches_tracked: torch.Tensor,
    x: torch.Tensor,
    training: bool,
) -> torch.Tensor:
    """x [B, G*3, H, W] -> logits [G, B, num_classes]. Updates BN running stats when training."""
    g = layout.groups
    weights = param_views(layout, flat)
    if training:
        num_batches_tracked.add_(1)
    if resolve_impl(layout.impl, x.device) == "grouped":
        feats = _features(layout, weights[:-2], stats, x, training, g)
        feats = feats.view(x.shape[0], g, -1).transpose(0, 1)
        return PackedLinear.apply(feats, weights[-2], weights[-1])
    outs = []
    for m in range(g):
        own = [_member_slice(w, m, g) for w in weights]
        own_stats = [s.view(g, -1)[m] for s in stats]
        feats = _features(layout, own[:-2], own_stats, x[:, 3 * m : 3 * m + 3], training, 1)
        outs.append(F.linear(feats, own[-2], own[-1]))
    return torch.stack(outs)


def _member_slice(packed: torch.Tensor, m: int, groups: int) -> torch.Tensor:
    """Model m's part of a packed per-layer tensor (conv [G*O, ...], BN [G*C], fc [G, ...])."""
    if packed.dim() == 4 or packed.dim() == 1:
        n = packed.shape[0] // groups
        return packed[m * n : (m + 1) * n]
    return packed[m]


class PackedResNet(nn.Module):
    """G CIFAR ResNets (option-A shortcuts) in one module; see the module docstring."""

    def __init__(
        self,
        model: str,
        num_classes: int,
        groups: int,
        channels_last: bool = True,
        impl: str = "auto",
    ) -> None:
        super().__init__()
        self.layout = make_layout(model, num_classes, groups, channels_last, impl)
        self.model_name = model
        self.flat = nn.Parameter(torch.zeros(self.layout.total))
        for i, (_, c) in enumerate(self.layout.buffers):
            fill = torch.zeros if i % 2 == 0 else torch.ones
            self.register_buffer(f"stat{i}", fill(c * groups))
        self.register_buffer("num_batches_tracked", torch.zeros((), dtype=torch.long))
        self.forward_fn = packed_forward

    @property
    def groups(self) -> int:
        return self.layout.groups

    def stats(self) -> list[torch.Tensor]:
        return [getattr(self, f"stat{i}") for i in range(len(self.layout.buffers))]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_fn(
            self.layout, self.flat, self.stats(), self.num_batches_tracked, x, self.training
        )

    @torch.no_grad()
    def load_member(self, g: int, state: dict[str, torch.Tensor]) -> None:
        """Copy a plain model's state_dict into slot g."""
        for slot in self.layout.params:
            member_view(self.layout, self.flat, slot, g).copy_(state[slot.name])
        for (name, c), stat in zip(self.layout.buffers, self.stats(), strict=True):
            stat[g * c : (g + 1) * c].copy_(state[name])
        self.num_batches_tracked.copy_(state[self.layout.tracked[0]])

    @torch.no_grad()
    def snapshot(self) -> dict[str, torch.Tensor]:
        """A copy of all of the pack's state on the CPU, in a few tensors (not one per member and
        tensor): pass it to `member_state` to write many members' checkpoints cheaply, also
        while the pack trains on (a copy even on the CPU, where `.cpu()` would alias)."""
        names = [
            "flat",
            *(f"stat{i}" for i in range(len(self.layout.buffers))),
            "num_batches_tracked",
        ]
        return {n: getattr(self, n).detach().to("cpu", copy=True) for n in names}

    def member_state(
        self, g: int, source: dict[str, torch.Tensor] | None = None
    ) -> dict[str, torch.Tensor]:
        """Slot g as a plain model's state_dict: views into the pack (or into `source`, a
        `snapshot()`), so copy them before the pack trains on."""
        src = source or {"flat": self.flat, "num_batches_tracked": self.num_batches_tracked}
        stats = [src.get(f"stat{i}", s) for i, s in enumerate(self.stats())]
        state = {s.name: member_view(self.layout, src["flat"], s, g) for s in self.layout.params}
        for (name, c), stat in zip(self.layout.buffers, stats, strict=True):
            state[name] = stat[g * c : (g + 1) * c]
        for name in self.layout.tracked:
            state[name] = src["num_batches_tracked"]
        return state

    def member_views(self, tensor: torch.Tensor, g: int) -> list[torch.Tensor]:
        """Model g's parameters inside a tensor shaped like `flat`, in named_parameters order."""
        return [member_view(self.layout, tensor, s, g) for s in self.layout.params]


def init_packed(
    model: str,
    num_classes: int,
    seeds: list[int],
    dtype: torch.dtype,
    device: torch.device,
    channels_last: bool,
    impl: str = "auto",
) -> PackedResNet:
    """A pack whose model g is initialised exactly as `train_run` initialises seed g's model."""
    packed = PackedResNet(model, num_classes, len(seeds), channels_last, impl)
    for g, seed in enumerate(seeds):
        torch.manual_seed(seed)
        packed.load_member(g, build_model(model, num_classes).state_dict())
    return packed.to(device=device, dtype=dtype)
