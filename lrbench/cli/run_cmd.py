"""`lrbench run`: one run through the same loop that sweeps use."""

from __future__ import annotations

from pathlib import Path

import typer
from pydantic import ValidationError

from lrbench.cli.app import app
from lrbench.cli.options import parse_sets
from lrbench.errors import RunFailed, UserError
from lrbench.schedules import build_schedule
from lrbench.specs import DatasetSpec, OptimizerSpec, RunSpec


def dataset_spec(
    name: str,
    root: str | None,
    limit_train: int | None,
    val_fraction: float,
    limit_test: int | None = None,
) -> DatasetSpec:
    """`--dataset cifar10`, or `--dataset imagefolder --data-root PATH`, or a path for short."""
    if name not in ("cifar10", "cifar100", "synthetic", "imagefolder") and Path(name).exists():
        name, root = "imagefolder", name
    try:
        return DatasetSpec(
            name=name,
            root=root,
            limit_train=limit_train,
            limit_test=limit_test,
            val_fraction=val_fraction,
        )
    except ValidationError as err:
        raise UserError(pydantic_line(err, prefix="--")) from None


def pydantic_line(err: ValidationError, prefix: str = "") -> str:
    parts = []
    for e in err.errors():
        key = ".".join(str(x) for x in e["loc"]).replace("_", "-")
        parts.append(f"{prefix}{key}: {e['msg'].removeprefix('Value error, ')}")
    return "; ".join(parts)


@app.command("run")
def run_command(
    model: str = typer.Option(
        "resnet20",
        help="resnet20, resnet32, resnet38, resnet44, resnet56, resnet110, or any resnet{6n+2}.",
    ),
    dataset: str = typer.Option(
        "cifar10",
        help="cifar10 | cifar100 | synthetic | imagefolder, or a path to an image folder or archive.",
    ),
    data_root: str | None = typer.Option(
        None, help="imagefolder: a folder with train/ and test/, or a .tar[.gz|.xz] of one."
    ),
    data_dir: str | None = typer.Option(
        None, envvar="LRBENCH_DATA", help="Where datasets are downloaded and cached."
    ),
    limit_train: int | None = typer.Option(
        None, help="Train on a class-balanced subset of this many images."
    ),
    limit_test: int | None = typer.Option(
        None, help="Evaluate on a class-balanced subset of this many test images."
    ),
    val_fraction: float = typer.Option(
        0.0, help="Hold this fraction of train out as a validation split."
    ),
    optimizer: str = typer.Option("sgd", help="sgd | adam | adamw."),
    lr: float = typer.Option(0.1, help="Peak learning rate (the schedule multiplies it)."),
    momentum: float = typer.Option(0.9, help="SGD momentum."),
    nesterov: bool = typer.Option(False, help="SGD with Nesterov momentum."),
    weight_decay: float = typer.Option(5e-4, help="Weight decay."),
    schedule: str = typer.Option("rex", help="A schedule name (see `lrbench schedules`)."),
    sets: list[str] = typer.Option(
        [],
        "--set",
        help="Schedule parameter KEY=VALUE (YAML), repeatable: --set beta=0.9 --set warmup=0.05.",
    ),
    epochs: int = typer.Option(30, help="Epochs of the run; the schedule spans exactly these."),
    batch_size: int = typer.Option(128, help="Batch size."),
    seed: int = typer.Option(0, help="Seed: fixes the initial weights and the data order."),
    device: str = typer.Option("auto", help="auto (CUDA when present) | cpu | cuda | cuda:N."),
    precision: str = typer.Option(
        "auto", help="auto (bf16 autocast on CUDA, fp32 on CPU) | fp32 | bf16 | fp64."
    ),
    channels_last: bool = typer.Option(True, help="channels_last memory format."),
    out: Path = typer.Option(..., help="The run folder to write (resumed if it holds this run)."),
) -> None:
    """Train one run and write its folder: spec.json, metrics.csv, summary.json, checkpoint.pt.

    Run the same command again after an interruption and it resumes from the last finished
    epoch; a finished run is not trained again.

    Example: lrbench run --dataset ../shared/data/cifar10_jpeg_train_test.tar.xz --limit-train 5000 --epochs 3 --out runs/try
    """
    from lrbench.display import RunProgress
    from lrbench.optim import OPTIMIZERS
    from lrbench.train import Runtime, train_run

    if optimizer not in OPTIMIZERS:
        raise UserError(f"--optimizer: {optimizer!r} is not one of {', '.join(OPTIMIZERS)}")
    sched = build_schedule({"name": schedule, **parse_sets(sets)})
    try:
        spec = RunSpec(
            model=model,
            dataset=dataset_spec(dataset, data_root, limit_train, val_fraction, limit_test),
            optimizer=OptimizerSpec(
                name=optimizer,
                lr=lr,
                momentum=momentum,
                nesterov=nesterov,
                weight_decay=weight_decay,
            ),
            schedule=sched.to_dict(),
            budget=1.0,
            full_epochs=epochs,
            epochs=epochs,
            seed=seed,
            batch_size=batch_size,
        )
    except ValidationError as err:
        raise UserError(pydantic_line(err, prefix="--")) from None
    from lrbench.models import parse_model_name
    from lrbench.optim import check_schedule

    parse_model_name(model)
    check_schedule(spec.optimizer, sched.sets_momentum, sched.momenta(1000, 10))
    runtime = Runtime(
        device=device, precision=precision, channels_last=channels_last, data_dir=data_dir
    )
    with RunProgress() as progress:
        summary = train_run(spec, out, runtime, on_event=progress)
    final = summary.get("final", {})
    typer.echo(
        f"{summary['status']}: {spec.run_id} test_acc {final.get('test_acc')} "
        f"in {summary.get('wall_time_s', 0):.1f}s -> {out}"
    )
    if summary["status"] == "failed":
        raise RunFailed(f"run failed: {summary.get('error')}")
