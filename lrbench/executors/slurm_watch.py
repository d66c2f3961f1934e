"""How a sweep's Slurm job arrays are followed: which array tasks are still queued or running
(so a second submission leaves their runs out, and `--wait` knows when to stop), and what
`--wait` shows, read from the run folders as the tasks write them.

A task this process submitted is judged by submitit's job state (`Job.done()`: the task's result
file, else sacct); a task an earlier command submitted, or one whose state sacct cannot give (a
cluster without accounting answers UNKNOWN), by squeue.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lrbench.executors.base import Msg, Outcome
from lrbench.executors.slurm_submit import JOBS_FILE, LOG_DIR, ArrayTask, Submission
from lrbench.results import RunDir, read_json
from lrbench.specs import RunSpec

POLL_S = 2.0  # how often --wait reads the run folders
SQUEUE_S = 10.0  # how often --wait asks squeue whether the tasks are still there
# squeue states of a task that will not train any more.
DEAD_STATES = {"CG", "CD", "CA", "F", "TO", "NF", "PR", "OOM", "BF", "DL", "RV"}


def running_tasks(tasks: Iterable[ArrayTask], cluster: str, unknown_alive: bool) -> set[str]:
    """The ids of the tasks still queued or running. `unknown_alive`: whether a task counts as
    running when squeue fails (--wait goes on waiting; a submission submits the runs again)."""
    running, ask = set(), []
    for task in tasks:
        if task.job is None:
            ask.append(task)
        elif task.job.done():
            continue
        elif cluster != "slurm" or task.job.state.upper() != "UNKNOWN":
            running.add(task.task_id)
        else:
            ask.append(task)
    if not ask:
        return running
    states = squeue_states()
    if states is None:
        return running | ({t.task_id for t in ask} if unknown_alive else set())
    return running | {t.task_id for t in ask if states.get(t.task_id, "CD") not in DEAD_STATES}


def squeue_states() -> dict[str, str] | None:
    """This user's jobs in squeue, one entry per array task: {`123_4`: `R`, `124`: `PD`}.

    None when squeue fails.
    """
    if not shutil.which("squeue"):
        return None
    cmd = ["squeue", "-h", "--array", "-u", getpass.getuser(), "-o", "%i %t"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    states = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2:
            states[parts[0]] = parts[1]
    return states


def queued_runs(sweep_dir: Path) -> dict[str, str]:
    """Runs of this sweep in Slurm array tasks still queued or running: {run id: task id}
    (slurm/jobs.jsonl says which task trains which runs)."""
    path = sweep_dir / LOG_DIR / JOBS_FILE
    if not path.exists():
        return {}
    runs_of: dict[str, list[str]] = {}
    for line in path.read_text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("cluster") == "slurm":
            runs_of.update(entry.get("tasks") or {})
    if not runs_of:
        return {}
    tasks = [ArrayTask(task_id, []) for task_id in runs_of]
    running = running_tasks(tasks, "slurm", unknown_alive=False)
    return {run: task for task in running for run in runs_of[task]}


def watch(
    sub: Submission,
    on_msg: Callable[[Msg], None],
    poll_s: float = POLL_S,
    squeue_s: float = SQUEUE_S,
) -> Outcome:
    """Follow the run folders until every run ended or no task is left."""
    outcome = Outcome()
    watched = [_Watched(spec, RunDir(path), t.task_id) for t in sub.tasks for spec, path in t.items]
    lines: list[str | None] = []
    checked, alive = 0.0, True
    try:
        while True:
            for w in watched:
                for msg in w.poll(lines):
                    if msg.kind == "end":
                        outcome.states[msg.run_id] = msg.state or "failed"
                    on_msg(msg)
            if all(w.ended for w in watched):
                break
            if not alive:
                break  # one last read of the folders after the last task left
            if time.monotonic() - checked >= (squeue_s if sub.cluster == "slurm" else poll_s):
                checked = time.monotonic()
                alive = bool(running_tasks(sub.tasks, sub.cluster, unknown_alive=True))
                if not alive:
                    continue
            time.sleep(poll_s)
    except KeyboardInterrupt:
        outcome.interrupted = True
    for w in watched:
        if not w.ended and not outcome.interrupted:
            outcome.states[w.spec.run_id] = "unfinished"
    return outcome


@dataclass
class _Watched:
    """One run as `--wait` sees it through its folder: start, each new epoch row, the end.

    What was on disk before (a resumed run's rows and spec.json, a failed run's summary.json
    when it is retried) is not news: only files that change after the watch began count.
    """

    spec: RunSpec
    run: RunDir
    task_id: str
    started: bool = False
    ended: bool = False
    line: int = -1  # its line of the display (Msg.worker)
    total_steps: int = 0

    def __post_init__(self) -> None:
        self.before = {name: _mtime(getattr(self.run, name)) for name in ("spec", "summary")}
        self.size = _size(self.run.metrics)
        self.rows = self.run.complete_epochs()

    def _changed(self, name: str) -> bool:
        now = _mtime(getattr(self.run, name))
        return now is not None and now != self.before[name]

    def poll(self, lines: list[str | None]) -> list[Msg]:
        from lrbench.train.runtime import Event

        if self.ended:
            return []
        out: list[Msg] = []
        new_rows: list[dict[str, Any]] = []
        size = _size(self.run.metrics)
        if size != self.size:
            self.size = size
            rows = self.run.read_metrics().rows
            new_rows = rows[self.rows :]
            self.rows = max(self.rows, len(rows))
        finished = self._changed("summary")
        if not self.started and (finished or new_rows or self._changed("spec")):
            self.started = True
            self.line = _take_line(lines, self.task_id)
            out.append(Msg("start", self.line, self.spec.run_id, epochs=self.spec.epochs))
        if not self.started:
            return out
        if not self.total_steps and self.run.spec.exists():
            with contextlib.suppress(OSError, ValueError):
                self.total_steps = int(read_json(self.run.spec).get("total_steps", 0))
        for row in new_rows:
            epoch, step = int(row.get("epoch", 0)), int(row.get("step", 0))
            event = Event("epoch", epoch, self.spec.epochs, step, self.total_steps, row)
            out.append(Msg("event", self.line, self.spec.run_id, event=event))
        if finished:
            state = self.run.state()
            detail = None
            if state == "failed":
                with contextlib.suppress(OSError, ValueError, AttributeError):
                    detail = read_json(self.run.summary).get("error")
            self.ended = True
            lines[self.line] = None
            out.append(Msg("end", self.line, self.spec.run_id, state=state, detail=detail))
        return out


def _mtime(path: Path) -> int | None:
    try:
        return path.stat().st_mtime_ns
    except OSError:
        return None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _take_line(lines: list[str | None], label: str) -> int:
    """The first free line of the display (a run that ended frees its line), else a new one."""
    for i, s in enumerate(lines):
        if s is None:
            lines[i] = label
            return i
    lines.append(label)
    return len(lines) - 1
