"""Each model of a pack gets exactly the batch its single run would get, drawn in one go.

`DeviceData.train_batches(seed, epoch, B)` draws an epoch's order, crop offsets and flips at once
(`epoch_draws`); here the same draws are made for each of the G seeds at the start of the epoch
(3 calls per model per epoch, with the dataset's crop padding: `DeviceData.pad`), and every
step then gathers, crops, flips and normalises the G batches as one tensor: a handful of ops per
step whatever G is. The result is laid out as the packed model reads it, [B, G*3, H, W], model
g in channels [3g, 3g+3).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from lrbench.data import DeviceData, crop_flip, epoch_draws, normalize


class PackEpoch:
    """One epoch's batches for G models: iterate for (x [b, G*3, H, W] float32, y [G, b])."""

    def __init__(self, data: DeviceData, seeds: Sequence[int], epoch: int, batch_size: int):
        self.data = data
        self.batch_size = batch_size
        self.x, self.y = data.tensors("train")
        draws = [epoch_draws(seed, epoch, len(self.y), data.device, data.pad) for seed in seeds]
        self.order = torch.stack([d.order for d in draws])  # [G, N]
        self.dy = torch.stack([d.dy for d in draws])
        self.dx = torch.stack([d.dx for d in draws])
        self.flips = torch.stack([d.flip for d in draws])

    def __len__(self) -> int:
        return -(-len(self.y) // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for start in range(0, len(self.y), self.batch_size):
            yield self.batch(start)

    def batch(self, start: int) -> tuple[torch.Tensor, torch.Tensor]:
        sl = slice(start, start + self.batch_size)
        idx = self.order[:, sl]  # [G, b]
        g, b = idx.shape
        flat = idx.reshape(-1)
        xb = crop_flip(
            self.x[flat],
            self.dy[:, sl].reshape(-1),
            self.dx[:, sl].reshape(-1),
            self.flips[:, sl].reshape(-1),
            self.data.pad,
        )
        xb = normalize(xb, self.data.mean, self.data.std)  # [G*b, 3, H, W]
        _, c, h, w = xb.shape
        xb = xb.view(g, b, c, h, w)
        if self.data.channels_last:  # one copy into [b, H, W, G, C]: channels_last [b, G*C, H, W]
            packed = xb.permute(1, 3, 4, 0, 2).contiguous().view(b, h, w, g * c)
            x = packed.permute(0, 3, 1, 2)
        else:
            x = xb.transpose(0, 1).reshape(b, g * c, h, w)
        return x, self.y[idx]


def pack_eval_input(x: torch.Tensor, groups: int, data: DeviceData) -> torch.Tensor:
    """An evaluation batch [b, 3, H, W] repeated for G models as [b, G*3, H, W]; for stacked
    data (text, your own tensors) [b, ...] as [G, b, ...]."""
    if getattr(data, "stacked", False):
        return x.expand(groups, *x.shape)
    fmt = torch.channels_last if data.channels_last else torch.contiguous_format
    return x.repeat(1, groups, 1, 1).contiguous(memory_format=fmt)
