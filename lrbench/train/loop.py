"""The training loop: run specs in, run folders out, one run alone or G runs as one pack.

Every sweep, `lrbench run` and `lrbench verify` go through `train_runs`; the benchmark and
`--pack auto` step the same steppers outside any run (lrbench.train.probe), built where the loop
builds its own (lrbench.train.build). A run's rate and momentum tables are computed once from
its pure schedule; the data order and augmentation of an epoch are a pure function of
(seed, epoch); so a checkpoint of model + optimizer + step (+ the reactive state) is all that
exact resume needs. The loop below owns everything a run is (lrbench.train.member) and hands
the stepper (one plain model, or a pack) each epoch's rates and momenta; the stepper owns how a
step and an evaluation run.

Runs of a pack normally stand at the same epoch; a kill -9 between two runs' checkpoint writes
leaves some one epoch ahead, and then the laggards train (the others riding as passengers)
until they catch up, and all go on together (`_phases`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lrbench.data import DeviceData, load_splits, on_device
from lrbench.errors import RunFailed, UserError
from lrbench.imports import add_search_path
from lrbench.results import RunDir
from lrbench.specs import RunSpec
from lrbench.train.build import build_stepper
from lrbench.train.checkpoint import CheckpointWriter, write_checkpoint
from lrbench.train.member import Member
from lrbench.train.optim import base_momentum
from lrbench.train.runtime import (
    Callback,
    Event,
    Runtime,
    apply_threads,
    resolve_device,
    resolve_precision,
)
from lrbench.train.steppers import Stepper
from lrbench.train.tblog import open_run_log


def train_run(
    spec: RunSpec,
    run_dir: Path,
    runtime: Runtime = Runtime(),
    on_event: Callback | None = None,
    data: DeviceData | None = None,
) -> dict:
    """Train (or resume, or skip) one run and return its summary.json content."""
    return train_runs([spec], [run_dir], runtime, on_event, data)[0]


def train_runs(
    specs: Sequence[RunSpec],
    run_dirs: Sequence[Path],
    runtime: Runtime = Runtime(),
    on_event: Callback | None = None,
    data: DeviceData | None = None,
) -> list[dict]:
    """Train (or resume, or skip) runs, alone (one spec) or as one pack; their summaries.

    A pack's runs must share everything but schedule, seed and rate (lrbench.train.packed.sharing);
    how its models run is the runtime's (`impl`, `compile`). Each run's folder ends up as if it
    had trained alone. Raises UserError for runs that cannot share a pack or folders that hold
    other runs, and RunFailed (after writing summary.json `failed` and run.log in every
    unfinished folder) when training fails.
    """
    from lrbench.train.packed.sharing import check_packable

    specs = list(specs)
    if len(specs) != len(run_dirs):
        raise ValueError(f"{len(specs)} specs but {len(run_dirs)} run folders")
    check_packable(specs)
    runs = [RunDir(Path(p)) for p in run_dirs]
    if len({r.path.resolve() for r in runs}) != len(runs):
        raise UserError("two runs of a pack share one run folder")
    members = [
        Member.open(i, spec, run) for i, (spec, run) in enumerate(zip(specs, runs, strict=True))
    ]
    if all(m.summary is not None for m in members):
        return [m.summary for m in members]  # type: ignore[misc]

    apply_threads(runtime)
    add_search_path(*runtime.import_paths)
    device = resolve_device(runtime.device)
    precision = resolve_precision(runtime.precision, device)
    if data is None:
        splits = load_splits(specs[0].dataset, runtime.data_dir)
        data = on_device(splits, device, channels_last=runtime.channels_last)
    pending = [m for m in members if m.summary is None]
    for m in pending:
        m.prepare(data, device, precision, len(members))
        if on_event and m.epochs_done:  # where it really resumes: the checkpoint's epoch
            row, total = {"run_id": m.spec.run_id}, len(m.schedule_rates)
            on_event(Event("resume", m.epochs_done, m.epochs, int(m.row["step"]), total, row))
    for m in pending:
        m.log = open_run_log(runtime.log, m.run.path, int(m.row.get("step", 0)))
    loop = Loop(members, runtime, data, device, precision, on_event)
    try:
        loop.run(pending)
    except (KeyboardInterrupt, UserError):
        raise
    except (Exception, SystemExit) as err:  # user code's sys.exit fails its run, not the sweep
        raise _failed(specs, pending, err) from err
    finally:
        for m in pending:
            if m.log is not None:
                m.log.close()
    if not runtime.keep_checkpoints:  # a finished run never resumes (the writers are done)
        for m in pending:
            if m.summary is not None and m.summary["status"] in ("done", "diverged"):
                m.run.checkpoint.unlink(missing_ok=True)
    return [m.summary for m in members]  # type: ignore[misc]


def _failed(specs: list[RunSpec], pending: list[Member], err: BaseException) -> RunFailed:
    """Every unfinished run failed (summary.json and run.log say why): the error to raise."""
    unfinished = [m for m in pending if m.summary is None]
    for m in unfinished:
        m.fail(err)
    where = unfinished[0].run.log if unfinished else "the run folders"
    what = (
        f"run {specs[0].run_id}"
        if len(specs) == 1
        else f"pack of {len(specs)} runs ({specs[0].run_id}, ...)"
    )
    return RunFailed(f"{what} failed: {err} (traceback in {where})")


@dataclass
class Loop:
    """The members of one call to train_runs and what they train on."""

    members: list[Member]
    runtime: Runtime
    data: DeviceData
    device: torch.device
    precision: str
    on_event: Callback | None

    @property
    def epochs(self) -> int:
        return self.members[0].epochs

    @property
    def steps_per_epoch(self) -> int:
        return self.data.steps_per_epoch(self.members[0].spec.batch_size)

    def run(self, pending: list[Member]) -> None:
        """Phases until every run has ended: each trains the runs at the earliest epoch up to
        the next epoch some other run stands at (normally: all of them, to the end)."""
        while pending:
            for m in [
                m for m in pending if m.epochs_done >= self.epochs
            ]:  # killed before its summary
                m.finish("diverged" if m.diverged else "done", m.wall_before)
            pending = [m for m in pending if m.summary is None]
            if not pending:
                return
            start = min(m.epochs_done for m in pending)
            trainees = [m for m in pending if m.epochs_done == start]
            later = [m.epochs_done for m in pending if m.epochs_done > start]
            stop = min(later) if later else self.epochs
            self.phase(trainees, start, stop)
            pending = [m for m in pending if m.summary is None]

    def stepper(self, trainees: list[Member]) -> Stepper:
        """Every member's model: the trainees' from their checkpoints (or fresh from their
        seeds), the passengers' (ended, or ahead of the others) fresh from their seeds."""
        training = {m.index for m in trainees}
        states = [m.state if m.index in training else None for m in self.members]
        return build_stepper([m.spec for m in self.members], self.data, self.device,
                             self.precision, self.runtime, states)  # fmt: skip

    def phase(self, trainees: list[Member], start: int, stop: int) -> None:
        """Train `trainees` (the others ride along as passengers) from epoch `start` to `stop`."""
        t_run = time.perf_counter()
        stepper = self.stepper(trainees)
        with CheckpointWriter() as writer:
            live = self.train_epochs(stepper, writer, trainees, start, stop, t_run)
        for m in live:
            wall = m.wall_before + time.perf_counter() - t_run
            if stop == self.epochs:
                m.finish("done", wall)
            else:  # a catch-up phase: the next phase reloads from the checkpoints just written
                m.epochs_done, m.wall_before, m.state = stop, wall, None
                m.prepare(self.data, self.device, self.precision, len(self.members))

    def train_epochs(self, stepper, writer, live, start, stop, t_run) -> list[Member]:
        """Epochs `start`..`stop`; returns the members still training (not ended)."""
        active = torch.zeros(len(self.members), dtype=torch.bool, device=self.device)
        active[[m.index for m in live]] = True
        step = start * self.steps_per_epoch
        for epoch in range(start, stop):
            t0 = time.perf_counter()
            rates, momenta = self.epoch_tables(live, step, self.steps_per_epoch)
            stepper.begin_epoch(step, rates, momenta)
            ensembles = {m.index: m.ensemble.count for m in live}
            rows, seen, step = self.train_epoch(stepper, live, active, epoch, step)
            finite = [m for m in live if math.isfinite(rows[m.index]["train_loss"])]
            if finite:
                self.evaluate(stepper, finite, rows, epoch, ensembles)
            epoch_time = time.perf_counter() - t0
            for m in live:
                row = rows[m.index]
                if m not in finite:
                    row.update(
                        test_loss=math.nan, **({"test_acc": math.nan} if m.task.accuracy else {})
                    )
                row["epoch_time_s"] = epoch_time
                m.record(row, rates[:, m.index], momenta[:, m.index])
                if self.on_event:
                    event_row = {**row, "run_id": m.spec.run_id}
                    total = self.steps_per_epoch * self.epochs
                    self.on_event(Event("epoch", epoch + 1, self.epochs, step, total, event_row,
                                        seen / epoch_time))  # fmt: skip
            live = self.end_runs(live, active, t_run)
            if not live:
                break
            captured = stepper.capture()
            walls = {m.index: m.wall_before + time.perf_counter() - t_run for m in live}
            saves = [(m.run.checkpoint, m.index, m.checkpoint_extra(walls[m.index])) for m in live]
            writer.submit(_write_checkpoints, stepper, captured, saves, epoch + 1, step)
        return live

    def train_epoch(
        self, stepper: Stepper, live: list[Member], active: torch.Tensor, epoch: int, step: int
    ) -> tuple[dict[int, dict], int, int]:
        """The epoch's steps from step `step` on (snapshots taken where due): each live
        member's new row by its index, the units (images, characters) each model saw, and the
        step reached."""
        g, total = len(self.members), self.steps_per_epoch * self.epochs
        stepper.for_training()
        loss_sum = torch.zeros(g, device=self.device, dtype=torch.float64)
        correct = torch.zeros(g, device=self.device, dtype=torch.int64)
        seen = 0
        for i, (x, y) in enumerate(stepper.batches(epoch)):
            losses, right = stepper.step(i, x, y, active)
            units = stepper.units(y)
            loss_sum += losses * units
            correct += right
            seen += units
            step += 1
            self.take_snapshots(stepper, live, step)
            if self.on_event:
                self.on_event(Event("step", epoch + 1, self.epochs, step, total))
        sums, rights = loss_sum.tolist(), correct.tolist()  # the epoch's one sync
        rows = {m.index: m.new_row(epoch + 1, step, sums[m.index] / seen, rights[m.index] / seen)
                for m in live}  # fmt: skip
        return rows, seen, step

    def evaluate(
        self,
        stepper: Stepper,
        finite: list[Member],
        rows: dict[int, dict],
        epoch: int,
        ensembles: dict[int, int],
    ) -> None:
        """The evaluation columns of the rows of members whose training loss is finite."""
        stepper.for_evaluation(batchnorm_from=epoch)
        for split in ("test", "val") if self.data.has_val else ("test",):
            losses, accs = stepper.evaluate(split)
            for m in finite:
                rows[m.index][f"{split}_loss"] = losses[m.index]
                if m.task.accuracy:
                    rows[m.index][f"{split}_acc"] = accs[m.index]
        for m in finite:
            m.add_ensemble_columns(rows[m.index], ensembles[m.index], self.data)

    def epoch_tables(
        self, live: list[Member], first: int, count: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """[count, G] rates and momenta from step `first`: each live member's (plateau applied
        to its rates); the passengers ride at rate 0 and the configured momentum."""
        rates = np.zeros((count, len(self.members)))
        momenta = np.full_like(rates, base_momentum(self.members[0].spec.optimizer))
        for m in live:
            rates[:, m.index] = m.rates(first, count)
            momenta[:, m.index] = m.momenta(first, count)
        return rates, momenta

    def take_snapshots(self, stepper: Stepper, live: list[Member], step: int) -> None:
        due = [m for m in live if step in m.snapshot_steps]
        if not due:
            return
        stepper.for_evaluation()
        probs = stepper.predict_probs("test")
        for m in due:
            m.ensemble.add(probs[m.index])
        stepper.for_training()

    def end_runs(self, live: list[Member], active: torch.Tensor, t_run: float) -> list[Member]:
        """Diverged runs (a loss not finite) and runs early stopping ended are finished; they
        ride on at rate 0. Returns the members that train on."""
        going = []
        for m in live:
            wall = m.wall_before + time.perf_counter() - t_run
            if m.diverged:
                m.finish("diverged", wall)
            else:
                assert m.reactions is not None
                m.reactions.after_epoch(int(m.row["epoch"]), m.row)
                if m.reactions.stopped_epoch is not None:
                    m.finish("done", wall)
                else:
                    going.append(m)
        ended = [m.index for m in live if m not in going]
        if ended:
            active[ended] = False
        return going


def _write_checkpoints(stepper: Stepper, captured, saves, epoch: int, step: int) -> None:
    for path, index, extra in saves:
        state = stepper.member_state(captured, index, step)
        write_checkpoint(path, {**state, "epoch": epoch, "step": step, **extra})
