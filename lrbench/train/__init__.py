"""Training: one loop for a run alone and for G runs packed (lrbench.train.loop).

summary = train_run(spec, "results/x/runs/<id>", Runtime(device="cuda"))
summaries = train_runs(pack_specs, folders, Runtime(device="cuda"))
"""

from lrbench.train.build import build_run_model, build_stepper
from lrbench.train.loop import train_run, train_runs
from lrbench.train.runtime import (
    PRECISIONS,
    Callback,
    Event,
    Runtime,
    autocast_for,
    param_dtype,
    resolve_device,
    resolve_precision,
)
from lrbench.train.steppers import train_step

__all__ = [
    "PRECISIONS",
    "Callback",
    "Event",
    "Runtime",
    "autocast_for",
    "build_run_model",
    "build_stepper",
    "param_dtype",
    "resolve_device",
    "resolve_precision",
    "train_run",
    "train_runs",
    "train_step",
]
