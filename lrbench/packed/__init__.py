"""Packed training: many compatible runs (schedules x seeds x rates of one cell) as ONE network.

    from lrbench.packed import plan_packs
    from lrbench.train import train_runs
    for pack in plan_packs(specs, max_pack=32):
        train_runs(pack, [runs_dir / s.run_id for s in pack], Runtime(device="cuda"))

The loop is lrbench.train's (one loop for single runs and packs); this package holds what is
particular to packs: which runs can share one (planning), the packed model (models, grouped),
each model's batches (data), the fused optimizer step (optim) and the stepper (stepper).
"""

from lrbench.packed.models import PackedModel, init_packed
from lrbench.packed.planning import check_packable, pack_key, plan_packs, unpackable_reason

__all__ = [
    "PackedModel",
    "check_packable",
    "init_packed",
    "pack_key",
    "plan_packs",
    "unpackable_reason",
]
