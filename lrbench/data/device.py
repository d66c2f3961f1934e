"""Device-resident batches: the dataset lives on the device as uint8, and shuffling, random crop
(pad 4 at 32 pixels, scaled with the image: `crop_pad`), horizontal flip and normalisation run
there too, with no host sync and no worker processes.

All randomness of an epoch comes from one device generator seeded from (seed, epoch) alone
(lrbench.data.epochs), so an epoch's batches are a pure function of (seed, epoch) on a given
device type: resuming at an epoch boundary needs no RNG state.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from lrbench.data.epochs import EVAL_BATCH, epoch_generator, permutation
from lrbench.data.splits import Splits
from lrbench.data.tensors import TensorData, TensorSplits
from lrbench.data.text import TextData, TextSplits

PAD = 4  # the random crop's padding at 32 pixels (He et al.'s CIFAR recipe); see crop_pad
_MIN_STD = 1e-6


def channel_tensor(
    values: Sequence[float] | torch.Tensor, device: torch.device | str
) -> torch.Tensor:
    """Per-channel values as a float32 [1, C, 1, 1] tensor on `device`, ready to broadcast."""
    return torch.as_tensor(values, dtype=torch.float32, device=device).reshape(1, -1, 1, 1)


def normalize(
    x: torch.Tensor, mean: Sequence[float] | torch.Tensor, std: Sequence[float] | torch.Tensor
) -> torch.Tensor:
    """uint8 images -> float32 (x / 255 - mean) / std; mean, std per channel in [0, 1] units."""
    mean, std = channel_tensor(mean, x.device), channel_tensor(std, x.device)
    return x.float().div_(255.0).sub_(mean).div_(std.clamp_min(_MIN_STD))


def crop_pad(image_size: tuple[int, int]) -> int:
    """The random crop's padding for images of this size: PAD at 32 pixels, in proportion to
    the shorter side above that (12 at STL-10's 96), never below PAD."""
    return max(PAD, round(PAD * min(image_size) / 32))


def crop_flip(
    x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor, pad: int = PAD
) -> torch.Tensor:
    """Each image cropped at (dy, dx) of its zero-padded copy, then mirrored where `flip`.

    One gather over the whole batch with per-image pixel indices (5x faster on the CPU than
    advanced indexing, one kernel on a GPU); the result is contiguous NCHW.
    """
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad)).reshape(b, c, -1)
    cols = torch.arange(w, device=x.device)
    cols = torch.where(flip[:, None], w - 1 - cols, cols) + dx[:, None]
    rows = torch.arange(h, device=x.device) + dy[:, None]
    pixels = rows[:, :, None] * (w + 2 * pad) + cols[:, None, :]
    return padded.gather(2, pixels.reshape(b, 1, h * w).expand(b, c, h * w)).view(b, c, h, w)


@dataclass(frozen=True)
class EpochDraws:
    """All the randomness of one training epoch, drawn at once (three calls, not two per batch):
    the order of the images, and the crop offsets and flip of the image at each position."""

    order: torch.Tensor  # [N] int64
    dy: torch.Tensor  # [N], in [0, 2 * pad]
    dx: torch.Tensor  # [N]
    flip: torch.Tensor  # [N] bool


def epoch_draws(
    seed: int, epoch: int, n: int, device: torch.device | str, pad: int = PAD
) -> EpochDraws:
    """The draws of epoch `epoch` of a run seeded `seed` over n training images, on `device`,
    for crops of images padded by `pad` (DeviceData.pad)."""
    gen = epoch_generator(seed, epoch, device)
    order = permutation(n, gen)
    offsets = torch.randint(0, 2 * pad + 1, (2, n), generator=gen, device=gen.device)
    flip = torch.randint(0, 2, (n,), generator=gen, device=gen.device).bool()
    return EpochDraws(order, offsets[0], offsets[1], flip)


class DeviceData:
    """The splits moved to one device once; batches are drawn there.

    `pad` is the random crop's padding for these images (`crop_pad`): whoever draws its own
    batches passes it to `epoch_draws` and `crop_flip`, to get the batches train_batches gets.
    """

    stacked = False  # packed batches put the models side by side in the channels
    context = None

    def __init__(self, splits: Splits, device: torch.device | str, channels_last: bool = True):
        self.device = torch.device(device)
        self.channels_last = channels_last
        self.num_classes = splits.num_classes
        self.pad = crop_pad(splits.image_size)
        self.mean = channel_tensor(splits.mean, self.device)
        self.std = channel_tensor(splits.std, self.device)
        self._splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {
            "train": (splits.train_x.to(self.device), splits.train_y.to(self.device)),
            "test": (splits.test_x.to(self.device), splits.test_y.to(self.device)),
        }
        if splits.val_x is not None and splits.val_y is not None:
            self._splits["val"] = (splits.val_x.to(self.device), splits.val_y.to(self.device))

    @property
    def num_train(self) -> int:
        return len(self._splits["train"][1])

    @property
    def has_val(self) -> bool:
        return "val" in self._splits

    def size(self, split: str) -> int:
        return len(self.tensors(split)[1])

    def steps_per_epoch(self, batch_size: int) -> int:
        return math.ceil(self.num_train / batch_size)

    def train_batches(
        self, seed: int, epoch: int, batch_size: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Every training image once, shuffled and augmented; the last batch may be short."""
        x, y = self._splits["train"]
        draws = epoch_draws(seed, epoch, len(y), self.device, self.pad)
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        for start in range(0, len(y), batch_size):
            at = slice(start, start + batch_size)
            idx = draws.order[at]
            xb = crop_flip(x[idx], draws.dy[at], draws.dx[at], draws.flip[at], self.pad)
            yield normalize(xb, self.mean, self.std).contiguous(memory_format=fmt), y[idx]

    def eval_batches(
        self, split: str, batch_size: int = EVAL_BATCH
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """`split` ("test", "val" or "train") in order, normalised, not augmented."""
        x, y = self.tensors(split)
        fmt = torch.channels_last if self.channels_last else torch.contiguous_format
        for start in range(0, len(y), batch_size):
            xb = normalize(x[start : start + batch_size], self.mean, self.std)
            yield xb.contiguous(memory_format=fmt), y[start : start + batch_size]

    def tensors(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The device-resident uint8 images and labels of a split, for custom batching."""
        if split not in self._splits:
            known = ", ".join(self._splits)
            raise ValueError(f"no {split!r} split here (have: {known}); val needs val_fraction > 0")
        return self._splits[split]

    _split = tensors  # the name lrbench/train/packed/data.py used before `tensors` was public


def on_device(splits, device: torch.device | str, channels_last: bool = True):
    """The loaded splits (lrbench.data.splits.load_splits) served from `device`: DeviceData for
    images, TextData for text, TensorData for your own tensors."""
    if isinstance(splits, TextSplits):
        return TextData(splits, device)
    if isinstance(splits, TensorSplits):
        return TensorData(splits, device)
    return DeviceData(splits, device, channels_last=channels_last)
