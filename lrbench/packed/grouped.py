"""Grouped forwards: every layer holds all G models side by side (the GPU's way to pack).

A [B, G*C, H, W] activation carries model g in channels [g*C, (g+1)*C); convolutions are
grouped (groups=G), so each model's filters see only its own channels; BatchNorm over G*C
channels is per model for free (its statistics are per channel); linear heads are one batched
matmul ([G, B, in] x [G, in, out]). Each function takes the layers' packed tensors in the plain
model's named_parameters() order (lrbench.packed.models.grouped_views), the BatchNorm running
statistics as [G*C] tensors in named_buffers() order, x [B, G*Cin, H, W], whether it trains, G,
and the BatchNorm momentum, and returns logits [G, B, classes]; model g computes what the plain
model computes (equal in float64; tests/test_packed.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable

import torch
import torch.nn.functional as F

from lrbench.packed.models import BN_EPS, PackedLinear


def grouped_arch(model: str | dict) -> tuple:
    """What the grouped forward of `model` needs to know, () when it has no grouped form."""
    if isinstance(model, str) and (match := re.fullmatch(r"resnet(\d+)", model)):
        return ("resnet", int(match.group(1)))
    return ()


def grouped_forward(arch: tuple) -> Callable[..., torch.Tensor]:
    family, *params = arch
    forward = _FORWARDS[family]
    return lambda *args: forward(*params, *args)


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


def resnet_forward(
    depth: int,
    weights: list[torch.Tensor],
    stats: list[torch.Tensor],
    x: torch.Tensor,
    training: bool,
    groups: int,
    momentum: float,
) -> torch.Tensor:
    """lrbench.models.CifarResNet (option-A shortcuts) for `groups` models side by side."""
    ws, st = iter(weights), iter(stats)

    def conv(x: torch.Tensor, stride: int) -> torch.Tensor:
        return F.conv2d(x, next(ws), None, stride, 1, 1, groups)

    def bn(x: torch.Tensor) -> torch.Tensor:
        weight, bias = next(ws), next(ws)
        mean, var = next(st), next(st)
        return F.batch_norm(x, mean, var, weight, bias, training, momentum, BN_EPS)

    x = F.relu(bn(conv(x, 1)))
    in_planes = 16
    for stage, planes in enumerate((16, 32, 64)):
        for i in range((depth - 2) // 6):
            stride = 2 if stage > 0 and i == 0 else 1
            out = F.relu(bn(conv(x, stride)))
            out = bn(conv(out, 1))
            short = x if stride == 1 and in_planes == planes else _shortcut_a(x, groups, planes)
            x = F.relu(out + short)
            in_planes = planes
    feats = F.adaptive_avg_pool2d(x, 1).flatten(1)
    feats = feats.view(x.shape[0], groups, -1).transpose(0, 1)
    return PackedLinear.apply(feats, next(ws), next(ws))


_FORWARDS: dict[str, Callable[..., torch.Tensor]] = {"resnet": resnet_forward}
