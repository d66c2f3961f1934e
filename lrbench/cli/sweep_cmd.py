"""`lrbench sweep` and `lrbench status`."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.table import Table

from lrbench.cli.app import app
from lrbench.cli.options import pack_number
from lrbench.errors import RunFailed, UserError

if TYPE_CHECKING:
    from lrbench.sweep import PlannedRun
    from lrbench.train import Runtime

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
        help="Worker processes (default: one per GPU, or 1 on the CPU); on GPUs they are spread round-robin.",
    ),
    precision: str = typer.Option(
        "auto", help="auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16 | fp64."
    ),
    data_dir: str | None = typer.Option(
        None, envvar="LRBENCH_DATA", help="Where datasets are downloaded and cached."
    ),
    data_root: str | None = typer.Option(
        None,
        help="Read the config's dataset from this image folder or .tar[.gz|.xz] archive (train/<class>/, test/<class>/) instead of downloading it.",
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Show the runs and what would happen; train nothing."
    ),
    only: str | None = typer.Option(
        None, help="Only runs whose id matches this glob or substring, e.g. '*-rex-*'."
    ),
    retry_failed: bool = typer.Option(
        False, "--retry-failed", help="Train failed runs again (diverged runs are never retried)."
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
        None, min=0.001, help="Memory per array task, GB.", rich_help_panel=_SLURM
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
    the sweep goes on; the exit code is 1 if any run failed.

    Example: lrbench sweep configs/smoke.yaml --dry-run
    """
    from lrbench.config import load_config, with_data_root
    from lrbench.sweep import plan

    cfg = load_config(config)
    parse_pack(pack)  # a bad --pack is exit 2 before anything, --dry-run included
    if data_root:
        cfg = with_data_root(cfg, data_root)
    planned = plan(cfg, results, only)
    if not planned:
        raise UserError(f"--only {only!r} matches no run of {config}")
    todo = [p for p in planned if p.to_train(retry_failed)]
    slurm = _slurm_settings(cfg, executor, device, locals())
    if dry_run:
        _show_plan(planned, todo, results, jobs)
        if slurm:
            from lrbench.executors.slurm import preview

            out.print(preview(slurm, len(todo)), soft_wrap=True)
        return
    if slurm:
        from lrbench.executors.slurm import sweep_on_slurm

        sweep_on_slurm(cfg, planned, todo, results, slurm, device, precision, data_dir, wait)
        return
    _run_sweep(cfg, planned, todo, results, device, jobs, precision, data_dir, pack)


def _slurm_settings(cfg, executor: str | None, device: str, args: dict):
    """Resolved Slurm settings (config's executor block, then flags), or None for local."""
    from lrbench.executors.base import executor_name
    from lrbench.executors.slurm import FLAGS, resolve_settings, slurm_flags_given

    flags = {k: args[k] for k in FLAGS}
    if executor_name(executor, cfg.executor) == "local":
        given = slurm_flags_given(flags) + (["--wait"] if args["wait"] else [])
        if given:
            raise UserError(f"{', '.join(given)} only apply to --executor slurm")
        return None
    return resolve_settings(cfg.executor, flags, device)


def _show_plan(planned, todo, results: Path, jobs: int | None) -> None:
    from lrbench.display import fmt_duration
    from lrbench.sweep import estimate_seconds

    table = Table(title=f"{len(planned)} runs", header_style="bold")
    for col in ("run", "epochs", "state"):
        table.add_column(col)
    action = {"new": "to run", "partial": "to resume"}
    for p in planned:
        state = action.get(p.state, p.state)
        if p.state == "partial":
            state += f" (epoch {p.epochs_done}/{p.spec.epochs})"
        if p.state in ("failed", "corrupt") and p in todo:
            state += " (retry)"
        table.add_row(p.spec.run_id, str(p.spec.epochs), state)
    out.print(table)
    counts = Counter(p.state for p in planned)
    left = sum(p.spec.epochs - p.epochs_done for p in todo)
    est = estimate_seconds(todo, results, jobs or 1)
    out.print(
        f"done {counts['done']}, diverged {counts['diverged']}, failed {counts['failed']}, "
        f"to resume {counts['partial']}, to run {counts['new']}; "
        f"{left} epochs to train; estimate {fmt_duration(est)}"
        + (
            " (from earlier runs' epoch times)" if est is not None else " (no earlier runs to time)"
        ),
        soft_wrap=True,
    )


def parse_pack(pack: str) -> int | None:
    """`--pack`: a whole number >= 1, or None for auto."""
    return None if pack == "auto" else pack_number(pack)


def pack_size(
    pack: str,
    device: str,
    planned: list[PlannedRun],
    num_classes: int,
    runtime: Runtime,
    sweep: Path,
) -> int:
    """`--pack`: a number is used as given; auto is 1 on the CPU (packing does not pay there),
    and on CUDA measured once per sweep (lrbench.packed.autosize) for the sweep's largest group
    of compatible runs, its model and batch size: one size serves every group, and the choice is
    kept in the sweep's pack-auto.json so that a resumed sweep forms the same packs."""
    size = parse_pack(pack)
    if size is not None:
        return size
    if not device.startswith("cuda"):
        return 1
    from lrbench.display import console
    from lrbench.packed.autosize import CACHE_NAME, sweep_pack_size
    from lrbench.train import resolve_device, resolve_precision

    dev = resolve_device(device)
    specs = [p.spec for p in planned]
    precision = resolve_precision(runtime.precision, dev)
    cache = sweep / CACHE_NAME
    return sweep_pack_size(
        specs, num_classes, dev, precision, runtime.channels_last, cache, console.print
    )


def _task_items(planned, todo, size: int) -> list:
    """Runs to train as tasks: single runs, or packs planned over the whole sweep.

    Packs are planned over every run of the sweep, finished or not, and keep their finished
    members, so a resumed sweep trains the same packs (the grouped kernels' float32 numbers
    depend on a pack's size).
    """
    from lrbench.packed import plan_packs
    from lrbench.sweep import SKIP_STATES

    if size == 1:
        return [(p.spec, p.run.path) for p in todo]
    wanted = {p.spec.run_id for p in todo}
    by_id = {p.spec.run_id: p for p in planned}
    items = []
    for pack in plan_packs([p.spec for p in planned], size):
        if not any(s.run_id in wanted for s in pack):
            continue
        members = [by_id[s.run_id] for s in pack]
        members = [m for m in members if m.spec.run_id in wanted or m.state in SKIP_STATES]
        if len(members) == 1:
            items.append((members[0].spec, members[0].run.path))
        else:
            items.append(([m.spec for m in members], [m.run.path for m in members]))
    return items


def _run_sweep(cfg, planned, todo, results, device, jobs, precision, data_dir, pack) -> None:
    from lrbench.data import load_splits
    from lrbench.display import SweepDisplay, console
    from lrbench.executors.local import parse_devices, run_local
    from lrbench.sweep import sweep_dir, write_sweep_yaml
    from lrbench.train import Runtime, resolve_device, resolve_precision

    devices = parse_devices(device, jobs)
    resolve_precision(precision, resolve_device(devices[0]))
    write_sweep_yaml(cfg, results)
    skipped = len(planned) - len(todo)
    if not todo:
        console.print(f"all {len(planned)} runs of {cfg.name} are finished; nothing to train")
        return
    splits = load_splits(cfg.dataset, data_dir)  # missing data is exit 2 before any worker starts
    console.print(
        f"sweep {cfg.name}: {len(todo)} runs to train ({skipped} already finished) "
        f"on {len(devices)} worker(s): {', '.join(sorted(set(devices)))}"
    )
    runtime = Runtime(device=devices[0], precision=precision, data_dir=data_dir)
    where = sweep_dir(cfg, results)
    size = pack_size(pack, devices[0], planned, splits.num_classes, runtime, where)
    epochs = sum(p.spec.epochs - p.epochs_done for p in todo)
    items = _task_items(planned, todo, size)
    if size > 1:
        console.print(f"packing up to {size} runs per network: {len(items)} task(s)")
    with SweepDisplay(len(todo), epochs, devices) as display:
        outcome = run_local(items, devices, runtime, display)
    counts = Counter(outcome.statuses.values())
    console.print(
        f"{counts['done']} done, {counts['diverged']} diverged, {counts['failed']} failed, "
        f"{counts['held']} held by another sweep; results in {where}"
    )
    if outcome.interrupted:
        console.print("interrupted: every finished epoch is kept; run the same command to resume")
        raise typer.Exit(130)
    if counts["failed"]:
        failed = [r for r, s in outcome.statuses.items() if s == "failed"]
        raise RunFailed(
            f"{len(failed)} run(s) failed, e.g. {failed[0]} (see {where}/runs/{failed[0]}/run.log); "
            "lrbench status shows them, --retry-failed trains them again"
        )


def _not_started(sweep: Path, on_disk: set[str]) -> int:
    """Runs of the sweep's resolved config (sweep.yaml) that have no folder yet."""
    from lrbench.config import expand, load_config

    if not (sweep / "sweep.yaml").exists():
        return 0
    try:
        return sum(
            1
            for s in expand(load_config(sweep / "sweep.yaml", imports=False))
            if s.run_id not in on_disk
        )
    except UserError:
        return 0


@app.command("status")
def status_command(
    results: Path = typer.Argument(Path("results"), help="A results root or one sweep folder."),
) -> None:
    """Runs by state for each sweep under RESULTS, and each failed run with its error line."""
    from lrbench.results import read_json, run_dirs

    if not results.exists():
        raise UserError(f"{results}: no such folder")
    sweeps = (
        [results]
        if (results / "runs").is_dir()
        else sorted(p for p in results.iterdir() if (p / "runs").is_dir())
    )
    if not sweeps:
        raise UserError(f"{results}: holds no sweep (no runs/ folder)")
    table = Table(header_style="bold")
    states = ("done", "diverged", "failed", "running", "partial", "new")
    for col in ("sweep", *states, "total"):
        table.add_column(col, justify="right" if col != "sweep" else "left")
    failures = []
    for sweep in sweeps:
        counts: Counter[str] = Counter()
        for run in run_dirs(sweep):
            state = run.status()
            if state in ("partial", "new") and run.is_locked():
                state = "running"
            counts[state] += 1
            if state in ("failed", "corrupt"):
                error = "summary.json unreadable"
                if state == "failed":
                    error = read_json(run.summary).get("error", "unknown error")
                failures.append(f"{run.path}: {error}")
        counts["new"] += _not_started(sweep, {r.path.name for r in run_dirs(sweep)})
        table.add_row(sweep.name, *(str(counts[s]) for s in states), str(sum(counts.values())))
    out.print(table)
    for line in failures:
        out.print(f"[red]failed[/] {line}", highlight=False)
