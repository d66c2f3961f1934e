"""`lrbench schedules` and `lrbench schedule` as a user runs them."""

from __future__ import annotations

import csv
import io
import subprocess
import sys

import numpy as np
import pytest
from typer.testing import CliRunner

from lrbench.cli import app, main
from lrbench.schedules import build_schedule, schedule_names


def run(capsys, *argv: str) -> tuple[int, str, str]:
    try:
        main(list(argv))
        code = 0
    except SystemExit as ex:
        code = ex.code if isinstance(ex.code, int) else 1
    out = capsys.readouterr()
    return code, out.out, out.err


def rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_csv_has_the_header_and_one_row_per_step(capsys):
    code, out, _ = run(capsys, "schedule", "rex", "--steps", "50", "--format", "csv")
    assert code == 0
    assert out.splitlines()[0] == "step,epoch,progress,lr,momentum"
    table = rows(out)
    assert [int(r["step"]) for r in table] == list(range(50))
    assert {r["epoch"] for r in table} == {"1"}
    assert {r["momentum"] for r in table} == {"0.9"}
    p = np.arange(50) / 50
    np.testing.assert_allclose([float(r["progress"]) for r in table], p)
    np.testing.assert_allclose([float(r["lr"]) for r in table], 0.1 * (1 - p) / (1 - p / 2))


def test_csv_lr_is_exactly_what_the_trainer_gets(capsys):
    argv = ["schedule", "onecycle", "--steps", "391", "--lr", "0.4", "--format", "csv"]
    _, out, _ = run(capsys, *argv, "--set", "warmup=0.05", "--steps-per-epoch", "17")
    sched = build_schedule({"name": "onecycle", "warmup": 0.05})
    table = rows(out)
    assert [float(r["lr"]) for r in table] == (0.4 * sched.multipliers(391, 17)).tolist()
    assert [float(r["momentum"]) for r in table] == sched.momenta(391, 17).tolist()
    assert [int(r["epoch"]) for r in table] == [t // 17 + 1 for t in range(391)]


def test_set_values_are_yaml(capsys):
    argv = ["schedule", "step", "--steps", "10", "--format", "csv", "--lr", "1"]
    _, out, _ = run(capsys, *argv, "--set", "milestones=[0.3,0.6]", "--set", "gamma=0.5")
    assert [float(r["lr"]) for r in rows(out)] == [1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.25]


def test_sample_every_epoch_holds_the_rate_through_each_epoch(capsys):
    argv = ["schedule", "linear", "--steps", "12", "--steps-per-epoch", "4", "--format", "csv"]
    _, out, _ = run(capsys, *argv, "--set", "sample_every=epoch", "--momentum", "0.8")
    table = rows(out)
    assert [r["epoch"] for r in table] == ["1"] * 4 + ["2"] * 4 + ["3"] * 4
    assert len({r["lr"] for r in table}) == 3
    assert {r["momentum"] for r in table} == {"0.8"}


def test_csv_out_writes_the_file(capsys, tmp_path):
    target = tmp_path / "cosine.csv"
    code, out, err = run(
        capsys, "schedule", "cosine", "--steps", "8", "--format", "csv", "--out", str(target)
    )
    assert code == 0 and out == "" and str(target) in err
    assert len(rows(target.read_text())) == 8


def test_table_shows_a_sample_with_the_first_and_last_step(capsys):
    code, out, _ = run(capsys, "schedule", "cosine", "--steps", "1000")
    assert code == 0
    assert "cosine" in out and "21 of 1000 steps shown" in out
    steps = [line.split("│")[1].strip() for line in out.splitlines() if line.startswith("│")]
    assert steps[0] == "0" and steps[-1] == "999" and len(steps) == 21
    _, short, _ = run(capsys, "schedule", "step", "--steps", "5")
    assert "shown" not in short


def test_png_is_written_with_a_default_name(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(
        capsys,
        "schedule",
        "onecycle",
        "--steps",
        "200",
        "--steps-per-epoch",
        "20",
        "--format",
        "png",
    )
    assert code == 0 and "onecycle.png" in err
    assert (tmp_path / "onecycle.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    target = tmp_path / "out" / "rex.png"
    target.parent.mkdir()
    code, _, _ = run(
        capsys, "schedule", "rex", "--steps", "30", "--format", "png", "--out", str(target)
    )
    assert code == 0 and target.stat().st_size > 10_000


def test_schedules_lists_every_schedule_its_defaults_and_the_modifiers():
    result = CliRunner().invoke(app, ["schedules"])
    assert result.exit_code == 0
    for name in schedule_names():
        assert name in result.output
    for text in [
        "milestones=[0.5, 0.75]",
        "pct_start=0.45",
        "final_div=1000",
        "beta=0.5",
        "shape=1-sqrt",
    ]:
        assert text in result.output
    for modifier in ["warmup", "sample_every", "sample_at", "label"]:
        assert modifier in result.output


def test_schedules_lists_cycles_restarts_piecewise_and_your_own():
    result = CliRunner().invoke(app, ["schedules"])
    for text in ["profile=linear", "profile=cosine", "points=[[0, 1], [1, 0]]", "[p, m]"]:
        assert text in result.output
    assert "import (required)" in result.output and "module:function" in result.output


def test_a_function_in_the_current_folder_previews_by_import_path(capsys, user_code, monkeypatch):
    (user_code / "mine.py").write_text(
        "def halving(p, at=0.5):\n    return 1.0 if p < at else 0.5\n"
    )
    monkeypatch.chdir(user_code)
    code, out, _ = run(capsys, "schedule", "mine:halving", "--steps", "100", "--format", "csv")
    assert code == 0
    assert [float(r["lr"]) for r in rows(out)] == [0.1] * 50 + [0.05] * 50
    argv = ["schedule", "mine:halving", "--steps", "100", "--set", "at=0.25", "--set", "warmup=0.1"]
    code, out, _ = run(capsys, *argv)
    assert code == 0 and "halving: mine:halving(at=0.25, warmup=0.1)" in out
    _, out, _ = run(capsys, "schedule", "restarts", "--set", "profile=mine:halving", "--steps", "9")
    assert "restarts(profile={import: mine:halving})" in out
    code, _, err = run(capsys, "schedule", "mine:halving", "--steps", "10", "--set", "a=1")
    assert code == 2 and err.count("\n") == 1 and "'a'" in err and "did you mean 'at'" in err
    code, _, err = run(capsys, "schedule", "absent:fn", "--steps", "10")
    assert code == 2 and err.count("\n") == 1 and "no module named 'absent'" in err


def test_a_cycle_previews_with_its_profile_set_as_yaml(capsys):
    argv = ["schedule", "cyclic", "--steps", "8", "--lr", "1", "--format", "csv"]
    profile = "profile={name: rex, beta: 0.9}"
    _, out, _ = run(capsys, *argv, "--set", profile, "--set", "step_size=0.5", "--set", "low=0")
    rex = [(1 - u) / (1 - 0.9 * u) for u in (0, 0.25, 0.5, 0.75)]
    np.testing.assert_allclose([float(r["lr"]) for r in rows(out)], [1 - m for m in rex] + rex)
    _, table, _ = run(capsys, "schedule", "restarts", "--steps", "8", "--set", profile)
    assert "restarts(profile={name: rex, beta: 0.9})" in table


def test_help_teaches_with_examples():
    result = CliRunner().invoke(app, ["schedule", "--help"])
    assert result.exit_code == 0
    assert "lrbench schedule step --set milestones=[0.3,0.6]" in result.output
    assert "step,epoch,progress,lr,momentum" in result.output


BAD = [
    (["schedule", "rexx", "--steps", "10"], "did you mean 'rex'"),
    (["schedule", "rex", "--steps", "10", "--set", "beta"], "KEY=VALUE"),
    (["schedule", "rex", "--steps", "10", "--set", "beta=[0.5"], "--set beta"),
    (["schedule", "rex", "--steps", "10", "--set", "bta=0.9"], "did you mean 'beta'"),
    (["schedule", "rex", "--steps", "10", "--set", "beta=1.5"], "beta accepts a number in [0, 1)"),
    (["schedule", "step", "--steps", "10", "--set", "milestones=[0.6,0.3]"], "increasing"),
    (["schedule", "rex", "--steps", "0"], "--steps"),
    (["schedule", "rex", "--steps", "-3"], "--steps"),
    (["schedule", "rex", "--steps", "10", "--steps-per-epoch", "0"], "--steps-per-epoch"),
    (["schedule", "rex", "--steps", "10", "--lr", "0"], "--lr"),
    (["schedule", "rex", "--steps", "10", "--momentum", "1.2"], "--momentum"),
    (["schedule", "rex", "--steps", "10", "--format", "svg"], "--format"),
    (["schedule", "rex", "--steps", "10", "--set", "name=cosine"], "argument"),
]


@pytest.mark.parametrize(("argv", "words"), BAD, ids=[" ".join(a[1:]) for a, _ in BAD])
def test_bad_input_is_one_line_and_exit_2(capsys, argv, words):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert out == ""
    assert err.startswith("error: ") and err.count("\n") == 1
    assert words in err
    assert "Traceback" not in err


def test_bad_input_from_the_shell_has_no_traceback():
    done = subprocess.run(
        [sys.executable, "-m", "lrbench", "schedule", "cosin", "--steps", "10"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert (
        done.stderr.strip().splitlines() == [done.stderr.strip()]
        and "did you mean 'cosine'" in done.stderr
    )
    assert "Traceback" not in done.stderr
