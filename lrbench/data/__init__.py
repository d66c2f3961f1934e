"""Datasets for lrbench: load a DatasetSpec into CPU splits, then serve batches from the device.

    splits = load_splits(DatasetSpec(name="cifar10"))
    data = DeviceData(splits, torch.device("cuda"))
    for x, y in data.train_batches(seed, epoch, batch_size=128): ...

The building blocks (epoch_draws, crop_flip, normalize) are public so that a trainer packing
several models per device can draw each model's own batches.
"""

from lrbench.data.cache import default_data_dir
from lrbench.data.device import (
    PAD,
    DeviceData,
    EpochDraws,
    channel_tensor,
    crop_flip,
    crop_pad,
    epoch_draws,
    normalize,
    on_device,
)
from lrbench.data.epochs import epoch_generator, epoch_seed, permutation
from lrbench.data.splits import Splits, load_splits

__all__ = [
    "PAD",
    "DeviceData",
    "EpochDraws",
    "Splits",
    "channel_tensor",
    "crop_flip",
    "crop_pad",
    "default_data_dir",
    "epoch_draws",
    "epoch_generator",
    "epoch_seed",
    "load_splits",
    "normalize",
    "on_device",
    "permutation",
]
