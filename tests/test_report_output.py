"""What lands in the out dir: marked Markdown/LaTeX tables, the CSVs and readable PNGs."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread
from runfolders import write_cell, write_run

from lrbench.report import build_report


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("results")
    scores = {
        "rex": [0.92, 0.90],
        "linear": [0.91, 0.91],
        "step": [0.89, 0.88],
        "cos_50%": [0.80, 0.80],
    }
    for budget in (0.05, 0.5):
        write_cell(root, scores, budget=budget)
        write_cell(root, scores, budget=budget, optimizer="adam", lr=1e-3)
    write_run(root, schedule="rex", status="failed", seed=3)
    build_report([root / "sweep"], root / "sweep" / "report")
    return root / "sweep" / "report"


def test_markdown_marks_top1_bold_and_top3_underlined(report_dir: Path) -> None:
    md = (report_dir / "tables.md").read_text()
    rows = {
        line.split(" | ")[0].strip("| "): line for line in md.splitlines() if line.startswith("| ")
    }
    # ties: rex and linear both average 0.91 -> 9.00% error, both bold; then the 95% interval,
    # with two seeds the t-interval (marked), 9 ± 12.71 · 1.41 / √2 cut at 0% error
    assert "**9.00 ± 1.41** [0.00, 21.71]ᵗ" in rows["rex"]
    assert "**9.00 ± 0.00** [9.00, 9.00]ᵗ" in rows["linear"]
    assert "<u>11.50 ± 0.71</u> [5.15, 17.85]ᵗ" in rows["step"]
    assert "20.00 ± 0.00 [20.00, 20.00]ᵗ |" in rows["cos\\_50%"]  # 4th: unmarked; escaped
    assert "## cifar10 · resnet20 · adam — test error (%)" in md
    assert "| 5% (3 ep) | 50% (30 ep) |" in md


def test_latex_is_booktabs_with_textbf_and_underline(report_dir: Path) -> None:
    tex = (report_dir / "tables.tex").read_text()
    assert tex.count("\\toprule") == 3  # finishes + two settings
    assert "\\textbf{9.00 $\\pm$ 1.41}" in tex
    assert "\\underline{11.50 $\\pm$ 0.71}" in tex
    assert "cos\\_50\\% & 20.00 $\\pm$ 0.00" in tex
    assert "5\\% (3 ep)" in tex
    assert tex.count("\\begin{tabular}") == tex.count("\\end{tabular}") == 3


def test_summary_and_finishes_csv_columns(report_dir: Path) -> None:
    rows = list(csv.DictReader(io.StringIO((report_dir / "summary.csv").read_text())))
    assert list(rows[0])[:11] == [
        "dataset",
        "model",
        "optimizer",
        "budget",
        "schedule",
        "n",
        "mean_test_acc",
        "std_test_acc",
        "rank",
        "top1",
        "top3",
    ]
    assert len(rows) == 16
    fin = list(csv.DictReader(io.StringIO((report_dir / "finishes.csv").read_text())))
    assert list(fin[0]) == [
        "schedule",
        "cells",
        "low_top1",
        "low_top3",
        "high_top1",
        "high_top3",
        "top1",
        "top3",
        "expected_top1",
        "expected_top1_low",
        "expected_top1_high",
        "expected_top3",
        "expected_top3_low",
        "expected_top3_high",
        "variant",
    ]
    by_name = {r["schedule"]: r for r in fin}
    assert by_name["rex"]["cells"] == "4"
    assert float(by_name["rex"]["top1"]) == 100.0
    assert float(by_name["cos_50%"]["top3"]) == 0.0
    assert "rex" in (report_dir / "problems.txt").read_text()


def test_pngs_are_written_and_not_blank(report_dir: Path) -> None:
    names = {
        "lr_curves.png",
        "test_acc_cifar10-resnet20-sgd.png",
        "test_acc_cifar10-resnet20-adam.png",
        "error_vs_budget.png",
        "rank_vs_budget.png",
        "p_top1.png",
        "performance_profile.png",
    }
    assert names <= {p.name for p in report_dir.glob("*.png")}
    for name in names:
        path = report_dir / name
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert path.stat().st_size > 20_000
        pixels = imread(path)
        assert pixels.shape[0] > 300 and pixels.shape[1] > 500
        coloured = np.abs(pixels[..., 0] - pixels[..., 2]) > 0.2  # lines in schedule colours
        assert coloured.mean() > 0.001, name


def test_accuracy_metric_and_chosen_lr_in_tables(tmp_path: Path) -> None:
    for lr, val in ((0.1, 0.7), (0.3, 0.8)):
        write_run(tmp_path, schedule="rex", lr=lr, val_acc=val, test_acc=0.9)
    write_run(tmp_path, schedule="step", lr=0.1, val_acc=0.8, test_acc=0.8)
    report = build_report([tmp_path / "sweep"], tmp_path / "out", metric="accuracy")
    assert "**90.00** (lr 0.3)" in report.markdown
    assert "test accuracy (%)" in report.markdown
    assert "\\textbf{90.00} {\\scriptsize (lr 0.3)}" in report.latex


def test_problems_file_only_when_there_are_problems(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "problems.txt").write_text("stale\n")
    write_cell(tmp_path, {"rex": [0.9, 0.8, 0.85, 0.86, 0.87]})  # five seeds: no finding
    build_report([tmp_path / "sweep"], out)
    assert not (out / "problems.txt").exists()


def test_lr_curves_rebuild_every_steps_rate_from_the_runs_spec(tmp_path: Path) -> None:
    """Schedules are pure functions of the spec, so the plot shows every step's rate (a 1-epoch
    run is a curve, not a dot) — except where only metrics.csv knows the rates: a schedule that
    reacts to metrics, one this version does not know, or no steps_per_epoch in spec.json."""
    import pandas as pd

    from lrbench.report.load import load_runs
    from lrbench.report.plots import step_rates
    from lrbench.schedules import build_schedule

    write_run(tmp_path / "a", schedule="onecycle", lr=0.4, budget=0.05, full_epochs=40)  # 2 ep
    (onecycle,) = load_runs([tmp_path / "a"]).runs.itertuples(index=False)  # ints stay ints
    write_run(tmp_path / "b", schedule="plateau", schedule_params={"patience": 0.1})
    write_run(tmp_path / "b", schedule="from_the_future", label="future")
    write_run(tmp_path / "b", schedule="cosine", spec={"steps_per_epoch": None})  # older runs
    runs = load_runs([tmp_path / "b"]).runs.set_index("schedule")

    rates = step_rates(pd.Series(onecycle._asdict()))
    assert list(rates.index[[0, 9, -1]]) == [0.1, 1.0, 2.0]  # step t at epoch (t + 1) / 10
    expected = 0.4 * build_schedule("onecycle").multipliers(20, 10)
    np.testing.assert_allclose(rates.to_numpy(), expected)
    for name in ("plateau", "future", "cosine"):
        assert step_rates(runs.loc[name]) is None


@pytest.mark.parametrize(("metric", "expected"), [("error", [10.0]), ("accuracy", [90.0])])
def test_error_vs_budget_plots_the_reports_metric(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, metric: str, expected: list[float]
) -> None:
    from matplotlib.axes import Axes

    from lrbench.report import analyse
    from lrbench.report.plots import error_vs_budget

    drawn: list[list[float]] = []
    errorbar = Axes.errorbar

    def spy(self, x, y, *args, **kwargs):
        drawn.append(list(y))
        return errorbar(self, x, y, *args, **kwargs)

    monkeypatch.setattr(Axes, "errorbar", spy)
    write_cell(tmp_path, {"rex": [0.9, 0.9]})
    summary = analyse([tmp_path], metric=metric).summary  # each row shown in its own metric
    error_vs_budget(summary, {"rex": (0, 0, 1, 1)}, metric)
    assert drawn == [pytest.approx(expected)]


def test_performance_profile_counts_cells_within_tau_of_the_best(tmp_path: Path) -> None:
    from lrbench.report import analyse
    from lrbench.report.plots import error_ratios, profile

    write_cell(tmp_path, {"rex": [0.90], "step": [0.80]}, budget=0.05)  # errors 10 and 20
    write_cell(tmp_path, {"rex": [0.75], "step": [0.80]}, budget=0.5)  # errors 25 and 20
    write_cell(tmp_path, {"rex": [0.90], "step": [0.1]}, budget=1.0, status="diverged")
    ratios = error_ratios(analyse([tmp_path]).summary)
    assert ratios.shape == (2, 2)  # the all-diverged cell is left out
    taus, share = profile(ratios)
    assert list(taus) == pytest.approx([1.0, 1.25, 2.0])
    assert share.loc["rex"].tolist() == [0.5, 1.0, 1.0]
    assert share.loc["step"].tolist() == [0.5, 0.5, 1.0]


def test_panel_titles_sit_above_tick_labels_written_in_full(tmp_path: Path) -> None:
    """Scores that differ in the fifth digit would get an offset (+9.12e1) written above the
    panel, under its title: the report writes every tick label in full instead."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from lrbench.report import analyse
    from lrbench.report.plots import draw, error_vs_budget

    for budget in (0.25, 1.0):
        write_cell(tmp_path, {"rex": [0.912341, 0.912342], "linear": [0.912345, 0.912347]},
                   budget=budget)  # fmt: skip
    summary = analyse([tmp_path], metric="accuracy").summary
    fig = error_vs_budget(summary, {"rex": (0, 0, 1, 1), "linear": (1, 0, 0, 1)}, "accuracy")
    draw("error_vs_budget", fig)
    renderer = FigureCanvasAgg(fig).get_renderer()
    for ax in fig.axes:
        assert ax.yaxis.get_offset_text().get_text() == ""
        labels = [t.get_text() for t in ax.get_yticklabels()]
        assert all(label.startswith("91.23") for label in labels if label)
        title = ax.title.get_window_extent(renderer)
        assert title.y0 >= ax.get_window_extent(renderer).y1


@pytest.mark.parametrize("scores", [[0.91, 0.83], [0.9123411, 0.9123472]], ids=["short", "long"])
def test_a_grid_of_panels_keeps_every_label_inside_the_figure_and_off_its_neighbours(
    tmp_path: Path, scores: list[float]
) -> None:
    """Four settings, two rows: each panel's ticks, labels and title, the figure's title and
    its legend each keep to their own space, with tick labels of any width."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from lrbench.report import analyse
    from lrbench.report.plots import draw, error_vs_budget

    for model in ("resnet8", "resnet20", "resnet32", "wrn16_4"):
        for budget in (0.1, 1.0):
            write_cell(tmp_path, {"a-long-schedule-name": scores, "rex": scores[::-1]},
                       model=model, budget=budget)  # fmt: skip
    summary = analyse([tmp_path], metric="accuracy").summary
    colours = {"a-long-schedule-name": (1, 0, 0, 1), "rex": (0, 0, 1, 1)}
    fig = error_vs_budget(summary, colours, "accuracy")
    draw("error_vs_budget", fig)
    renderer = FigureCanvasAgg(fig).get_renderer()
    whole = fig.bbox
    boxes = [ax.get_tightbbox(renderer) for ax in fig.axes if ax.get_visible()]
    boxes += [fig.legends[0].get_window_extent(renderer)]
    boxes += [t.get_window_extent(renderer) for t in fig.texts if t.get_text()]  # the suptitle
    assert len(boxes) == 6
    for i, box in enumerate(boxes):
        assert whole.x0 <= box.x0 and box.x1 <= whole.x1
        assert whole.y0 <= box.y0 and box.y1 <= whole.y1
        for other in boxes[i + 1 :]:
            assert not box.overlaps(other), (box, other)
