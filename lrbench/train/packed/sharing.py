"""Which runs can share a pack: what the loop checks before it trains runs as one.

Runs that share the model, dataset, optimizer (all but the rate), batch size, epochs, early
stopping and snapshots differ only in schedule, seed and rate: they train in lockstep, so they
can share every kernel launch. Every feature trains packed (plateau, early stopping, snapshots,
schedule-free optimizers); only a model that draws random numbers while training (dropout)
trains alone, since G models would draw from one stream and no longer match their runs alone.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence

from torch import nn

from lrbench.errors import UserError
from lrbench.specs import RunSpec


def pack_key(spec: RunSpec) -> str:
    """Everything two runs must share to train in one pack (schedule, seed and rate may differ)."""
    identity = spec.identity()
    optimizer = identity["optimizer"]
    optimizer.pop("lr")
    key = {
        "model": identity["model"],
        "dataset": identity["dataset"],
        "optimizer": optimizer,
        "batch_size": spec.batch_size,
        "epochs": spec.epochs,
        "early_stop": spec.early_stop,
        "snapshots": spec.snapshots,
    }
    return json.dumps(key, sort_keys=True)


def unpackable_reason(spec: RunSpec) -> str | None:
    """Why `spec` must train alone, or None when it can share a pack."""
    model = json.dumps(spec.model_dump(mode="json")["model"], sort_keys=True)
    num_classes = None if spec.loss is not None else 10  # the count does not matter here
    return _model_reason(model, num_classes, spec.dataset.context)


@functools.cache
def _model_reason(model_json: str, num_classes: int | None, context: int | None) -> str | None:
    import torch

    from lrbench.models import build_model

    with torch.random.fork_rng(devices=[]):
        model = build_model(json.loads(model_json), num_classes, context=context)
    if any(isinstance(m, nn.modules.dropout._DropoutNd) and m.p > 0 for m in model.modules()):
        return "its model uses dropout (packed models would share one random stream)"
    return None


def check_packable(specs: Sequence[RunSpec]) -> None:
    if not specs:
        raise UserError("a pack needs at least one run")
    if len(specs) == 1:
        return
    for spec in specs:
        if why := unpackable_reason(spec):
            raise UserError(f"run {spec.run_id} cannot share a pack: {why}")
    first = json.loads(pack_key(specs[0]))
    for spec in specs[1:]:
        other = json.loads(pack_key(spec))
        if other != first:
            keys = sorted(k for k in first if first[k] != other[k])
            raise UserError(
                f"runs {specs[0].run_id} and {spec.run_id} cannot share a pack: they differ in "
                f"{', '.join(keys)} (a pack may differ only in schedule, seed and lr)"
            )
