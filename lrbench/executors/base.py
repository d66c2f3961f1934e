"""Which executor a sweep uses.

An executor takes the packs of one sweep that are left to train (lrbench.sweep) and trains them
somewhere: on this machine's GPUs or CPU (`local`), or as a job array on a Slurm cluster
(`slurm`). Every executor trains with the same `work` loop (executors/local.py): under each
run's file lock, through the resumable `train_runs`, into the same run folders; so results,
resume and `lrbench report` do not depend on where a run trained.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lrbench.errors import UserError

if TYPE_CHECKING:
    from lrbench.config import ExecutorConfig

EXECUTORS = ("local", "slurm")


def executor_name(flag: str | None, block: ExecutorConfig | None) -> str:
    """`--executor` wins over the config's `executor.name`; local when neither is given."""
    name = flag or (block.name if block else "local")
    if name not in EXECUTORS:
        raise UserError(f"--executor: {name!r} is not one of {', '.join(EXECUTORS)}")
    return name
