"""A small, seeded, learnable stand-in for CIFAR, so tests and smoke sweeps need no download.

Each class has its own mean colour, stripe orientation and stripe frequency; each image adds a
random stripe phase, colour and brightness jitter and pixel noise. Colours overlap, so a
nearest-mean classifier is well above chance but far from perfect (about 55%), and the stripes
reward a convolutional model. Orientations lie in [0, 90] degrees so that a horizontal flip
(which maps angle a to 180 - a) never turns one class's stripes into another's.
"""

from __future__ import annotations

import math

import numpy as np

from lrbench.data.raw import RawData

NUM_CLASSES = 10
NUM_TRAIN = 2000
NUM_TEST = 500
SIZE = 32
SEED = 0


def make_synthetic(
    num_train: int = NUM_TRAIN,
    num_test: int = NUM_TEST,
    num_classes: int = NUM_CLASSES,
    size: int = SIZE,
    seed: int = SEED,
) -> RawData:
    rng = np.random.default_rng(seed)
    colours = rng.uniform(0.3, 0.7, size=(num_classes, 3))
    angles = 0.5 * np.pi * np.arange(num_classes) / max(num_classes - 1, 1)
    cycles = 2.0 + np.arange(num_classes) % 3
    train_x, train_y = _images(rng, colours, angles, cycles, num_train, size)
    test_x, test_y = _images(rng, colours, angles, cycles, num_test, size)
    return RawData(train_x, train_y, test_x, test_y, [f"class{i}" for i in range(num_classes)])


def _images(
    rng: np.random.Generator,
    colours: np.ndarray,
    angles: np.ndarray,
    cycles: np.ndarray,
    n: int,
    size: int,
) -> tuple[np.ndarray, np.ndarray]:
    labels = rng.permutation(np.arange(n) % len(colours)).astype(np.int64)
    coords = np.arange(size, dtype=np.float32)
    yy, xx = np.meshgrid(coords, coords, indexing="ij")
    theta = angles[labels][:, None, None]
    freq = 2 * math.pi * cycles[labels][:, None, None] / size
    phase = rng.uniform(0, 2 * math.pi, size=(n, 1, 1))
    wave = np.sin(freq * (xx * np.cos(theta) + yy * np.sin(theta)) + phase)
    jitter = rng.uniform(-0.15, 0.15, size=(n, 1, 1, 1)) + rng.normal(0, 0.08, size=(n, 3, 1, 1))
    x = colours[labels][:, :, None, None] + jitter + 0.15 * wave[:, None]
    x = x + rng.normal(0.0, 0.1, size=x.shape)
    return (np.clip(x, 0.0, 1.0) * 255).round().astype(np.uint8), labels
