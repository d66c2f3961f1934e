"""`lrbench report`: turn run folders into the REX paper's tables, CSVs and plots.

Thin: it checks the options, calls lrbench.report.build_report, and prints. Files are always
all written; --format only chooses what goes to stdout, and problems go to stderr so a piped
table stays clean.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from lrbench.cli.app import app
from lrbench.errors import UserError

if TYPE_CHECKING:
    from lrbench.report import Report

FORMATS = ("table", "markdown", "latex", "csv")
HELP = "\n\n".join(
    [
        "Rank the schedules of finished runs per cell and write the REX paper's tables and plots.",
        "Examples:",
        "  lrbench report results/rex-cifar10",
        "  lrbench report results --out reports/all --format markdown",
        "  lrbench report results/a results/b --metric accuracy -f latex",
        "  lrbench report results/rex-cifar10 --reference rex-paper",
        "A cell is (dataset, model, optimizer, budget). A run scores its metric at its last "
        "epoch (spec.json's metric, or --metric; error by default, loss for language models; "
        "lower error or loss is better) and schedules are ranked by their mean over seeds. Top-1: no schedule strictly "
        "better (ties all count); top-3: fewer than three strictly better; low budget < 0.25, "
        "high >= 0.25. A schedule with diverged seeds ranks below those with fewer. With an lr "
        "grid the rate is chosen on val_acc, never on test.",
        "Verdict (first on stdout, in tables.md, report.html and verdict.csv): per cell the "
        "winner, its margin over the runner-up as a paired mean difference over seeds with its "
        "95% t-interval, P(top-1), and a coin-flip mark with the seeds a close call needs.",
        "How sure: a paired bootstrap over seeds (seeds resampled jointly across the schedules "
        "of a cell; every distinct resample enumerated exactly up to ten seeds, 2000 seeded "
        "draws above) gives each schedule its probability of finishing top-1 and top-3 "
        "(uncertainty.csv) and the finish table its expected finishes with intervals. Each entry "
        "has a 95% interval: the bootstrap's with five or more seeds, the t-interval of the mean "
        "(marked t) with two to four. One seed: no interval.",
        "Runs are averaged only with runs whose spec.json differ in nothing but the seed (and "
        "lr, chosen on validation). Runs of other setups (full_epochs, batch_size, data, ...) are "
        "ranked in cells of their own, and other parameters of one schedule label are rows of "
        "their own; the variant column says what differs. A sweep's runs not in its plan.json "
        "(left from an edited config) are stale: listed, not reported, unless --include-stale.",
        "Anytime: the best test accuracy each schedule reached by 10/25/50/75/100% of its "
        "budget, and time to target (AlgoPerf-style: first epoch reaching --target, median over "
        "seeds, inf = never); cyclical schedules (sgdr, triangular) are judged at cycle ends. "
        "Runs with snapshot ensembles get a table of ensemble against single-model accuracy; "
        "runs that stopped early are counted (n_stopped_early) and noted.",
        "Written to --out: report.html (the whole report in one self-contained page to open, "
        "mail or attach: tables that sort by column, figures inline, the runs and problems; it "
        "fetches nothing), tables.md, tables.tex (booktabs), summary.csv, finishes.csv, "
        "uncertainty.csv, verdict.csv, baseline.csv (with --baseline), reference.csv (with --reference), anytime.md, anytime.csv, "
        "time_to_target.csv, anytime.png, lr_curves.png, test_acc_<setting>.png, "
        "error_vs_budget.png, rank_vs_budget.png, p_top1.png, performance_profile.png, and "
        "problems.txt naming every skipped run (failed, unfinished, unreadable, stale) and every "
        "note (missing seeds, ...). Problems are also printed on stderr; the exit code is 0 whenever "
        "a report was written.",
    ]
)


@app.command("report", help=HELP)
def report_command(
    results: list[Path] = typer.Argument(
        ...,
        help="Sweep folders (holding runs/), or results roots holding several sweeps; "
        "several are reported together.",
        show_default=False,
        metavar="RESULTS",
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Folder for the files (default: FIRST_RESULTS/report)."
    ),
    metric: str | None = typer.Option(
        None,
        "--metric",
        help="What every setting is ranked and shown by: error (test error %) | accuracy (%) | "
        "loss (test loss, nats) | bpc (bits per character) | any metrics.csv column ending in "
        "_loss or _acc (default: each run's own, spec.json's metric: error for image "
        "classification, loss for language models and your own losses).",
    ),
    target: float | None = typer.Option(
        None,
        "--target",
        help="Test accuracy (a fraction, e.g. 0.9) that time-to-target aims at in every cell "
        "(default: per cell, the median over schedules of their mean final test accuracy).",
    ),
    fmt: str = typer.Option(
        "table",
        "--format",
        "-f",
        help="What to print on stdout: table (rich) | markdown | latex | csv (summary.csv).",
    ),
    reference: str | None = typer.Option(
        None,
        "--reference",
        metavar="FILE.csv|NAME",
        help="Published numbers to put beside ours, marking those outside our 95% interval: a "
        "CSV with dataset, model, optimizer, budget, schedule and test_error_pct or test_acc "
        "(optionally std), or a shipped name: rex-paper (ResNet20 / CIFAR-10, the REX paper).",
    ),
    baseline: str | None = typer.Option(
        None,
        "--baseline",
        metavar="SCHEDULE",
        help="Compare every schedule with this one, per cell: the paired mean difference over "
        "seeds with Holm-adjusted intervals (baseline.csv, and a table after the verdict).",
    ),
    jobs: int | None = typer.Option(
        None,
        "--jobs",
        "-j",
        min=1,
        help="Processes that read the runs and draw the figures (default: one per core; 1 on a "
        "busy machine; the files are the same for any number).",
    ),
    include_stale: bool = typer.Option(
        False,
        "--include-stale",
        help="Also report runs a sweep's plan.json does not list (left from an earlier config), "
        "as settings of their own.",
    ),
) -> None:
    """Rank schedules per cell, write every report file, print one format (--help text: HELP)."""
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise UserError(f"--format {fmt!r} is not valid; --format accepts {' | '.join(FORMATS)}")
    from lrbench.forked import usable_cores
    from lrbench.report import build_report  # pandas and matplotlib: only when reporting

    out_dir = out if out is not None else results[0] / "report"
    report = build_report(
        results,
        out_dir,
        metric,
        target=target,
        include_stale=include_stale,
        reference=reference,
        baseline=baseline,
        workers=jobs or usable_cores(),
    )
    _print(report, fmt)
    _print_problems(report)
    typer.echo(f"report: {len(report.files)} files written to {out_dir}", err=True)


def _print(report: Report, fmt: str) -> None:
    if fmt == "table":
        from rich.console import Console

        console = Console()
        if not console.is_terminal:
            console = Console(width=120)
        if report.summary.empty:
            console.print("no finished runs to rank: every run was skipped (see below)")
            return
        for table in report.rich_tables():
            console.print(table)
    elif fmt == "markdown":
        sys.stdout.write(report.markdown)
    elif fmt == "latex":
        sys.stdout.write(report.latex)
    else:
        sys.stdout.write(report.summary_csv)


def _print_problems(report: Report) -> None:
    from lrbench.report.problems import NOTE, problems_text, skipped_runs

    if report.problems:
        skipped = skipped_runs(report.problems)
        notes = sum(p.kind == NOTE for p in report.problems)
        typer.echo(
            f"{_count(skipped, 'run')} skipped, {_count(notes, 'note')}; also in "
            f"{report.out_dir / 'problems.txt'}:",
            err=True,
        )
        typer.echo(problems_text(report.problems).rstrip("\n"), err=True)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"
