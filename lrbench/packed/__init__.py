"""Packed training: many compatible runs (schedules x seeds x rates of one cell) as ONE network.

    from lrbench.packed import plan_packs, train_pack
    for pack in plan_packs(specs, max_pack=32):
        train_pack(pack, [runs_dir / s.run_id for s in pack], Runtime(device="cuda"))

See lrbench.packed.loop for the contract (folders identical to train_run's, per-run resume,
divergence freezes one model), lrbench.packed.models for the packed ResNet and
lrbench.packed.optim for the fused per-model optimizer step.
"""

from lrbench.packed.loop import PackTrainer, check_packable, pack_key, plan_packs, train_pack
from lrbench.packed.models import PackedResNet, init_packed
from lrbench.packed.optim import PackedOptimizer

__all__ = [
    "PackTrainer",
    "PackedOptimizer",
    "PackedResNet",
    "check_packable",
    "init_packed",
    "pack_key",
    "plan_packs",
    "train_pack",
]
