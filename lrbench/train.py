"""The training loop: a run spec in, a run folder out (DESIGN.md, "Results on disk").

Every sweep, `lrbench run` and the benchmark go through `train_run`. The rate table is computed
once from the pure schedule; the data order and augmentation of an epoch are a pure function of
(seed, epoch); so a checkpoint of model + optimizer + step is all that exact resume needs.
"""

from __future__ import annotations

import io
import itertools
import math
import time
import traceback
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from lrbench import __version__
from lrbench.data import DeviceData, load_splits
from lrbench.errors import RunFailed, UserError
from lrbench.models import build_model
from lrbench.optim import (
    build_optimizer,
    current_momentum,
    for_evaluation,
    for_training,
    set_hparams,
)
from lrbench.reactive import Reactions
from lrbench.results import RunDir, atomic_write_bytes, atomic_write_json, metric_columns, read_json
from lrbench.schedules import build_schedule
from lrbench.snapshots import SnapshotEnsemble, predict_probs, snapshot_steps, split_labels
from lrbench.specs import RunSpec

BN_RECOMPUTE_BATCHES = 16  # schedule-free: BatchNorm statistics re-estimated at the averaged x
ENSEMBLE_COLUMNS = ["ensemble_size", "ensemble_test_acc"]
PRECISIONS = ("auto", "fp32", "bf16", "fp64")


@dataclass(frozen=True)
class Runtime:
    """How a run executes; none of it changes which run it is (not hashed into the run id)."""

    device: str = "auto"
    precision: str = "auto"
    channels_last: bool = True
    data_dir: str | None = None


@dataclass
class Event:
    """Progress reported to a display: one per step (cheap) and one per finished epoch."""

    kind: str
    epoch: int
    epochs: int
    step: int
    total_steps: int
    row: dict[str, Any] | None = None
    images_per_s: float | None = None


Callback = Callable[[Event], None]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise UserError(f"--device: {name!r} is not a device (auto, cpu, cuda, cuda:N)") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine")
    return device


def resolve_precision(precision: str, device: torch.device) -> str:
    if precision not in PRECISIONS:
        raise UserError(f"--precision: {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        return "bf16" if device.type == "cuda" else "fp32"
    return precision


def param_dtype(precision: str) -> torch.dtype:
    """The weights' dtype: float64 for fp64, else float32 (bf16 autocasts over float32 weights)."""
    return torch.float64 if precision == "fp64" else torch.float32


def autocast_for(precision: str, device: torch.device) -> Callable[[], Any]:
    """A factory of the context every forward pass runs in: bf16 autocast, or nothing."""
    if precision == "bf16":
        return lambda: torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext


def build_run_model(
    name: str,
    num_classes: int,
    seed: int,
    device: torch.device,
    precision: str,
    channels_last: bool,
) -> torch.nn.Module:
    """The model a run trains: initialised from `seed`, on `device` in the run's dtype and memory
    format. The one place that decides it, so a run, a pack's member and a probe start alike."""
    torch.manual_seed(seed)
    model = build_model(name, num_classes).to(device=device, dtype=param_dtype(precision))
    return model.to(memory_format=torch.channels_last) if channels_last else model


def spec_record(spec: RunSpec, steps_per_epoch: int, device: torch.device, precision: str) -> dict:
    return {
        "run_id": spec.run_id,
        **spec.model_dump(mode="json"),
        "steps_per_epoch": steps_per_epoch,
        "total_steps": steps_per_epoch * spec.epochs,
        "provenance": {
            "lrbench": __version__,
            "torch": torch.__version__,
            "device": str(device),
            "precision": precision,
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
    }


def claim_run_dir(spec: RunSpec, run: RunDir) -> None:
    """Refuse a folder that holds a different run: its files must never be overwritten."""
    if not run.spec.exists():
        if run.path.exists() and any(p.name != ".lock" for p in run.path.iterdir()):
            raise UserError(f"{run.path} is not empty and holds no spec.json: choose another --out")
        return
    try:
        stored = read_json(run.spec)
        same = RunSpec.model_validate({k: stored[k] for k in RunSpec.model_fields if k in stored})
    except Exception as err:
        raise UserError(f"{run.spec} is unreadable ({err}); move the folder away") from err
    if same != spec:
        raise UserError(
            f"{run.path} holds a different run ({stored.get('run_id')}); choose another --out"
        )


def save_checkpoint(run: RunDir, model, optimizer, epoch: int, step: int, extra: dict) -> None:
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "epoch": epoch,
        "step": step,
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        **extra,
    }
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(run.checkpoint, buf.getvalue())


def load_checkpoint(run: RunDir, model, optimizer, device: torch.device) -> dict:
    try:
        state = torch.load(run.checkpoint, map_location=device, weights_only=False)
    except Exception as err:
        raise UserError(f"{run.checkpoint} is unreadable ({err}); delete it to restart") from err
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"].cpu())
    if state.get("cuda_rng") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda_rng"]])
    return state


@torch.no_grad()
def evaluate(model, data: DeviceData, split: str, autocast) -> tuple[float, float]:
    """Mean loss and accuracy over a split: one host sync at the end, not per batch. The loss
    is taken in the parameters' dtype (float32 under bf16 autocast), as in training."""
    model.eval()
    loss_sum = torch.zeros((), device=data.device, dtype=torch.float64)
    correct = torch.zeros((), device=data.device, dtype=torch.int64)
    n = 0
    dtype = next(model.parameters()).dtype
    for x, y in data.eval_batches(split):
        with autocast():
            out = model(x.to(dtype))
        loss_sum += F.cross_entropy(out.to(dtype), y, reduction="sum")
        correct += (out.argmax(1) == y).sum()
        n += len(y)
    model.train()
    return loss_sum.item() / n, correct.item() / n


def train_step(model, optimizer, x, y, lr: float, momentum: float | None, autocast, dtype):
    """One optimizer step at this rate (and momentum); returns the loss and the logits.

    No host sync: the caller accumulates the loss and accuracy on the device.
    """
    set_hparams(optimizer, lr, momentum)
    with autocast():
        out = model(x.to(dtype))
        loss = F.cross_entropy(out.to(dtype), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss, out


def train_run(
    spec: RunSpec,
    run_dir: Path,
    runtime: Runtime = Runtime(),
    on_event: Callback | None = None,
    data: DeviceData | None = None,
) -> dict:
    """Train (or resume, or skip) one run and return its summary.json content."""
    run = RunDir(Path(run_dir))
    claim_run_dir(spec, run)
    if run.summary.exists() and run.status() in ("done", "diverged"):
        return read_json(run.summary)
    device = resolve_device(runtime.device)
    precision = resolve_precision(runtime.precision, device)
    schedule = build_schedule(spec.schedule)
    if data is None:
        splits = load_splits(spec.dataset, runtime.data_dir)
        data = DeviceData(splits, device, channels_last=runtime.channels_last)
    run.path.mkdir(parents=True, exist_ok=True)
    run.summary.unlink(missing_ok=True)
    if not run.checkpoint.exists():
        spe = data.steps_per_epoch(spec.batch_size)
        atomic_write_json(run.spec, spec_record(spec, spe, device, precision))
    try:
        return _train(spec, run, runtime, schedule, data, device, precision, on_event)
    except (KeyboardInterrupt, UserError):
        raise
    except Exception as err:
        run.log.write_text(traceback.format_exc())
        atomic_write_json(
            run.summary, {"status": "failed", "error": f"{type(err).__name__}: {err}"}
        )
        raise RunFailed(f"run {spec.run_id} failed: {err} (traceback in {run.log})") from err


def _train(spec, run, runtime, schedule, data, device, precision, on_event) -> dict:
    dtype = param_dtype(precision)
    spe = data.steps_per_epoch(spec.batch_size)
    total = spe * spec.epochs
    lrs = (spec.optimizer.lr * schedule.multipliers(total, spe)).tolist()
    moms = schedule.momenta(total, spe)
    moms = moms.tolist() if moms is not None else None
    react = Reactions(spec, schedule, spe)
    snapshots = set(snapshot_steps(schedule, total, spe)) if spec.snapshots else set()
    ensemble = SnapshotEnsemble()

    model = build_run_model(spec.model, data.num_classes, spec.seed, device, precision,
                            runtime.channels_last)  # fmt: skip
    optimizer = build_optimizer(spec.optimizer, model.parameters())
    autocast = autocast_for(precision, device)

    start_epoch, step, wall_before = 0, 0, 0.0
    if run.checkpoint.exists():
        state = load_checkpoint(run, model, optimizer, device)
        start_epoch, step = state["epoch"], state["step"]
        wall_before = state.get("wall_time_s", 0.0)
        react.restore(state)
        ensemble.load_state_dict(state.get("ensemble", {}), device)
    run.truncate_metrics(start_epoch)
    columns = metric_columns(data.has_val) + (ENSEMBLE_COLUMNS if spec.snapshots else [])
    status, t_run = "done", time.perf_counter()
    row: dict[str, Any] = run.last_metrics_row() if start_epoch else {}

    for epoch in range(start_epoch, spec.epochs):
        if react.stopped_epoch:
            break
        t0 = time.perf_counter()
        loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        correct = torch.zeros((), device=device, dtype=torch.int64)
        seen, snapshots_before = 0, ensemble.count
        model.train()
        for_training(optimizer)
        for x, y in data.train_batches(spec.seed, epoch, spec.batch_size):
            lr, momentum = lrs[step] * react.lr_scale, moms[step] if moms else None
            loss, out = train_step(model, optimizer, x, y, lr, momentum, autocast, dtype)
            loss_sum += loss.detach() * len(y)
            correct += (out.argmax(1) == y).sum()
            seen += len(y)
            step += 1
            if step in snapshots:
                for_evaluation(optimizer)
                ensemble.add(predict_probs(model, data, "test", autocast))
                for_training(optimizer)
            if on_event:
                on_event(Event("step", epoch + 1, spec.epochs, step, total))

        train_loss = loss_sum.item() / seen
        row = {
            "epoch": epoch + 1,
            "step": step,
            "lr": lrs[step - 1] * react.lr_scale,
            "momentum": moms[step - 1] if moms else current_momentum(optimizer),
            "train_loss": train_loss,
            "train_acc": correct.item() / seen,
        }
        if not math.isfinite(train_loss):
            status = "diverged"
            row.update(test_loss=math.nan, test_acc=math.nan)
        else:
            bn_batches = itertools.islice(
                data.train_batches(spec.seed, epoch, spec.batch_size), BN_RECOMPUTE_BATCHES
            )
            for_evaluation(optimizer, model, bn_batches)
            row["test_loss"], row["test_acc"] = evaluate(model, data, "test", autocast)
            if data.has_val:
                row["val_loss"], row["val_acc"] = evaluate(model, data, "val", autocast)
            if ensemble.count > snapshots_before:
                row["ensemble_size"] = ensemble.count
                row["ensemble_test_acc"] = ensemble.accuracy(split_labels(data, "test"))
        row["epoch_time_s"] = time.perf_counter() - t0
        run.append_metrics(row, columns)
        if on_event:
            ips = seen / row["epoch_time_s"]
            on_event(Event("epoch", epoch + 1, spec.epochs, step, total, row, ips))
        if status == "diverged":
            break
        react.after_epoch(epoch + 1, row)
        wall = wall_before + time.perf_counter() - t_run
        extra = {"wall_time_s": wall, "ensemble": ensemble.state_dict(), **react.state()}
        save_checkpoint(run, model, optimizer, epoch + 1, step, extra)

    summary = {
        "status": status,
        "epochs_completed": int(row.get("epoch", spec.epochs)),
        "final": {k: row.get(k) for k in ("test_acc", "test_loss", "val_acc", "val_loss")},
        "wall_time_s": wall_before + time.perf_counter() - t_run,
        "stopped_early": react.stopped_epoch is not None,
        "stopped_epoch": react.stopped_epoch,
    }
    atomic_write_json(run.summary, summary)
    return summary
