"""A tiny sweep (ResNet8 on synthetic images, seconds on a CPU) for the tests of sweeps,
executors and pack sizing: `tiny(**changes)` is its config, `write_config` writes it as YAML."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

TINY: dict[str, Any] = {
    "name": "tiny",
    "dataset": {"name": "synthetic", "limit_train": 128},
    "models": ["resnet8"],
    "optimizers": [{"name": "sgd", "lr": 0.05, "momentum": 0.9}],
    "full_epochs": 2,
    "budgets": [0.5, 1.0],
    "seeds": 1,
    "batch_size": 64,
    "schedules": ["cosine", {"name": "rex", "beta": 0.5}],
}


def tiny(**changes: Any) -> dict[str, Any]:
    return {**TINY, **changes}


def write_config(tmp_path: Path, **changes: Any) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(tiny(**changes)))
    return path
