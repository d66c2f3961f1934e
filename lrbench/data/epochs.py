"""What every kind of data (images, text, your own tensors) shares about an epoch: its random
stream, drawn from (seed, epoch) alone so that a resumed run sees the batches an uninterrupted
one sees, and the size of an evaluation batch. (CPU and CUDA generators give different streams.)
"""

from __future__ import annotations

import hashlib

import torch

EVAL_BATCH = 1000  # evaluation keeps no activations for backward: big batches, few launches


def epoch_seed(seed: int, epoch: int) -> int:
    """A 63-bit seed that changes entirely with either argument (no seed+epoch collisions)."""
    digest = hashlib.sha256(f"lrbench-epoch:{seed}:{epoch}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def epoch_generator(seed: int, epoch: int, device: torch.device | str) -> torch.Generator:
    gen = torch.Generator(device=torch.device(device))
    gen.manual_seed(epoch_seed(seed, epoch))
    return gen


def permutation(n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randperm(n, generator=generator, device=generator.device)
