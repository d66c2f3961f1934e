"""`--pack auto` on CUDA: how many runs to train as one network, from the GPU's memory and speed.

More models per pack keep a GPU busier until it is full; past that, throughput plateaus and a
bigger pack only costs: fewer packs to spread over GPUs, more runs lost to one failure. So G
doubles (1, 2, 4, ... and the cap itself) while a step up still gains at least 10%, stops at the
first smaller gain or at an out-of-memory error, and the smallest G within 5% of the best
measured throughput wins. The cap is what the free memory holds (~1.5 GiB per model, up to 64)
and the size of the group the pack is for: a bigger pack could never fill.

The measurement steps the pack a sweep would build (lrbench.train.probe: G = 1 is a run alone),
eager (torch.compile of every G would take minutes), on one batch of random images of the
dataset's image size (32 px where it is not known before loading: your own data, image folders)
drawn once on the device: it ranks pack sizes, it is not a training-speed figure.

A sweep keeps its decision in `<results>/<sweep>/pack-auto.json`: a resumed sweep is bit-exact
only when the same packs form, and timings vary from one measurement to the next. The file is
reused while the GPU's name, the model, the batch size and the precision match it.
"""

from __future__ import annotations

import gc
import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lrbench.data import DeviceData
from lrbench.data.sources import dataset_shape
from lrbench.results import atomic_write_json, read_json
from lrbench.specs import RunSpec
from lrbench.train.packed.sharing import pack_key, unpackable_reason
from lrbench.train.probe import Timer, probe_stepper, random_images, repeated_step
from lrbench.train.runtime import Runtime

CACHE_NAME = "pack-auto.json"
MIN_GAIN = 1.10  # keep doubling while a step up is at least 10% faster
NEAR_BEST = 0.95  # the smallest G within 5% of the best is chosen
MEMORY_PER_MODEL = 1.5 * 2**30
MAX_PACK = 64
IMAGE_SIZE = (32, 32)  # measured at when the dataset's size is not known before loading it

Measure = Callable[[int], float]


@dataclass
class Choice:
    """The chosen G and the measured model-images per second by G (empty when reused unmeasured
    or when even G=1 ran out of memory)."""

    size: int
    measured: dict[int, float] = field(default_factory=dict)
    out_of_memory_at: int | None = None


@dataclass(frozen=True)
class Setting:
    """What a measurement depends on: a cached choice holds only while all of it matches."""

    device: str
    model: str | dict[str, Any]  # a built-in's name, or your own model's entry (spec.json's)
    batch_size: int
    precision: str

    def matches(self, record: dict[str, Any]) -> bool:
        return all(record.get(k) == v for k, v in self.__dict__.items())


# --- the rule ------------------------------------------------------------------------------


def pack_sizes(cap: int) -> list[int]:
    """The candidates: 1, 2, 4, ... below `cap`, then `cap` itself."""
    sizes = list(itertools.takewhile(lambda g: g < cap, (2**i for i in itertools.count())))
    return [*sizes, max(cap, 1)]


def choose_pack(cap: int, measure: Measure) -> Choice:
    """Measure G = 1, 2, 4, ... up to `cap` (see the module docstring for when it stops) and
    choose the smallest G within 5% of the best. `measure(G)` returns model-images per second."""
    choice = Choice(1)
    previous = 0.0
    for g in pack_sizes(cap):
        try:
            speed = measure(g)
        except torch.cuda.OutOfMemoryError:
            choice.out_of_memory_at = g
            break
        choice.measured[g] = speed
        if previous and speed < previous * MIN_GAIN:
            break
        previous = speed
    if choice.out_of_memory_at is not None:
        _release_memory()  # only now: the error's traceback held the failed step's tensors
    if choice.measured:
        best = max(choice.measured.values())
        choice.size = min(g for g, s in choice.measured.items() if s >= NEAR_BEST * best)
    return choice


def _release_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# --- the measurement ---------------------------------------------------------------------------


def measure_throughput(
    model: str,
    num_classes: int,
    batch_size: int,
    groups: int,
    device: torch.device,
    precision: str = "fp32",
    channels_last: bool = True,
    image_size: tuple[int, int] = IMAGE_SIZE,
    *,
    warmup: int = 3,
    steps: int = 10,
) -> float:
    """Model-images per second of `groups` models trained as one pack, eager, on one batch of
    random `image_size` images already on `device` (lrbench.train.probe)."""
    device = torch.device(device)
    try:
        return _time_pack(model, num_classes, batch_size, groups, device, precision,
                          channels_last, image_size, Timer(device, steps, warmup))  # fmt: skip
    finally:
        _release_memory()  # the sweep trains in this process next (the pack is gone by now)


def _time_pack(
    model: str,
    num_classes: int,
    batch_size: int,
    groups: int,
    device: torch.device,
    precision: str,
    channels_last: bool,
    image_size: tuple[int, int],
    timer: Timer,
) -> float:
    runtime = Runtime(channels_last=channels_last, compile="off")
    data = DeviceData(random_images(image_size, batch_size, num_classes), device, channels_last)
    stepper = probe_stepper(model, data, batch_size, groups, device, precision, runtime,
                            timer.warmup + timer.steps)  # fmt: skip
    step = repeated_step(stepper, device)
    timer.warm(step)
    return timer.images_per_s(step)


def memory_cap(device: torch.device) -> int:
    """As many ResNet-sized models as the free memory holds at ~1.5 GiB each, 1 to 64."""
    free, _ = torch.cuda.mem_get_info(torch.device(device))
    return int(max(1, min(MAX_PACK, free // MEMORY_PER_MODEL)))


# --- the decision, kept for the sweep ----------------------------------------------------------


def decide(path: Path, setting: Setting, cap: int, measure: Measure) -> tuple[Choice, bool]:
    """The cached choice when `path` holds one for `setting` (reused even above `cap`: the
    packs must not change on resume), else a measured one, written to `path`; a cap below 2
    leaves nothing to measure. Returns (choice, reused)."""
    record = _read(path)
    if record is not None and setting.matches(record):
        measured = {int(r["pack"]): float(r["images_per_s"]) for r in record.get("measured", [])}
        return Choice(int(record["chosen"]), measured), True
    if cap < 2:
        return Choice(1), False
    choice = choose_pack(cap, measure)
    if choice.measured:  # nothing measured (out of memory at G=1) is no decision to keep
        atomic_write_json(path, _record(setting, choice))
    return choice, False


def _read(path: Path) -> dict[str, Any] | None:
    try:
        record = read_json(path)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and "chosen" in record else None


def _record(setting: Setting, choice: Choice) -> dict[str, Any]:
    return {
        **setting.__dict__,
        "chosen": choice.size,
        "measured": [
            {"pack": g, "images_per_s": round(s, 1)} for g, s in sorted(choice.measured.items())
        ],
    }


def largest_group(specs: Iterable[RunSpec]) -> list[RunSpec]:
    """The largest set of runs that may share packs (the first of equals), as plan_packs groups
    them; empty when no run can be packed."""
    groups: dict[str, list[RunSpec]] = {}
    for spec in specs:
        if not unpackable_reason(spec):
            groups.setdefault(pack_key(spec), []).append(spec)
    return max(groups.values(), key=len, default=[])


UNMEASURED_PACK = 8  # language models and your own tasks: a pack size that is not measured


def sweep_pack_size(
    specs: Sequence[RunSpec],
    num_classes: int,
    device: torch.device,
    precision: str,
    channels_last: bool,
    path: Path,
    log: Callable[[str], Any] = print,
) -> int:
    """G for a sweep on a CUDA device: sized for its largest group of compatible runs (that
    group's model and batch size), capped by the GPU's free memory and the group's size.

    Pass every run the sweep plans, finished or not: the group (and with it the cached setting)
    then stays the same as the sweep progresses.
    """
    device = torch.device(device)
    group = largest_group(specs)
    if len(group) < 2:
        return 1
    spec = group[0]
    if spec.dataset.name == "text" or spec.loss is not None:
        size = max(1, min(UNMEASURED_PACK, len(group), memory_cap(device)))
        log(
            f"pack auto: lrbench measures packs of image models only; {spec.model_label} runs "
            f"train {size} per pack (--pack N chooses another size)"
        )
        return size
    model = spec.model_dump(mode="json")["model"]
    setting = Setting(torch.cuda.get_device_name(device), model, spec.batch_size, precision)
    shape = dataset_shape(spec.dataset)
    image_size = shape[1] if shape else IMAGE_SIZE

    def measure(g: int) -> float:
        return measure_throughput(spec.model, num_classes, spec.batch_size, g, device, precision,
                                  channels_last, image_size)  # fmt: skip

    choice, reused = decide(path, setting, min(memory_cap(device), len(group)), measure)
    if reused or choice.measured or choice.out_of_memory_at:
        log(describe(choice, setting, path, reused))
    return choice.size


def describe(choice: Choice, setting: Setting, path: Path, reused: bool) -> str:
    """One line for the sweep's log: what was measured (or reused) and what was chosen."""
    model = setting.model if isinstance(setting.model, str) else setting.model["label"]
    what = f"{model}, batch {setting.batch_size}, {setting.precision} on {setting.device}"
    table = ", ".join(f"G={g} {s:,.0f} img/s" for g, s in sorted(choice.measured.items()))
    if reused:
        return f"pack auto: G={choice.size} for {what}, reused from {path} ({table})"
    oom = f", out of memory at G={choice.out_of_memory_at}" if choice.out_of_memory_at else ""
    kept = f"cached in {path}" if choice.measured else "nothing measured, not cached"
    return f"pack auto: {what}: measured {table or 'nothing'}{oom}; chosen {choice.size} ({kept})"
