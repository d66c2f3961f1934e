"""`lrbench sweep` and `lrbench status`."""

from __future__ import annotations

import signal
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from lrbench.cli.app import app
from lrbench.cli.options import DataDir, LiveLog, Precision, log_choice
from lrbench.cli.printing import literal, print_columns, print_whole
from lrbench.errors import UserError

if TYPE_CHECKING:
    from lrbench.sweep import Sweep, SweepOutcome

out = Console()
_SLURM = "Executor (--executor slurm: docs/slurm.md)"


@app.command("sweep")
def sweep_command(
    config: Path = typer.Argument(..., help="A sweep YAML file, e.g. configs/smoke.yaml."),
    results: Path = typer.Option(
        Path("results"), help="Results root: runs go to RESULTS/<name>/runs/."
    ),
    device: str = typer.Option("auto", help="auto | cpu | cuda (every GPU) | cuda:0,1."),
    jobs: int | None = typer.Option(
        None,
        min=1,
        help="Worker processes (default: one per GPU; on the CPU one per core, at most one per run to train); on GPUs they are spread round-robin.",
    ),
    threads: int | None = typer.Option(
        None,
        min=1,
        help="CPU threads per worker (default: 1 on the CPU, whatever the load or the cores; on GPUs "
        "the cores shared out among the workers). Recorded in each run's provenance; on the CPU "
        "the numbers may depend on it.",
    ),
    precision: Precision = "auto",
    data_dir: DataDir = None,
    data_root: str | None = typer.Option(
        None,
        help="Read the config's dataset from this image folder or .tar[.gz|.xz] archive (train/<class>/, test/<class>/) instead of downloading it.",
    ),
    log: LiveLog = None,
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Show the runs and what would happen; train nothing."
    ),
    only: str | None = typer.Option(
        None, help="Only runs whose id matches this glob or substring, e.g. '*-rex-*'."
    ),
    retry_failed: bool = typer.Option(
        False,
        "--retry-failed",
        help="Train failed and damaged runs again (diverged runs are never retried).",
    ),
    keep_checkpoints: bool = typer.Option(
        False,
        "--keep-checkpoints",
        help="Keep each finished run's checkpoint.pt (default: deleted once the run is done; "
        "the config's keep_checkpoints: true does the same).",
    ),
    pack: str = typer.Option(
        "auto",
        help="Train up to G compatible runs (same cell: schedules x seeds x rates) as one packed "
        "network: a number, or auto (1 on the CPU, where packing does not pay; on CUDA the "
        "smallest G within 5% of the best measured throughput, up to what the GPU's memory "
        "holds; kept in RESULTS/<name>/pack-auto.json for resumes).",
    ),
    # --- executor: local (this machine) or slurm (a submitit job array); docs/slurm.md ---
    executor: str | None = typer.Option(
        None,
        help="local | slurm (default: the config's executor.name, else local).",
        rich_help_panel=_SLURM,
    ),
    wait: bool = typer.Option(
        False,
        "--wait",
        help="Slurm: follow the jobs until every run ended.",
        rich_help_panel=_SLURM,
    ),
    partition: str | None = typer.Option(None, help="Slurm partition.", rich_help_panel=_SLURM),
    gpus_per_job: int | None = typer.Option(
        None,
        min=0,
        help="GPUs per array task (default 1; 0 with --device cpu).",
        rich_help_panel=_SLURM,
    ),
    cpus_per_job: int | None = typer.Option(
        None, min=1, help="CPUs per array task.", rich_help_panel=_SLURM
    ),
    mem_gb: float | None = typer.Option(
        None, min=0.001, max=1e6, help="Memory per array task, GB.", rich_help_panel=_SLURM
    ),
    time: str | None = typer.Option(
        None,
        help="Time limit per array task: minutes or D-HH:MM:SS (default 2:00:00); runs resume after a requeue.",
        rich_help_panel=_SLURM,
    ),
    account: str | None = typer.Option(None, help="Slurm account.", rich_help_panel=_SLURM),
    qos: str | None = typer.Option(None, help="Slurm QoS.", rich_help_panel=_SLURM),
    sbatch: list[str] = typer.Option(
        [],
        help="Any other sbatch option, OPTION=VALUE or OPTION; repeatable.",
        rich_help_panel=_SLURM,
    ),
    max_concurrent: int | None = typer.Option(
        None, min=1, help="Array tasks running at once.", rich_help_panel=_SLURM
    ),
    runs_per_job: int | None = typer.Option(
        None,
        min=1,
        help="Runs each array task trains, one after another (default 1).",
        rich_help_panel=_SLURM,
    ),
) -> None:
    """Train every run of a sweep that is not done yet.

    Safe to kill at any moment and to run again: finished runs are skipped, started runs resume
    from their last epoch, and a per-run lock keeps two sweeps on the same results from training
    one run twice. A failed run is recorded (error in its summary.json, traceback in run.log) and
    the sweep goes on; the exit code is 1 if any run failed, 130 when interrupted (Ctrl-C or
    SIGTERM: every finished epoch is kept).

    Example: lrbench sweep configs/smoke.yaml --dry-run
    """
    from lrbench.config import load_config
    from lrbench.display import SweepDisplay, console
    from lrbench.sweep import Sweep, SweepOptions

    cfg = load_config(config, data_root=data_root)
    options = SweepOptions(
        results=results, device=device, jobs=jobs, precision=precision, data_dir=data_dir,
        pack=pack, threads=threads, log=log_choice(log) or cfg.log, only=only, retry_failed=retry_failed,
        keep_checkpoints=keep_checkpoints,
    )  # fmt: skip
    sweep = Sweep(cfg, options)
    flags = SlurmFlags(partition, gpus_per_job, cpus_per_job, mem_gb, time, account, qos,
                       tuple(sbatch), max_concurrent, runs_per_job)  # fmt: skip
    slurm = _slurm_settings(cfg, executor, device, wait, flags)
    if dry_run:
        _show_plan(sweep, jobs)
        if slurm:
            out.print(sweep.slurm_preview(slurm), soft_wrap=True)
        return
    signal.signal(signal.SIGTERM, _interrupt)  # a kill stops the sweep as Ctrl-C does
    if slurm:
        outcome = sweep.submit_to_slurm(slurm, wait, SweepDisplay, console.print)
        if not wait:
            return
    else:
        outcome = sweep.run_local(SweepDisplay, console.print)
    _finish(outcome, console)


def _interrupt(*_) -> None:
    raise KeyboardInterrupt


def _finish(outcome: SweepOutcome, console: Console) -> None:
    """The closing line, and the exit code: 130 interrupted, 1 when a run failed."""
    if not outcome.states and not outcome.interrupted:
        return
    console.print(outcome.closing())
    if outcome.interrupted:
        console.print("interrupted: every finished epoch is kept; run the same command to resume")
        raise typer.Exit(130)
    failure = outcome.failure()
    if failure is not None:
        raise failure


@dataclass(frozen=True)
class SlurmFlags:
    """The sweep's Slurm options as typed (None: not given); executors.slurm_submit.FLAGS names each
    one's option."""

    partition: str | None
    gpus_per_job: int | None
    cpus_per_job: int | None
    mem_gb: float | None
    time: str | None
    account: str | None
    qos: str | None
    sbatch: tuple[str, ...]
    max_concurrent: int | None
    runs_per_job: int | None


def _slurm_settings(cfg, executor: str | None, device: str, wait: bool, typed: SlurmFlags):
    """Resolved Slurm settings (config's executor block, then flags), or None for local."""
    from lrbench.executors.base import executor_name
    from lrbench.executors.slurm_submit import resolve_settings, slurm_flags_given

    flags = asdict(typed)
    if executor_name(executor, cfg.executor) == "local":
        given = slurm_flags_given(flags) + (["--wait"] if wait else [])
        if given:
            raise UserError(f"{', '.join(given)} only apply to --executor slurm")
        return None
    return resolve_settings(cfg.executor, flags, device)


def _show_plan(sweep: Sweep, jobs: int | None) -> None:
    from lrbench.durations import fmt_hours
    from lrbench.sweep.estimate import estimate

    retry = sweep.options.retry_failed
    out.print(f"{len(sweep.planned)} runs", highlight=False)
    rows = [(p.run_id, str(p.spec.epochs), p.shown_state(retry)) for p in sweep.planned]
    print_columns(("run", "epochs", "state"), rows)
    note = sweep.check_data()
    if note:
        out.print(note, soft_wrap=True)
    alone = sweep.alone()
    if alone:
        why = next(iter(alone.values()))
        out.print(f"{len(alone)} run(s) train alone, never packed: {why}", soft_wrap=True)
    counts = sweep.counts()
    try:
        workers = len(sweep.local_devices())
    except UserError:  # a device this machine lacks: the plan still shows
        workers = jobs or 1
    est = estimate(sweep, workers)
    hours = "unknown" if est.seconds is None else fmt_hours(est.seconds)
    out.print(
        f"done {counts['done']}, diverged {counts['diverged']}, failed {counts['failed']}, "
        f"damaged {counts['damaged']}, to resume {counts['partial']}, to run {counts['new']}; "
        f"{sweep.epochs_left():,} epochs to train; "
        + ("estimated " if est.calibrated else "estimate ")
        + f"{hours} ({est.how})",
        soft_wrap=True,
        highlight=False,
    )


@app.command("status")
def status_command(
    results: Path = typer.Argument(Path("results"), help="A results root or one sweep folder."),
    jobs: int | None = typer.Option(
        None,
        "--jobs",
        "-j",
        min=1,
        help="Processes that read the runs (default: one per core; 1 on a busy machine).",
    ),
) -> None:
    """Runs by state for each sweep under RESULTS; each failed or damaged run with its reason;
    each unfinished run with its epoch and the time left (at its own epoch times)."""
    from lrbench.durations import fmt_duration
    from lrbench.forked import usable_cores
    from lrbench.sweep.status import STATES, sweep_status

    statuses = sweep_status(results, jobs or usable_cores())
    table = Table(header_style="bold")
    names = [literal(s.path.name) for s in statuses]
    table.add_column("sweep", no_wrap=True, min_width=max(map(len, names), default=5))
    for col in (*STATES, "total", "left"):
        table.add_column(col, justify="right")
    for name, s in zip(names, statuses, strict=True):
        left = fmt_duration(s.seconds_left) if s.seconds_left is not None else "-"
        cells = [str(s.counts[state]) for state in STATES]
        table.add_row(name, *cells, str(s.total), left)
    print_whole(table, out)
    for s in statuses:
        for p in s.unfinished:
            eta = fmt_duration(p.seconds_left) if p.seconds_left is not None else "unknown"
            out.print(
                f"[cyan]{p.state}[/] {literal(s.path.name)}/{literal(p.run_id)}: "
                f"epoch {p.epochs_done}/{p.epochs}, "
                f"{eta} left",
                highlight=False,
                soft_wrap=True,
            )
        for state, run, why in s.problems:
            out.print(  # whole lines: paths to copy, lines to grep
                f"[red]{state}[/] {literal(s.path / 'runs' / run)}: {literal(why)}",
                highlight=False,
                soft_wrap=True,
            )
