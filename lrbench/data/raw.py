"""What every source produces before subsetting: whole train and test splits as uint8 arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class RawData:
    """uint8 images as [N, 3, H, W] (the layout the device loader indexes) and int64 labels."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    classes: list[str]

    def __post_init__(self) -> None:
        for x, y in ((self.train_x, self.train_y), (self.test_x, self.test_y)):
            if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1] != 3:
                raise ValueError(f"images must be uint8 [N, 3, H, W], got {x.dtype} {x.shape}")
            if y.shape != (x.shape[0],):
                raise ValueError(f"{y.shape[0]} labels for {x.shape[0]} images")
        if self.train_x.shape[2:] != self.test_x.shape[2:]:
            raise ValueError("train and test images differ in size")
