"""The layers of G models side by side, for a model's `grouped_forward`.

A [B, G*C, H, W] activation carries model g in channels [g*C, (g+1)*C). A convolution with
groups=G sees only each model's own channels, BatchNorm over G*C channels is per model for free
(its statistics are per channel), and the linear head is one batched matmul. The packed weights
and BatchNorm statistics are consumed in the plain model's named_parameters() and
named_buffers() order, so a grouped forward reads like the model's own forward.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F


class GroupedLayers:
    """Applies the next packed layer of G models at each call, in the plain model's order."""

    def __init__(
        self,
        weights: Sequence[torch.Tensor],
        stats: Sequence[torch.Tensor],
        training: bool,
        groups: int,
    ) -> None:
        # lrbench.packed imports lrbench.models: imported here, when a pack runs, not at import.
        from lrbench.packed.models import BN_EPS, BN_MOMENTUM, PackedLinear

        self._weights = iter(weights)
        self._stats = iter(stats)
        self._linear = PackedLinear
        self._bn_momentum, self._bn_eps = BN_MOMENTUM, BN_EPS
        self.training = training
        self.groups = groups

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
        return F.batch_norm(
            x, mean, var, weight, bias, self.training, self._bn_momentum, self._bn_eps
        )

    def linear(self, feats: torch.Tensor) -> torch.Tensor:
        """The next linear layer (weight [G, out, in], bias [G, out]) on features [B, G*in]:
        logits [G, B, out]."""
        weight, bias = next(self._weights), next(self._weights)
        feats = feats.view(feats.shape[0], self.groups, -1).transpose(0, 1)
        return self._linear.apply(feats, weight, bias)
