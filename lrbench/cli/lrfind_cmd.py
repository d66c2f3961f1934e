"""`lrbench lr-find`: Smith's learning-rate range test, with fastai-style suggestions."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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
    out_folder,
)
from lrbench.defaults import DEFAULT_BATCH_SIZE, DEFAULT_MOMENTUM, DEFAULT_WEIGHT_DECAY

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
    from lrbench.tools.lrfind import Probe, Ramp, describe, find_lr, plot, write_csv
    from lrbench.train import Runtime

    probe = Probe(
        ramp=Ramp(min_lr, max_lr, steps, mode.lower(), stop_factor),
        optimizer=optimizer_spec(optimizer, min_lr, momentum, nesterov, weight_decay),
        model=model_name(model),  # an unknown model name fails before the data is read
        batch_size=batch_size,
        seed=seed,
        dataset=dataset_spec(dataset, data_root, limit_train, 0.0),
    )
    runtime = Runtime(
        device=device, precision=precision, channels_last=channels_last, data_dir=data_dir
    )
    out_folder(out, "folder for lr_find.csv")
    with _progress(steps) as on_step:
        found = find_lr(probe, runtime, on_step)
    csv_path = write_csv(found.result, out / "lr_find.csv")
    png_path = plot(found.result, found.suggestion, out / "lr_find.png", title=probe.title())
    if as_json:
        steps_run = {"steps_run": len(found.result)}
        typer.echo(json.dumps({**found.suggestion.as_dict(), **steps_run}, indent=2))
    else:
        typer.echo(describe(found.result, found.suggestion))
    sys.stdout.flush()
    typer.echo(f"wrote {csv_path} and {png_path}", err=True)


@contextmanager
def _progress(steps: int) -> Iterator[Callable[[int, int, float], None]]:
    """A bar on stderr (when it is a terminal) that each step moves, with its rate."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

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
        task = progress.add_task("lr-find", total=steps, lr="")

        def on_step(i: int, total: int, lr: float) -> None:
            progress.update(task, completed=i, lr=f"{lr:.3g}")

        yield on_step
