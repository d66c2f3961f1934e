"""What a Slurm sweep submits: its unfinished runs' packs as one submitit job array, the
settings each array task asks for, and what a task runs (lrbench.executors.slurm_watch follows
the array).

Each array task trains a chunk of the sweep's packs (`runs_per_job` runs; a pack of one is a run
trained alone) with the same `work` loop as a local sweep (under each run's file lock, through
the resumable `train_runs`), so a task never trains a run that another process holds, its packs
are the ones a local sweep would train, and its results land in the usual run folders.

Time limits and preemption: Slurm signals the job (USR2, 90 s ahead of its time limit, or when
it is preempted); submitit then calls `SweepTask.checkpoint`, which hands back the chunk's
unfinished runs, and requeues the task. The requeued task resumes each run from its last
epoch checkpoint. A task that is cancelled outright is submitted again by running the same
`lrbench sweep --executor slurm` command: finished runs are skipped, started ones resume.

Logs: `<results>/<sweep>/slurm/<job>_<task>_0_log.out`, one per array task, next to submitit's
pickles; `slurm/jobs.jsonl` records which task trains which runs.

`submitit` is optional (`pip install 'lrbench[slurm]'`). `LRBENCH_SUBMITIT_CLUSTER=local` runs
the "jobs" as local processes through submitit's local executor (tests; trying it out).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lrbench.errors import UserError
from lrbench.executors.base import Item, Pack
from lrbench.results import RunDir
from lrbench.specs import RunSpec
from lrbench.verdict import TRAIN_STATES

INSTALL_HINT = "pip install 'lrbench[slurm]'"
CLUSTER_ENV = "LRBENCH_SUBMITIT_CLUSTER"
LOG_DIR = "slurm"
JOBS_FILE = "jobs.jsonl"
DEFAULT_TIME_MIN = 120
DEFAULT_MAX_REQUEUES = 10

# What a job's pickle holds: each pack's runs as their specs' JSON and their folders, so that a
# job (or a requeue) depends on no class layout, only on what spec.json would say.
JobPack = list[tuple[dict[str, Any], str]]


def to_job_packs(packs: list[Pack]) -> list[JobPack]:
    return [[(spec.model_dump(mode="json"), str(path)) for spec, path in pack] for pack in packs]


def from_job_packs(packs: list[JobPack]) -> list[Pack]:
    return [[(RunSpec.model_validate(spec), Path(path)) for spec, path in pack] for pack in packs]


def import_submitit() -> Any:
    try:
        import submitit
    except ImportError:
        raise UserError(
            f"--executor slurm needs the submitit package: {INSTALL_HINT} (or pip install submitit)"
        ) from None
    return submitit


# --- settings: the config's executor block, then the flags ------------------------------------

FLAGS = {
    "partition": "--partition",
    "gpus_per_job": "--gpus-per-job",
    "cpus_per_job": "--cpus-per-job",
    "mem_gb": "--mem-gb",
    "time": "--time",
    "account": "--account",
    "qos": "--qos",
    "sbatch": "--sbatch",
    "max_concurrent": "--max-concurrent",
    "runs_per_job": "--runs-per-job",
}


@dataclass(frozen=True)
class SlurmSettings:
    """What every array task asks Slurm for, fully resolved."""

    partition: str | None = None
    gpus_per_job: int = 1
    cpus_per_job: int | None = None
    mem_gb: float | None = None
    time_min: int = DEFAULT_TIME_MIN
    account: str | None = None
    qos: str | None = None
    sbatch: dict[str, Any] = field(default_factory=dict)
    setup: tuple[str, ...] = ()
    max_concurrent: int | None = None
    runs_per_job: int = 1
    max_requeues: int = DEFAULT_MAX_REQUEUES

    def parameters(self, job_name: str) -> dict[str, Any]:
        """submitit.AutoExecutor parameters; slurm_* ones are ignored by the local executor."""
        params: dict[str, Any] = {
            "name": job_name,
            "timeout_min": self.time_min,
            "nodes": 1,
            "tasks_per_node": 1,
            "stderr_to_stdout": True,
        }
        if self.gpus_per_job:
            params["gpus_per_node"] = self.gpus_per_job
        if self.cpus_per_job:
            params["cpus_per_task"] = self.cpus_per_job
        if self.mem_gb:
            params["mem_gb"] = self.mem_gb
        optional = {
            "slurm_partition": self.partition,
            "slurm_account": self.account,
            "slurm_qos": self.qos,
            "slurm_array_parallelism": self.max_concurrent,
            "slurm_additional_parameters": dict(self.sbatch) or None,
            "slurm_setup": list(self.setup) or None,
        }
        params.update({k: v for k, v in optional.items() if v is not None})
        return params

    def describe(self) -> str:
        h, m = divmod(self.time_min, 60)
        parts = [
            f"partition {self.partition}" if self.partition else "the default partition",
            f"{self.gpus_per_job} GPU" + ("s" if self.gpus_per_job != 1 else ""),
            f"{self.cpus_per_job} CPU" + ("s" if self.cpus_per_job > 1 else "")
            if self.cpus_per_job
            else None,
            f"{self.mem_gb:g} GB" if self.mem_gb else None,
            f"{h}:{m:02d}:00 per task",
            f"account {self.account}" if self.account else None,
            f"qos {self.qos}" if self.qos else None,
            *(f"--{k}" + ("" if v is True else f"={v}") for k, v in self.sbatch.items()),
        ]
        return ", ".join(p for p in parts if p)


def parse_sbatch_options(items: Iterable[str]) -> dict[str, Any]:
    """`--sbatch constraint=a100 --sbatch exclusive` -> {constraint: a100, exclusive: True}."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.strip().lstrip("-").partition("=")
        key = key.strip()
        if not key or (sep and not value.strip()):
            raise UserError(
                f"--sbatch {item!r}: expected OPTION=VALUE or OPTION, e.g. constraint=a100"
            )
        out[key] = value.strip() if sep else True
    return out


def slurm_flags_given(flags: dict[str, Any]) -> list[str]:
    return [FLAGS[k] for k, v in flags.items() if k in FLAGS and v not in (None, [], ())]


def resolve_settings(block: Any, flags: dict[str, Any], device: str = "auto") -> SlurmSettings:
    """The config's `executor:` block (an ExecutorConfig or None) overridden by the flags."""
    from lrbench.config import ExecutorConfig

    unknown = set(flags) - set(FLAGS)
    if unknown:
        raise ValueError(f"unknown slurm settings {sorted(unknown)}")
    cfg = block.model_dump() if block is not None else {}
    given = {k: v for k, v in flags.items() if v not in (None, [], ())}

    def pick(key: str) -> Any:
        return given[key] if key in given else cfg.get(key)

    time_value = pick("time")
    try:
        time_min = ExecutorConfig.minutes(time_value) if time_value is not None else None
    except ValueError as err:
        raise UserError(f"--time: {err}") from None
    gpus = pick("gpus_per_job")
    if gpus is None:
        gpus = 0 if device == "cpu" else 1
    if device.startswith("cuda") and gpus == 0:
        raise UserError(f"--device {device} needs GPUs: set --gpus-per-job (executor.gpus_per_job)")
    if device == "cpu" and gpus:
        raise UserError(
            f"--device cpu with {gpus} GPU(s) per job would leave them idle; "
            "set --gpus-per-job 0 or another --device"
        )
    sbatch = {**(cfg.get("sbatch") or {}), **parse_sbatch_options(given.get("sbatch") or [])}
    requeues = cfg.get("max_requeues")
    return SlurmSettings(
        partition=pick("partition"),
        gpus_per_job=int(gpus),
        cpus_per_job=pick("cpus_per_job"),
        mem_gb=pick("mem_gb"),
        time_min=time_min or DEFAULT_TIME_MIN,
        account=pick("account"),
        qos=pick("qos"),
        sbatch=sbatch,
        setup=tuple(cfg.get("setup") or ()),
        max_concurrent=pick("max_concurrent"),
        runs_per_job=pick("runs_per_job") or 1,
        max_requeues=DEFAULT_MAX_REQUEUES if requeues is None else requeues,
    )


def chunk(packs: list[Pack], runs_per_job: int) -> list[list[Pack]]:
    """Consecutive packs, up to `runs_per_job` runs to a task (a bigger pack gets a task of its
    own: packs are never split): one array task per chunk."""
    if runs_per_job < 1:
        raise ValueError("runs_per_job must be >= 1")
    chunks: list[list[Pack]] = []
    for pack in packs:
        if chunks and sum(map(len, chunks[-1])) + len(pack) <= runs_per_job:
            chunks[-1].append(pack)
        else:
            chunks.append([pack])
    return chunks


# --- inside a job ---------------------------------------------------------------------------------


def _stamp() -> str:
    return datetime.now().strftime("%H:%M:%S")


class _Preempted(KeyboardInterrupt):
    """submitit's exit after a preemption signal, raised inside training: it stops training as
    Ctrl-C does (finished epochs kept, nothing marked failed) instead of failing the runs as a
    user's sys.exit does."""


@contextlib.contextmanager
def _preemption_stops_training() -> Iterator[list[SystemExit]]:
    """While training, the SystemExit submitit's signal handler raises (after it checkpointed
    and requeued the task) arrives as `_Preempted`; the yielded list holds it, to re-raise once
    the runs have stopped."""
    exits: list[SystemExit] = []
    handlers = {}
    for sig in (signal.SIGUSR1, signal.SIGUSR2):
        handler = signal.getsignal(sig)
        if callable(handler):
            handlers[sig] = handler

            def stop(signum: int, frame: Any, handler: Callable[..., Any] = handler) -> None:
                try:
                    handler(signum, frame)
                except SystemExit as requeued:
                    exits.append(requeued)
                    raise _Preempted from requeued

            signal.signal(sig, stop)
    try:
        yield exits
    except _Preempted:
        pass
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


class SweepTask:
    """The function an array task runs: train a chunk of packs; requeue-safe.

    submitit calls `checkpoint` when Slurm signals a time-out or preemption and requeues the
    task with what it returns. State lives in the run folders (a checkpoint per epoch), so the
    requeued task needs only the packs of its chunk that still hold an unfinished run (whole:
    finished members ride along, so the packs stay the same).
    """

    def __init__(self) -> None:
        self.ended: set[str] = set()

    def __call__(self, job_packs: list[JobPack], runtime: Any, device: str) -> dict[str, str]:
        from lrbench.executors.local import parse_devices, run_local

        self.ended = set()
        packs = from_job_packs(job_packs)
        cpus = os.environ.get("SLURM_CPUS_PER_TASK")
        if runtime.threads is None and cpus and cpus.isdigit():
            runtime = replace(runtime, threads=int(cpus))
        where = os.environ.get("SLURM_JOB_ID") or os.environ.get("SUBMITIT_LOCAL_JOB_ID", "?")
        restarts = os.environ.get("SLURM_RESTART_COUNT", "0")
        runs = sum(map(len, packs))
        print(
            f"[{_stamp()}] lrbench task {_task_id()} (SLURM_JOB_ID {where}, restart {restarts}) on "
            f"{socket.gethostname()}: {runs} run(s) in {len(packs)} pack(s), device {device}, "
            f"{runtime.threads or 'default'} CPU thread(s)",
            flush=True,
        )
        if not packs:
            print(f"[{_stamp()}] nothing left to train", flush=True)
            return {}
        with _preemption_stops_training() as exits:
            outcome = run_local(packs, parse_devices(device, None), runtime, self._log())
        if exits:  # requeued by submitit: exit as it asked, the runs resumable
            raise exits[0]
        print(f"[{_stamp()}] task finished: {dict(outcome.states)}", flush=True)
        return dict(outcome.states)

    def checkpoint(self, job_packs: list[JobPack], runtime: Any, device: str) -> Any:
        """The same task with only the packs that still hold an unfinished run."""
        submitit = import_submitit()
        packs = from_job_packs(job_packs)

        def unfinished(spec: RunSpec, path: Path) -> bool:
            return spec.run_id not in self.ended and RunDir(path).state() in TRAIN_STATES

        left = [pack for pack in packs if any(unfinished(s, p) for s, p in pack)]
        runs, kept = sum(map(len, packs)), sum(unfinished(s, p) for pack in left for s, p in pack)
        print(
            f"[{_stamp()}] checkpoint: {runs - kept} of {runs} run(s) finished; requeueing the "
            f"other {kept}, which resume from their last epoch",
            flush=True,
        )
        return submitit.helpers.DelayedSubmission(type(self)(), to_job_packs(left), runtime, device)

    def _log(self) -> Callable[[Any], None]:
        def on_msg(msg: Any) -> None:
            text = None
            if msg.kind == "start":
                text = f"{msg.run_id}: start ({msg.epochs} epochs)"
            elif msg.kind == "event" and msg.event and msg.event.kind == "resume":
                e = msg.event
                run_id = (e.row or {}).get("run_id", msg.run_id)
                text = f"{run_id}: resume after epoch {e.epoch} ({e.epochs} epochs)"
            elif msg.kind == "event" and msg.event and msg.event.kind == "epoch":
                e, row = msg.event, msg.event.row or {}
                acc = row.get("test_acc")
                text = (
                    f"{row.get('run_id', msg.run_id)}: epoch {e.epoch}/{e.epochs} step {e.step} "
                    f"train_loss {row.get('train_loss', float('nan')):.4f}"
                    + (f" test_acc {acc:.4f}" if isinstance(acc, float) else "")
                )
            elif msg.kind == "end":
                if msg.state != "interrupted":
                    self.ended.add(msg.run_id)
                text = f"{msg.run_id}: {msg.state}" + (f" ({msg.detail})" if msg.detail else "")
            elif msg.kind == "held":
                text = f"{msg.run_id}: held by another process (its lock); skipped"
            if text:
                print(f"[{_stamp()}] {text}", flush=True)

        return on_msg


def _task_id() -> str:
    array, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    if array and task:
        return f"{array}_{task}"
    return os.environ.get("SLURM_JOB_ID") or os.environ.get("SUBMITIT_LOCAL_JOB_ID", "?")


# --- submitting ---------------------------------------------------------------------------------


@dataclass
class ArrayTask:
    """One array task: its Slurm id (`123_4`, or `123` for a lone job), its runs, and the
    submitit job (None for a task an earlier process submitted)."""

    task_id: str
    items: list[Item]
    job: Any = None


@dataclass
class Submission:
    job_id: str | None  # the array's id (None when nothing was submitted)
    tasks: list[ArrayTask]
    log_dir: Path
    cluster: str

    def log_path(self, task_id: str) -> Path:
        return self.log_dir / f"{task_id}_0_log.out"


class SlurmExecutor:
    """Submits a sweep's packs as one job array."""

    name = "slurm"

    def __init__(
        self, settings: SlurmSettings, device: str = "auto", cluster: str | None = None
    ) -> None:
        self.settings = settings
        self.device = device
        self.cluster = cluster or os.environ.get(CLUSTER_ENV) or "slurm"
        if self.cluster not in ("slurm", "local"):
            raise UserError(f"{CLUSTER_ENV}={self.cluster!r}: expected slurm or local")
        self.submitit = import_submitit()
        if self.cluster == "slurm" and not (shutil.which("sbatch") and shutil.which("srun")):
            raise UserError(
                "--executor slurm: sbatch/srun not found; run this on a Slurm login node "
                "(or use --executor local)"
            )

    def submit(self, name: str, sweep: Path, packs: list[Pack], runtime: Any) -> Submission:
        log_dir = sweep / LOG_DIR
        log_dir.mkdir(parents=True, exist_ok=True)
        chunks = chunk(packs, self.settings.runs_per_job)
        if not chunks:
            return Submission(None, [], log_dir, self.cluster)
        requeues = self.settings.max_requeues
        executor = self.submitit.AutoExecutor(
            folder=log_dir,
            cluster=self.cluster,
            slurm_max_num_timeout=requeues,
            local_max_num_timeout=requeues,
        )
        executor.update_parameters(**self.settings.parameters(f"lrbench-{name}"))
        n = len(chunks)
        try:
            jobs = executor.map_array(
                SweepTask(), [to_job_packs(c) for c in chunks], [runtime] * n, [self.device] * n
            )
        except self.submitit.core.utils.FailedJobError as err:
            raise UserError(f"sbatch refused the job array: {err}") from None
        tasks = [
            ArrayTask(str(job.job_id), [item for pack in c for item in pack], job)
            for job, c in zip(jobs, chunks, strict=True)
        ]
        job_id = str(jobs[0].job_id).split("_")[0]
        sub = Submission(job_id, tasks, log_dir, self.cluster)
        _record(log_dir / JOBS_FILE, sub)
        return sub


def _record(path: Path, sub: Submission) -> None:
    entry = {
        "job": sub.job_id,
        "cluster": sub.cluster,
        "submitted": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "tasks": {t.task_id: [spec.run_id for spec, _ in t.items] for t in sub.tasks},
    }
    with open(path, "a") as fh:
        fh.write(json.dumps(entry) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
