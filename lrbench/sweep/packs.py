"""What a sweep's workers train: its runs in packs (a pack of one is a run trained alone).

Packs are planned over every run of the sweep, finished or not, and keep their finished
members (as passengers), so a resumed sweep trains the same packs: the grouped kernels'
float32 numbers depend on a pack's size.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from lrbench.errors import UserError
from lrbench.executors.base import Pack
from lrbench.sweep.packing import plan_packs
from lrbench.sweep.plan import PlannedRun
from lrbench.train.runtime import Runtime, resolve_device, resolve_precision
from lrbench.verdict import SKIP_STATES


def pack_number(text: str) -> int:
    """One `--pack` size: a whole number of models, at least 1."""
    try:
        size = int(text)
    except ValueError:
        raise UserError(f"--pack {text!r}: expected a whole number >= 1") from None
    if size < 1:
        raise UserError(f"--pack {size}: a pack holds at least one model")
    return size


def parse_pack(pack: str | int) -> int | None:
    """`--pack`: a whole number >= 1, or None for auto."""
    if isinstance(pack, int):
        return pack_number(str(pack))
    return None if pack == "auto" else pack_number(pack)


def pack_size(
    pack: str | int,
    device: str,
    planned: list[PlannedRun],
    num_classes: int,
    runtime: Runtime,
    sweep: Path,
    say: Callable[[str], Any],
) -> int:
    """A number is used as given; auto is 1 on the CPU (packing does not pay there), and on
    CUDA measured once per sweep (lrbench.sweep.autosize) for the sweep's largest cohort of
    compatible runs: one size serves every cohort, and the choice is kept in the sweep's
    pack-auto.json so that a resumed sweep forms the same packs."""
    size = parse_pack(pack)
    if size is not None:
        return size
    if not device.startswith("cuda"):
        return 1
    from lrbench.sweep.autosize import CACHE_NAME, sweep_pack_size

    dev = resolve_device(device)
    precision = resolve_precision(runtime.precision, dev)
    specs = [p.spec for p in planned]
    return sweep_pack_size(
        specs, num_classes, dev, precision, runtime.channels_last, sweep / CACHE_NAME, say
    )


def plan_work(planned: list[PlannedRun], todo: list[PlannedRun], size: int) -> list[Pack]:
    """The packs to train: those holding a run of `todo`, with their finished members."""
    if size == 1:
        return [[(p.spec, p.run.path)] for p in todo]
    wanted = {p.run_id for p in todo}
    by_id = {p.run_id: p for p in planned}
    work = []
    for pack in plan_packs([p.spec for p in planned], size):
        if not any(s.run_id in wanted for s in pack):
            continue
        members = [by_id[s.run_id] for s in pack]
        members = [m for m in members if m.run_id in wanted or m.state in SKIP_STATES]
        work.append([(m.spec, m.run.path) for m in members])
    return work
