"""`lrbench lr-find`: Smith's learning-rate range test, with fastai-style suggestions."""

from __future__ import annotations

import json
import math
import sys
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
    Model,
    Momentum,
    Nesterov,
    Optimizer,
    Precision,
    Seed,
    WeightDecay,
    dataset_spec,
    model_name,
    optimizer_spec,
)
from lrbench.defaults import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MOMENTUM,
    DEFAULT_WEIGHT_DECAY,
    MAX_BATCH,
    SEEDS_BELOW,
)
from lrbench.errors import UserError

MAX_STEPS = 1_000_000  # a probe, not a training run
HELP = "\n\n".join(
    [
        "Learning-rate range test (Smith 2017, §3.3; fastai/Lightning lr_find): train briefly "
        "while the rate rises from --min-lr to --max-lr, record the loss, and suggest rates.",
        "Example: lrbench lr-find --dataset ../shared/data/cifar10_jpeg_train_test.tar.xz "
        "--limit-train 5000 --steps 200 --out results/lr-find",
        "The rate rises exponentially (--mode exp, the default) or linearly over --steps steps, "
        "across epochs as needed, and the test stops once the smoothed loss (EMA, beta 0.98, "
        "bias-corrected) exceeds 4x its best. Suggested: the peak rate for onecycle (or the "
        "rate of step/cosine/rex) = the rate of the lowest smoothed loss / 10 (fastai's "
        "lr_min), with fastai's valley and the steepest descent shown beside it; and "
        "triangular bounds per Smith: high where the smoothed batch accuracy stops rising (at "
        "most the rate of the lowest loss), low = high/4.",
        "Written to --out: lr_find.csv (step, lr, loss, smooth_loss, acc, smooth_acc) and "
        "lr_find.png (loss against rate, log axis, suggestions marked). The model is discarded.",
    ]
)


@app.command("lr-find", help=HELP)
def lr_find_command(
    model: Model = "resnet20",
    dataset: Dataset = "cifar10",
    data_root: DataRoot = None,
    data_dir: DataDir = None,
    limit_train: LimitTrain = None,
    optimizer: Optimizer = "sgd",
    momentum: Momentum = DEFAULT_MOMENTUM,
    nesterov: Nesterov = False,
    weight_decay: WeightDecay = DEFAULT_WEIGHT_DECAY,
    batch_size: BatchSize = DEFAULT_BATCH_SIZE,
    seed: Seed = 0,
    device: Device = "auto",
    precision: Precision = "auto",
    channels_last: ChannelsLast = True,
    min_lr: float = typer.Option(1e-5, help="Rate of the first step."),
    max_lr: float = typer.Option(10.0, help="Rate of the last step."),
    steps: int = typer.Option(200, help="Steps from --min-lr to --max-lr."),
    mode: str = typer.Option("exp", help="exp (log-linear ramp, as fastai) | linear (Smith)."),
    stop_factor: float = typer.Option(
        4.0, help="Stop once the smoothed loss exceeds this times its best (0: never)."
    ),
    out: Path = typer.Option(..., help="Folder for lr_find.csv and lr_find.png."),
    as_json: bool = typer.Option(False, "--json", help="Print the suggestion as JSON."),
) -> None:
    from lrbench.tools.lrfind import MODES

    mode = mode.lower()
    if mode not in MODES:
        raise UserError(f"--mode {mode!r} is not valid; --mode accepts {' | '.join(MODES)}")
    if not (math.isfinite(min_lr) and min_lr > 0):
        raise UserError(f"--min-lr must be a positive number, got {min_lr:g}")
    if not (math.isfinite(max_lr) and max_lr > min_lr):
        raise UserError(f"--max-lr must be above --min-lr ({min_lr:g}), got {max_lr:g}")
    if not 10 <= steps <= MAX_STEPS:
        raise UserError(f"--steps must be at least 10 and at most {MAX_STEPS:,}, got {steps}")
    if not 1 <= batch_size <= MAX_BATCH:
        raise UserError(f"--batch-size must be from 1 to {MAX_BATCH:,}, got {batch_size}")
    if not 0 <= seed < SEEDS_BELOW:
        raise UserError(f"--seed must be from 0 to {SEEDS_BELOW - 1:,}, got {seed}")
    if not (math.isfinite(stop_factor) and stop_factor >= 0):
        raise UserError(f"--stop-factor must be a number >= 0 (0: never stop), got {stop_factor:g}")
    opt_spec = optimizer_spec(optimizer, min_lr, momentum, nesterov, weight_decay)
    data_spec = dataset_spec(dataset, data_root, limit_train, 0.0)

    model_name(model)  # an unknown model name fails before the data is loaded
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create --out {out}: {err.strerror}") from err

    result, sugg, title = _probe(
        model,
        data_spec,
        data_dir,
        opt_spec,
        batch_size,
        seed,
        device,
        precision,
        channels_last,
        dict(min_lr=min_lr, max_lr=max_lr, steps=steps, mode=mode, stop_factor=stop_factor),
    )
    from lrbench.tools.lrfind import describe, plot, write_csv

    csv_path = write_csv(result, out / "lr_find.csv")
    png_path = plot(result, sugg, out / "lr_find.png", title=title)
    if as_json:
        typer.echo(json.dumps({**sugg.as_dict(), "steps_run": len(result)}, indent=2))
    else:
        typer.echo(describe(result, sugg))
    sys.stdout.flush()
    typer.echo(f"wrote {csv_path} and {png_path}", err=True)


def _probe(
    model, data_spec, data_dir, opt_spec, batch_size, seed, device, precision, channels_last, ramp
):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from lrbench.data import DeviceData, load_splits
    from lrbench.tools.lrfind import run_range_test
    from lrbench.train import autocast_for, build_run_model, resolve_device, resolve_precision
    from lrbench.train.optim import build_optimizer

    dev = resolve_device(device)
    prec = resolve_precision(precision, dev)
    data = DeviceData(load_splits(data_spec, data_dir), dev, channels_last=channels_last)
    net = build_run_model(model, data.num_classes, seed, dev, prec, channels_last)
    opt = build_optimizer(opt_spec, net.parameters())

    console = Console(stderr=True)
    progress = Progress(
        TextColumn("[bold]lr-find"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("lr {task.fields[lr]}"),
        console=console,
        disable=not console.is_terminal,
        transient=True,
    )
    with progress:
        task = progress.add_task("lr-find", total=ramp["steps"], lr="")

        def on_step(i: int, total: int, lr: float) -> None:
            progress.update(task, completed=i, lr=f"{lr:.3g}")

        result = run_range_test(
            net,
            opt,
            data,
            batch_size=batch_size,
            seed=seed,
            autocast=autocast_for(prec, dev),
            on_step=on_step,
            **ramp,
        )
    del net, opt  # a probe: its weights are never saved
    if len(result) < 3:
        raise UserError(
            f"the range test stopped after {len(result)} step(s) ({result.stop_reason}); "
            "lower --min-lr"
        )
    try:
        sugg = result.suggest()
    except ValueError as err:
        raise UserError(f"no suggestion: {err}") from None
    title = (
        f"LR range test: {model} on {data_spec.display_name}"
        f"{f' ({data_spec.limit_train} images)' if data_spec.limit_train else ''}, "
        f"{opt_spec.name} wd {opt_spec.weight_decay:g}, batch {batch_size}, {ramp['mode']} ramp"
    )
    return result, sugg, title
