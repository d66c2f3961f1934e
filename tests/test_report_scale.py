"""A report's work grows with the files it reads, not with a frame or a read per run per step:
each run file is read once, the number of DataFrames built does not grow with the runs, and
past a few hundred runs report.html lists only the runs with a problem (runs.csv lists all).

Work is counted, never timed (benchmarks/README.md has the timings).
"""

from __future__ import annotations

import csv
import io
import math
import os
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from runfolders import write_cell, write_run

from lrbench.report import analyse, build_report, html, load
from lrbench.report.anytime import analyse_anytime
from lrbench.report.load import load_runs
from lrbench.report.variants import named_rows

SCHEDULES = ("rex", "cosine", "step")


def _results(root: Path, seeds: int) -> Path:
    for schedule in SCHEDULES:
        for seed in range(1, seeds + 1):
            write_run(root, schedule=schedule, seed=seed, test_acc=0.8 + 0.01 * seed, budget=0.1)
    return root / "sweep"


def _reads(monkeypatch: pytest.MonkeyPatch) -> Counter:
    """Counts opens per file name from now on (every results file is read through one
    bounded open: lrbench.plainfiles.read_bounded)."""
    reads: Counter = Counter()
    original = os.open

    def counted(path, *args, **kwargs) -> int:
        reads[Path(path).name] += 1
        return original(path, *args, **kwargs)

    monkeypatch.setattr(os, "open", counted)
    return reads


def _frames_built(monkeypatch: pytest.MonkeyPatch) -> Counter:
    """Counts DataFrame constructions from now on."""
    built: Counter = Counter()
    original = pd.DataFrame.__init__

    def counted(self, *args, **kwargs) -> None:
        built["frames"] += 1
        original(self, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "__init__", counted)
    return built


def test_loading_reads_each_file_of_a_run_once(tmp_path: Path, monkeypatch) -> None:
    sweep = _results(tmp_path, seeds=4)
    reads = _reads(monkeypatch)
    loaded = load_runs([sweep])
    runs = 4 * len(SCHEDULES)
    assert len(loaded.runs) == runs
    assert {name: reads[name] for name in ("spec.json", "summary.json", "metrics.csv")} == {
        "spec.json": runs,
        "summary.json": runs,
        "metrics.csv": runs,
    }


@pytest.mark.parametrize("step", ["load", "anytime"])
def test_frames_built_do_not_grow_with_the_runs(tmp_path: Path, monkeypatch, step: str) -> None:
    def frames(seeds: int) -> int:
        sweep = _results(tmp_path / str(seeds), seeds)
        found = analyse([sweep])
        chosen, summary = named_rows(found.chosen), named_rows(found.summary)
        with monkeypatch.context() as patch:
            built = _frames_built(patch)
            if step == "load":
                load_runs([sweep])
            else:
                analyse_anytime(chosen, found.loaded.curves, summary)
        return built["frames"]

    assert frames(2) == frames(12)


def test_curves_hold_every_runs_rows_in_one_frame(tmp_path: Path) -> None:
    sweep = _results(tmp_path, seeds=2)
    curves = load_runs([sweep]).curves
    assert len(curves) == 2 * len(SCHEDULES)
    assert len(curves.frame) == 6 * 2 * len(SCHEDULES)  # budget 0.1 of 60 epochs: 6 rows each
    path = next(iter(curves))
    one = curves[path]
    assert list(one.columns) == ["epoch", "lr", "score", "epoch_time_s"]
    assert list(one["epoch"]) == [1, 2, 3, 4, 5, 6]
    assert one["score"].iloc[-1] == pytest.approx(0.81)


def test_a_loss_metric_is_read_from_its_column_and_reached_from_above(tmp_path: Path) -> None:
    """Runs whose spec names metric loss are judged by test_loss (lower is better): their score
    is the loss negated, and a loss target is reached when the loss falls to it."""
    for seed in (1, 2):
        write_run(tmp_path, schedule="rex", seed=seed, budget=0.1, spec={"metric": "loss"})
    found = analyse([tmp_path / "sweep"], target=0.6, metric="loss")
    # write_run's test_loss falls as 1 - 0.5 * epoch / 6: 0.6 is reached at epoch 5 (0.5833)
    assert found.loaded.runs["score"].tolist() == [pytest.approx(-0.5)] * 2
    ttt = found.anytime.runs
    assert ttt["epochs_to_target"].tolist() == [5.0, 5.0]
    assert ttt["target"].tolist() == [pytest.approx(0.6)] * 2  # shown as a loss
    row = found.anytime.table.iloc[0]
    assert row["best_at_100"] == pytest.approx(0.5)  # the lowest loss, as a loss
    assert math.isnan(row["best_at_10"])


def test_past_the_limit_the_page_lists_the_runs_with_problems_and_runs_csv_all(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setattr(html, "RUN_LIST_LIMIT", 4)
    write_cell(tmp_path, {s: [0.9, 0.8, 0.85] for s in SCHEDULES})
    write_run(tmp_path, schedule="rex", seed=9, status="failed")
    report = build_report([tmp_path / "sweep"], tmp_path / "out")
    page = (tmp_path / "out" / "report.html").read_text()
    runs = page[page.index('<table class="sortable runs">') :]
    assert runs.count('<tr class="state-') == 1  # the failed run only
    assert "1 of the 10 runs" in page and 'id="run-summary-table"' in page
    listed = list(csv.DictReader(io.StringIO((tmp_path / "out" / "runs.csv").read_text())))
    assert len(listed) == 10 and listed[0]["status"] == "failed"
    assert tmp_path / "out" / "runs.csv" in report.files


def test_below_the_limit_the_page_lists_every_run(tmp_path: Path) -> None:
    write_cell(tmp_path, {s: [0.9, 0.8] for s in SCHEDULES})
    build_report([tmp_path / "sweep"], tmp_path / "out")
    page = (tmp_path / "out" / "report.html").read_text()
    assert page.count('<tr class="state-') == 6 and "run-summary-table" not in page


def test_judging_a_run_lists_its_folder_and_stats_none_of_its_files(
    tmp_path: Path, monkeypatch
) -> None:
    """One listing of the folder says which files are there and what they are (a link, a
    FIFO): at 10^5 runs a stat per file would be half a million calls."""
    sweep = _results(tmp_path, seeds=3)
    stats: Counter = Counter()
    original = os.lstat

    def counted(path, *args, **kwargs):
        stats[Path(path).name] += 1
        return original(path, *args, **kwargs)

    monkeypatch.setattr(os, "lstat", counted)
    assert len(load_runs([sweep]).runs) == 3 * len(SCHEDULES)
    assert not {"spec.json", "metrics.csv", "summary.json", "checkpoint.pt", ".lock"} & set(stats)


def test_a_report_read_and_drawn_by_several_workers_is_the_report_of_one(
    tmp_path: Path, monkeypatch
) -> None:
    """Twins: the same runs reported with one worker and with three (each reading shares of
    two runs) give the same files, byte for byte (figures included), the same problems and the
    same run list."""
    monkeypatch.setattr(load, "SMALLEST_SHARE", 2)
    for budget in (0.1, 0.5):
        for schedule in SCHEDULES:
            for seed in (1, 2, 3):
                acc = 0.8 + 0.01 * seed + 0.02 * SCHEDULES.index(schedule) * budget
                write_run(tmp_path, schedule=schedule, seed=seed, test_acc=acc, budget=budget)
    write_run(tmp_path, schedule="rex", seed=9, status="failed")
    one = build_report([tmp_path / "sweep"], tmp_path / "one", workers=1)
    three = build_report([tmp_path / "sweep"], tmp_path / "three", workers=3)
    assert [f.name for f in one.files] == [f.name for f in three.files]
    for mine, theirs in zip(one.files, three.files, strict=True):
        assert mine.read_bytes() == theirs.read_bytes(), mine.name
    assert one.problems == three.problems
    pd.testing.assert_frame_equal(one.runs, three.runs)
