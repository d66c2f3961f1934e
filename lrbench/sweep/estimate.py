"""How long a sweep's remaining runs take: from its own epoch times once some are timed, and
before that from a short calibration on the device it will use.

The calibration times a few training steps of each (model, batch size) of the runs left, with
the steppers a sweep trains with (lrbench.train.probe: a run alone, or a pack of G),
on the sweep's own data, and counts an evaluation pass over the test (and validation) split at
a third of a training step per batch. The seconds per step are kept in the data cache folder
(`calibration.json`), keyed by device, model, batch size, precision, image size and pack size,
so a second dry run measures nothing. It is an estimate: the first timed epochs replace it.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lrbench.errors import UserError
from lrbench.results import atomic_write_json, read_json
from lrbench.sweep.plan import PlannedRun, estimate_seconds
from lrbench.verdict import SKIP_STATES

if TYPE_CHECKING:
    from lrbench.data import Splits
    from lrbench.sweep.run import Sweep

CACHE_FILE = "calibration.json"
WARMUP_STEPS = 1
TIMED_STEPS = 3
EVAL_COST = 1 / 3  # an evaluation batch against a training step of the same size


@dataclass(frozen=True)
class Estimate:
    """Seconds left (None when there is none), how they were found, or why there is none."""

    seconds: float | None
    how: str

    @property
    def calibrated(self) -> bool:
        return self.seconds is not None and self.how.startswith("calibrated")


def estimate(sweep: Sweep, workers: int) -> Estimate:
    """The remaining runs' time on `workers` workers: measured epochs first, else calibrated."""
    measured = estimate_seconds(sweep.todo, sweep.where, workers)
    if measured is not None:
        return Estimate(measured, "from this sweep's epoch times")
    if not any(p.spec.epochs > p.epochs_done for p in sweep.todo):
        return Estimate(0.0, "nothing left to train")
    device = sweep.options.device
    try:
        splits = _splits(sweep)
        return Estimate(calibrate(sweep.todo, splits, sweep, workers), _how(device, sweep))
    except UserError as err:
        return Estimate(None, f"cannot estimate here: {err}")


def _how(device: str, sweep: Sweep) -> str:
    from lrbench.train.runtime import resolve_device

    return (
        f"calibrated: {TIMED_STEPS} timed steps per model and batch size on "
        f"{resolve_device(device).type}, no run timed yet"
    )


def _splits(sweep: Sweep) -> Splits:
    from lrbench.data import load_splits

    if sweep.check_data() is not None:  # a dataset not downloaded yet: nothing to time on
        raise UserError("the data is not downloaded yet")
    return load_splits(sweep.config.dataset, sweep.options.data_dir)


def calibrate(todo: list[PlannedRun], splits: Splits, sweep: Sweep, workers: int) -> float:
    """Seconds the runs of `todo` take, from a few timed steps per (model, batch size)."""
    from lrbench.data.splits import default_data_dir
    from lrbench.sweep.packs import parse_pack
    from lrbench.train.runtime import resolve_device, resolve_precision

    device = sweep.options.device
    if device.startswith("cuda"):
        device = device.split(",")[0]
    dev = resolve_device(device if device != "cuda" else "cuda:0")
    precision = resolve_precision(sweep.options.precision, dev)
    pack = (parse_pack(sweep.options.pack) or 1) if dev.type == "cuda" else 1
    cache = Path(sweep.options.data_dir or default_data_dir()).expanduser() / CACHE_FILE
    epochs: dict[tuple[str, int], int] = defaultdict(int)
    for p in todo:
        if p.state not in SKIP_STATES:
            epochs[(_model_json(p), p.spec.batch_size)] += p.spec.epochs - p.epochs_done
    n_eval = len(splits.test_y) + (len(splits.val_y) if splits.val_y is not None else 0)
    total = 0.0
    threads = sweep.runtime(dev.type, workers).threads  # timed as a worker trains
    for (model, batch_size), left in epochs.items():
        with _torch_threads(threads):
            step = _step_seconds(json.loads(model), batch_size, splits, dev, precision, pack, cache)
        train_steps = math.ceil(len(splits.train_y) / batch_size)
        eval_steps = math.ceil(n_eval / batch_size) * EVAL_COST
        total += left * (train_steps + eval_steps) * step
    return total / max(1, workers)


@contextlib.contextmanager
def _torch_threads(threads: int | None) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _model_json(p: PlannedRun) -> str:
    model = p.spec.model
    return json.dumps(model if isinstance(model, str) else model.model_dump(mode="json"))


def _step_seconds(
    model: str | dict[str, Any],
    batch_size: int,
    splits: Splits,
    dev: Any,
    precision: str,
    pack: int,
    cache: Path,
) -> float:
    """Seconds of one model's training step, measured once per setting and kept in `cache`."""
    import torch

    from lrbench.train.probe import Timer, probe_step

    cuda = dev.type == "cuda"
    name = torch.cuda.get_device_name(dev) if cuda else f"cpu x{torch.get_num_threads()}"
    key = json.dumps(
        [name, model, batch_size, precision, list(splits.train_x.shape[1:]), pack], sort_keys=True
    )
    try:
        known = read_json(cache)
    except (OSError, ValueError):
        known = {}
    if not isinstance(known, dict):
        known = {}
    if isinstance(known.get(key), float):
        return known[key]
    step = probe_step(model, splits, dev, batch_size, pack, precision, WARMUP_STEPS + TIMED_STEPS)
    timer = Timer(dev, TIMED_STEPS, WARMUP_STEPS)
    timer.warm(step)
    # a (packed) step trains `pack` models on a batch each: one model's share of its time
    seconds = min(batch_size, len(splits.train_y)) / timer.images_per_s(step)
    try:
        cache.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(cache, {**known, key: seconds})
    except OSError:
        pass  # an unwritable cache costs a measurement next time, nothing else
    return seconds
