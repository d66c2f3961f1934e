"""Details a reader trips over: whole-epoch ticks, legends beside the curves, profile curves that
stay visible when they coincide, schedule names never cut to the same text, no -0.00, a footer
that names only the files written, and a printed page 1 that is not half empty."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from matplotlib.image import imread
from rich.console import Console
from runfolders import write_cell, write_run

from lrbench.report import build_report
from lrbench.report.tables import signed

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
PDFTOPPM = shutil.which("pdftoppm")
LONG = ("inverse-time", "inverse-time-restarts")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory):
    """Eight schedules, two of whose labels share a long prefix; budgets of 1 and 5 epochs."""
    root = tmp_path_factory.mktemp("details")
    labels = ["step", "cosine", "linear", "rex", "constant", "onecycle", *LONG]
    names = ["step", "cosine", "linear", "rex", "constant", "onecycle", "exponential", "sgdr"]
    for budget in (0.1, 0.5):
        for i, (name, label) in enumerate(zip(names, labels, strict=True)):
            for seed in (1, 2):
                # rex and linear tie everywhere: their profile curves coincide
                acc = 0.85 if name in ("rex", "linear") else 0.80 - 0.002 * i
                write_run(root, schedule=name, label=label, seed=seed, test_acc=acc,
                          budget=budget, full_epochs=10)  # fmt: skip
    return build_report([root / "sweep"], root / "out")


def _figure(report, name: str):
    """The report's figure of that name (its PNG file's, without .png), built, not drawn."""
    from lrbench.report.plots import curve_figures, ranked_figures, resampled_figures

    chosen = report_chosen(report)
    builds = {
        **curve_figures(chosen, report_curves(report)),
        **ranked_figures(chosen, report.summary),
        **resampled_figures(chosen, report.summary),
    }
    return builds[next(b for b in builds if b.startswith(name))]()


def _axes(figure) -> list:
    return [ax for ax in figure.axes if ax.get_visible()]


def test_epoch_axes_tick_whole_epochs_even_for_a_one_epoch_budget(report) -> None:
    one_epoch = _axes(_figure(report, "test_acc_"))[0]
    assert "1 epoch)" in one_epoch.get_title()
    low, high = one_epoch.get_xlim()
    ticks = [t for t in one_epoch.get_xticks() if low <= t <= high]
    assert ticks and all(float(t).is_integer() for t in ticks)


def test_the_rates_legend_sits_beside_the_curves(report) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    figure = _figure(report, "lr_curves")
    ax = _axes(figure)[0]
    renderer = FigureCanvasAgg(figure).get_renderer()
    legend = ax.get_legend().get_window_extent(renderer)
    assert legend.x0 >= ax.get_window_extent(renderer).x1  # right of the panel, not over it


def test_profile_curves_that_coincide_differ_in_dash_and_width(report) -> None:
    ax = _axes(_figure(report, "performance_profile"))[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    rex, linear = lines["rex"], lines["linear"]
    assert list(rex.get_ydata()) == list(linear.get_ydata())  # they coincide...
    assert (rex.get_linestyle(), rex.get_linewidth()) != (
        linear.get_linestyle(),
        linear.get_linewidth(),
    )  # ...and both show
    assert "Dolan–Moré" in ax.get_title() and "AlgoPerf" not in ax.get_title()


@pytest.mark.parametrize("width", [60, 100, 200])
def test_terminal_tables_never_cut_two_names_to_the_same_text(report, width: int) -> None:
    console = Console(width=width, record=True)
    for table in report.rich_tables():
        console.print(table)
    text = console.export_text()
    assert not re.search(r"inverse[-\w]*…", text)  # a name is never cut...
    names = {m for line in text.splitlines() for m in re.findall(r"inverse[-\w]*", line)}
    assert names == set(LONG)  # ...nor folded into pieces that read like another


@pytest.mark.parametrize(
    ("value", "text"), [(-0.001, "+0.00"), (-0.0, "+0.00"), (0.004, "+0.00"), (-0.006, "-0.01")]
)
def test_a_change_that_rounds_to_zero_prints_plus_zero(value: float, text: str) -> None:
    assert signed(value) == text


def test_the_footer_names_problems_txt_only_when_it_is_written(tmp_path: Path) -> None:
    # five seeds each: fewer would be a finding of its own ("few seeds")
    write_cell(
        tmp_path / "clean",
        {"rex": [0.9, 0.8, 0.85, 0.82, 0.88], "cosine": [0.85, 0.8, 0.81, 0.83, 0.84]},
    )
    build_report([tmp_path / "clean" / "sweep"], tmp_path / "clean-out")
    assert not (tmp_path / "clean-out" / "problems.txt").exists()
    assert "problems.txt" not in _footer(tmp_path / "clean-out" / "report.html")
    write_run(tmp_path / "clean", schedule="rex", seed=6, status="failed")
    build_report([tmp_path / "clean" / "sweep"], tmp_path / "out")
    assert (tmp_path / "out" / "problems.txt").exists()
    assert "problems.txt" in _footer(tmp_path / "out" / "report.html")


def _footer(page: Path) -> str:
    text = page.read_text()
    return text[text.index('<footer class="page">') :]


@pytest.mark.skipif(BROWSER is None or PDFTOPPM is None, reason="needs chromium and pdftoppm")
def test_printed_page_one_is_filled(report, tmp_path: Path) -> None:
    pdf = tmp_path / "report.pdf"
    subprocess.run(
        [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={tmp_path / 'profile'}", f"--print-to-pdf={pdf}",
         "--no-pdf-header-footer", (report.out_dir / "report.html").as_uri()],
        capture_output=True, timeout=120, check=True,
    )  # fmt: skip
    subprocess.run([PDFTOPPM, "-r", "30", "-png", pdf, tmp_path / "page"], check=True)
    pages = sorted(tmp_path.glob("page-*.png"))
    first = imread(pages[0])[..., :3]
    inked_rows = (first < 0.9).any(axis=-1).any(axis=-1).nonzero()[0]
    assert inked_rows.max() > 0.8 * first.shape[0]  # ink reaches the bottom fifth of page 1


def report_chosen(report):
    from lrbench.report import analyse

    return analyse(_sweep(report)).chosen


def report_curves(report):
    from lrbench.report import analyse

    return analyse(_sweep(report)).loaded.curves


def _sweep(report) -> list[Path]:
    return [report.out_dir.parent / "sweep"]
