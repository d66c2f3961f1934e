"""A sweep on a Slurm cluster: its packs submitted as one job array, and followed (`--wait`).

Packs form as for a local sweep (planned over the whole sweep), so a GPU array task trains
packs as a local GPU worker does. `--pack N` packs N runs; `--pack auto` packs what an array
task holds on a GPU job (`runs_per_job` runs: size runs_per_job to what one GPU fits) and
nothing on CPU jobs.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from lrbench.executors.slurm import (
    ArrayTask,
    SlurmExecutor,
    SlurmSettings,
    queued_runs,
)
from lrbench.sweep.packs import parse_pack
from lrbench.sweep.plan import write_sweep_files
from lrbench.sweep.run import DisplayFactory, Say, Sweep, SweepOutcome


def slurm_pack_size(sweep: Sweep, settings: SlurmSettings) -> int:
    size = parse_pack(sweep.options.pack)
    if size is not None:
        return size
    return settings.runs_per_job if settings.gpus_per_job else 1


def preview(sweep: Sweep, settings: SlurmSettings) -> str:
    """What --dry-run says the submission would be."""
    from lrbench.executors.slurm import chunk

    packs = sweep.slurm_work(sweep.todo, slurm_pack_size(sweep, settings))
    tasks = len(chunk(packs, settings.runs_per_job))
    n_runs = len(sweep.todo)
    cap = f", at most {settings.max_concurrent} at once" if settings.max_concurrent else ""
    packed = f" in {len(packs)} pack(s)" if len(packs) < n_runs else ""
    return (
        f"slurm: would submit {n_runs} run(s){packed} as a job array of {tasks} task(s) "
        f"({settings.runs_per_job} run(s) each{cap}); each task: {settings.describe()}"
    )


def submit_to_slurm(
    sweep: Sweep, settings: SlurmSettings, wait: bool, display: DisplayFactory, say: Say
) -> SweepOutcome:
    """Submit the sweep's unfinished runs; with `wait`, follow them like a local sweep."""
    options = sweep.options
    executor = SlurmExecutor(settings, options.device)
    where = write_sweep_files(sweep.config, options.results).resolve()
    outcome = SweepOutcome(sweep.config.name, where)
    if not sweep.todo:
        say(f"all {len(sweep.planned)} runs of {sweep.config.name} are finished; nothing to submit")
        return outcome
    sweep.check_data()  # missing data is exit 2 before anything is submitted
    data_dir = str(Path(options.data_dir).resolve()) if options.data_dir else None
    runtime = replace(sweep.runtime(options.device, 1, slurm=True), data_dir=data_dir)

    queued = queued_runs(where)
    items, held, waiting = [], [], []
    for p in sweep.todo:
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
        for pack in sweep.slurm_work(items, slurm_pack_size(sweep, settings))
    ]
    sub = executor.submit(sweep.config.name, where, packs, runtime)
    if sub.job_id is None:
        say("nothing new to submit")
    else:
        ids = [t.task_id for t in sub.tasks]
        kind = "job array" if len(ids) > 1 else "job"
        print(
            f"submitted {len(items)} run(s) of {sweep.config.name} as {kind} {sub.job_id} "
            f"({len(ids)} task(s): {ids[0]}{' … ' + ids[-1] if len(ids) > 1 else ''})",
            flush=True,
        )
        say(
            f"each task: {settings.describe()}; {settings.runs_per_job} run(s) per task"
            + (f", at most {settings.max_concurrent} at once" if settings.max_concurrent else "")
        )
        say(f"logs: {sub.log_dir}/<task>_0_log.out (e.g. {sub.log_path(ids[0]).name})")
    if not wait:
        if sub.job_id is not None:
            say(
                f"follow: lrbench status {where}; wait: add --wait; "
                + (f"cancel: scancel {sub.job_id}" if sub.cluster == "slurm" else "")
            )
        return outcome

    # --wait: the runs just submitted and those already queued, followed through their folders.
    specs = {p.run_id: p for p in waiting}
    for task_id in sorted({queued[r] for r in specs}):
        runs = [(specs[r].spec, specs[r].run.path) for r, t in queued.items()
                if t == task_id and r in specs]  # fmt: skip
        sub.tasks.append(ArrayTask(task_id, runs))
    if not sub.tasks:
        return outcome
    followed = {s.run_id for t in sub.tasks for s, _ in t.items}
    total = len(followed)
    epochs = sweep.epochs_left([p for p in sweep.todo if p.run_id in followed])
    say(f"waiting for {total} run(s); Ctrl-C stops waiting, not the jobs")
    labels: list[str] = []
    task_of = {s.run_id: t.task_id for t in sub.tasks for s, _ in t.items}

    with display(total, epochs, labels) as show:

        def on_msg(msg: Any) -> None:
            while len(labels) <= msg.worker:
                labels.append("")
            if msg.kind == "start":
                labels[msg.worker] = f"task {task_of.get(msg.run_id, '')}"
            show(msg)

        result = executor.watch(sub, on_msg)
    outcome.statuses, outcome.interrupted = result.statuses, result.interrupted
    if outcome.interrupted:
        say(f"stopped waiting; the jobs go on (lrbench status {where})")
    return outcome
