"""The executor interface: what `lrbench sweep` hands an executor, and what comes back.

An executor takes the runs of one sweep that are left to train and trains them somewhere: on
this machine's GPUs or CPU (`local`), or as a job array on a Slurm cluster (`slurm`). Every
executor trains a run with the same `work` loop (executors/local.py): under the run's file
lock, through the resumable `train_run`, into the same run folder; so results, resume and
`lrbench report` do not depend on where a run trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from lrbench.errors import UserError

if TYPE_CHECKING:
    from lrbench.config import ExecutorConfig
    from lrbench.specs import RunSpec
    from lrbench.train import Runtime

EXECUTORS = ("local", "slurm")


@dataclass(frozen=True)
class Batch:
    """The runs of one sweep left to train, in config order, and how to run them."""

    sweep: str
    sweep_dir: Path
    items: list[tuple[RunSpec, Path]]
    runtime: Runtime


def executor_name(flag: str | None, block: ExecutorConfig | None) -> str:
    """`--executor` wins over the config's `executor.name`; local when neither is given."""
    name = flag or (block.name if block else "local")
    if name not in EXECUTORS:
        raise UserError(f"--executor: {name!r} is not one of {', '.join(EXECUTORS)}")
    return name
