"""`lrbench schedules` and `lrbench schedule`: list schedules, and preview one exactly as trained.

The preview calls the same Schedule.multipliers the trainer uses, so what it prints is what a
run with that budget gets, step for step.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from lrbench.cli.app import app
from lrbench.cli.options import Lr, ScheduleSets, parse_sets
from lrbench.errors import UserError

if TYPE_CHECKING:  # the schedules (numpy, pydantic) load when a command runs, not for --help
    import numpy as np

    from lrbench.schedules import Schedule

FORMATS = ("table", "csv", "png")
TABLE_ROWS = 20
MAX_STEPS = 10_000_000  # a preview holds every step's rate in memory


@app.command("schedules")
def schedules_command() -> None:
    """List every schedule with its parameters and defaults, and the modifiers all of them accept.

    Use a name with `lrbench schedule NAME --steps T` to preview it, or in a sweep's
    `schedules:` list, e.g. `- {name: rex, beta: 0.9, warmup: 0.05}`. Your own schedule is a
    Python function named by import path: `- {import: "mymodule:my_schedule", label: mine}`.
    """
    from lrbench.schedules import describe_modifiers, describe_schedules

    console = Console(width=max(Console().width, 100))
    table = Table(title="schedules: lr_t = lr * m(t / T)", show_lines=True)
    table.add_column("schedule", style="bold")
    table.add_column("parameters (defaults)")
    table.add_column("what it does")
    for entry in describe_schedules():
        params = "\n".join(
            f"{p['name']} (required)" if p["required"] else f"{p['name']}={_shown(p['default'])}"
            for p in entry["parameters"]
        )
        doc = entry["doc"]
        if entry["aliases"]:
            doc += f"\naliases: {', '.join(entry['aliases'])} (that mode)"
        table.add_row(entry["name"], escape(params) or "-", escape(doc))
    console.print(table)
    mods = Table(title="modifiers (every schedule)", show_lines=True)
    mods.add_column("key", style="bold")
    mods.add_column("default")
    mods.add_column("accepts")
    mods.add_column("what it does")
    for entry in describe_modifiers():
        default = "the name" if entry["name"] == "label" else _shown(entry["default"])
        mods.add_row(entry["name"], default, escape(entry["accepts"]), escape(entry["doc"]))
    console.print(mods)


@app.command("schedule")
def schedule_command(
    name: str = typer.Argument(
        ...,
        help="A schedule name (`lrbench schedules` lists them) or your own function as "
        "module:function, looked up in the current folder.",
    ),
    sets: ScheduleSets = None,
    steps: int = typer.Option(..., "--steps", help="T: optimizer steps in the whole run."),
    lr: Lr = 0.1,
    steps_per_epoch: int | None = typer.Option(
        None, "--steps-per-epoch", help="Steps in one epoch (default: T, one epoch)."
    ),
    momentum: float = typer.Option(
        0.9, "--momentum", help="The optimizer's momentum, shown where the schedule leaves it."
    ),
    fmt: str = typer.Option("table", "--format", help="table | csv | png."),
    out: Path | None = typer.Option(
        None, "--out", help="Write here instead of stdout (png: default LABEL.png, e.g. rex.png)."
    ),
) -> None:
    """Preview a schedule: the rate (and momentum) at every optimizer step of a T-step run.

    Examples:

      lrbench schedule rex --steps 1000

      lrbench schedule step --set milestones=[0.3,0.6] --steps 300 --format csv

      lrbench schedule onecycle --set pct_start=0.5 --steps 390 --format png

      lrbench schedule linear --set sample_every=0.1 --steps 50 --format csv

      lrbench schedule cyclic --set 'profile={name: rex, beta: 0.9}' --set step_size=0.25 --steps 1000

      lrbench schedule mymodule:my_schedule --set alpha=2 --steps 100

    csv columns: step,epoch,progress,lr,momentum, one row per step 0..T-1. epoch is 1-based; lr is --lr times the schedule's multiplier; momentum is the schedule's where it sets one, else --momentum.
    """
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r} is not valid; --format accepts {' | '.join(FORMATS)}")
    if not 1 <= steps <= MAX_STEPS:
        raise UserError(
            f"--steps {steps} is not valid; --steps accepts a whole number from 1 to {MAX_STEPS:,}"
        )
    spe = steps if steps_per_epoch is None else steps_per_epoch
    if spe < 1:
        raise UserError(f"--steps-per-epoch {spe} is not valid; it accepts a whole number >= 1")
    if not (math.isfinite(lr) and lr > 0):
        raise UserError(f"--lr {lr} is not valid; --lr accepts a number > 0")
    if not 0 <= momentum < 1:
        raise UserError(
            f"--momentum {momentum} is not valid; --momentum accepts a number in [0, 1)"
        )
    import numpy as np

    from lrbench.imports import add_search_path
    from lrbench.schedules import build_schedule

    params = parse_sets(sets)
    if "name" in params:
        raise UserError("--set name=...: give the schedule's name as the argument instead")
    add_search_path(Path.cwd())
    schedule = build_schedule({"name": name, **params})
    rates = lr * schedule.multipliers(steps, spe)
    moms = schedule.momenta(steps, spe)
    if moms is None:
        moms = np.full(steps, momentum)
    if schedule.reactive:
        watched = {"auto": "validation (else training)"}.get(schedule.params["monitor"], "")
        typer.echo(
            f"note: {name} reacts to the {watched or schedule.params['monitor']} loss during "
            "training, so no preview can know when it decays; this is the rate before any decay "
            f"(each decay multiplies it by factor={schedule.params['factor']}).",
            err=True,
        )
    if fmt == "csv":
        _write_text(out, "".join(_csv_lines(rates, moms, spe)))
    elif fmt == "table":
        _print_table(schedule, rates, moms, spe, lr, out)
    else:
        # named by the label: an import's "module:function" is no file name on every system
        target = out or Path(re.sub(r"[^A-Za-z0-9._-]+", "_", schedule.label) + ".png")
        _plot(schedule, rates, moms, spe, lr, target)
        typer.echo(f"wrote {target}", err=True)


def _csv_lines(rates: np.ndarray, moms: np.ndarray, spe: int) -> Iterator[str]:
    """Shortest round-trip floats, so the csv holds exactly the trainer's numbers."""
    total = len(rates)
    yield "step,epoch,progress,lr,momentum\n"
    for step, (rate, mom) in enumerate(zip(rates.tolist(), moms.tolist(), strict=True)):
        yield f"{step},{step // spe + 1},{step / total!r},{rate!r},{mom!r}\n"


def _write_text(out: Path | None, text: str) -> None:
    if out is None:
        sys.stdout.write(text)
        return
    try:
        out.write_text(text)
    except OSError as err:
        raise UserError(f"--out {out}: cannot write ({err.strerror})") from None
    typer.echo(f"wrote {out}", err=True)


def _print_table(
    schedule: Schedule,
    rates: np.ndarray,
    moms: np.ndarray,
    spe: int,
    lr: float,
    out: Path | None,
) -> None:
    import numpy as np

    total = len(rates)
    rows = np.unique(
        np.r_[np.linspace(0, total, TABLE_ROWS, endpoint=False).astype(int), total - 1]
    )
    heading = f"{_title(schedule)}\n{total} steps, {spe} per epoch, lr {lr:g}"
    if len(rows) < total:
        heading += f" ({len(rows)} of {total} steps shown)"
    table = Table()
    for column in ("step", "epoch", "progress", "lr", "momentum"):
        table.add_column(column, justify="right")
    for step in rows.tolist():
        table.add_row(
            str(step),
            str(step // spe + 1),
            f"{step / total:.4f}",
            f"{rates[step]:.6g}",
            f"{moms[step]:.4g}",
        )
    if out is None:
        _show(Console(), heading, table)
        return
    try:
        with out.open("w") as fh:
            _show(Console(file=fh, width=100, color_system=None), heading, table)
    except OSError as err:
        raise UserError(f"--out {out}: cannot write ({err.strerror})") from None
    typer.echo(f"wrote {out}", err=True)


def _show(console: Console, heading: str, table: Table) -> None:
    console.print(heading, soft_wrap=True, highlight=False, markup=False)
    console.print(table)


def _plot(
    schedule: Schedule,
    rates: np.ndarray,
    moms: np.ndarray,
    spe: int,
    lr: float,
    target: Path,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    total = len(rates)
    steps = np.arange(total)
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120, layout="constrained")
    lines = ax.plot(steps, rates, color="C0", lw=1.8, drawstyle="steps-post", label="learning rate")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("learning rate")
    ax.set_xlim(0, max(total - 1, 1))
    ax.set_ylim(bottom=0, top=max(float(rates.max()), lr) * 1.05)
    ax.grid(alpha=0.3)
    if spe < total:
        epochs = ax.secondary_xaxis("top", functions=(lambda s: s / spe, lambda e: e * spe))
        epochs.set_xlabel("epoch")
    if schedule.sets_momentum and np.ptp(moms) > 0:
        twin = ax.twinx()
        lines += twin.plot(
            steps, moms, color="C1", lw=1.4, ls="--", drawstyle="steps-post", label="momentum"
        )
        twin.set_ylabel("momentum")
        fig.legend(lines, [ln.get_label() for ln in lines], loc="outside lower center", ncols=2)
    ax.set_title(f"{_title(schedule)}: {total} steps, lr {lr:g}", fontsize=10)
    try:
        fig.savefig(target, format="png")  # to that very path, whatever its suffix
    except OSError as err:
        raise UserError(f"--out {target}: cannot write ({err.strerror})") from None
    finally:
        plt.close(fig)


def _title(schedule: Schedule) -> str:
    """label: name(parameters that differ from the defaults); module:function(its parameters)."""
    from lrbench.schedules import Schedule, describe_modifiers

    if schedule.name == "import":
        name = schedule.params["import"]
        defaults = {m["name"]: m["default"] for m in describe_modifiers()}
        defaults |= {"import": name, "source_hash": schedule.params["source_hash"]}
    else:
        name = schedule.name
        defaults = Schedule(schedule.name, schedule.label).params
    changed = {k: v for k, v in schedule.params.items() if defaults.get(k) != v}
    args = ", ".join(f"{k}={_shown(v)}" for k, v in changed.items())
    title = f"{name}({args})" if args else name
    return title if schedule.label == name else f"{schedule.label}: {title}"


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list):
        return "[" + ", ".join(_shown(v) for v in value) + "]"
    if isinstance(value, dict):  # a profile; an imported one by its path, without its hash
        if value.get("name") == "import":
            value = {k: v for k, v in value.items() if k not in ("name", "source_hash")}
        return "{" + ", ".join(f"{k}: {_shown(v)}" for k, v in value.items()) + "}"
    if value is None:
        return "-"
    return str(value)
