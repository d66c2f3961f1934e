"""Each model of a pack gets exactly the batch its single run would get, drawn in one go.

`DeviceData.train_batches(seed, epoch, B)` shuffles with one generator seeded from (seed, epoch)
and, per batch, draws crop offsets and flips from it. Here the same draws are made from G such
generators at the start of the epoch (same generator, same calls, same order, so the same
numbers), and every step then gathers, crops, flips and normalises the G batches as one tensor:
a handful of ops per step whatever G is. The result is laid out as the packed model reads it,
[B, G*3, H, W], model g in channels [3g, 3g+3).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch

from lrbench.data import PAD, DeviceData, crop_flip, epoch_generator, normalize, permutation


class PackEpoch:
    """One epoch's batches for G models: iterate for (x [b, G*3, H, W] float32, y [G, b])."""

    def __init__(self, data: DeviceData, seeds: Sequence[int], epoch: int, batch_size: int):
        self.data = data
        self.batch_size = batch_size
        x, y = data.tensors("train")
        self.x, self.y = x, y
        n = len(y)
        orders, offsets, flips = [], [], []
        for seed in seeds:  # the calls random_crop_flip makes, in train_batches' order
            gen = epoch_generator(seed, epoch, data.device)
            orders.append(permutation(n, gen))
            offs, flip = [], []
            for start in range(0, n, batch_size):
                b = min(batch_size, n - start)
                offs.append(torch.randint(0, 2 * PAD + 1, (2, b), generator=gen, device=gen.device))
                flip.append(torch.randint(0, 2, (b,), generator=gen, device=gen.device).bool())
            offsets.append(torch.cat(offs, 1))
            flips.append(torch.cat(flip))
        self.order = torch.stack(orders)  # [G, N]
        self.offsets = torch.stack(offsets)  # [G, 2, N]
        self.flips = torch.stack(flips)  # [G, N]

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
            self.offsets[:, 0, sl].reshape(-1),
            self.offsets[:, 1, sl].reshape(-1),
            self.flips[:, sl].reshape(-1),
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


def pack_eval_input(x: torch.Tensor, groups: int, channels_last: bool) -> torch.Tensor:
    """An evaluation batch [b, 3, H, W] repeated for G models as [b, G*3, H, W]."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    return x.repeat(1, groups, 1, 1).contiguous(memory_format=fmt)
