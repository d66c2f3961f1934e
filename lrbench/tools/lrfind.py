"""Smith's learning-rate range test (CLR, WACV 2017, §3.3), as fastai's and Lightning's lr_find.

A short probe: the rate rises from `min_lr` to `max_lr` over `steps` optimizer steps
(exponentially by default, or linearly as in Smith's paper), over as many epochs of the
training batches as that takes. Each step records the rate, the batch loss and accuracy and
their exponential moving averages (beta 0.98, bias-corrected, as fastai). The test stops early
once the smoothed loss exceeds 4x its best. The model is thrown away afterwards.

Suggestions (`suggest`), all read from the smoothed curves with the first 10% of the steps and
the last 5 left out, as fastai does:

- `min_loss`: the rate at the lowest smoothed loss, the edge of divergence.
- **peak** = min_loss / 10: the suggested peak rate for onecycle (and the rate for step,
  cosine, REX, ...). This is fastai's `lr_min` (its suggestion before 2.5 brought the valley;
  Gugger 2018: "one order of magnitude before the minimum"), where the loss still falls.
- `valley` (fastai's default since 2.5): the middle of the longest stretch over which the
  smoothed loss keeps falling; and `steepest` (Lightning's): where it falls fastest against
  log(lr). Both are shown beside the peak. On a short probe of a network trained from
  scratch they jump about: over three probes of ResNet20 on CIFAR-10 with SGD the valley ranged
  over 0.015-0.28 and the steepest descent over 0.002-0.45, and a 12-epoch onecycle run at
  0.015 ended 8 points below one at 0.1.
- Triangular bounds per Smith: `high` is where the smoothed batch accuracy stops rising, read
  as the first rate at which it has made 90% of its whole rise (the argmax of a flat, ragged
  plateau would be noise), but never above the rate of the lowest smoothed loss; `low` =
  high / 4 (Smith: "1/3 or 1/4 of max_lr"). `acc_rise` is where accuracy starts to rise (10%
  of its rise; Smith's other reading of the lower bound), reported for reference.
- `flat`: the rates over which the smoothed loss stays within 5% of its lowest. When that
  spans more than a decade a note says the probe cannot rank those rates.

The smoothed curve is read at the rate of the step it was recorded at, exactly as fastai and
Lightning do, so the numbers compare with theirs. Know that the average lags its input by about
beta / (1 - beta) = 49 steps: in an exponential ramp of 6 decades over 200 steps that is a
factor of about 30 in rate, so the smoothed curve's features sit to the right of the raw
loss's. (Reading each average at its centre of mass instead is wrong the other way: a sudden
blow-up then shows up 30x too early.) The CSV keeps the raw record too.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from lrbench.defaults import DEFAULT_BATCH_SIZE, MAX_BATCH, SEEDS_BELOW
from lrbench.errors import UserError
from lrbench.specs import DatasetSpec, OptimizerSpec

if TYPE_CHECKING:
    from lrbench.train import Runtime

MODES = ("exp", "linear")
MAX_STEPS = 1_000_000  # a probe, not a training run
BETA = 0.98
STOP_FACTOR = 4.0
SKIP_START = 0.1
SKIP_END = 5
LOW_DIVISOR = 4.0
PEAK_DIVISOR = 10.0
ACC_SLOWS = 0.9  # the triangular high: where the smoothed accuracy has made 90% of its rise
ACC_RISES = 0.1  # where it has made 10%: "accuracy starts to rise"
FLAT = 0.05  # the flat bottom: smoothed loss within 5% of its lowest
CSV_COLUMNS = ["step", "lr", "loss", "smooth_loss", "acc", "smooth_acc"]


# --- pure pieces --------------------------------------------------------------------------


def lr_ramp(min_lr: float, max_lr: float, steps: int, mode: str = "exp") -> np.ndarray:
    """The rate of steps 0..steps-1: min_lr at the first step, max_lr at the last."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if not 0 < min_lr < max_lr:
        raise ValueError(f"need 0 < min_lr < max_lr, got {min_lr:g} and {max_lr:g}")
    if steps < 2:
        raise ValueError(f"need at least 2 steps, got {steps}")
    frac = np.arange(steps, dtype=np.float64) / (steps - 1)
    if mode == "exp":
        return min_lr * (max_lr / min_lr) ** frac
    return min_lr + (max_lr - min_lr) * frac


class Smoother:
    """fastai's AvgSmoothLoss: an exponential moving average with bias correction."""

    def __init__(self, beta: float = BETA) -> None:
        self.beta = beta
        self.avg = 0.0
        self.count = 0

    def __call__(self, value: float) -> float:
        self.count += 1
        self.avg = self.beta * self.avg + (1 - self.beta) * value
        return self.avg / (1 - self.beta**self.count)


def smooth(values: np.ndarray | list[float], beta: float = BETA) -> np.ndarray:
    s = Smoother(beta)
    return np.array([s(float(v)) for v in values], dtype=np.float64)


def valley_index(losses: np.ndarray) -> int:
    """fastai's `valley`: the longest decreasing subsequence, and a point 1/2 along it."""
    n = len(losses)
    if n == 0:
        raise ValueError("no losses")
    lds = np.ones(n, dtype=np.int64)
    for i in range(1, n):
        higher = losses[:i] > losses[i]
        if higher.any():
            lds[i] = lds[:i][higher].max() + 1
    max_end = int(np.argmax(lds))
    max_start = max_end - int(lds[max_end])
    sections = (max_end - max_start) / 3
    idx = max_start + int(sections) + int(sections / 2)
    return min(max(idx, 0), n - 1)


@dataclass(frozen=True)
class Suggestion:
    """Rates read off a range test; see the module docstring for each one's rule."""

    peak: float
    peak_rule: str
    valley: float
    steepest: float
    min_loss: float
    triangular_high: float
    triangular_low: float
    high_rule: str
    acc_rise: float | None = None
    flat: tuple[float, float] | None = None
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def suggest(
    lrs: np.ndarray,
    smooth_loss: np.ndarray,
    smooth_acc: np.ndarray | None = None,
    skip_start: float = SKIP_START,
    skip_end: int = SKIP_END,
) -> Suggestion:
    """Suggestions from the smoothed curves of a range test (see the module docstring).

    `lrs[i]` is the rate of step i, `smooth_loss[i]` and `smooth_acc[i]` the smoothed loss and
    batch accuracy after it.
    """
    lrs = np.asarray(lrs, dtype=np.float64)
    loss = np.asarray(smooth_loss, dtype=np.float64)
    acc = None if smooth_acc is None else np.asarray(smooth_acc, dtype=np.float64)
    finite = np.flatnonzero(np.isfinite(loss))
    n = int(finite[-1]) + 1 if len(finite) else 0
    lo = int(n * skip_start)
    hi = n - skip_end
    notes = []
    if hi - lo < 5:
        lo, hi = 0, n
        notes.append(f"only {n} usable steps: suggestions use them all and are unreliable")
    if hi - lo < 3:
        raise ValueError(f"a range test needs at least 3 finite smoothed losses, got {n}")
    x, y = lrs[lo:hi], loss[lo:hi]
    slope = np.gradient(y, np.log(x))
    steepest = float(x[int(np.argmin(slope))])
    valley = float(x[valley_index(y)])
    i_min = int(np.argmin(y))
    min_loss = float(x[i_min])
    if i_min >= len(y) - 1:
        notes.append(
            "the smoothed loss was still falling at the last step: raise --max-lr or --steps"
        )
    high_rule = "lowest smoothed loss"
    high = min_loss
    acc_rise = None
    if acc is not None and np.isfinite(acc[lo:hi]).all():
        a = acc[lo:hi]
        i_acc = int(np.argmax(a))
        start, top = float(a[0]), float(a[i_acc])
        if top > start:
            # Smith: "when the accuracy slows, becomes ragged, or starts to fall". The argmax of
            # a flat, ragged plateau is noise, so read it as the rate at which the accuracy
            # has made ACC_SLOWS of its whole rise.
            slows = float(x[int(np.argmax(a >= start + ACC_SLOWS * (top - start)))])
            if slows <= min_loss:
                high, high_rule = slows, f"smoothed accuracy has made {ACC_SLOWS:.0%} of its rise"
            acc_rise = float(x[int(np.argmax(a > start + ACC_RISES * (top - start)))])
    within = np.flatnonzero(y <= y[i_min] + FLAT * abs(y[i_min]))
    flat = (float(x[within[0]]), float(x[within[-1]]))
    if flat[1] / flat[0] > 10:
        notes.append(
            f"the smoothed loss stays within {FLAT:.0%} of its lowest from lr {flat[0]:.3g} to "
            f"{flat[1]:.3g}: this probe cannot rank the rates in between (the lowest point "
            "among them is partly noise); a longer probe (more --steps) may separate them"
        )
    if slope.min() >= 0:
        notes.append("the smoothed loss never falls: lower --min-lr, or check the data")
    return Suggestion(
        peak=min_loss / PEAK_DIVISOR,
        peak_rule=f"lowest smoothed loss / {PEAK_DIVISOR:g}",
        valley=valley,
        steepest=steepest,
        min_loss=min_loss,
        triangular_high=high,
        triangular_low=high / LOW_DIVISOR,
        high_rule=high_rule,
        acc_rise=acc_rise,
        flat=flat,
        notes=notes,
    )


# --- the probe ----------------------------------------------------------------------------


@dataclass
class RangeTest:
    """The per-step record of a range test and why it ended."""

    lrs: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    smooth_losses: list[float] = field(default_factory=list)
    accs: list[float] = field(default_factory=list)
    smooth_accs: list[float] = field(default_factory=list)
    stop_reason: str = ""

    def __len__(self) -> int:
        return len(self.lrs)

    def rows(self) -> list[dict[str, float]]:
        return [
            {
                "step": i + 1,
                "lr": self.lrs[i],
                "loss": self.losses[i],
                "smooth_loss": self.smooth_losses[i],
                "acc": self.accs[i],
                "smooth_acc": self.smooth_accs[i],
            }
            for i in range(len(self))
        ]

    def suggest(self) -> Suggestion:
        return suggest(np.array(self.lrs), np.array(self.smooth_losses), np.array(self.smooth_accs))


def run_range_test(
    model,
    optimizer,
    data,
    *,
    min_lr: float = 1e-5,
    max_lr: float = 10.0,
    steps: int = 200,
    mode: str = "exp",
    batch_size: int = DEFAULT_BATCH_SIZE,
    seed: int = 0,
    autocast: Callable[[], Any] | None = None,
    beta: float = BETA,
    stop_factor: float = STOP_FACTOR,
    on_step: Callable[[int, int, float], None] | None = None,
) -> RangeTest:
    """Train `model` with a rising rate; `data` is a DeviceData. The model is left trained.

    One host sync per step (the loss is needed for the stop rule): fine for a probe. Stops
    early when the smoothed loss exceeds stop_factor x its best (0 disables that), or the loss
    is not finite.
    """
    from lrbench.train import train_step
    from lrbench.train.optim import for_training

    ramp = lr_ramp(min_lr, max_lr, steps, mode)
    dtype = next(model.parameters()).dtype
    ctx = autocast or nullcontext
    loss_avg, acc_avg = Smoother(beta), Smoother(beta)
    best = math.inf
    result = RangeTest()
    model.train()
    for_training(optimizer)
    epoch = 0
    while len(result) < steps and not result.stop_reason:
        for x, y in data.train_batches(seed, epoch, batch_size):
            i = len(result)
            lr = float(ramp[i])
            loss, out = train_step(model, optimizer, x, y, lr, None, ctx, dtype)
            value = float(loss.item())
            acc = float((out.argmax(1) == y).float().mean().item())
            result.lrs.append(lr)
            result.losses.append(value)
            result.accs.append(acc)
            s = loss_avg(value) if math.isfinite(value) else math.inf
            result.smooth_losses.append(s)
            result.smooth_accs.append(acc_avg(acc))
            if on_step:
                on_step(i + 1, steps, lr)
            if not math.isfinite(value):
                result.stop_reason = f"the loss is not finite at step {i + 1} (lr {lr:.3g})"
                break
            if stop_factor and i > 0 and s > stop_factor * best:
                result.stop_reason = (
                    f"the smoothed loss passed {stop_factor:g}x its best at step {i + 1} "
                    f"(lr {lr:.3g})"
                )
                break
            best = min(best, s)
            if len(result) >= steps:
                break
        epoch += 1
    if not result.stop_reason:
        result.stop_reason = f"all {steps} steps ran"
    return result


# --- the probe `lrbench lr-find` runs ----------------------------------------------------------


@dataclass(frozen=True)
class Ramp:
    """How the rate rises (from `min_lr` to `max_lr` over `steps` steps, `mode` exp or linear)
    and when the test stops early (the smoothed loss above `stop_factor` x its best; 0: never).
    Bad values are refused with the option that sets them."""

    min_lr: float = 1e-5
    max_lr: float = 10.0
    steps: int = 200
    mode: str = "exp"
    stop_factor: float = STOP_FACTOR

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise UserError(
                f"--mode {self.mode!r} is not valid; --mode accepts {' | '.join(MODES)}"
            )
        if not (math.isfinite(self.min_lr) and self.min_lr > 0):
            raise UserError(f"--min-lr must be a positive number, got {self.min_lr:g}")
        if not (math.isfinite(self.max_lr) and self.max_lr > self.min_lr):
            raise UserError(
                f"--max-lr must be above --min-lr ({self.min_lr:g}), got {self.max_lr:g}"
            )
        if not 10 <= self.steps <= MAX_STEPS:
            raise UserError(
                f"--steps must be at least 10 and at most {MAX_STEPS:,}, got {self.steps}"
            )
        if not (math.isfinite(self.stop_factor) and self.stop_factor >= 0):
            raise UserError(
                f"--stop-factor must be a number >= 0 (0: never stop), got {self.stop_factor:g}"
            )


@dataclass(frozen=True)
class Probe:
    """What a range test trains: `model`, initialised from `seed`, on `dataset` (its data order
    from `seed` too) with `optimizer`, whose rate the ramp sets at every step."""

    model: str
    dataset: DatasetSpec
    optimizer: OptimizerSpec
    ramp: Ramp = Ramp()
    batch_size: int = DEFAULT_BATCH_SIZE
    seed: int = 0

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= MAX_BATCH:
            raise UserError(f"--batch-size must be from 1 to {MAX_BATCH:,}, got {self.batch_size}")
        if not 0 <= self.seed < SEEDS_BELOW:
            raise UserError(f"--seed must be from 0 to {SEEDS_BELOW - 1:,}, got {self.seed}")

    def title(self) -> str:
        data, opt = self.dataset, self.optimizer
        images = f" ({data.limit_train} images)" if data.limit_train else ""
        return (
            f"LR range test: {self.model} on {data.display_name}{images}, "
            f"{opt.name} wd {opt.weight_decay:g}, batch {self.batch_size}, {self.ramp.mode} ramp"
        )


@dataclass(frozen=True)
class Found:
    """A range test's record and the rates read off it."""

    result: RangeTest
    suggestion: Suggestion


def find_lr(
    probe: Probe, runtime: Runtime, on_step: Callable[[int, int, float], None] | None = None
) -> Found:
    """Load the data, build the model as a run would, run the range test and read the
    suggestions; the model is thrown away. UserError when too few steps ran to suggest."""
    from lrbench.data import DeviceData, load_splits
    from lrbench.train import autocast_for, build_run_model, resolve_device, resolve_precision
    from lrbench.train.optim import build_optimizer

    device = resolve_device(runtime.device)
    precision = resolve_precision(runtime.precision, device)
    data = DeviceData(
        load_splits(probe.dataset, runtime.data_dir), device, channels_last=runtime.channels_last
    )
    net = build_run_model(
        probe.model, data.num_classes, probe.seed, device, precision, runtime.channels_last
    )
    result = run_range_test(
        net,
        build_optimizer(probe.optimizer, net.parameters()),
        data,
        batch_size=probe.batch_size,
        seed=probe.seed,
        autocast=autocast_for(precision, device),
        on_step=on_step,
        **asdict(probe.ramp),
    )
    if len(result) < 3:
        raise UserError(
            f"the range test stopped after {len(result)} step(s) ({result.stop_reason}); "
            "lower --min-lr"
        )
    try:
        return Found(result, result.suggest())
    except ValueError as err:
        raise UserError(f"no suggestion: {err}") from None


# --- output -------------------------------------------------------------------------------


def write_csv(result: RangeTest, path: Path) -> Path:
    with Path(path).open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in result.rows():
            writer.writerow({k: repr(v) if isinstance(v, float) else v for k, v in row.items()})
    return Path(path)


def read_csv(path: Path) -> RangeTest:
    result = RangeTest(stop_reason="read from " + str(path))
    with Path(path).open(newline="") as fh:
        for row in csv.DictReader(fh):
            result.lrs.append(float(row["lr"]))
            result.losses.append(float(row["loss"]))
            result.smooth_losses.append(float(row["smooth_loss"]))
            result.accs.append(float(row["acc"]))
            result.smooth_accs.append(float(row["smooth_acc"]))
    return result


def plot(
    result: RangeTest, sugg: Suggestion | None, path: Path, title: str = "", beta: float = BETA
) -> Path:
    """Loss against lr (log axis): raw per step (faint) and smoothed (bold), the smoothed batch
    accuracy on the right axis, and the suggestions as vertical lines."""
    from matplotlib.figure import Figure

    lrs = np.array(result.lrs)
    loss = np.array(result.losses)
    sm = np.array(result.smooth_losses)
    acc = np.array(result.smooth_accs)
    fig = Figure(figsize=(8.5, 5), layout="constrained", dpi=120)
    ax = fig.subplots()
    ax.plot(lrs, loss, color="tab:blue", alpha=0.25, lw=0.8, label="batch loss")
    ax.plot(lrs, sm, color="tab:blue", lw=2, label=f"smoothed loss (EMA β={beta:g})")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate (log scale)")
    ax.set_ylabel("training loss")
    finite = sm[np.isfinite(sm)]
    if len(finite):
        start = float(np.nanmax(finite[: max(1, len(finite) // 5)]))
        ax.set_ylim(max(0.0, float(finite.min()) * 0.85), start * 1.35)
    ax.grid(alpha=0.3, which="both")
    ax2 = ax.twinx()
    ax2.plot(lrs, 100 * acc, color="tab:green", ls="--", lw=1.2, label="smoothed batch accuracy")
    ax2.set_ylabel("batch accuracy (%)", color="tab:green")
    ax2.set_ylim(0, 100)
    if sugg is not None:
        marks = [
            (sugg.peak, "tab:red", "-", f"suggested peak {sugg.peak:.3g} ({sugg.peak_rule})"),
            (sugg.valley, "tab:orange", "--", f"fastai valley {sugg.valley:.3g}"),
            (sugg.steepest, "tab:orange", ":", f"steepest descent {sugg.steepest:.3g}"),
            (
                sugg.triangular_high,
                "tab:purple",
                "-.",
                f"triangular high {sugg.triangular_high:.3g}",
            ),
            (sugg.triangular_low, "tab:purple", ":", f"triangular low {sugg.triangular_low:.3g}"),
            (sugg.min_loss, "grey", "--", f"lowest smoothed loss {sugg.min_loss:.3g}"),
        ]
        for lr, colour, style, label in marks:
            ax.axvline(lr, color=colour, ls=style, lw=1.5, label=label)
        if sugg.flat is not None and sugg.flat[1] / sugg.flat[0] > 10:
            ax.axvspan(
                *sugg.flat, color="grey", alpha=0.08, label="smoothed loss within 5% of lowest"
            )
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize="small", loc="upper left")
    ax.set_title(title or "LR range test")
    fig.savefig(path)
    return Path(path)


def describe(result: RangeTest, sugg: Suggestion) -> str:
    """The lines `lrbench lr-find` prints."""
    lines = [
        f"range test: {len(result)} steps, lr {result.lrs[0]:.3g} -> {result.lrs[-1]:.3g}; "
        f"stopped: {result.stop_reason}",
        f"lowest smoothed loss at lr {sugg.min_loss:.3g}",
        f"suggested peak rate (onecycle peak; the rate of step/cosine/rex): {sugg.peak:.3g}"
        f"  [{sugg.peak_rule}]",
        f"  for comparison: fastai valley {sugg.valley:.3g}, steepest descent {sugg.steepest:.3g}",
        f"triangular bounds (Smith): high {sugg.triangular_high:.3g} ({sugg.high_rule}), "
        f"low {sugg.triangular_low:.3g} (high/{LOW_DIVISOR:g})"
        + (f"; accuracy starts rising at {sugg.acc_rise:.3g}" if sugg.acc_rise else ""),
        f"  e.g. --schedule onecycle --lr {sugg.peak:.2g}   or   --schedule triangular "
        f"--lr {sugg.triangular_high:.2g} --set low={1 / LOW_DIVISOR:g}",
    ]
    lines += [f"note: {n}" for n in sugg.notes]
    return "\n".join(lines)
