"""Packed training: G compatible runs (schedules x seeds x rates of one cell) as ONE network.

The loop is lrbench.train's (one loop for single runs and packs); this package holds what is
particular to a pack while it trains: the packed model (models, grouped), each model's batches
(data), the fused optimizer step (optim) and the stepper (stepper); a pack is built, its models
seeded as their runs alone seed them, in lrbench.train.build. Which runs can share a pack is
decided in sharing; the packs a sweep trains are planned in lrbench.sweep.packing.
"""

from lrbench.train.packed.models import PackedModel

__all__ = ["PackedModel"]
