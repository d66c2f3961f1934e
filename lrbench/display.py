"""Progress for people: a live rich display on a terminal, plain log lines otherwise."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field

from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from lrbench.durations import fmt_duration
from lrbench.executors.base import Msg
from lrbench.train import Event

console = Console(stderr=True, soft_wrap=True)


def _metrics(row: dict | None) -> str:
    if not row:
        return ""
    acc, test_loss = row.get("test_acc"), row.get("test_loss")
    if isinstance(acc, float):
        score = f" test_acc {acc:.3f}"
    else:  # a task without an accuracy (your own loss)
        score = f" test_loss {test_loss:.3f}" if isinstance(test_loss, float) else ""
    return f"loss {row['train_loss']:.3f}{score}"


class RunProgress:
    """One run's progress bar for `lrbench run`: epoch, step, loss, accuracy, images/s."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[metrics]}"),
            TimeRemainingColumn(),
            console=console,
            disable=not console.is_terminal,
        )
        self.task = None

    def __enter__(self) -> RunProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def __call__(self, event: Event) -> None:
        if self.task is None:
            self.task = self.progress.add_task("run", total=event.total_steps, epoch="", metrics="")
        epoch = f"{event.epoch}/{event.epochs}"
        self.progress.update(self.task, completed=event.step, epoch=epoch)
        if event.kind == "epoch":
            text = f"{_metrics(event.row)}  {event.images_per_s:,.0f} img/s"
            self.progress.update(self.task, metrics=text)
            if not console.is_terminal:
                print(f"epoch {epoch} {text}", file=sys.stderr, flush=True)


@dataclass
class _Worker:
    run_id: str = "-"
    epoch: str = ""
    metrics: str = ""


@dataclass
class SweepDisplay:
    """Runs done / total with ETA, and each worker's current run, epoch, loss and accuracy."""

    total_runs: int
    total_epochs: int
    devices: list[str]
    workers: dict[int, _Worker] = field(default_factory=dict)
    done_runs: int = 0
    done_epochs: int = 0
    started: float = field(default_factory=time.monotonic)
    live: Live | None = None

    def __post_init__(self) -> None:
        self.bar = Progress(
            TextColumn("[bold]runs"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[eta]}"),
            console=console,
        )
        self.task = self.bar.add_task("runs", total=self.total_runs, eta="")

    def __enter__(self) -> SweepDisplay:
        if console.is_terminal:
            self.live = Live(self._render(), console=console, refresh_per_second=4)
            self.live.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        if self.live:
            self.live.update(self._render())
            self.live.__exit__(*exc)

    def eta(self) -> str:
        if not self.done_epochs:
            return "ETA unknown"
        rate = self.done_epochs / (time.monotonic() - self.started)
        return f"ETA {fmt_duration((self.total_epochs - self.done_epochs) / rate)}"

    def _render(self) -> Group:
        self.bar.update(self.task, completed=self.done_runs, eta=self.eta())
        table = Table(box=None, show_header=True, header_style="dim")
        for col in ("worker", "device", "run", "epoch", "metrics"):
            table.add_column(col)
        for i, w in sorted(self.workers.items()):
            table.add_row(str(i), self.devices[i], w.run_id, w.epoch, w.metrics)
        return Group(self.bar, table)

    def _log(self, text: str) -> None:
        if self.live:
            self.live.console.print(text, highlight=False)
        else:
            print(text, file=sys.stderr, flush=True)

    def __call__(self, msg: Msg) -> None:
        w = self.workers.setdefault(msg.worker, _Worker())
        if msg.kind == "start":
            w.run_id, w.epoch, w.metrics = msg.run_id, f"0/{msg.epochs}", ""
            if not self.live:
                self._log(f"[worker {msg.worker}] start {msg.run_id}")
        elif msg.kind == "event" and msg.event:
            e = msg.event
            w.epoch = f"{e.epoch}/{e.epochs} step {e.step}/{e.total_steps}"
            if e.kind == "resume" and not self.live:
                run_id = (e.row or {}).get("run_id", msg.run_id)
                self._log(f"[worker {msg.worker}] {run_id} resume after epoch {e.epoch}")
            if e.kind == "epoch":
                self.done_epochs += 1  # a pack reports each member's epoch
                w.metrics = _metrics(e.row)
                if not self.live:
                    self._log(
                        f"[worker {msg.worker}] {msg.run_id} epoch {e.epoch}/{e.epochs} {w.metrics}"
                    )
        elif msg.kind == "end":
            if msg.state != "interrupted":
                self.done_runs += 1
            tail = f": {msg.detail}" if msg.detail else ""
            colour = {"done": "green", "diverged": "yellow"}.get(msg.state or "", "red")
            text = f"{msg.run_id} {msg.state}{tail}"
            self._log(
                f"[{colour}]{escape(text)}[/]" if self.live else f"[worker {msg.worker}] {text}"
            )
            w.run_id, w.epoch, w.metrics = "-", "", ""
        elif msg.kind == "held":
            self.done_runs += 1
            self._log(f"{msg.run_id} is being trained by another process; skipped")
        if self.live:
            self.live.update(self._render())
