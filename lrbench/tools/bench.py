"""`lrbench bench`: training throughput against a textbook PyTorch loop, in one process.

Three kinds of rows, all timed in the same process and sitting so that their ratios mean
something on a shared or noisy machine:

- baseline: the loop every tutorial writes. A torchvision DataLoader over the decoded images
  (RandomCrop(32, padding=4), RandomHorizontalFlip, ToTensor, Normalize; worker processes),
  the same model and batch size, fp32, NCHW, torch.optim.SGD.
- single: lrbench's loop for a run alone: the stepper a sweep's run trains with
  (lrbench.train.steppers.PlainStepper, built by lrbench.train.build), stepped on DeviceData's
  device-side batches as the loop steps it (autocast and channels_last as a run's defaults,
  loss and accuracy accumulated on the device).
- packed: G models trained as one (lrbench.train.packed), each on its own batches, one fused
  optimizer step: the stepper a packed sweep builds and the step it runs (lrbench.train.probe).

A model-epoch is one model seeing 50,000 training images (CIFAR's train split), whatever the
dataset: a pack of G processes G model-epochs per 50,000 images per model. Every row is set up
and warmed up first (warm-up steps, and on CUDA the compilation they trigger, are not timed);
then R rounds each time `steps` steps of every row in turn, and a row's figure is its best
round. Interleaving makes a burst of load from other processes hit all rows alike, and the
best round estimates what the machine does unloaded. On CUDA the clock is read after a sync.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import statistics
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch
import torch.nn.functional as F

from lrbench.data import DeviceData, Splits, load_splits
from lrbench.errors import UserError, one_line
from lrbench.forked import usable_cores
from lrbench.models import build_model, count_parameters
from lrbench.specs import DEFAULT_BATCH_SIZE, DatasetSpec
from lrbench.train import Runtime, resolve_device, resolve_precision
from lrbench.train.packed.stepper import PackedStepper
from lrbench.train.probe import PROBE_OPTIMIZER, Step, Timer, probe_stepper, training_step
from lrbench.train.steppers import Stepper

MODEL_EPOCH_IMAGES = 50_000
DATASET_NAMES = ("synthetic", "cifar10", "cifar100")
JSON_KEYS = ("mode", "pack", "images_per_s", "model_epochs_per_s", "ratio_to_baseline")


@dataclass
class Row:
    mode: str  # baseline | single | packed
    pack: int
    images_per_s: float
    model_epochs_per_s: float = 0.0
    ratio_to_baseline: float = 0.0
    config: str = ""  # what ran: precision, memory format, loader workers, implementation
    variant: bool = False  # an extra CPU comparison row (table only, not in --json)
    per_round: list[float] = field(default_factory=list)  # images/s of each round
    ratio_spread: tuple[float, float, float] = (0.0, 0.0, 0.0)  # min, median, max over rounds


@dataclass
class Report:
    device: str
    model: str
    batch_size: int
    data: str
    steps: int
    warmup: int
    rounds: int
    rows: list[Row] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """Exactly docs/design.md's object (variant rows are left out)."""
        return {
            "device": self.device,
            "model": self.model,
            "batch_size": self.batch_size,
            "results": [{k: asdict(r)[k] for k in JSON_KEYS} for r in self.rows if not r.variant],
        }


def dataset_spec(data: str) -> DatasetSpec:
    """`synthetic`, `cifar10`, `cifar100`, or a path to an image folder / archive."""
    if data in DATASET_NAMES:
        return DatasetSpec(name=data)
    if not os.path.exists(os.path.expanduser(data)):
        raise UserError(
            f"--data {data!r}: not a dataset name ({', '.join(DATASET_NAMES)}) nor an existing "
            "image folder or archive"
        )
    return DatasetSpec(name="imagefolder", root=data)


def default_workers(device: torch.device) -> int:
    """DataLoader workers for the baseline: on a GPU box most cores (up to 8) feed the GPU;
    on the CPU the workers compete with the training itself, so half the cores (at least 1)."""
    cpus = usable_cores()
    return min(8, max(1, cpus - 1)) if device.type == "cuda" else max(1, cpus // 2)


def device_label(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def run_bench(
    model: str = "resnet20",
    device: str = "auto",
    packs: Sequence[int] | None = None,
    steps: int | None = None,
    warmup: int | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    data: str = "synthetic",
    variants: bool | None = None,
    workers: int | None = None,
    data_dir: str | None = None,
    log: Callable[[str], None] | None = None,
    rounds: int | None = None,
) -> Report:
    """Measure baseline, single and packed throughput; see the module docstring."""
    dev = resolve_device(device)
    build_model(model, 10)  # a bad name fails before any data is loaded
    cuda = dev.type == "cuda"
    packs = list(packs) if packs else ([8, 32, 64] if cuda else [2, 4])
    if any(g < 1 for g in packs):
        raise UserError(f"--pack: pack sizes must be at least 1, got {packs}")
    steps = steps if steps is not None else (50 if cuda else 10)
    warmup = warmup if warmup is not None else (10 if cuda else 2)
    rounds = rounds if rounds is not None else (2 if cuda else 3)
    for option, value, least in (("--steps", steps, 1), ("--warmup", warmup, 0),
                                 ("--batch-size", batch_size, 1), ("--rounds", rounds, 1)):  # fmt: skip
        if value < least:
            raise UserError(f"{option} {value}: must be at least {least}")
    variants = (not cuda) if variants is None else variants
    say = log or (lambda _msg: None)

    splits = load_splits(dataset_spec(data), data_dir)
    report = Report(device_label(dev), model, batch_size, data, steps, warmup, rounds)
    if cuda:
        torch.backends.cudnn.benchmark = True  # every row: the usual setting for fixed shapes
    nw = default_workers(dev) if workers is None else workers
    say(f"baseline: DataLoader with {nw} workers, fp32 NCHW")
    baseline = Row("baseline", 1, 0.0, config=f"fp32 NCHW, DataLoader({nw} workers)")
    runners = [(baseline, _baseline(model, splits, dev, batch_size, nw))]
    probe = Probe(model, splits, dev, batch_size, warmup + steps * rounds, say)
    runners += probe.single_rows(variants) + probe.packed_rows(packs)
    _time(runners, Timer(dev, steps, warmup), rounds, batch_size, say)
    report.rows = [row for row, _ in runners]
    for row in report.rows:
        row.images_per_s = max(row.per_round)
        row.model_epochs_per_s = row.images_per_s / MODEL_EPOCH_IMAGES
        row.ratio_to_baseline = row.images_per_s / baseline.images_per_s
        # each round's ratio to the baseline's time in the same round
        ratios = [a / b for a, b in zip(row.per_round, baseline.per_round, strict=True)]
        row.ratio_spread = (min(ratios), statistics.median(ratios), max(ratios))
    return report


Runner = tuple[Row, Step]


@dataclass
class Probe:
    """lrbench's rows: steppers built as a sweep builds them (lrbench.train.probe)."""

    model: str
    splits: Splits
    device: torch.device
    batch_size: int
    steps: int  # every step the row takes: warm-up and rounds
    say: Callable[[str], None]
    runtime: Runtime = field(default_factory=Runtime)

    def single_rows(self, variants: bool) -> list[Runner]:
        """A run alone as it trains here; with `variants`, in fp32/bf16 x channels_last/NCHW."""
        rt = self.runtime
        precision = resolve_precision(rt.precision, self.device)
        combos = [(precision, rt.channels_last, False)]
        if variants:
            combos += [
                (p, cl, True)
                for p in ("fp32", "bf16")
                for cl in (True, False)
                if (p, cl) != (precision, rt.channels_last)
            ]
        rows = []
        for prec, cl, is_variant in combos:
            layout = "channels_last" if cl else "NCHW"
            self.say(f"single: {prec}, {layout}")
            step = self.step(1, prec, replace(rt, channels_last=cl))[1]
            config = f"{prec} {layout} ({'variant' if is_variant else 'as a run trains'})"
            rows.append((Row("single", 1, 0.0, config=config, variant=is_variant), step))
        return rows

    def packed_rows(self, packs: Sequence[int]) -> list[Runner]:
        precision = resolve_precision(self.runtime.precision, self.device)
        rows = []
        for g in packs:
            self._refuse_what_cannot_fit(g)
            with _fits(f"--pack {g}"):
                stepper, step = self.step(g, precision, self.runtime)
            config = f"{precision} channels_last, {_how_packed(stepper)}"
            self.say(f"packed: G={g}, {config}")
            rows.append((Row("packed", g, 0.0, config=config), step))
        return rows

    def _refuse_what_cannot_fit(self, models: int) -> None:
        """A pack whose weights, gradients and momenta alone exceed the free memory is refused
        before anything is built (building its runs first took minutes and gigabytes)."""
        weights = count_parameters(build_model(self.model, self.splits.num_classes))
        needs = 3 * 4 * weights * models  # fp32 weights, gradients and momenta
        free = _free_memory(self.device)
        if free is not None and needs > free:
            raise UserError(
                f"--pack {models}: does not fit in memory (its weights, gradients and momenta "
                f"alone need {needs / 2**30:,.1f} GiB; {free / 2**30:,.1f} GiB are free)"
            )

    def step(self, models: int, precision: str, runtime: Runtime) -> tuple[Stepper, Step]:
        data = DeviceData(self.splits, self.device, channels_last=runtime.channels_last)
        stepper = probe_stepper(self.model, data, self.batch_size, models, self.device,
                                precision, runtime, self.steps)  # fmt: skip
        return stepper, training_step(stepper, self.device)


def _time(
    runners: list[Runner], timer: Timer, rounds: int, batch_size: int, say: Callable[[str], None]
) -> None:
    """Warm every row up (on CUDA: compile), then time interleaved rounds: a burst of load
    hits every row alike."""
    for row, step in runners:
        say(f"warming up {row.mode} {row.pack} ({row.config})")
        with _fits(f"--pack {row.pack}" if row.mode == "packed" else f"--batch-size {batch_size}"):
            timer.warm(step)
    for r in range(rounds):
        for i, (row, step) in enumerate(runners):
            say(f"round {r + 1} of {rounds}, row {i + 1} of {len(runners)}: {row.mode} {row.pack}")
            row.per_round.append(timer.images_per_s(step))


def _how_packed(stepper: Any) -> str:
    """How a pack's models run and compile (a pack of 1 trains as a run alone)."""
    if not isinstance(stepper, PackedStepper):
        return "alone"
    return stepper.impl + (f", compile {stepper.compiled}" if stepper.compiled else "")


def _free_memory(device: torch.device) -> int | None:
    """Bytes the device can still give (None where it cannot be asked)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:  # Linux: free memory and the page cache the kernel would give back
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


@contextlib.contextmanager
def _fits(what: str) -> Iterator[None]:
    """Memory the device cannot give is the option's fault: one line naming it."""
    try:
        yield
    except (MemoryError, RuntimeError) as err:
        lacking = isinstance(err, MemoryError | torch.OutOfMemoryError) or "allocate" in str(err)
        if not lacking:
            raise
        raise UserError(f"{what}: does not fit in memory ({one_line(err)[:200]})") from None


# --- (a) the textbook loop ---------------------------------------------------------------------


class _Images(torch.utils.data.Dataset):
    """The decoded training images as PIL images, like torchvision's CIFAR10 / ImageFolder
    after decoding (the same pixels lrbench's loader serves)."""

    def __init__(self, splits: Splits, transform) -> None:
        self.x = splits.train_x.permute(0, 2, 3, 1).contiguous().numpy()  # HWC uint8
        self.y = splits.train_y.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.x[i])), self.y[i]


def _baseline(model, splits, device, batch_size, workers) -> Step:
    from torchvision import transforms as T

    transform = T.Compose(
        [
            T.RandomCrop(32, padding=4),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(splits.mean, splits.std),
        ]
    )
    loader = torch.utils.data.DataLoader(
        _Images(splits, transform),
        batch_size=batch_size,
        shuffle=True,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        drop_last=len(splits.train_y) >= batch_size,
        persistent_workers=workers > 0,
    )
    torch.manual_seed(0)
    net = build_model(model, splits.num_classes).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=PROBE_OPTIMIZER.lr,
                          momentum=PROBE_OPTIMIZER.momentum,
                          weight_decay=PROBE_OPTIMIZER.weight_decay)  # fmt: skip
    batches = (batch for _ in itertools.count() for batch in loader)

    def step() -> int:
        x, y = next(batches)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return len(y)

    net.train()
    return step
