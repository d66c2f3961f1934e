"""Snapshot-ensemble accuracy beside single-model accuracy, from metrics.csv's ensemble columns."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import pytest
from rich.console import Console
from runfolders import write_run

from lrbench.report import build_report

SGDR = {"name": "sgdr", "cycles": 2, "t_mult": 1}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("ens")
    common = {"budget": 0.5, "full_epochs": 16}  # 8 epochs, cycle ends after epochs 4 and 8
    write_run(root, schedule="sgdr", schedule_params=SGDR, seed=1, test_acc=0.90,
              ensemble={4: (1, 0.60), 8: (2, 0.93)}, **common)  # fmt: skip
    write_run(root, schedule="sgdr", schedule_params=SGDR, seed=2, test_acc=0.88,
              ensemble={4: (1, 0.62), 8: (2, 0.91)}, **common)  # fmt: skip
    write_run(root, schedule="rex", seed=1, test_acc=0.91, snapshots=True, **common)
    write_run(root, schedule="rex", seed=2, test_acc=0.89, snapshots=True, **common)
    return build_report([root / "sweep"], root / "out")


def test_summary_csv_has_the_ensemble_mean(report) -> None:
    rows = {r["schedule"]: r for r in csv.DictReader(io.StringIO(report.summary_csv))}
    assert float(rows["sgdr"]["mean_ensemble_test_acc"]) == pytest.approx(0.92)
    assert float(rows["sgdr"]["std_ensemble_test_acc"]) == pytest.approx(math.sqrt(2e-4))
    assert float(rows["sgdr"]["ensemble_size"]) == 2
    assert float(rows["sgdr"]["mean_test_acc"]) == pytest.approx(0.89)  # single model unchanged
    assert rows["rex"]["mean_ensemble_test_acc"] == ""  # no snapshots: empty, not 0


def test_markdown_latex_and_terminal_show_ensemble_beside_single(report) -> None:
    md = report.markdown
    assert "## cifar10 · resnet20 · sgd — snapshot ensembles, test error (%)" in md
    assert "| budget | schedule | snapshots | single | ensemble | change |" in md
    # error: single 11.00 ± 1.41, ensemble 8.00 ± 1.41, 3 points lower
    assert "| 50% | sgdr | 2 | 11.00 ± 1.41 | 8.00 ± 1.41 | -3.00 |" in md
    assert "| 50% | rex |" not in md  # only schedules that took snapshots
    tex = report.latex
    assert "snapshot ensembles" in tex and "sgdr & 2 & 11.00 $\\pm$ 1.41 & 8.00 $\\pm$ 1.41" in tex
    assert tex.count("\\begin{tabular}") == tex.count("\\end{tabular}") == 3
    console = Console(width=160, record=True)
    for table in report.rich_tables():
        console.print(table)
    text = console.export_text()
    assert "snapshot ensembles" in text and "8.00 ± 1.41" in text


def test_no_ensemble_section_without_snapshots(tmp_path: Path) -> None:
    write_run(tmp_path, schedule="rex")
    plain = build_report([tmp_path / "sweep"], tmp_path / "out")
    assert "snapshot ensembles" not in plain.markdown
    assert "snapshot ensembles" not in plain.latex
