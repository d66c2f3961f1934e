"""The packs a sweep trains: each cohort (runs that may share a pack: the same
lrbench.train.packed.sharing.pack_key) cut into near-equal packs."""

from __future__ import annotations

from collections.abc import Sequence

from lrbench.errors import UserError
from lrbench.specs import RunSpec
from lrbench.train.packed.sharing import pack_key, unpackable_reason


def plan_packs(specs: Sequence[RunSpec], max_pack: int) -> list[list[RunSpec]]:
    """Cut each cohort of compatible runs into packs of at most `max_pack`, in first-seen order.

    A cohort of n runs becomes ceil(n / max_pack) packs of near-equal size (10 runs, max 8:
    5 + 5, not 8 + 2), so no pack is left nearly empty. The plan depends only on the list, not
    on what has finished, so a resumed sweep forms the same packs (which bit-exact resume
    needs). Runs that must train alone come back as packs of one.
    """
    if max_pack < 1:
        raise UserError(f"--pack must be at least 1, got {max_pack}")
    cohorts: dict[str, list[RunSpec]] = {}
    for i, spec in enumerate(specs):
        key = f"alone:{i}" if unpackable_reason(spec) else pack_key(spec)
        cohorts.setdefault(key, []).append(spec)
    packs: list[list[RunSpec]] = []
    for members in cohorts.values():
        count = -(-len(members) // max_pack)
        size, extra = divmod(len(members), count)
        start = 0
        for i in range(count):
            end = start + size + (1 if i < extra else 0)
            packs.append(members[start:end])
            start = end
    return packs
