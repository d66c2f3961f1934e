"""What every executor shares: which one a sweep uses, the packs it is given, what it reports
while they train (Msg) and how each run ended (Outcome).

An executor takes the packs of one sweep that are left to train (lrbench.sweep) and trains them
somewhere: on this machine's GPUs or CPU (`local`), or as a job array on a Slurm cluster
(`slurm_submit`, followed by `slurm_watch`). Every executor trains with the same `work` loop
(executors/local.py): under each run's file lock, through the resumable `train_runs`, into the
same run folders; so results, resume and `lrbench report` do not depend on where a run trained.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from lrbench.errors import UserError

if TYPE_CHECKING:
    from lrbench.config import ExecutorConfig
    from lrbench.specs import RunSpec
    from lrbench.train.runtime import Event

EXECUTORS = ("local", "slurm")
Item = tuple["RunSpec", Path]  # a run: its spec and its folder
Pack = list[Item]  # runs trained as one network (a pack of one: a run trained alone)


def executor_name(flag: str | None, block: ExecutorConfig | None) -> str:
    """`--executor` wins over the config's `executor.name`; local when neither is given."""
    name = flag or (block.name if block else "local")
    if name not in EXECUTORS:
        raise UserError(f"--executor: {name!r} is not one of {', '.join(EXECUTORS)}")
    return name


@dataclass
class Msg:
    """What a worker (or, for a Slurm sweep, a run's folder) tells the sweep: take (a run it
    trains), start, event, end (with the run's state), held, crash (its traceback, before it
    exits)."""

    kind: str
    worker: int
    run_id: str
    state: str | None = None
    event: Event | None = None
    detail: str | None = None
    epochs: int = 0


@dataclass
class Outcome:
    """How each run an executor tried ended: done, diverged, failed, held, interrupted or
    unfinished."""

    states: dict[str, str] = field(default_factory=dict)
    interrupted: bool = False
    causes: dict[str, str] = field(default_factory=dict)  # why a run failed or did not finish
