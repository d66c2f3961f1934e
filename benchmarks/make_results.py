"""Write a synthetic results folder of N finished runs, cheaply, for timing `status` and `report`.

    python benchmarks/make_results.py OUT --runs 10000

The runs are those of a real sweep config (results/demo's, widened: 2 models x 2 optimizers x
8 schedules x 5 budgets x as many seeds as N needs), planned by lrbench itself: spec.json is
exactly what the trainer writes (the resolved spec, run id, step counts, a provenance), plan.json
and sweep.yaml exactly what `lrbench sweep` writes, so `status` and `report` take the folder for a
genuine sweep. metrics.csv and summary.json hold made-up but well-formed numbers (accuracies that
climb with the epochs, one row per epoch, written as the trainer writes them); nothing trains.
Each run costs three small files (about 12 KB on disk with 4 KB blocks).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from lrbench.config import parse_config
from lrbench.results import atomic_write_json, metric_columns, read_json
from lrbench.sweep.plan import write_sweep_files

DEMO = Path(__file__).resolve().parent.parent / "results" / "demo"
SCHEDULES = [
    "constant",
    "step",
    "exponential",
    "linear",
    "cosine",
    "rex",
    {"name": "sgdr", "cycles": 3},
    {"name": "triangular", "step_size": 0.25},
]
BUDGETS = [0.05, 0.1, 0.25, 0.5, 1.0]
RUNS_PER_SEED = 2 * 2 * len(SCHEDULES) * len(BUDGETS)
STEPS_PER_EPOCH = 8
WRITERS = 8


def config(name: str, seeds: int, full_epochs: int):
    """results/demo's config, widened to the given seeds; same dataset (by fingerprint)."""
    raw = read_yaml(DEMO / "sweep.yaml")
    sgd = raw["optimizers"][0]
    adam = {"name": "adam", "lr": 0.001, "weight_decay": 0.0005}
    raw.update(
        name=name,
        models=["resnet8", "resnet20"],
        optimizers=[sgd, adam],
        schedules=SCHEDULES,
        budgets=BUDGETS,
        seeds=seeds,
        full_epochs=full_epochs,
    )
    return parse_config(raw, source=str(DEMO / "sweep.yaml"), imports=False)


def read_yaml(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text())


def metrics_text(epochs: int, lr: float, rng: random.Random) -> tuple[str, dict]:
    """metrics.csv as the trainer writes it (header, one row per epoch, floats as repr), and
    the last row's values for summary.json."""
    columns = metric_columns(False)
    lines = [",".join(columns)]
    ceiling = rng.uniform(0.55, 0.92)
    row: dict = {}
    for epoch in range(1, epochs + 1):
        acc = ceiling * (1 - math.exp(-2.5 * epoch / epochs)) + rng.gauss(0, 0.01)
        acc = min(max(acc, 0.0), 1.0)
        row = {
            "epoch": epoch,
            "step": epoch * STEPS_PER_EPOCH,
            "lr": lr * rng.random(),
            "momentum": 0.9,
            "train_loss": 2.3 * (1 - acc) + 0.1,
            "train_acc": min(1.0, acc + 0.05),
            "test_loss": 2.3 * (1 - acc) + 0.2,
            "test_acc": acc,
            "epoch_time_s": rng.uniform(4.0, 6.0),
        }
        lines.append(",".join(repr(row[c]) if isinstance(row[c], float) else str(row[c])
                              for c in columns))  # fmt: skip
    return "\n".join(lines) + "\n", row


def write_run(job: tuple) -> None:
    """One run folder: spec.json, metrics.csv, summary.json."""
    runs_dir, spec, provenance, seed = job
    rng = random.Random(seed)
    run = runs_dir / spec.run_id
    run.mkdir(parents=True, exist_ok=True)
    record = {  # as lrbench.train.member.spec_record writes it
        "run_id": spec.run_id,
        **spec.model_dump(mode="json"),
        "steps_per_epoch": STEPS_PER_EPOCH,
        "total_steps": STEPS_PER_EPOCH * spec.epochs,
        "provenance": provenance,
    }
    (run / "spec.json").write_text(json.dumps(record, indent=2) + "\n")
    text, last = metrics_text(spec.epochs, spec.optimizer.lr, rng)
    (run / "metrics.csv").write_text(text)
    summary = {
        "status": "done",
        "epochs_completed": spec.epochs,
        "final": {k: last[k] for k in ("test_acc", "test_loss")} | {"val_acc": None},
        "wall_time_s": spec.epochs * 5.0,
        "stopped_early": False,
        "stopped_epoch": None,
    }
    (run / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


def write(out: Path, runs: int, full_epochs: int = 20) -> Path:
    seeds = math.ceil(runs / RUNS_PER_SEED)
    cfg = config(f"synthetic-{runs}", seeds, full_epochs)
    from lrbench.config import expand

    specs = expand(cfg)[:runs]
    where = write_sweep_files(cfg, out)
    plan = where / "plan.json"
    atomic_write_json(plan, {"name": cfg.name, "run_ids": [s.run_id for s in specs]})
    provenance = read_json(next((DEMO / "runs").iterdir()) / "spec.json")["provenance"]
    rng = random.Random(0)
    runs_dir = where / "runs"
    with ThreadPoolExecutor(WRITERS) as pool:  # creating files, not making them, is the cost
        for done in pool.map(write_run, ((runs_dir, s, provenance, rng.random()) for s in specs)):
            del done
    return where


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="results root to write the sweep into")
    parser.add_argument("--runs", type=int, default=1000)
    args = parser.parse_args()
    start = time.perf_counter()
    where = write(args.out, args.runs)
    print(f"{args.runs} runs in {where} ({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
