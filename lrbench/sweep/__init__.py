"""Sweeps, run by the library: plan (which runs, in which state), packs, the local run, the
Slurm submission, and status.

    from lrbench.config import load_config
    from lrbench.sweep import Sweep, SweepOptions
    sweep = Sweep(load_config("configs/smoke.yaml"), SweepOptions(results=Path("results")))
    outcome = sweep.run_local(display, print)
"""

from lrbench.sweep.plan import (
    RETRY_STATES,
    SKIP_STATES,
    TRAIN_STATES,
    PlannedRun,
    plan,
    sweep_dir,
    write_sweep_files,
)
from lrbench.sweep.run import Sweep, SweepOptions, SweepOutcome

__all__ = [
    "RETRY_STATES",
    "SKIP_STATES",
    "TRAIN_STATES",
    "PlannedRun",
    "Sweep",
    "SweepOptions",
    "SweepOutcome",
    "plan",
    "sweep_dir",
    "write_sweep_files",
]
