"""Sweeps, run by the library: plan (which runs, in which state), packs, the local run, the
Slurm submission, and status.

    from lrbench.config import load_config
    from lrbench.sweep import Sweep, SweepOptions
    sweep = Sweep(load_config("configs/smoke.yaml"), SweepOptions(results=Path("results")))
    outcome = sweep.run_local(display, print)
"""

from __future__ import annotations

import importlib
from typing import Any

# what each name is imported from, on first use: `lrbench status` reads lrbench.sweep.status
# and must not import the training stack (torch) that running a sweep needs
_WHERE = {
    "PlannedRun": "plan",
    "sweep_dir": "plan",
    "write_sweep_files": "plan",
    "Sweep": "run",
    "SweepOptions": "run",
    "SweepOutcome": "run",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
