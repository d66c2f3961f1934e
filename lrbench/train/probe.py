"""Steppers outside any run: what `lrbench bench` times, the dry run's estimate calibrates with,
and `--pack auto` measures.

A probe is G runs of one model (seeds 0..G-1, SGD at rates from PROBE_OPTIMIZER's down to half
of it), built by lrbench.train.build exactly as the loop builds a sweep's runs (G = 1: a run
alone), and stepped as the loop steps them, with no folder, checkpoint or evaluation around.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable

import numpy as np
import torch

from lrbench.data import DeviceData, Splits, on_device
from lrbench.data.splits import AnySplits
from lrbench.specs import DatasetSpec, OptimizerSpec, RunSpec
from lrbench.train.build import build_stepper
from lrbench.train.runtime import Runtime
from lrbench.train.steppers import Stepper

PROBE_OPTIMIZER = OptimizerSpec(name="sgd", lr=0.1)  # momentum, weight decay: the runs' defaults
PROBE_DATASET = DatasetSpec(name="synthetic")  # what a probe's specs name: steppers never read it
CONSTANT = {"name": "constant", "label": "constant"}

Step = Callable[[], int]  # one training step; returns the images (units) it trained, all models


def probe_specs(model: str | dict, batch_size: int, models: int) -> list[RunSpec]:
    """The runs of a probe: what a stepper reads of them is the model, optimizer, seed and
    batch size."""
    shared = {"model": model, "dataset": PROBE_DATASET, "optimizer": PROBE_OPTIMIZER,
              "schedule": CONSTANT, "budget": 1.0, "full_epochs": 1, "epochs": 1,
              "batch_size": batch_size}  # fmt: skip
    return [RunSpec(**shared, seed=seed) for seed in range(models)]


def probe_stepper(
    model: str | dict,
    data: DeviceData,
    batch_size: int,
    models: int,
    device: torch.device,
    precision: str,
    runtime: Runtime,
    steps: int,
) -> Stepper:
    """A probe's stepper, its rates and momenta set for `steps` steps."""
    stepper = build_stepper(
        probe_specs(model, batch_size, models), data, device, precision, runtime
    )
    rates = np.tile(PROBE_OPTIMIZER.lr * np.linspace(1.0, 0.5, models), (steps, 1))
    stepper.begin_epoch(0, rates, np.full_like(rates, PROBE_OPTIMIZER.momentum))
    stepper.for_training()
    return stepper


def training_step(stepper: Stepper, device: torch.device) -> Step:
    """The loop's step on the stepper's own batches, epoch after epoch, losses and accuracies
    summed on the device as the loop sums them."""
    g = stepper.models
    active = torch.ones(g, dtype=torch.bool, device=device)
    loss_sum = torch.zeros(g, device=device, dtype=torch.float64)
    correct = torch.zeros(g, device=device, dtype=torch.int64)
    batches = (batch for epoch in itertools.count() for batch in stepper.batches(epoch))
    index = itertools.count()

    def step() -> int:
        x, y = next(batches)
        losses, right = stepper.step(next(index), x, y, active)
        units = stepper.units(y)
        loss_sum.add_(losses * units)
        correct.add_(right)
        return units * g

    return step


def repeated_step(stepper: Stepper, device: torch.device) -> Step:
    """The stepper's step on its first batch, drawn once and stepped again and again: the
    step's own cost, without the batches'."""
    x, y = next(iter(stepper.batches(0)))
    active = torch.ones(stepper.models, dtype=torch.bool, device=device)
    index = itertools.count()

    def step() -> int:
        stepper.step(next(index), x, y, active)
        return stepper.units(y) * stepper.models

    return step


def probe_step(
    model: str | dict,
    splits: AnySplits,
    device: torch.device,
    batch_size: int,
    models: int,
    precision: str,
    steps: int,
    runtime: Runtime | None = None,
) -> Step:
    """The loop's step of a probe of `models` runs (1: alone, else a pack) on `splits`."""
    runtime = runtime or Runtime()
    data = on_device(splits, device, channels_last=runtime.channels_last)
    stepper = probe_stepper(model, data, batch_size, models, device, precision, runtime, steps)
    return training_step(stepper, device)


def random_images(image_size: tuple[int, int], count: int, num_classes: int) -> Splits:
    """`count` random images of `image_size` and their labels (train and test alike)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (count, 3, *image_size), dtype=torch.uint8, generator=generator)
    y = torch.randint(0, num_classes, (count,), generator=generator)
    classes = [str(c) for c in range(num_classes)]
    return Splits(x, y, x, y, None, None, num_classes, classes, (0.5,) * 3, (0.25,) * 3)


class Timer:
    """Warm-up steps, then `steps` timed ones; on CUDA the clock is read after a sync."""

    def __init__(self, device: torch.device, steps: int, warmup: int) -> None:
        self.device, self.steps, self.warmup = device, steps, warmup

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def warm(self, step: Step) -> None:
        for _ in range(self.warmup):
            step()
        self.sync()

    def images_per_s(self, step: Step) -> float:
        """`step()` runs one training step and returns how many images it trained on."""
        self.sync()
        t0 = time.perf_counter()
        images = sum(step() for _ in range(self.steps))
        self.sync()
        return images / (time.perf_counter() - t0)
