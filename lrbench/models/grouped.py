"""The layers of G models side by side, for a model's `grouped_forward`.

A [B, G*C, H, W] activation carries model g in channels [g*C, (g+1)*C). A convolution with
groups=G sees only each model's own channels, BatchNorm over G*C channels is per model for free
(its statistics are per channel), and the linear head is one batched matmul. The packed weights
and BatchNorm statistics are consumed in the plain model's named_parameters() and
named_buffers() order, so a grouped forward reads like the model's own forward.

Here rather than in lrbench.train.packed, which imports the models: both packages use these layers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

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
