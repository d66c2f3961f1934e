"""Train several compatible runs as one packed network: `train_pack` and `plan_packs`.

Runs that share the model, dataset, optimizer (all but the rate), batch size and epochs differ
only in schedule, seed and rate: they train in lockstep, so they can share every kernel launch.
`train_pack` trains them as one PackedResNet (lrbench.packed.models) with a fused per-model
optimizer step (lrbench.packed.optim), each model on exactly the batches its single run would
draw (lrbench.packed.data), and writes every run's own folder exactly as `train_run` does:
spec.json, metrics.csv (same columns; epoch_time_s is the pack's epoch time), summary.json and a
checkpoint.pt that holds that model's slice in `train_run`'s own format (so a packed run can be
resumed unpacked, and the other way round).

Slots. A pack's slots are the specs as given, in order, for its whole life: finished or
diverged runs stay in their slot as passengers (rate 0, nothing written), because in float32
the kernels' blocking depends on G, and keeping G fixed is what makes resume bit-exact.

Resume. Each run resumes from its own checkpoint. Runs normally stand at the same epoch; a
kill -9 between two runs' checkpoint writes leaves some one epoch ahead, and then the laggards
train (the others riding as passengers) until they catch up, and all go on together.

Divergence. A model whose step loss is non-finite is frozen from that step (its rate becomes 0,
on the device: no host sync); at the epoch's end it is recorded as `diverged` with the same row
`train_run` writes, its folder is finished, and the others go on.

Cost of one step, whatever G is: ~10 ops to draw the G batches, the packed forward/backward,
~10 whole-buffer ops for the optimizer. Loss and accuracy are accumulated on the device; the
host syncs once per epoch.

Exactness. How the G models run is `impl` (lrbench.packed.models.IMPLS): on CUDA `grouped`
(every layer holds all G models: grouped convolutions, BatchNorm over G*C channels, one batched
matmul head), on the CPU `loop` (each model's layers in turn, on views of the packed
parameters; the CPU's grouped kernels cost ~2x per model). In float64 both equal the unpacked
`train_run` twin to rounding (tests: 0 difference after 200 steps). In float32 `loop` runs the
twin's own kernels and is bit-identical; `grouped` sums in another order (a grouped convolution
blocks its reductions per group differently, the batched head's weight gradient is a bmm, not an
mm), so it differs by float32 rounding from the first backward on, which training amplifies like
any change of summation order (measured in tests/test_packed.py and benchmarks/README.md).
"""

from __future__ import annotations

import json
import math
import os
import time
import traceback
import warnings
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lrbench.data import DeviceData, load_splits
from lrbench.errors import RunFailed, UserError
from lrbench.models import build_model
from lrbench.optim import build_optimizer, set_hparams
from lrbench.packed.data import PackEpoch, pack_eval_input
from lrbench.packed.models import (
    PackedResNet,
    member_view,
    owner_index,
    packed_forward,
    resolve_impl,
)
from lrbench.packed.optim import PackedOptimizer
from lrbench.reactive import Reactions
from lrbench.results import RunDir, atomic_write_json, metric_columns, read_json
from lrbench.schedules import build_schedule
from lrbench.specs import RunSpec
from lrbench.train import (
    Callback,
    Event,
    Runtime,
    autocast_for,
    claim_run_dir,
    param_dtype,
    resolve_device,
    resolve_precision,
    save_checkpoint,
    spec_record,
    train_run,
)

COMPILE_ENV = "LRBENCH_COMPILE"  # off | default | reduce-overhead | max-autotune-no-cudagraphs
COMPILE_DEFAULT = "default"
PACKED_OPTIMIZERS = ("sgd", "adam", "adamw")


# --- which runs can share a pack ------------------------------------------------------------


def pack_key(spec: RunSpec) -> str:
    """Everything two runs must share to train in one pack (schedule, seed and rate may differ)."""
    optimizer = spec.optimizer.model_dump(mode="json")
    optimizer.pop("lr")
    key = {
        "model": spec.model,
        "dataset": spec.dataset.model_dump(mode="json"),
        "optimizer": optimizer,
        "batch_size": spec.batch_size,
        "epochs": spec.epochs,
        "early_stop": spec.early_stop,
        "snapshots": spec.snapshots,
    }
    return json.dumps(key, sort_keys=True)


def plan_packs(specs: Sequence[RunSpec], max_pack: int) -> list[list[RunSpec]]:
    """Group compatible runs into packs of at most `max_pack`, in first-seen order.

    Runs that cannot share a pack (see `unpackable_reason`: schedule-free optimizers, plateau,
    early stopping, snapshots) come back as packs of one, which `train_pack` hands to
    `train_run`. A group of n runs becomes ceil(n / max_pack) packs of near-equal size (10 runs, max 8:
    5 + 5, not 8 + 2), so no pack is left nearly empty. The plan depends only on the list, not
    on what has finished, so a resumed sweep forms the same packs (which bit-exact resume needs).
    """
    if max_pack < 1:
        raise UserError(f"--pack must be at least 1, got {max_pack}")
    groups: dict[str, list[RunSpec]] = {}
    for i, spec in enumerate(specs):
        key = f"alone:{i}" if unpackable_reason(spec) else pack_key(spec)
        groups.setdefault(key, []).append(spec)
    packs: list[list[RunSpec]] = []
    for members in groups.values():
        count = -(-len(members) // max_pack)
        size, extra = divmod(len(members), count)
        start = 0
        for i in range(count):
            end = start + size + (1 if i < extra else 0)
            packs.append(members[start:end])
            start = end
    return packs


def unpackable_reason(spec: RunSpec) -> str | None:
    """Why `spec` must train alone (train_run), or None when it can share a pack."""
    if spec.optimizer.name not in PACKED_OPTIMIZERS:
        return f"optimizer {spec.optimizer.name} (packs support {', '.join(PACKED_OPTIMIZERS)})"
    if build_schedule(spec.schedule).reactive:
        return f"schedule {spec.schedule.get('name')} reacts to metrics"
    if spec.early_stop:
        return "early stopping"
    if spec.snapshots:
        return "snapshots"
    return None


def check_packable(specs: Sequence[RunSpec]) -> None:
    if not specs:
        raise UserError("a pack needs at least one run")
    for spec in specs:
        if len(specs) > 1 and (why := unpackable_reason(spec)):
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


# --- the packed step ------------------------------------------------------------------------


def per_model_loss(
    out: torch.Tensor,
    y: torch.Tensor,
    dtype: torch.dtype,
    reduction: str = "mean",
    exact: bool = True,
) -> torch.Tensor:
    """[G] losses: model g's `F.cross_entropy(out_g.to(dtype), y_g)`, as train.py computes it.

    `exact`: one call per model, so that each loss is bit-identical to its unpacked twin's (a
    mean over another shape sums in another order): what the CPU's `loop` layers need. Else one
    call for all G models (the `grouped` layers, already rounding differently): 6 kernels a step
    instead of 6G, which is what eager mode (and the pack-size measurement) pays for.
    """
    logits = out.to(dtype)
    if not exact:
        g, b = y.shape
        each = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(g, b)
        return each.sum(1) if reduction == "sum" else each.mean(1)
    return torch.stack(
        [
            F.cross_entropy(o, t, reduction=reduction)
            for o, t in zip(logits.unbind(0), y.unbind(0), strict=True)
        ]
    )


def _exact(layout, device: torch.device) -> bool:
    return resolve_impl(layout.impl, device) == "loop"


def _forward_loss(layout, flat, stats, tracked, x, y):
    out = packed_forward(layout, flat, stats, tracked, x, True)
    return out, per_model_loss(out, y, flat.dtype, exact=_exact(layout, x.device))


_COMPILED: dict[str, Any] = {}


def compile_mode() -> str | None:
    mode = os.environ.get(COMPILE_ENV, COMPILE_DEFAULT).strip().lower()
    return None if mode in ("", "0", "off", "none", "false", "no") else mode


def _compiled(name: str, fn, mode: str):
    """torch.compile'd `fn`, once per process (not per run or pack): packs of the same layout
    reuse the compiled code; a new layout (another G or model) is one more guarded variant."""
    key = f"{name}:{mode}"
    if key not in _COMPILED:
        import torch._dynamo

        for limit in ("recompile_limit", "cache_size_limit"):  # the name changed across versions
            if hasattr(torch._dynamo.config, limit):
                setattr(torch._dynamo.config, limit, max(getattr(torch._dynamo.config, limit), 64))
        # static shapes: the last, short batch of an epoch gets its own variant instead of
        # turning every step's graph dynamic
        _COMPILED[key] = torch.compile(fn, mode=None if mode == "default" else mode, dynamic=False)
    return _COMPILED[key]


class PackTrainer:
    """One packed model and its fused optimizer: `step` is the unit both train_pack and the
    benchmark time. The forward+loss and the optimizer step go through torch.compile in mode
    `compile` ("auto": $LRBENCH_COMPILE, default 'default' on CUDA and off on the CPU; None:
    eager); a compiler failure falls back to eager with a warning."""

    def __init__(
        self,
        model: PackedResNet,
        optimizer: PackedOptimizer,
        device: torch.device,
        precision: str,
        compile: str | None = "auto",
    ) -> None:
        self.model = model
        self.optimizer = optimizer
        self.device = device
        self.precision = precision
        self.dtype = param_dtype(precision)
        self.autocast = autocast_for(precision, device)
        self.forward_loss = _forward_loss
        self.eager_update = optimizer.update_fn
        self.compiled: str | None = None
        self.proven = False
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # picks the fastest grouped-conv algorithms
        if compile == "auto":  # the CPU compiles only when asked to ($LRBENCH_COMPILE set)
            asked = COMPILE_ENV in os.environ
            compile = compile_mode() if device.type == "cuda" or asked else None
        if compile:
            self.forward_loss = _compiled("forward_loss", _forward_loss, compile)
            optimizer.update_fn = _compiled(self.eager_update.__name__, self.eager_update, compile)
            self.compiled = compile

    def step(
        self, x: torch.Tensor, y: torch.Tensor, t: int, active: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimizer step of every model; returns ([G] losses, [G] correct), on the device.

        `active` [G] bool is updated in place: a model whose loss is non-finite is frozen before
        this step's update (no host sync).
        """
        if self.compiled and not self.proven:
            try:
                result = self._step(x, y, t, active)
            except Exception as err:  # a compiler failure must not cost the runs: go eager
                warnings.warn(
                    f"torch.compile ({self.compiled}) failed, training eagerly: "
                    f"{type(err).__name__}: {err}",
                    stacklevel=2,
                )
                self.forward_loss, self.optimizer.update_fn = _forward_loss, self.eager_update
                self.compiled = None
                result = self._step(x, y, t, active)
            self.proven = True
            return result
        return self._step(x, y, t, active)

    def _step(self, x, y, t, active):
        m = self.model
        with self.autocast():
            out, losses = self.forward_loss(
                m.layout, m.flat, m.stats(), m.num_batches_tracked, x.to(self.dtype), y
            )
        m.flat.grad = None
        losses.sum().backward()
        active &= torch.isfinite(losses.detach())
        self.optimizer.step(m.flat.grad, t, active)
        return losses.detach(), (out.argmax(-1) == y).sum(1)

    @torch.no_grad()
    def evaluate(self, data: DeviceData, split: str) -> tuple[list[float], list[float]]:
        """Per-model mean loss and accuracy over a split, as train.py's `evaluate` computes them."""
        m = self.model
        g = m.groups
        m.eval()
        loss_sum = torch.zeros(g, device=data.device, dtype=torch.float64)
        correct = torch.zeros(g, device=data.device, dtype=torch.int64)
        n = 0
        exact = _exact(m.layout, self.device)
        for x, y in data.eval_batches(split):
            xp = pack_eval_input(x, g, data.channels_last).to(self.dtype)
            yp = y.expand(g, -1)
            with self.autocast():
                out = m(xp)
            # train.py's evaluate: F.cross_entropy(out.to(dtype), y, reduction="sum")
            loss_sum += per_model_loss(out, yp, self.dtype, reduction="sum", exact=exact)
            correct += (out.argmax(-1) == yp).sum(1)
            n += len(y)
        m.train()
        return [v / n for v in loss_sum.tolist()], [c / n for c in correct.tolist()]


# --- train_pack ------------------------------------------------------------------------------


@dataclass
class _Member:
    slot: int
    spec: RunSpec
    run: RunDir
    lrs: np.ndarray  # [T]
    moms: np.ndarray | None  # [T]
    state: dict | None = None  # checkpoint content
    start: int = 0  # epoch to resume at
    wall_before: float = 0.0
    row: dict[str, Any] = field(default_factory=dict)


def train_pack(
    specs: Sequence[RunSpec],
    run_dirs: Sequence[Path],
    runtime: Runtime = Runtime(),
    on_event: Callback | None = None,
    data: DeviceData | None = None,
    *,
    impl: str = "auto",
) -> list[dict]:
    """Train (or resume, or skip) compatible runs as one pack; return their summaries, in order.

    `impl` picks how the models run (lrbench.packed.models.IMPLS): `auto` is grouped layers on
    CUDA and a loop over the models on the CPU.

    Each run's folder ends up as `train_run(spec, run_dir)` would leave it. Raises UserError for
    runs that cannot share a pack (see `plan_packs`) or folders that hold other runs, and
    RunFailed (after writing summary.json `failed` and run.log in every unfinished folder) when
    training fails.
    """
    specs = list(specs)
    if len(specs) != len(run_dirs):
        raise ValueError(f"{len(specs)} specs but {len(run_dirs)} run folders")
    check_packable(specs)
    if len(specs) == 1 and unpackable_reason(specs[0]):
        return [train_run(specs[0], Path(run_dirs[0]), runtime, on_event, data)]
    runs = [RunDir(Path(p)) for p in run_dirs]
    if len({r.path.resolve() for r in runs}) != len(runs):
        raise UserError("two runs of a pack share one run folder")
    for spec, run in zip(specs, runs, strict=True):
        claim_run_dir(spec, run)
    results: list[dict | None] = [None] * len(specs)
    for i, run in enumerate(runs):
        if run.summary.exists() and run.status() in ("done", "diverged"):
            results[i] = read_json(run.summary)
    if all(r is not None for r in results):
        return results  # type: ignore[return-value]

    device = resolve_device(runtime.device)
    precision = resolve_precision(runtime.precision, device)
    if data is None:
        data = DeviceData(load_splits(specs[0].dataset, runtime.data_dir), device,
                          channels_last=runtime.channels_last)  # fmt: skip
    spe = data.steps_per_epoch(specs[0].batch_size)
    total = spe * specs[0].epochs
    members = []
    for i, (spec, run) in enumerate(zip(specs, runs, strict=True)):
        schedule = build_schedule(spec.schedule)
        member = _Member(i, spec, run, spec.optimizer.lr * schedule.multipliers(total, spe),
                         schedule.momenta(total, spe))  # fmt: skip
        members.append(member)
        if results[i] is not None:
            continue
        run.path.mkdir(parents=True, exist_ok=True)
        run.summary.unlink(missing_ok=True)
        if run.checkpoint.exists():
            member.state = _read_checkpoint(run)
            member.start = int(member.state["epoch"])
            member.wall_before = float(member.state.get("wall_time_s", 0.0))
        else:
            atomic_write_json(run.spec, spec_record(spec, spe, device, precision))
    pending = [m for m in members if results[m.slot] is None]
    ctx = _Ctx(members, results, runtime, data, device, precision, on_event, spe, impl)
    try:
        _train(ctx, pending)
    except (KeyboardInterrupt, UserError):
        raise
    except Exception as err:
        tb = traceback.format_exc()
        unfinished = [m for m in pending if results[m.slot] is None]
        for m in unfinished:
            m.run.log.write_text(tb)
            atomic_write_json(
                m.run.summary, {"status": "failed", "error": f"{type(err).__name__}: {err}"}
            )
        where = unfinished[0].run.log if unfinished else "the run folders"
        raise RunFailed(
            f"pack of {len(specs)} runs ({specs[0].run_id}, ...) failed: {err} "
            f"(traceback in {where})"
        ) from err
    return results  # type: ignore[return-value]


def _read_checkpoint(run: RunDir) -> dict:
    try:
        return torch.load(run.checkpoint, map_location="cpu", weights_only=False)
    except Exception as err:
        raise UserError(f"{run.checkpoint} is unreadable ({err}); delete it to restart") from err


@dataclass
class _Ctx:
    members: list[_Member]
    results: list[dict | None]
    runtime: Runtime
    data: DeviceData
    device: torch.device
    precision: str
    on_event: Callback | None
    spe: int
    impl: str

    @property
    def epochs(self) -> int:
        return self.members[0].spec.epochs


def _train(ctx: _Ctx, pending: list[_Member]) -> None:
    """Phases until every run is finished: each trains the runs at the earliest epoch up to the
    next epoch some other run stands at (normally: all of them, to the end)."""
    results, epochs = ctx.results, ctx.epochs
    while pending:
        for m in [m for m in pending if m.start >= epochs]:  # killed before its summary
            m.row = m.run.last_metrics_row()
            results[m.slot] = _finish(m, "done", time.perf_counter())
        pending = [m for m in pending if results[m.slot] is None]
        if not pending:
            return
        start = min(m.start for m in pending)
        trainees = [m for m in pending if m.start == start]
        later = [m.start for m in pending if m.start > start]
        stop = min(later) if later else epochs
        _phase(ctx, trainees, start, stop)
        for m in trainees:
            m.start = stop
        pending = [m for m in pending if results[m.slot] is None]


def _build(ctx: _Ctx, trainees: list[_Member]) -> tuple[PackedResNet, PackedOptimizer]:
    """The packed model and optimizer: trainees from their checkpoints (or fresh), passengers
    (finished or ahead) fresh from their seed: only G and their slots matter for the others."""
    members, data, device = ctx.members, ctx.data, ctx.device
    spec0 = members[0].spec
    g = len(members)
    dtype = param_dtype(ctx.precision)
    model = PackedResNet(spec0.model, data.num_classes, g, ctx.runtime.channels_last, ctx.impl)
    training = {m.slot for m in trainees}
    for m in members:
        if m.slot in training and m.state is not None:
            model.load_member(m.slot, m.state["model"])
        else:
            torch.manual_seed(m.spec.seed)
            model.load_member(m.slot, build_model(spec0.model, data.num_classes).state_dict())
    model = model.to(device=device, dtype=dtype)
    lrs = np.stack([m.lrs for m in members], 1)
    moms = None
    if any(m.moms is not None for m in members):
        opt = spec0.optimizer
        base = opt.betas[0] if opt.name in ("adam", "adamw") else opt.momentum
        moms = np.stack([m.moms if m.moms is not None else np.full(len(m.lrs), base)
                         for m in members], 1)  # fmt: skip
    optimizer = PackedOptimizer(spec0.optimizer, model.flat, owner_index(model.layout, device),
                                lrs, moms)  # fmt: skip
    for m in trainees:
        if m.state is not None:
            _load_optimizer_state(model, optimizer, m.slot, m.state["optimizer"])
    return model, optimizer


def _load_optimizer_state(model: PackedResNet, optimizer: PackedOptimizer, g: int, sd: dict):
    """torch.optim's per-parameter state of model g (its checkpoint) into the flat buffers."""
    with torch.no_grad():
        for i, slot in enumerate(model.layout.params):
            for name, value in sd["state"].get(i, {}).items():
                if name in optimizer.state:
                    member_view(model.layout, optimizer.state[name], slot, g).copy_(value)


def _phase(ctx: _Ctx, trainees: list[_Member], start: int, stop: int) -> None:
    """Train `trainees` (the others ride along as passengers) from epoch `start` to `stop`."""
    t_run = time.perf_counter()
    model, optimizer = _build(ctx, trainees)
    trainer = PackTrainer(model, optimizer, ctx.device, ctx.precision)
    live = list(trainees)
    active = torch.zeros(len(ctx.members), dtype=torch.bool, device=ctx.device)
    active[[m.slot for m in live]] = True
    templates = {
        m.slot: _Template(m.spec, ctx.data.num_classes, ctx.precision, ctx.runtime, ctx.spe)
        for m in live
    }
    for m in live:
        m.run.truncate_metrics(start)
        m.row = m.run.last_metrics_row() if start else {}
    with _CheckpointWriter() as writer:
        live = _epochs(ctx, trainer, templates, writer, live, active, start, stop, t_run)
    for m in live:
        if stop == ctx.epochs:
            ctx.results[m.slot] = _finish(m, "done", t_run)
        else:  # a catch-up phase: the next phase reloads from the checkpoints just written
            m.state = _read_checkpoint(m.run)
            m.wall_before = float(m.state.get("wall_time_s", 0.0))


def _epochs(ctx, trainer, templates, writer, live, active, start, stop, t_run) -> list[_Member]:
    """Epochs `start`..`stop` of the pack; returns the members still live (not diverged)."""
    members, results, data, device = ctx.members, ctx.results, ctx.data, ctx.device
    on_event, spe, epochs = ctx.on_event, ctx.spe, ctx.epochs
    model, optimizer = trainer.model, trainer.optimizer
    g, total = len(members), spe * epochs
    batch_size = members[0].spec.batch_size
    seeds = [m.spec.seed for m in members]
    columns = metric_columns(data.has_val)
    step = start * spe
    for epoch in range(start, stop):
        t0 = time.perf_counter()
        loss_sum = torch.zeros(g, device=device, dtype=torch.float64)
        correct = torch.zeros(g, device=device, dtype=torch.int64)
        seen = 0
        for x, y in PackEpoch(data, seeds, epoch, batch_size):
            losses, right = trainer.step(x, y, step, active)
            loss_sum += losses * y.shape[1]
            correct += right
            seen += y.shape[1]
            step += 1
            if on_event:
                on_event(Event("step", epoch + 1, epochs, step, total))
        sums, rights = loss_sum.tolist(), correct.tolist()  # the epoch's one sync
        rows = {}
        for m in live:
            train_loss = sums[m.slot] / seen
            rows[m.slot] = {
                "epoch": epoch + 1,
                "step": step,
                "lr": float(m.lrs[step - 1]),
                "momentum": _momentum(m, step),
                "train_loss": train_loss,
                "train_acc": rights[m.slot] / seen,
            }
        finite = [m for m in live if math.isfinite(rows[m.slot]["train_loss"])]
        if finite:
            for split, prefix in (("test", "test"), ("val", "val")):
                if split == "val" and not data.has_val:
                    continue
                losses_e, accs = trainer.evaluate(data, split)
                for m in finite:
                    rows[m.slot][f"{prefix}_loss"] = losses_e[m.slot]
                    rows[m.slot][f"{prefix}_acc"] = accs[m.slot]
        epoch_time = time.perf_counter() - t0
        for m in live:
            row = rows[m.slot]
            if m not in finite:
                row.update(test_loss=math.nan, test_acc=math.nan)
            row["epoch_time_s"] = epoch_time
            m.run.append_metrics(row, columns)
            m.row = row
            if on_event:
                ev_row = {**row, "run_id": m.spec.run_id}
                on_event(Event("epoch", epoch + 1, epochs, step, total, ev_row, seen / epoch_time))
        for m in [m for m in live if m not in finite]:
            active[m.slot] = False
            results[m.slot] = _finish(m, "diverged", t_run)
        live = finite
        if not live:
            break
        snapshot = (model.snapshot(), optimizer.snapshot())
        walls = [m.wall_before + time.perf_counter() - t_run for m in live]
        writer.submit(_save_all, templates, model, optimizer, snapshot, list(live), epoch + 1,
                      step, walls)  # fmt: skip
    return live


def _save_all(templates, model, optimizer, snapshot, live, epoch, step, walls) -> None:
    for m, wall in zip(live, walls, strict=True):
        templates[m.slot].save(model, optimizer, snapshot, m, epoch, step, wall)


class _CheckpointWriter:
    """Writes an epoch's G checkpoints on a background thread while the next epoch trains, so
    the device never waits for G files to be serialised and fsynced. At most one epoch's set is
    in flight; leaving the block waits for it and re-raises a failed write. A kill -9 meanwhile
    leaves the previous checkpoints (atomic writes) and resume drops the metrics rows after them.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lrbench-checkpoint")
        self._pending: Future | None = None

    def submit(self, fn, *args) -> None:
        self.wait()
        self._pending = self._pool.submit(fn, *args)

    def wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def __enter__(self) -> _CheckpointWriter:
        return self

    def __exit__(self, *exc) -> None:
        try:
            self.wait()
        finally:
            self._pool.shutdown()


def _momentum(m: _Member, step: int) -> float:
    if m.moms is not None:
        return float(m.moms[step - 1])
    opt = m.spec.optimizer
    return float(opt.betas[0] if opt.name in ("adam", "adamw") else opt.momentum)


def _finish(m: _Member, status: str, t_run: float) -> dict:
    row = m.row
    summary = {
        "status": status,
        "epochs_completed": int(row.get("epoch", m.spec.epochs)),
        "final": {k: row.get(k) for k in ("test_acc", "test_loss", "val_acc", "val_loss")},
        "wall_time_s": m.wall_before + time.perf_counter() - t_run,
        "stopped_early": False,
        "stopped_epoch": None,
    }
    atomic_write_json(m.run.summary, summary)
    return summary


class _Template:
    """A plain model and torch optimizer for one run, to write its checkpoint in train_run's
    format (model.state_dict(), optimizer.state_dict(), epoch, step, RNG, wall time)."""

    def __init__(
        self, spec: RunSpec, num_classes: int, precision: str, runtime: Runtime, spe: int
    ) -> None:
        # a packed run never reacts (no plateau, no early stop): its state stays the initial one
        self.reactions = Reactions(spec, build_schedule(spec.schedule), spe)
        dtype = param_dtype(precision)
        self.model = build_model(spec.model, num_classes).to(dtype=dtype)
        if runtime.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.optimizer = build_optimizer(spec.optimizer, self.model.parameters())

    @torch.no_grad()
    def save(self, packed, opt, snapshot, m: _Member, epoch: int, step: int, wall: float) -> None:
        """Write m's checkpoint from `snapshot` = (packed.snapshot(), opt.snapshot())."""
        model_state, opt_state = snapshot
        self.model.load_state_dict(packed.member_state(m.slot, model_state))
        set_hparams(self.optimizer, float(m.lrs[step - 1]),
                    float(m.moms[step - 1]) if m.moms is not None else None)  # fmt: skip
        params = list(self.model.parameters())
        self.optimizer.state.clear()
        if opt.has_buffer(m.slot, step):
            per_param = opt.member_state(lambda t: packed.member_views(t, m.slot), opt_state)
            for p, st in zip(params, per_param, strict=True):
                entry = {k: v.detach().to("cpu", copy=True) for k, v in st.items()}
                if opt.spec.name != "sgd":
                    entry = {"step": torch.tensor(float(step)), **entry}
                self.optimizer.state[p] = entry
        extra = {"wall_time_s": wall, **self.reactions.state()}
        save_checkpoint(m.run, self.model, self.optimizer, epoch, step, extra)
