"""A sweep, run by the library for every executor: plan, check, pack, train, sum up.

    sweep = Sweep(load_config("configs/rex.yaml"), SweepOptions(device="cuda"))
    outcome = sweep.run_local(display, say)      # or sweep.submit_to_slurm(settings, ...)

`lrbench sweep` only parses options into SweepOptions, calls one of these and prints.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lrbench.config import SweepConfig
from lrbench.data import load_splits
from lrbench.data.splits import Splits
from lrbench.errors import RunFailed, UserError
from lrbench.executors.base import Msg, Pack
from lrbench.forked import usable_cores
from lrbench.imports import search_paths
from lrbench.specs import RunSpec
from lrbench.sweep.packs import pack_size, parse_pack, plan_work
from lrbench.sweep.plan import (
    PlannedRun,
    plan,
    sweep_dir,
    write_sweep_files,
)
from lrbench.train.runtime import (
    PRECISIONS,
    Runtime,
    default_threads,
    resolve_device,
    resolve_precision,
)

if TYPE_CHECKING:
    from lrbench.executors.slurm_submit import SlurmSettings, Submission

Say = Callable[[str], Any]


def early_stop_idle(spec: RunSpec, schedule: Any, steps_per_epoch: int) -> str | None:
    """Why early stopping, configured, can never stop this run, or None: it judges a run only
    at the epochs lrbench.train.reactive allows (cycle ends for cyclical schedules and snapshots) and
    needs `patience` judgements without improvement before the last one."""
    from lrbench.train.reactive import Reactions

    if not spec.early_stop:
        return None
    checks = Reactions(spec, schedule, steps_per_epoch).checks
    patience = int(spec.early_stop["patience"])
    if len(checks) >= patience + 2:
        return None
    why = " (cycle ends: snapshots or a cyclical schedule)" if len(checks) < spec.epochs else ""
    return (
        f"it may judge them at {len(checks)} epoch(s){why}, and patience {patience} needs "
        f"{patience + 2}"
    )


MAX_WORKERS = 1024  # worker processes of a sweep, and threads of a worker
# (runs, epochs to train, worker labels) -> a display: a context manager taking worker messages
DisplayFactory = Callable[[int, int, list[str]], AbstractContextManager[Callable[[Any], None]]]


@dataclass(frozen=True)
class SweepOptions:
    """How a sweep runs on this machine; none of it changes which runs it has or their ids."""

    results: Path = Path("results")
    device: str = "auto"
    jobs: int | None = None
    precision: str = "auto"
    data_dir: str | None = None
    pack: str = "auto"
    threads: int | None = None
    log: str | None = None
    only: str | None = None
    retry_failed: bool = False
    keep_checkpoints: bool = False


@dataclass
class SweepOutcome:
    """How each run the sweep tried ended (done, diverged, failed, held, interrupted, ...)."""

    name: str
    where: Path
    states: dict[str, str] = field(default_factory=dict)
    interrupted: bool = False
    causes: dict[str, str] = field(default_factory=dict)  # why a run failed or did not finish

    @property
    def counts(self) -> Counter[str]:
        return Counter(self.states.values())

    def closing(self) -> str:
        c = self.counts
        held = f", {c['held']} held by another sweep" if c["held"] else ""
        unfinished = f", {c['unfinished']} unfinished" if c["unfinished"] else ""
        return (
            f"{c['done']} done, {c['diverged']} diverged, {c['failed']} failed{held}"
            f"{unfinished}; results in {self.where}"
        )

    def failure(self) -> RunFailed | None:
        """Exit 1 when a run failed or did not finish: the first one named with its cause."""
        bad = [r for r, s in self.states.items() if s in ("failed", "unfinished")]
        if not bad:
            return None
        c, first = self.counts, bad[0]
        log = self.where / "runs" / first / "run.log"
        cause = self.causes.get(first) or (f"see {log}" if log.is_file() else "no cause recorded")
        return RunFailed(
            " and ".join(
                part
                for part in (
                    f"{c['failed']} run(s) failed" if c["failed"] else "",
                    f"{c['unfinished']} did not finish" if c["unfinished"] else "",
                )
                if part
            )
            + f", e.g. {first} ({cause}); lrbench status {self.where} lists them; run the same "
            "command again to train what is unfinished"
            + (", with --retry-failed for the failed ones" if c["failed"] else "")
        )


class Sweep:
    """A config's runs under a results root, what is left of them, and how to train it."""

    def __init__(self, config: SweepConfig, options: SweepOptions) -> None:
        from lrbench.executors.local import check_device

        if options.jobs is not None and not 1 <= options.jobs <= MAX_WORKERS:
            raise UserError(f"--jobs {options.jobs}: a sweep has 1 to {MAX_WORKERS} workers")
        if options.threads is not None and not 1 <= options.threads <= MAX_WORKERS:
            raise UserError(f"--threads {options.threads}: a worker has 1 to {MAX_WORKERS} threads")
        parse_pack(options.pack)  # a bad --pack is exit 2 before anything, --dry-run included
        check_device(options.device)
        if options.precision not in PRECISIONS:
            raise UserError(
                f"--precision: {options.precision!r} is not one of {', '.join(PRECISIONS)}"
            )
        self.config = config
        self.options = options
        self.where = sweep_dir(config, options.results)
        self.planned = plan(config, options.results, options.only)
        if not self.planned:
            raise UserError(f"--only {options.only!r} matches no run of sweep {config.name}")
        self.todo = [p for p in self.planned if p.to_train(options.retry_failed)]

    def counts(self) -> Counter[str]:
        return Counter(p.state for p in self.planned)

    def nothing_to_train(self) -> str:
        """Why nothing is trained, naming what is left undone (failed, damaged, left alone)."""
        counts = self.counts()
        stuck = {k: counts[k] for k in ("failed", "damaged") if counts[k]}
        if not stuck:
            return (
                f"all {len(self.planned)} runs of {self.config.name} are finished; nothing to train"
            )
        named = ", ".join(f"{n} {state}" for state, n in stuck.items())
        foreign = sum(1 for p in self.planned if p.foreign)
        hint = (
            "; --retry-failed trains the failed and damaged runs again"
            if not self.options.retry_failed
            else ""
        )
        alone = (
            f" ({foreign} left alone: a link or special file in a run folder)" if foreign else ""
        )
        return (
            f"nothing to train: {counts['done'] + counts['diverged']} of {len(self.planned)} runs "
            f"of {self.config.name} are finished, {named}{alone}{hint}; lrbench status "
            f"{self.where} names them"
        )

    def restart_lines(self) -> list[str]:
        """One line per unfinished run to train again from the start, and why (its verdict)."""
        return [
            f"damaged {p.run.path}: {p.restart}; training it again from the start"
            for p in self.todo
            if p.restart
        ]

    def epochs_left(self, runs: list[PlannedRun] | None = None) -> int:
        return sum(p.spec.epochs - p.epochs_done for p in (self.todo if runs is None else runs))

    def alone(self) -> dict[str, str]:
        """Runs left to train that cannot share a pack, and why (e.g. a model with dropout)."""
        from lrbench.train.packed.sharing import unpackable_reason

        reasons = {p.run_id: unpackable_reason(p.spec) for p in self.todo}
        return {run: why for run, why in reasons.items() if why}

    def check_data(self) -> str | None:
        """Load the data as the sweep will: missing or bad data, and subsets larger than the
        data, are exit 2 here. A torchvision dataset not downloaded yet is a note instead (the
        sweep downloads it; a dry run downloads nothing)."""
        from lrbench.data.sources import TORCHVISION
        from lrbench.data.splits import default_data_dir

        dataset = self.config.dataset
        if dataset.name in TORCHVISION:
            import torchvision.datasets

            root = Path(self.options.data_dir or default_data_dir()).expanduser()
            folder = getattr(torchvision.datasets, TORCHVISION[dataset.name].cls).base_folder
            if not (root / folder).is_dir():
                return f"{TORCHVISION[dataset.name].label} is not in {root} yet: the sweep downloads it"
        notes = self.check_with_data(load_splits(dataset, self.options.data_dir))
        return "\n".join(notes) or None

    def check_with_data(self, splits: Splits) -> list[str]:
        """What needs the data loaded, before anything trains (exit 2, --dry-run included):
        your own models on the data's real shape and class count, and your own schedules at
        every step of every run left to train (a multiplier that is NaN between two probe
        points fails here, not in the run; one table per schedule and run length is cheap)."""
        from lrbench.models.imported import check_imported
        from lrbench.schedules import build_schedule

        if isinstance(
            splits, Splits
        ):  # images (text and your own tensors are probed by their task)
            channels = int(splits.train_x.shape[1])
            for i, model in enumerate(self.config.models):
                if not isinstance(model, str):
                    check_imported(
                        model, splits.num_classes, splits.image_size, f"models[{i}]", channels
                    )
        checked: set[tuple[str, int]] = set()
        notes: dict[tuple[str, int], str] = {}
        for p in self.todo:
            steps_per_epoch = _steps_per_epoch(splits, p.spec.batch_size)
            key = (json.dumps(p.spec.schedule, sort_keys=True), p.spec.epochs)
            if key in checked:
                continue
            checked.add(key)
            schedule = build_schedule(p.spec.schedule)
            if schedule.user_code:
                try:
                    schedule.multipliers(steps_per_epoch * p.spec.epochs, steps_per_epoch)
                except UserError as err:
                    raise UserError(
                        f"schedule {schedule.label!r} for {p.spec.run_id}: {err}"
                    ) from None
            idle = early_stop_idle(p.spec, schedule, steps_per_epoch)
            if idle:
                notes[(schedule.label, p.spec.epochs)] = (
                    f"early stopping cannot stop the {p.spec.epochs}-epoch runs of "
                    f"{schedule.label!r}: {idle}"
                )
        return list(notes.values())

    def runtime(self, device: str, workers: int, slurm: bool = False) -> Runtime:
        """How the runs train: on local CPU workers one thread each unless --threads says
        otherwise (runtime.default_threads); a Slurm task takes the CPUs Slurm gave it."""
        threads = self.options.threads
        if threads is None and not slurm and (workers > 1 or device == "cpu"):
            threads = default_threads(device, workers)
        return Runtime(
            device=device,
            precision=self.options.precision,
            data_dir=self.options.data_dir,
            threads=threads,
            import_paths=search_paths(),
            log=self.options.log,
            keep_checkpoints=self.options.keep_checkpoints or self.config.keep_checkpoints,
        )

    def local_devices(self) -> list[str]:
        """The device of each local worker: --jobs, else one per GPU, else on the CPU one
        one-thread worker per core (at most one per run to train)."""
        from lrbench.executors.local import parse_devices

        devices = parse_devices(self.options.device, self.options.jobs)
        if self.options.jobs is None and devices == ["cpu"]:
            devices = ["cpu"] * min(usable_cores(), max(1, len(self.todo)))
        return devices

    def run_local(self, display: DisplayFactory, say: Say) -> SweepOutcome:
        """Train what is left on this machine's GPUs (or CPU workers)."""
        from lrbench.executors.local import run_local

        devices = self.local_devices()
        resolve_precision(self.options.precision, resolve_device(devices[0]))
        write_sweep_files(self.config, self.options.results)
        outcome = SweepOutcome(self.config.name, self.where)
        if not self.todo:
            say(self.nothing_to_train())
            return outcome
        splits = load_splits(self.config.dataset, self.options.data_dir)  # exit 2 before workers
        for note in self.check_with_data(splits):
            say(note)
        for line in self.restart_lines():
            say(line)
        workers = min(len(devices), len(self.todo))
        runtime = self.runtime(devices[0], workers)
        skipped = len(self.planned) - len(self.todo)
        say(
            f"sweep {self.config.name}: {len(self.todo)} runs to train ({skipped} already finished) "
            f"on {len(devices)} worker(s): {', '.join(sorted(set(devices)))}"
        )
        size = pack_size(self.options.pack, devices[0], self.planned, splits.num_classes,
                         runtime, self.where, say)  # fmt: skip
        work = plan_work(self.planned, self.todo, size)
        if size > 1:
            say(f"packing up to {size} runs per network: {len(work)} pack(s)")
        with display(len(self.todo), self.epochs_left(), devices) as show:
            result = run_local(work, devices, runtime, show)
        outcome.states, outcome.interrupted = result.states, result.interrupted
        outcome.causes = result.causes
        return outcome

    def slurm_work(self, runs: list[PlannedRun], settings: SlurmSettings) -> list[Pack]:
        """Packs for array tasks, planned over the whole sweep as locally, so a GPU array task
        trains the packs a local GPU worker would. `--pack N` packs N runs; auto packs what an
        array task holds on a GPU job (`runs_per_job`: size it to what one GPU fits) and
        nothing on CPU jobs."""
        size = parse_pack(self.options.pack)
        if size is None:
            size = settings.runs_per_job if settings.gpus_per_job else 1
        return plan_work(self.planned, runs, size)

    def slurm_preview(self, settings: SlurmSettings) -> str:
        """What --dry-run says the submission would be."""
        from lrbench.executors.slurm_submit import chunk

        packs = self.slurm_work(self.todo, settings)
        tasks = len(chunk(packs, settings.runs_per_job))
        n_runs = len(self.todo)
        cap = f", at most {settings.max_concurrent} at once" if settings.max_concurrent else ""
        packed = f" in {len(packs)} pack(s)" if len(packs) < n_runs else ""
        return (
            f"slurm: would submit {n_runs} run(s){packed} as a job array of {tasks} task(s) "
            f"({settings.runs_per_job} run(s) each{cap}); each task: {settings.describe()}"
        )

    def submit_to_slurm(
        self, settings: SlurmSettings, wait: bool, display: DisplayFactory, say: Say
    ) -> SweepOutcome:
        """Submit the unfinished runs as one job array (leaving out runs still queued in an
        earlier one, and runs another process trains); with `wait`, follow them and the queued
        ones like a local sweep."""
        from lrbench.executors.slurm_submit import SlurmExecutor
        from lrbench.executors.slurm_watch import queued_runs

        options = self.options
        executor = SlurmExecutor(settings, options.device)
        where = write_sweep_files(self.config, options.results).resolve()
        outcome = SweepOutcome(self.config.name, where)
        if not self.todo:
            say(
                f"all {len(self.planned)} runs of {self.config.name} are finished; nothing to submit"
            )
            return outcome
        self.check_data()  # missing data is exit 2 before anything is submitted
        for line in self.restart_lines():
            say(line)
        data_dir = str(Path(options.data_dir).resolve()) if options.data_dir else None
        runtime = replace(self.runtime(options.device, 1, slurm=True), data_dir=data_dir)

        queued = queued_runs(where)
        items, held, waiting = [], [], []
        for p in self.todo:
            if p.run_id in queued:
                waiting.append(p)
            elif p.run.is_locked():
                held.append(p)
            else:
                items.append(p)
        if waiting:
            jobs = sorted({queued[p.run_id].split("_")[0] for p in waiting})
            say(
                f"{len(waiting)} run(s) are still queued or running in job {', '.join(jobs)}; "
                "not submitted again"
            )
        if held:
            say(f"{len(held)} run(s) are being trained by another process; not submitted")
        packs = [
            [(spec, path.resolve()) for spec, path in pack]
            for pack in self.slurm_work(items, settings)
        ]
        sub = executor.submit(self.config.name, where, packs, runtime)
        if sub.job_id is None:
            say("nothing new to submit")
        else:
            ids = [t.task_id for t in sub.tasks]
            kind = "job array" if len(ids) > 1 else "job"
            print(
                f"submitted {len(items)} run(s) of {self.config.name} as {kind} {sub.job_id} "
                f"({len(ids)} task(s): {ids[0]}{' … ' + ids[-1] if len(ids) > 1 else ''})",
                flush=True,
            )
            say(
                f"each task: {settings.describe()}; {settings.runs_per_job} run(s) per task"
                + (
                    f", at most {settings.max_concurrent} at once"
                    if settings.max_concurrent
                    else ""
                )
            )
            say(f"logs: {sub.log_dir}/<task>_0_log.out (e.g. {sub.log_path(ids[0]).name})")
        if not wait:
            if sub.job_id is not None:
                say(
                    f"follow: lrbench status {where}; wait: add --wait; "
                    + (f"cancel: scancel {sub.job_id}" if sub.cluster == "slurm" else "")
                )
            return outcome
        return self._follow_slurm(sub, waiting, queued, display, say, outcome)

    def _follow_slurm(
        self,
        sub: Submission,
        waiting: list[PlannedRun],
        queued: dict[str, str],
        display: DisplayFactory,
        say: Say,
        outcome: SweepOutcome,
    ) -> SweepOutcome:
        """--wait: the runs just submitted and those already queued, followed through their
        folders with a local sweep's display, until each ended or no task is left."""
        from lrbench.executors.slurm_submit import ArrayTask
        from lrbench.executors.slurm_watch import watch

        specs = {p.run_id: p for p in waiting}
        for task_id in sorted({queued[r] for r in specs}):
            runs = [(specs[r].spec, specs[r].run.path) for r, t in queued.items()
                    if t == task_id and r in specs]  # fmt: skip
            sub.tasks.append(ArrayTask(task_id, runs))
        if not sub.tasks:
            return outcome
        followed = {s.run_id for t in sub.tasks for s, _ in t.items}
        epochs = self.epochs_left([p for p in self.todo if p.run_id in followed])
        say(f"waiting for {len(followed)} run(s); Ctrl-C stops waiting, not the jobs")
        labels: list[str] = []
        task_of = {s.run_id: t.task_id for t in sub.tasks for s, _ in t.items}

        with display(len(followed), epochs, labels) as show:

            def on_msg(msg: Msg) -> None:
                while len(labels) <= msg.worker:
                    labels.append("")
                if msg.kind == "start":
                    labels[msg.worker] = f"task {task_of.get(msg.run_id, '')}"
                show(msg)

            result = watch(sub, on_msg)
        outcome.states, outcome.interrupted = result.states, result.interrupted
        if outcome.interrupted:
            say(f"stopped waiting; the jobs go on (lrbench status {sub.log_dir.parent})")
        return outcome


def _steps_per_epoch(splits: Any, batch_size: int) -> int:
    """An epoch's optimizer steps, as training counts them, without moving images anywhere."""
    if isinstance(splits, Splits):
        return -(-len(splits.train_y) // batch_size)
    from lrbench.data import on_device

    return on_device(splits, "cpu").steps_per_epoch(batch_size)  # characters or tensors: cheap
