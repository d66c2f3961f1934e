"""`lrbench verify`: retrain one run from its spec.json and print how far it lands from the
recorded metrics (lrbench.verify does the work)."""

from __future__ import annotations

from pathlib import Path

import typer

from lrbench.cli.app import app
from lrbench.cli.options import DataDir
from lrbench.errors import RunFailed


@app.command("verify")
def verify_command(
    run_dir: Path = typer.Argument(
        ..., help="A finished run folder (holding spec.json and metrics.csv).", show_default=False
    ),
    data_dir: DataDir = None,
) -> None:
    """Train RUN_DIR again from its spec.json in a temporary folder, with the recorded device,
    precision and threads, and print the largest difference from its metrics.csv (timings
    aside). 0 means the run repeats exactly: expect it on the same machine type; elsewhere the
    differing provenance (CPU instruction set, image decoder, versions) is listed. Exit 1 when
    anything differs. Run it from where the sweep ran (the data path in spec.json is as given).

    Example: lrbench verify results/demo/runs/resnet20-cifar10-sgd0.1-rex-b0.1-s0-1a2b3c4d
    """
    from lrbench.verify import verify_run

    result = verify_run(run_dir, data_dir)
    typer.echo(
        f"{result.run_id}: largest difference from the recorded metrics: {result.largest:g} "
        f"({result.rows} epochs x {len(result.columns)} columns compared, timings aside)"
    )
    for column, diff in result.by_column.items():
        typer.echo(f"  {column}: {diff:g}")
    if result.row_counts[0] != result.row_counts[1]:
        typer.echo(f"  epochs recorded {result.row_counts[0]}, retrained {result.row_counts[1]}")
    for key, (then, now) in result.provenance.items():
        typer.echo(f"  provenance.{key}: recorded {then}, here {now}")
    if not result.identical:
        raise RunFailed("the retrained run differs from the recorded one (see above)")
