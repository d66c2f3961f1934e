"""What the training tests share: a tiny run's spec, the CPU runtimes, a run's metrics rows
without timings, training twins (a pack and each of its runs alone), and waiting for an event
(a metrics row on disk) instead of sleeping."""

from __future__ import annotations

import csv
import json
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from lrbench.results import RunDir
from lrbench.runfiles import read_metrics
from lrbench.specs import DatasetSpec, OptimizerSpec, RunSpec
from lrbench.train import Runtime, train_run, train_runs

CPU = Runtime(device="cpu")
FP64 = Runtime(device="cpu", precision="fp64")
SGD = OptimizerSpec(name="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4)
TINY: dict[str, Any] = {
    "model": "resnet8",
    "dataset": DatasetSpec(name="synthetic", limit_train=96, limit_test=100),
    "optimizer": SGD,
    "schedule": {"name": "rex", "label": "rex", "beta": 0.5},
    "budget": 1.0,
    "full_epochs": 2,
    "epochs": 2,
    "seed": 0,
    "batch_size": 32,
}
TIMING = {"epoch_time_s"}


def spec(**changes: Any) -> RunSpec:
    """A tiny run (ResNet8, 96 synthetic images, two epochs of batch 32, REX); `changes`
    replace its fields. A file whose runs differ binds its own with functools.partial."""
    return RunSpec(**{**TINY, **changes})


def metrics_rows(run: Path | RunDir, keep_time: bool = False) -> list[dict[str, str]]:
    """A run's metrics rows as written (text, so equal rows are equal to the bit), timings left
    out unless `keep_time`: what must not depend on how or when the run trained. Every whole
    line counts (a resume that wrote an epoch twice shows); a last line still being written
    does not. lrbench.runfiles.read_metrics would stop at the first damaged line."""
    path = run.metrics if isinstance(run, RunDir) else Path(run) / "metrics.csv"
    lines = [line for line in path.read_text().splitlines(keepends=True) if line.endswith("\n")]
    return [
        {k: v for k, v in row.items() if keep_time or k not in TIMING}
        for row in csv.DictReader(lines)
    ]


def epoch_rows(runs: Path) -> int:
    """Whole epoch rows in the metrics.csv of every run folder below `runs`."""
    return sum(len(read_metrics(p).rows) for p in Path(runs).glob("**/metrics.csv"))


def wait_for(
    predicate: Callable[[], object], timeout: float = 180.0, every: float = 0.05, what: str = ""
) -> None:
    """Poll until `predicate()` holds; the generous timeout fails the test only when the event
    never comes."""
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, f"timed out waiting for {what or predicate}"
        time.sleep(every)


def kill_when(
    proc: subprocess.Popen,
    event: Callable[[], bool],
    what: str,
    timeout: float = 600.0,
    every: float = 0.01,
) -> bool:
    """SIGKILL `proc` as soon as `event()` holds (looked at every `every` s: a short event asks
    for a short period); False when `proc` ended first."""
    wait_for(lambda: proc.poll() is not None or event(), timeout, every, what)
    if proc.poll() is not None:
        return False
    proc.kill()
    proc.wait()
    return True


def kill_after_new_row(proc: subprocess.Popen, runs: Path) -> bool:
    """SIGKILL `proc` once a metrics.csv below `runs` holds one more epoch row than when this
    was called: killed while it trains, never while it starts; False when it ended first."""
    before = epoch_rows(runs)
    return kill_when(proc, lambda: epoch_rows(runs) > before, f"new epoch row under {runs}")


def train_twins(
    folder: Path,
    specs: Sequence[RunSpec],
    runtime: Runtime = CPU,
    alone: Callable[[RunSpec, Runtime], Path] | None = None,
    **kw: Any,
) -> list[tuple[Path, Path]]:
    """Train `specs` as one pack (folder/packed{i}) and each run alone (`alone(spec, runtime)`
    gives its folder; by default trained into folder/alone{i}): the (packed, alone) folder
    pairs, which must hold the same run. Checks that both ended done and what spec.json records
    of each: its run id and how it trained (pack size and slot)."""
    packed = [folder / f"packed{i}" for i in range(len(specs))]
    train_runs(specs, packed, runtime, **kw)
    pairs = [
        (p, alone(s, runtime) if alone else trained(s, folder / f"alone{i}", runtime))
        for i, (p, s) in enumerate(zip(packed, specs, strict=True))
    ]
    for i, (s, (p, a)) in enumerate(zip(specs, pairs, strict=True)):
        ours, theirs = (json.loads((x / "spec.json").read_text()) for x in (p, a))
        assert ours["run_id"] == theirs["run_id"] == s.run_id
        assert ours["provenance"]["pack"] == {"size": len(specs), "slot": i}
        assert theirs["provenance"]["pack"]["size"] == 1
        for x in (p, a):
            assert json.loads((x / "summary.json").read_text())["status"] == "done", x
    return pairs


def trained(spec: RunSpec, path: Path, runtime: Runtime) -> Path:
    train_run(spec, path, runtime)
    return path
