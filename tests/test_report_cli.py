"""`lrbench report` end to end: what is printed where, what is written, and the exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from runfolders import write_cell, write_run

import lrbench.cli.report_cmd  # noqa: F401  (registers the command)
from lrbench.cli import main


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    for budget in (0.05, 0.5):
        write_cell(tmp_path, {"rex": [0.9, 0.92], "step": [0.85, 0.86]}, budget=budget)
    write_run(tmp_path, schedule="step", seed=3, status=None)
    return tmp_path / "sweep"


def test_table_format_prints_rich_tables_and_problems_on_stderr(
    sweep: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    main(["report", str(sweep)])
    out, err = capsys.readouterr()
    assert "Finishes" in out and "cifar10 · resnet20 · sgd" in out
    assert "9.00 ± 1.41" in out
    assert "1 run skipped, 3 notes; also in" in err
    assert "unfinished: no summary.json" in err and "-step-b0.05-s3-" in err
    assert "schedule step: mean over seeds {1, 2} only, seeds {3} missing" in err
    assert "problems" not in out
    written = {p.name for p in (sweep / "report").iterdir()}
    assert {"tables.md", "tables.tex", "summary.csv", "finishes.csv", "problems.txt"} <= written
    assert {"lr_curves.png", "error_vs_budget.png", "rank_vs_budget.png"} <= written


@pytest.mark.parametrize(
    ("fmt", "file"), [("markdown", "tables.md"), ("latex", "tables.tex"), ("csv", "summary.csv")]
)
def test_text_formats_print_the_written_file(
    sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], fmt: str, file: str
) -> None:
    out_dir = tmp_path / "elsewhere"
    main(["report", str(sweep), "--out", str(out_dir), "--format", fmt, "--metric", "accuracy"])
    out, _ = capsys.readouterr()
    assert out == (out_dir / file).read_text()
    assert (out_dir / "tables.md").exists() and (out_dir / "rank_vs_budget.png").exists()
    assert not (sweep / "report").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["does-not-exist"], "does not exist"),
        (["EMPTY"], "holds no runs"),
        (["SWEEP", "--format", "html"], "--format 'html' is not valid"),
        (["SWEEP", "--metric", "map"], "metric 'map' is not known"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    sweep: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    (tmp_path / "empty").mkdir()
    subs = {"EMPTY": str(tmp_path / "empty"), "SWEEP": str(sweep)}
    with pytest.raises(SystemExit) as exit_info:
        main(["report", *(subs.get(a, a) for a in args)])
    assert exit_info.value.code == 2
    _, err = capsys.readouterr()
    assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_python_dash_m_lrbench_report(sweep: Path) -> None:
    env = {**os.environ, "COLUMNS": "120"}
    done = subprocess.run(
        [sys.executable, "-m", "lrbench", "report", str(sweep.parent), "--format", "csv"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0].startswith("dataset,model,optimizer,budget,schedule,n,")
    assert len(done.stdout.splitlines()) == 5
    assert "unfinished" in done.stderr
    assert (sweep.parent / "report" / "finishes.csv").exists()


def test_help_has_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    main(["report", "--help"])
    out, _ = capsys.readouterr()
    assert "lrbench report results/rex-cifar10" in out and "--metric" in out
    assert "--reference" in out and "rex-paper" in out and "--include-stale" in out
    assert "uncertainty.csv" in out and "paired bootstrap" in out


def test_report_does_not_import_torch(sweep: Path, tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from lrbench.report import build_report; "
        f"build_report([Path({str(sweep)!r})], Path({str(tmp_path / 'o')!r})); "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
