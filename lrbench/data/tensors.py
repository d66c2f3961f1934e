"""Your own data with your own loss: the import's (inputs, targets) used as they are.

With `loss: {import: ...}` in a sweep, `dataset: {import: "module:function"}` returns `(train,
test)`, each `(inputs, targets)` (tensors or numpy arrays, first dimension the examples, any
other shape, float targets welcome): no image conversion, augmentation or normalisation.
`limit_train` keeps that many examples (a fixed random subset, the same in every run),
`limit_test` the first examples of test, `val_fraction` holds a fixed random share of the
training examples out for validation. An epoch is every training example once, in an order
drawn from (seed, epoch) alone; the last batch may be short. Evaluation reads a split in order.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lrbench.data.epochs import EVAL_BATCH, epoch_generator, permutation
from lrbench.data.imported import call_dataset
from lrbench.errors import UserError
from lrbench.specs import DatasetSpec

LIMIT_SEED = 0
VAL_SEED = 1
Pair = tuple[torch.Tensor, torch.Tensor]


@dataclass
class TensorSplits:
    train: Pair
    test: Pair
    val: Pair | None
    num_classes: None = None


def _tensor(values: Any, where: str) -> torch.Tensor:
    t = values if isinstance(values, torch.Tensor) else torch.as_tensor(np.asarray(values))
    if t.dim() == 0 or len(t) == 0:
        raise UserError(f"{where}: must hold at least one example, got shape {list(t.shape)}")
    return t.detach().cpu().contiguous()


def _pair(split: Any, where: str) -> Pair:
    if not isinstance(split, tuple | list) or len(split) != 2:
        raise UserError(f"{where}: is a {type(split).__name__}, not (inputs, targets)")
    x, y = _tensor(split[0], f"{where} inputs"), _tensor(split[1], f"{where} targets")
    if len(x) != len(y):
        raise UserError(f"{where}: {len(x)} inputs but {len(y)} targets")
    return x, y


def _take(pair: Pair, idx: np.ndarray) -> Pair:
    index = torch.from_numpy(idx)
    return pair[0][index], pair[1][index]


def load_tensors(spec: DatasetSpec) -> TensorSplits:
    """Call the user's function (from the source the run was planned with) and split it."""
    where = f"dataset {spec.ref}"
    result = call_dataset(spec)
    if not isinstance(result, tuple | list) or len(result) != 2:
        raise UserError(f"{where}: returned a {type(result).__name__}, not (train, test)")
    train, test = _pair(result[0], f"{where}: train"), _pair(result[1], f"{where}: test")
    n = len(train[0])
    if spec.limit_train is not None:
        if spec.limit_train > n:
            raise UserError(f"limit_train={spec.limit_train} exceeds the {n} training examples")
        keep = np.random.default_rng(LIMIT_SEED).permutation(n)[: spec.limit_train]
        train = _take(train, np.sort(keep))
    if spec.limit_test is not None:
        if spec.limit_test > len(test[0]):
            raise UserError(f"limit_test={spec.limit_test} exceeds the {len(test[0])} examples")
        test = (test[0][: spec.limit_test], test[1][: spec.limit_test])
    val = None
    if spec.val_fraction > 0:
        n = len(train[0])
        k = min(max(round(spec.val_fraction * n), 1), n - 1)
        if k < 1:
            raise UserError(f"val_fraction={spec.val_fraction:g} leaves no training example")
        order = np.random.default_rng(VAL_SEED).permutation(n)
        train, val = _take(train, np.sort(order[k:])), _take(train, np.sort(order[:k]))
    return TensorSplits(train, test, val)


class TensorData:
    """The splits on one device; batches as the loop asks DeviceData for them."""

    channels_last = False
    stacked = True
    num_classes = None
    context = None

    def __init__(self, splits: TensorSplits, device: torch.device | str):
        self.device = torch.device(device)
        self._splits = {
            "train": tuple(t.to(self.device) for t in splits.train),
            "test": tuple(t.to(self.device) for t in splits.test),
        }
        if splits.val is not None:
            self._splits["val"] = tuple(t.to(self.device) for t in splits.val)

    @property
    def num_train(self) -> int:
        return len(self._splits["train"][0])

    @property
    def has_val(self) -> bool:
        return "val" in self._splits

    def size(self, split: str) -> int:
        return len(self.tensors(split)[0])

    def steps_per_epoch(self, batch_size: int) -> int:
        return math.ceil(self.num_train / batch_size)

    def train_batches(self, seed: int, epoch: int, batch_size: int) -> Iterator[Pair]:
        x, y = self._splits["train"]
        order = permutation(len(x), epoch_generator(seed, epoch, self.device))
        for start in range(0, len(x), batch_size):
            idx = order[start : start + batch_size]
            yield x[idx], y[idx]

    def eval_batches(self, split: str, batch_size: int = EVAL_BATCH) -> Iterator[Pair]:
        x, y = self.tensors(split)
        for start in range(0, len(x), batch_size):
            yield x[start : start + batch_size], y[start : start + batch_size]

    def tensors(self, split: str) -> Pair:
        if split not in self._splits:
            known = ", ".join(self._splits)
            raise ValueError(f"no {split!r} split here (have: {known}); val needs val_fraction > 0")
        return self._splits[split]  # type: ignore[return-value]
