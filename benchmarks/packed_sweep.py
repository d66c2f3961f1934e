"""A short real sweep through `train_runs`: 4 schedules x 2 seeds of ResNet20 on CIFAR-10 as
ONE pack, then one of its runs alone through `train_run`, for time and accuracy side by side.

    PYTHONPATH=. python benchmarks/packed_sweep.py --data .data/cifar10_jpeg_train_test.tar.xz

Prints each run's final test accuracy (packed and, for the first run, alone) and the
model-epochs per second of the pack and of the single run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from lrbench.data import DeviceData, load_splits
from lrbench.schedules import build_schedule
from lrbench.specs import OptimizerSpec, RunSpec
from lrbench.tools.bench import dataset_spec
from lrbench.train import Runtime, resolve_device, train_run, train_runs

SCHEDULES = ["step", "cosine", "rex", "onecycle"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True, help="CIFAR-10 image folder or archive")
    ap.add_argument("--out", default="/tmp/packed_sweep")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    dataset = dataset_spec(args.data)
    runtime = Runtime(device=args.device)
    data = DeviceData(load_splits(dataset), resolve_device(args.device))
    specs = [
        RunSpec(
            model=args.model,
            dataset=dataset,
            optimizer=OptimizerSpec(name="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4),
            schedule=build_schedule(name).to_dict(),
            budget=1.0,
            full_epochs=args.epochs,
            epochs=args.epochs,
            seed=seed,
            batch_size=128,
        )
        for seed in range(args.seeds)
        for name in SCHEDULES
    ]
    t0 = time.perf_counter()
    summaries = train_runs(specs, [out / s.run_id for s in specs], runtime, data=data)
    pack_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    alone = train_run(specs[0], out / "alone", runtime, data=data)
    alone_s = time.perf_counter() - t0
    for s, summary in zip(specs, summaries, strict=True):
        print(f"{s.run_id:60s} {summary['status']:8s} test_acc {summary['final']['test_acc']:.4f}")
    print(f"alone: {specs[0].run_id} test_acc {alone['final']['test_acc']:.4f}")
    scale = len(data.tensors("train")[1]) / 50_000
    result = {
        "pack": len(specs),
        "pack_wall_s": pack_s,
        "pack_model_epochs_per_s": len(specs) * args.epochs * scale / pack_s,
        "single_wall_s": alone_s,
        "single_model_epochs_per_s": args.epochs * scale / alone_s,
    }
    result["speedup"] = result["pack_model_epochs_per_s"] / result["single_model_epochs_per_s"]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
