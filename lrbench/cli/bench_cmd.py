"""`lrbench bench`: throughput of lrbench's loops against a textbook PyTorch loop."""

from __future__ import annotations

import json

import typer
from typer.core import TyperCommand

from lrbench.cli.app import app
from lrbench.cli.options import DataDir, Device, model_name
from lrbench.cli.printing import print_whole
from lrbench.defaults import DEFAULT_BATCH_SIZE
from lrbench.errors import UserError


def parse_packs(values: list[str]) -> list[int]:
    """`--pack 8 32 64`, `--pack 8 --pack 32`, `--pack 8,32,64`: pack sizes, in order."""
    from lrbench.sweep.packs import pack_number

    return [pack_number(part) for value in values for part in str(value).replace(",", " ").split()]


class _OptionsOnly(TyperCommand):
    """The usage line shows options only: the hidden argument only takes the rest of
    `--pack 8 32 64`."""

    def collect_usage_pieces(self, ctx) -> list[str]:
        return [self.options_metavar]


@app.command("bench", cls=_OptionsOnly)
def bench_command(
    more_packs: list[str] = typer.Argument(None, hidden=True),
    model: str = typer.Option("resnet20", help="The model to time (any resnet{6n+2})."),
    device: Device = "auto",
    pack: list[str] = typer.Option(
        [],
        "--pack",
        help="Pack sizes G to time: --pack 8 32 64 (default: 8 32 64 on CUDA, 2 4 on the CPU).",
    ),
    steps: int | None = typer.Option(
        None, help="Timed steps per row (default: 50 on CUDA, 10 on the CPU)."
    ),
    warmup: int | None = typer.Option(
        None, help="Untimed warm-up steps per row (default: 10 on CUDA, 2 on the CPU)."
    ),
    rounds: int | None = typer.Option(
        None,
        help="Interleaved timing rounds; each row reports its best (default: 2 on CUDA, 3 on the CPU).",
    ),
    batch_size: int = typer.Option(DEFAULT_BATCH_SIZE, min=1, help="Batch size (per model)."),
    data: str = typer.Option(
        "synthetic",
        help="synthetic | cifar10 | cifar100, or an image folder / .tar[.gz|.xz] archive.",
    ),
    data_dir: DataDir = None,
    workers: int | None = typer.Option(
        None,
        min=0,
        max=256,
        help="DataLoader workers for the baseline (default: half the cores on the CPU, up to 8 on CUDA).",
    ),
    variants: bool | None = typer.Option(
        None,
        "--variants/--no-variants",
        help="Also time the single loop in fp32/bf16 x channels_last/NCHW (default: on for the CPU).",
    ),
    as_json: bool = typer.Option(
        False,
        "--json",
        help="Print one JSON object (docs/design.md's format) instead of the table.",
    ),
) -> None:
    """Time training throughput: a plain PyTorch DataLoader loop (the baseline), lrbench's
    single-run loop, and packs of G models trained as one, all in this process.

    Reports images/s, model-epochs/s (one model seeing 50,000 images) and the ratio to the
    baseline. Example: lrbench bench --device cuda --pack 8 32 64 --json
    """
    from lrbench.tools.bench import run_bench

    model_name(model)
    packs = parse_packs([*pack, *(more_packs or [])])
    if more_packs and not pack:
        raise UserError(f"unexpected argument {more_packs[0]!r} (pack sizes go after --pack)")
    log = None if as_json else (lambda msg: typer.echo(f"timing {msg} ...", err=True))
    report = run_bench(
        model=model,
        device=device,
        packs=packs or None,
        steps=steps,
        warmup=warmup,
        batch_size=batch_size,
        data=data,
        variants=variants,
        workers=workers,
        data_dir=data_dir,
        log=log,
        rounds=rounds,
    )
    if as_json:
        typer.echo(json.dumps(report.to_json()))
        return
    _print_table(report)


def _print_table(report) -> None:
    from rich.table import Table

    table = Table(
        title=(
            f"lrbench bench: {report.model}, batch {report.batch_size}, {report.data} data, "
            f"{report.device}; best of {report.rounds} rounds of {report.steps} timed steps per "
            f"row, after {report.warmup} warm-up steps. x baseline: the row's best round against the "
            "baseline's; rounds: each round against the baseline in that round"
        ),
        title_justify="left",
    )
    for name, justify in (
        ("mode", "left"),
        ("pack", "right"),
        ("what ran", "left"),
        ("images/s", "right"),
        ("model-epochs/s", "right"),
        ("x baseline", "right"),
        ("rounds: min / median / max", "right"),
    ):
        table.add_column(name, justify=justify)
    for r in report.rows:
        style = "dim" if r.variant else None
        table.add_row(
            r.mode,
            str(r.pack),
            r.config,
            f"{r.images_per_s:,.0f}",
            f"{r.model_epochs_per_s:.4f}",
            f"{r.ratio_to_baseline:.2f}",
            " / ".join(f"{x:.2f}" for x in r.ratio_spread),
            style=style,
        )
    print_whole(table)
