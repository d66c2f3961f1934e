"""Hand-made run folders, laid out exactly as the trainer writes them, for report tests.

`write_run` writes <root>/<sweep>/runs/<run-id>/{spec.json, metrics.csv, summary.json}; its
keyword arguments set what a test cares about (final test/val accuracy, status, lr, ...).
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any

COLUMNS = [
    "epoch",
    "step",
    "lr",
    "momentum",
    "train_loss",
    "train_acc",
    "test_loss",
    "test_acc",
    "epoch_time_s",
]
VAL_COLUMNS = ["val_loss", "val_acc"]


def write_run(
    root: Path,
    *,
    test_acc: float = 0.9,
    val_acc: float | None = None,
    sweep: str = "sweep",
    dataset: str = "cifar10",
    dataset_label: str | None = None,
    model: str = "resnet20",
    optimizer: str = "sgd",
    lr: float = 0.1,
    schedule: str = "rex",
    label: str | None = None,
    budget: float = 0.05,
    seed: int = 1,
    full_epochs: int = 60,
    status: str | None = "done",
    epochs_completed: int | None = None,
    schedule_params: dict[str, Any] | None = None,
    accs: list[float] | None = None,
    epoch_times: list[float] | None = None,
    stopped_epoch: int | None = None,
    ensemble: dict[int, tuple[int, float]] | None = None,
    steps_per_epoch: int = 10,
    snapshots: bool | None = None,
    spec: dict[str, Any] | None = None,
    test_loss: float | None = None,
    accuracy: bool = True,
) -> Path:
    """One run folder; status None leaves it unfinished (no summary.json).

    test_acc and val_acc are the last epoch's values; earlier epochs climb towards them, with
    test and val deliberately ordered differently so a test can tell which one was used.
    `accs` gives every epoch's test_acc instead (one per epoch written), `epoch_times` every
    epoch_time_s (default 1.5 s). `stopped_epoch` ends the run early there (summary.json says
    stopped_early). `ensemble` {epoch: (snapshots, accuracy)} adds the snapshot columns
    ensemble_size and ensemble_test_acc, empty in the other epochs; `snapshots` is spec.json's
    flag (default: whether `ensemble` is given). `spec` is merged into spec.json last, one level
    deep ({"provenance": {"threads": 4}} adds a key to provenance, {"batch_size": 256} replaces).
    `test_loss` is the last epoch's test loss (default 0.5); `accuracy=False` writes no *_acc
    column, as a task with its own loss records.
    """
    epochs = max(1, round(budget * full_epochs))
    sched = {"name": schedule, "label": label or schedule, **(schedule_params or {})}
    shown = label or schedule
    record = {
        "sweep": sweep,
        "model": model,
        "dataset": {
            "name": dataset,
            "root": None,
            "limit_train": None,
            "val_fraction": 0.1 if val_acc is not None else 0.0,
            "label": dataset_label,
        },
        "optimizer": {
            "name": optimizer,
            "lr": lr,
            "momentum": 0.9,
            "nesterov": False,
            "weight_decay": 1e-4,
            "betas": [0.9, 0.999],
            "eps": 1e-8,
        },
        "schedule": sched,
        "budget": budget,
        "full_epochs": full_epochs,
        "epochs": epochs,
        "seed": seed,
        "batch_size": 128,
        "early_stop": None,
        "steps_per_epoch": steps_per_epoch,
        "total_steps": steps_per_epoch * epochs,
        "provenance": {
            "lrbench": "0.1.0",
            "torch": "2.14.1",
            "device": "cpu",
            "precision": "fp32",
            "created": "2026-11-28T22:00:00Z",
        },
    }
    record["snapshots"] = ensemble is not None if snapshots is None else snapshots
    for key, value in (spec or {}).items():
        merge = isinstance(value, dict) and isinstance(record.get(key), dict)
        record[key] = {**record[key], **value} if merge else value
    digest = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:8]
    run_id = (
        f"{model}-{dataset_label or dataset}-{optimizer}{lr:g}-{shown}-b{budget:g}-s{seed}-{digest}"
    )
    record = {"run_id": run_id, **record}
    run = root / sweep / "runs" / run_id
    run.mkdir(parents=True)
    (run / "spec.json").write_text(json.dumps(record, indent=2))
    diverged = status == "diverged"
    rows = epochs if not diverged else max(1, epochs // 2)
    if stopped_epoch is not None:
        rows = stopped_epoch
    if accs is not None:
        rows = len(accs)
        test_acc = accs[-1]
    columns = [*COLUMNS[:-1], *(VAL_COLUMNS if val_acc is not None else []), COLUMNS[-1]]
    if ensemble is not None:
        columns += ["ensemble_size", "ensemble_test_acc"]
    if not accuracy:
        columns = [c for c in columns if not c.endswith("_acc")]
    last_loss = 0.5 if test_loss is None else test_loss
    last: dict[str, Any] = {}
    with (run / "metrics.csv").open("w", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(columns)
        for epoch in range(1, rows + 1):
            frac = epoch / epochs
            row = {
                "epoch": epoch,
                "step": steps_per_epoch * epoch,
                "lr": lr * (1 - frac) / (1 - 0.5 * frac),
                "momentum": 0.9,
                "train_loss": float("nan") if diverged and epoch == rows else 1.0 - 0.5 * frac,
                "train_acc": 0.5 + 0.4 * frac,
                "test_loss": 1.0 + (last_loss - 1.0) * frac,
                "test_acc": 0.1 + (test_acc - 0.1) * frac,
                "val_loss": 1.0 - 0.5 * frac,
                "val_acc": 0.1 + ((val_acc or 0.1) - 0.1) * frac,
                "epoch_time_s": 1.5 if epoch_times is None else epoch_times[epoch - 1],
                "ensemble_size": "",
                "ensemble_test_acc": "",
            }
            if accs is not None:
                row["test_acc"] = accs[epoch - 1]
            if ensemble and epoch in ensemble:
                row["ensemble_size"], row["ensemble_test_acc"] = ensemble[epoch]
            writer.writerow(
                [repr(row[c]) if isinstance(row[c], float) else row[c] for c in columns]
            )
            last = row
    if status is not None:
        summary: dict[str, Any] = {
            "status": status,
            "epochs_completed": rows if epochs_completed is None else epochs_completed,
            "final": {  # the last row's values, as a run writes them
                c: last.get(c) for c in ("test_acc", "test_loss", "val_acc") if c in columns
            },
            "wall_time_s": 1.5 * rows,
            "stopped_early": stopped_epoch is not None,
            "stopped_epoch": stopped_epoch,
        }
        if status == "failed":
            summary["error"] = (
                "Traceback (most recent call last):\n  ...\nRuntimeError: CUDA out of memory"
            )
        (run / "summary.json").write_text(json.dumps(summary))
    return run


def write_cell(root: Path, scores: dict[str, list[float]], **kwargs: Any) -> list[Path]:
    """One cell: {schedule: [final test_acc per seed]}, seeds numbered from 1."""
    return [
        write_run(root, schedule=schedule, seed=seed, test_acc=acc, **kwargs)
        for schedule, accs in scores.items()
        for seed, acc in enumerate(accs, start=1)
    ]


def write_plan(sweep: Path, runs: list[Path], name: str | None = None) -> Path:
    """<sweep>/plan.json as `lrbench sweep` writes it: the run ids of its current config."""
    plan = {"name": name or sweep.name, "run_ids": [run.name for run in runs]}
    path = sweep / "plan.json"
    path.write_text(json.dumps(plan, indent=2))
    return path
