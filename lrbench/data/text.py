"""Character-level text: `dataset: {name: text, path: FILE, context: C, epoch_steps: S}`.

Any UTF-8 text file. The vocabulary is the file's distinct characters, in code-point order; the
first 90% of the characters train and the last 10% test (nanoGPT's split). `val_fraction` takes
validation from the end of the training part (contiguous, so no window of it overlaps a
training window), after `limit_train` kept the first `limit_train` characters of that part;
`limit_test` keeps the first characters of the test part.

Training: an epoch is `epoch_steps` optimizer steps (default: one pass over the training
characters, ceil(train_chars / (batch_size * context))); each step is a batch of windows of
`context` characters, at start positions drawn uniformly from a generator seeded by (seed,
epoch) alone, so every schedule of a cell sees the same windows in the same order and a run
resumed at an epoch boundary sees what an uninterrupted one sees. The target of each character
is the next one. Evaluation reads a whole split in non-overlapping windows (start 0, C, 2C, ...;
the last, incomplete window left out), in order.
"""

from __future__ import annotations

import hashlib
import math
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lrbench.data.epochs import epoch_generator
from lrbench.errors import UserError
from lrbench.specs import DatasetSpec

TRAIN_PART = 0.9
EVAL_TOKENS = 65_536  # characters per evaluation batch


@dataclass
class TextSplits:
    """CPU int64 tensors of character ids; `vocab` the characters, id order."""

    train: torch.Tensor
    test: torch.Tensor
    val: torch.Tensor | None
    vocab: list[str]
    context: int
    epoch_steps: int | None

    @property
    def num_classes(self) -> int:
        return len(self.vocab)


def read_text(path: str | Path) -> str:
    """The file's text; a missing, unreadable, empty or binary file is one UserError naming it."""
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise UserError(f"dataset.path {path}: no such text file") from None
    except OSError as err:
        raise UserError(f"dataset.path {path}: cannot read it: {err.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise UserError(f"dataset.path {path}: is not a regular file")
    try:
        data = path.read_bytes()
    except OSError as err:
        raise UserError(f"dataset.path {path}: cannot read it: {err.strerror}") from None
    if not data:
        raise UserError(f"dataset.path {path}: the file is empty")
    if b"\0" in data:
        raise UserError(
            f"dataset.path {path}: not a text file: byte 0x00 at offset {data.index(0)}"
        )
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError(
            f"dataset.path {path}: not a text file: byte 0x{data[err.start]:02x} at offset "
            f"{err.start} is not UTF-8"
        ) from None


def text_fingerprint(path: str | Path) -> str:
    """`sha256:` and the sha256 of the file's bytes (what `sha256sum` prints)."""
    text = read_text(path)  # refuse what cannot train before hashing it
    return f"sha256:{hashlib.sha256(text.encode()).hexdigest()}"


def encode(text: str) -> tuple[torch.Tensor, list[str]]:
    """Character ids (int64) and the vocabulary (the distinct characters, code-point order)."""
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    points, ids = np.unique(codes, return_inverse=True)
    return torch.from_numpy(ids.astype(np.int64)), [chr(int(c)) for c in points]


def _first(part: torch.Tensor, limit: int | None, key: str, what: str) -> torch.Tensor:
    """The first `limit` characters of a split (all without a limit); more than it has is the
    user's error, naming the key."""
    if limit is None:
        return part
    if limit > len(part):
        raise UserError(f"dataset.{key}={limit} exceeds the {len(part):,} characters of {what}")
    return part[:limit]


def split_text(ids: torch.Tensor, spec: DatasetSpec) -> tuple[torch.Tensor, ...]:
    """(train, val or None, test): see the module docstring."""
    cut = int(len(ids) * TRAIN_PART)
    train, test = ids[:cut], ids[cut:]
    train = _first(train, spec.limit_train, "limit_train", f"{spec.path}'s training part")
    test = _first(test, spec.limit_test, "limit_test", f"{spec.path}'s test part")
    val = None
    if spec.val_fraction > 0:
        k = round(spec.val_fraction * len(train))
        train, val = train[: len(train) - k], train[len(train) - k :]
    return train, val, test


def load_text(spec: DatasetSpec) -> TextSplits:
    """The splits of a text dataset; a file too short for one window per split is refused."""
    assert spec.path is not None and spec.context is not None
    text = read_text(spec.path)
    now = f"sha256:{hashlib.sha256(text.encode()).hexdigest()}"
    if spec.fingerprint is not None and now != spec.fingerprint:
        raise UserError(
            f"dataset.path {spec.path}: the file changed since the run was planned (fingerprint "
            f"{spec.fingerprint[:19]}, now {now[:19]}); run the command again, so that the run "
            "ids name the new text"
        )
    ids, vocab = encode(text)
    train, val, test = split_text(ids, spec)
    need = spec.context + 1
    parts = {"training": train, "test": test, **({"validation": val} if val is not None else {})}
    for part, chars in parts.items():
        assert chars is not None
        if len(chars) < need:
            raise UserError(
                f"dataset.path {spec.path}: {len(text):,} characters is too short: its {part} "
                f"part holds {len(chars):,}, less than one window of context {spec.context} "
                f"plus its next character ({need})"
            )
    return TextSplits(train, test, val, vocab, spec.context, spec.epoch_steps)


def windows(ids: torch.Tensor, starts: torch.Tensor, context: int) -> tuple[torch.Tensor, ...]:
    """Inputs [n, context] at `starts` and their targets, the characters one further."""
    idx = starts[:, None] + torch.arange(context + 1, device=ids.device)
    w = ids[idx]
    return w[:, :-1], w[:, 1:]


class TextData:
    """The splits on one device, served as windows (see the module docstring). It answers what
    the loop asks of DeviceData; packs stack each member's own batches ([G, B, C])."""

    channels_last = False
    stacked = True  # packed batches are [G, B, ...], not models side by side in the channels

    def __init__(self, splits: TextSplits, device: torch.device | str):
        self.device = torch.device(device)
        self.num_classes = splits.num_classes
        self.context = splits.context
        self.epoch_steps = splits.epoch_steps
        self._splits = {"train": splits.train.to(self.device), "test": splits.test.to(self.device)}
        if splits.val is not None:
            self._splits["val"] = splits.val.to(self.device)

    @property
    def num_train(self) -> int:
        return len(self._splits["train"])

    @property
    def has_val(self) -> bool:
        return "val" in self._splits

    def size(self, split: str) -> int:
        """Characters a split's evaluation scores (the targets of its windows)."""
        return len(self.eval_starts(split)) * self.context

    def steps_per_epoch(self, batch_size: int) -> int:
        if self.epoch_steps is not None:
            return self.epoch_steps
        return max(1, math.ceil(self.num_train / (batch_size * self.context)))

    def positions(self, seed: int, epoch: int, batch_size: int) -> torch.Tensor:
        """[steps, batch_size] window starts of an epoch: a pure function of (seed, epoch)."""
        gen = epoch_generator(seed, epoch, self.device)
        high = self.num_train - self.context  # the last window's target is the last character
        shape = (self.steps_per_epoch(batch_size), batch_size)
        return torch.randint(0, high, shape, generator=gen, device=self.device)

    def train_batches(
        self, seed: int, epoch: int, batch_size: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        ids = self._splits["train"]
        for starts in self.positions(seed, epoch, batch_size):
            yield windows(ids, starts, self.context)

    def eval_starts(self, split: str) -> torch.Tensor:
        n = len(self.tensors(split))
        return torch.arange(0, n - self.context, self.context, device=self.device)

    def eval_batches(
        self, split: str, batch_size: int | None = None
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """`split` in non-overlapping windows, in order."""
        ids, starts = self.tensors(split), self.eval_starts(split)
        step = batch_size or max(1, EVAL_TOKENS // self.context)
        for i in range(0, len(starts), step):
            yield windows(ids, starts[i : i + step], self.context)

    def tensors(self, split: str) -> torch.Tensor:
        if split not in self._splits:
            known = ", ".join(self._splits)
            raise ValueError(f"no {split!r} split here (have: {known}); val needs val_fraction > 0")
        return self._splits[split]
