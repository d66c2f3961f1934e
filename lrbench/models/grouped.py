"""The layers of G models side by side: how a model says what it computes as a pack.

A [B, G*C, H, W] activation carries model g in channels [g*C, (g+1)*C). A convolution with
groups=G sees only each model's own channels, BatchNorm over G*C channels is per model for free
(its statistics are per channel), and the linear head is one batched matmul. This is the GPU's
way to pack (lrbench.train.packed.models, implementation `grouped`).

A model has a grouped form when it (and each block it delegates to) defines
`grouped_forward(self, layers: GroupedLayers, x) -> outputs`: its own forward, written with
`layers.conv`, `layers.bn`, `layers.linear` (and `layers.pad_channels`) in place of its
modules, in the order its modules' parameters come (named_parameters()), since each call takes
the next packed weights and BatchNorm statistics. `run_grouped` builds the layers and calls it.
Here rather than in lrbench.train.packed, which imports the models: both packages use these.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

BN_MOMENTUM = 0.1  # nn.BatchNorm2d's defaults, which every built-in model keeps
BN_EPS = 1e-5


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


class GroupedLayers:
    """Applies the next packed layer of G models at each call, in the plain model's order.

    `momentum` is BatchNorm's: the pack re-estimates statistics (schedule-free optimizers) with
    1 / batches seen, as nn.BatchNorm's cumulative average does.
    """

    def __init__(
        self,
        weights: Sequence[torch.Tensor],
        stats: Sequence[torch.Tensor],
        training: bool,
        groups: int,
        momentum: float = BN_MOMENTUM,
    ) -> None:
        self._weights = iter(weights)
        self._stats = iter(stats)
        self.training = training
        self.groups = groups
        self.momentum = momentum

    def conv(
        self, x: torch.Tensor, stride: int = 1, padding: int = 1, bias: bool = False
    ) -> torch.Tensor:
        """The next convolution: weight [G*O, I, kh, kw], then bias [G*O] when it has one."""
        weight = next(self._weights)
        return F.conv2d(
            x, weight, next(self._weights) if bias else None, stride, padding, 1, self.groups
        )

    def bn(self, x: torch.Tensor) -> torch.Tensor:
        """The next BatchNorm (weight, bias [G*C]; running mean, var [G*C], updated in training)."""
        weight, bias = next(self._weights), next(self._weights)
        mean, var = next(self._stats), next(self._stats)
        return F.batch_norm(x, mean, var, weight, bias, self.training, self.momentum, BN_EPS)

    def linear(self, feats: torch.Tensor) -> torch.Tensor:
        """The next linear layer (weight [G, out, in], bias [G, out]) on features [B, G*in]:
        logits [G, B, out]."""
        weight, bias = next(self._weights), next(self._weights)
        feats = feats.view(feats.shape[0], self.groups, -1).transpose(0, 1)
        return PackedLinear.apply(feats, weight, bias)

    def pad_channels(self, x: torch.Tensor, before: int, after: int) -> torch.Tensor:
        """Each model's channels zero-padded (`before` ahead, `after` behind); no parameters.

        Keeps x's memory format (a channels_last activation stays channels_last, so the layers
        after it keep their channels_last kernels). One model: exactly the plain F.pad.
        """
        g = self.groups
        if g == 1:
            return F.pad(x, (0, 0, 0, 0, before, after))
        c = x.shape[1] // g
        if x.stride(1) == 1:  # channels_last: pad inside [B, H, W, G, C]
            nhwc = x.permute(0, 2, 3, 1).unflatten(3, (g, c))
            return F.pad(nhwc, (before, after)).flatten(3).permute(0, 3, 1, 2)
        return F.pad(x.unflatten(1, (g, c)), (0, 0, 0, 0, before, after)).flatten(1, 2)


def has_grouped_form(model: nn.Module) -> bool:
    return callable(getattr(model, "grouped_forward", None))


def run_grouped(
    model: nn.Module,
    weights: Sequence[torch.Tensor],
    stats: Sequence[torch.Tensor],
    x: torch.Tensor,
    training: bool,
    groups: int,
    momentum: float = BN_MOMENTUM,
) -> torch.Tensor:
    """`model`'s forward for G models side by side: x [B, G*Cin, H, W] -> outputs [G, B, ...].

    `weights` are the G models' parameters packed per parameter in named_parameters() order
    (convolutions' weights [G*O, I, kh, kw] and biases [G*O], BatchNorm weights and biases
    [G*C], linear weights [G, out, in] and biases [G, out]); `stats` their BatchNorm running
    means and variances [G*C] in named_buffers() order, updated in place when training with
    BatchNorm's `momentum`. `model` itself lends only its structure (its weights are unused).
    """
    return model.grouped_forward(GroupedLayers(weights, stats, training, groups, momentum), x)
