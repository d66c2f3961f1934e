"""`lrbench run`: one run through the same loop that sweeps use."""

from __future__ import annotations

from pathlib import Path

import typer

from lrbench.cli.app import app
from lrbench.cli.options import (
    BatchSize,
    ChannelsLast,
    DataDir,
    DataRoot,
    Dataset,
    Device,
    LimitTrain,
    LiveLog,
    Lr,
    Model,
    Momentum,
    Nesterov,
    Optimizer,
    Precision,
    ScheduleSets,
    Seed,
    WeightDecay,
    dataset_spec,
    log_choice,
    model_name,
    optimizer_spec,
    out_folder,
    pydantic_line,
    schedule_spec,
)
from lrbench.defaults import DEFAULT_BATCH_SIZE, DEFAULT_MOMENTUM, DEFAULT_WEIGHT_DECAY
from lrbench.errors import RunFailed, UserError


@app.command("run")
def run_command(
    model: Model = "resnet20",
    dataset: Dataset = "cifar10",
    data_root: DataRoot = None,
    data_dir: DataDir = None,
    limit_train: LimitTrain = None,
    limit_test: int | None = typer.Option(
        None, help="Evaluate on a class-balanced subset of this many test images."
    ),
    val_fraction: float = typer.Option(
        0.0, help="Hold this fraction of train out as a validation split."
    ),
    optimizer: Optimizer = "sgd",
    lr: Lr = 0.1,
    momentum: Momentum = DEFAULT_MOMENTUM,
    nesterov: Nesterov = False,
    weight_decay: WeightDecay = DEFAULT_WEIGHT_DECAY,
    schedule: str = typer.Option("rex", help="A schedule name (see `lrbench schedules`)."),
    sets: ScheduleSets = None,
    epochs: int = typer.Option(30, help="Epochs of the run; the schedule spans exactly these."),
    batch_size: BatchSize = DEFAULT_BATCH_SIZE,
    seed: Seed = 0,
    device: Device = "auto",
    precision: Precision = "auto",
    channels_last: ChannelsLast = True,
    log: LiveLog = None,
    out: Path = typer.Option(..., help="The run folder to write (resumed if it holds this run)."),
) -> None:
    """Train one run and write its folder: spec.json, metrics.csv, summary.json, checkpoint.pt.

    Run the same command again after an interruption and it resumes from the last finished
    epoch; a finished run is not trained again.

    Example: lrbench run --dataset cifar10 --data-root ../shared/data/cifar10_jpeg_train_test.tar.xz --limit-train 5000 --epochs 3 --out runs/try
    """
    from pydantic import ValidationError

    from lrbench.display import RunProgress
    from lrbench.train import Runtime, train_run
    from lrbench.train.single import alone_spec

    try:
        spec = alone_spec(
            model=model_name(model),
            optimizer=optimizer_spec(optimizer, lr, momentum, nesterov, weight_decay),
            schedule=schedule_spec(schedule, sets),
            dataset=dataset_spec(dataset, data_root, limit_train, val_fraction, limit_test),
            epochs=epochs,
            seed=seed,
            batch_size=batch_size,
        )
    except ValidationError as err:
        raise UserError(pydantic_line(err, prefix="--")) from None
    runtime = Runtime(
        device=device,
        precision=precision,
        channels_last=channels_last,
        data_dir=data_dir,
        log=log_choice(log),
        import_paths=(str(Path.cwd()),),
    )
    with RunProgress() as progress:
        summary = train_run(spec, out_folder(out, "run folder"), runtime, on_event=progress)
    final = summary.get("final", {})
    typer.echo(
        f"{summary['status']}: {spec.run_id} test_acc {final.get('test_acc')} "
        f"in {summary.get('wall_time_s', 0):.1f}s -> {out}"
    )
    if summary["status"] == "failed":
        raise RunFailed(f"run failed: {summary.get('error')}")
