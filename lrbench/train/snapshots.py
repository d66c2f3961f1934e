"""Snapshot ensembles (Huang et al., ICLR 2017): a snapshot at every cycle end, softmax averaged.

The pieces the loop calls, each cheap and testable on its own:

- `snapshot_steps(schedule, T, steps_per_epoch)`: the step counts after which a snapshot is taken, i.e.
  `Schedule.cycle_end_steps` (sgdr, triangular*; warmup shifts them; [T] without cycles, so
  an ensemble of one, the final model).
- `lrbench.train.evaluation.predict_probs`: each model's softmax outputs on a split, [G, N, C]
  float32 on the data's device, one forward pass and no host sync (a run alone: G = 1).
- `SnapshotEnsemble`: the running sum of those probabilities and the snapshot count;
  `accuracy(labels)` is the accuracy of their average (argmax of the sum: the same), one host
  sync. `state_dict`/`load_state_dict` put it in the run's checkpoint for exact resume.

Snapshots are taken at the exact cycle-end step, also when it falls inside an epoch: the
epoch-end evaluation of a cyclical schedule may already be past a restart.
"""

from __future__ import annotations

import math
from typing import Any

import torch


def snapshot_steps(schedule: Any, total_steps: int, steps_per_epoch: int) -> list[int]:
    """Steps k (1..T, sorted) after whose optimizer step a snapshot is taken."""
    return list(schedule.cycle_end_steps(total_steps, steps_per_epoch))


def snapshot_epochs(steps: list[int], steps_per_epoch: int) -> list[int]:
    """The 1-based epochs whose metrics row reports a new snapshot (step k lies in epoch
    ceil(k / steps_per_epoch)); an epoch holding several snapshots is listed once."""
    return sorted({math.ceil(k / steps_per_epoch) for k in steps})


def split_labels(data: Any, split: str = "test") -> torch.Tensor:
    """The labels of `split` in eval_batches order, on the data's device."""
    return torch.cat([y for _, y in data.eval_batches(split)])


class SnapshotEnsemble:
    """Running sum of the snapshots' softmax outputs on one split, and how many were added."""

    def __init__(self) -> None:
        self.prob_sum: torch.Tensor | None = None
        self.count = 0

    def add(self, probs: torch.Tensor) -> None:
        """Add one snapshot's [N, C] probabilities (summed in float32 on their device)."""
        probs = probs.detach().float()
        if self.prob_sum is None:
            self.prob_sum = probs.clone()
        else:
            if probs.shape != self.prob_sum.shape:
                raise ValueError(
                    f"snapshot probabilities have shape {tuple(probs.shape)}, the ensemble "
                    f"holds {tuple(self.prob_sum.shape)}"
                )
            self.prob_sum += probs.to(self.prob_sum.device)
        self.count += 1

    def mean_probs(self) -> torch.Tensor:
        if self.prob_sum is None:
            raise ValueError("the ensemble is empty: add a snapshot first")
        return self.prob_sum / self.count

    def accuracy(self, labels: torch.Tensor) -> float:
        """Accuracy of the averaged softmax (argmax; ties go to the lowest class index)."""
        if self.prob_sum is None:
            raise ValueError("the ensemble is empty: add a snapshot first")
        hits = self.prob_sum.argmax(1) == labels.to(self.prob_sum.device)
        return hits.float().mean().item()

    def loss(self, labels: torch.Tensor) -> float:
        """Cross-entropy of the averaged softmax (mean negative log-probability of the label)."""
        probs = self.mean_probs()
        picked = probs.gather(1, labels.to(probs.device).view(-1, 1)).squeeze(1)
        return -torch.log(picked.clamp_min(1e-12)).double().mean().item()

    def state_dict(self) -> dict[str, Any]:
        """For the checkpoint: the sum moved to the CPU, and the count."""
        total = None if self.prob_sum is None else self.prob_sum.detach().cpu()
        return {"prob_sum": total, "count": self.count}

    def load_state_dict(self, state: dict[str, Any], device: torch.device | str = "cpu") -> None:
        total = state.get("prob_sum")
        self.prob_sum = None if total is None else total.to(device=device, dtype=torch.float32)
        self.count = int(state.get("count", 0))
