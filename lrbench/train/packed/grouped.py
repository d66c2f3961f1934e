"""Grouped forwards: every layer holds all G models side by side (the GPU's way to pack).

A [B, G*C, H, W] activation carries model g in channels [g*C, (g+1)*C); convolutions are
grouped (groups=G), so each model's filters see only its own channels; BatchNorm over G*C
channels is per model for free (its statistics are per channel); linear heads are one batched
matmul ([G, B, in] x [G, in, out]). A grouped forward takes the layers' packed tensors in
the plain model's named_parameters() order (lrbench.train.packed.models.grouped_views), the
BatchNorm running statistics as [G*C] tensors in named_buffers() order, x [B, G*Cin, H, W],
whether it trains, G, and the BatchNorm momentum, and returns logits [G, B, classes]; model g
computes what the plain model computes (equal in float64; tests/test_packed_features.py).

The CIFAR ResNet's is here (`resnet_forward`); VGG's and the Wide ResNet's are methods of the
plain models (lrbench.models.vgg, lrbench.models.wrn), called on one template per architecture
that holds no weights (built on the meta device, kept for the process, so torch.compile sees
the same object in every pack of that architecture).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from lrbench.models import build_model, model_family, vgg
from lrbench.models.grouped import BN_EPS, PackedLinear

_TEMPLATES: dict[tuple, nn.Module] = {}  # arch -> a weightless model with a grouped_forward


def grouped_arch(model: str | dict) -> tuple:
    """What the grouped forward of `model` needs to know, () when it has no grouped form (the
    user's own models: they pack with the vmap or loop implementation)."""
    if not isinstance(model, str):
        return ()
    family, numbers = model_family(model)
    if family == "resnet":
        return ("resnet", *numbers)
    arch = (family, *numbers)
    if family == "vgg":  # its layers too: tests build small VGGs by adding to vgg.CONFIGS
        arch += (vgg.CONFIGS[numbers[0]],)
    if arch not in _TEMPLATES:
        with torch.device("meta"), torch.random.fork_rng(devices=[]):
            _TEMPLATES[arch] = build_model(model, 1)
    return arch


def grouped_forward(arch: tuple) -> Callable[..., torch.Tensor]:
    family, *params = arch
    if family == "resnet":
        return lambda *args: resnet_forward(*params, *args)
    return _TEMPLATES[arch].grouped_forward


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
