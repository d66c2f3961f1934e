"""Unusable runs are skipped and named with their path and what was wrong; the report goes on."""

from __future__ import annotations

from pathlib import Path

import pytest
from runfolders import write_cell, write_run

from lrbench.errors import UserError
from lrbench.report import analyse, build_report


def _reasons(problems: list) -> dict[str, str]:
    return {Path(p.path).name.split("-")[3]: p.reason for p in problems if p.kind == "skipped"}


def test_failed_unfinished_and_corrupt_runs_are_listed_and_skipped(tmp_path: Path) -> None:
    write_cell(tmp_path, {"good": [0.9, 0.8]})
    write_run(tmp_path, schedule="failed", status="failed")
    write_run(tmp_path, schedule="unfinished", status=None)
    bad_spec = write_run(tmp_path, schedule="badspec")
    (bad_spec / "spec.json").write_text('{"model": "resnet20", "data')
    no_field = write_run(tmp_path, schedule="nofield")
    (no_field / "spec.json").write_text('{"model": "resnet20"}')
    torn = write_run(tmp_path, schedule="torn")
    text = (torn / "metrics.csv").read_text()
    (torn / "metrics.csv").write_text(text[: text.rindex(",") - 3])
    short = write_run(tmp_path, schedule="short", epochs_completed=7)
    bad_summary = write_run(tmp_path, schedule="badsummary")
    (bad_summary / "summary.json").write_text("")
    gone = write_run(tmp_path, schedule="nometrics")
    (gone / "metrics.csv").unlink()
    header_only = write_run(tmp_path, schedule="headeronly")
    (header_only / "metrics.csv").write_text("epoch,step,lr,test_acc\n")

    report = build_report([tmp_path / "sweep"], tmp_path / "out")

    assert list(report.summary["schedule"]) == ["good"]
    reasons = _reasons(report.problems)
    assert set(reasons) == set(
        [
            "failed",
            "unfinished",
            "badspec",
            "nofield",
            "torn",
            "short",
            "badsummary",
            "nometrics",
            "headeronly",
        ]
    )
    assert "CUDA out of memory" in reasons["failed"]
    assert reasons["unfinished"].startswith("unfinished: no summary.json (3 of 3 epochs")
    assert "spec.json is not valid JSON" in reasons["badspec"]
    assert "spec.json: epochs is None" in reasons["nofield"]  # the verdict sweep and status give
    assert "metrics.csv line 4" in reasons["torn"] and "truncated" in reasons["torn"]
    assert "ends at epoch 3" in reasons["short"] and "7 epochs" in reasons["short"]
    assert "summary.json is not valid JSON" in reasons["badsummary"]
    assert "metrics.csv is missing" in reasons["nometrics"]
    assert "no rows" in reasons["headeronly"]

    listed = (tmp_path / "out" / "problems.txt").read_text()
    assert listed.startswith("9 skipped (not in the tables):")
    for run in (bad_spec, torn, short, gone):
        assert str(run) in listed
    assert (tmp_path / "out" / "tables.md").read_text().count("good") >= 2


def test_accuracy_outside_0_1_is_corrupt(tmp_path: Path) -> None:
    write_cell(tmp_path, {"ok": [0.9]})
    write_run(tmp_path, schedule="percent", test_acc=91.0)
    found = analyse([tmp_path])
    assert "not a fraction in [0, 1]" in _reasons(found.problems)["percent"]


def test_a_diverged_run_is_ranked_not_listed(tmp_path: Path) -> None:
    write_cell(tmp_path, {"rex": [0.9]})
    write_run(tmp_path, schedule="step", status="diverged")
    early = write_run(tmp_path, schedule="linear", status="diverged")
    (early / "metrics.csv").write_text("")  # diverged before its first epoch ended
    found = analyse([tmp_path])
    assert [p for p in found.problems if p.kind == "skipped"] == []
    assert found.summary.set_index("schedule")["rank"].to_dict() == {
        "linear": 2,
        "rex": 1,
        "step": 2,
    }


def test_extra_metrics_columns_are_ignored(tmp_path: Path) -> None:
    run = write_run(tmp_path, schedule="rex", test_acc=0.9)
    lines = (run / "metrics.csv").read_text().splitlines()
    extra = [lines[0] + ",grad_norm"] + [line + ",1.5" for line in lines[1:]]
    (run / "metrics.csv").write_text("\n".join(extra) + "\n")
    assert analyse([tmp_path]).summary["mean_test_acc"].tolist() == [pytest.approx(0.9)]


def test_sweep_root_several_paths_and_duplicates(tmp_path: Path) -> None:
    write_cell(tmp_path / "results", {"rex": [0.9]}, sweep="a")
    write_cell(tmp_path / "results", {"step": [0.8]}, sweep="b")
    write_cell(tmp_path / "other", {"linear": [0.7]}, sweep="c")
    root = tmp_path / "results"
    found = analyse([root, root / "a", tmp_path / "other" / "c"])
    assert sorted(found.summary["schedule"]) == ["linear", "rex", "step"]
    assert found.summary["n"].tolist() == [1, 1, 1]  # results/a given twice, counted once


@pytest.mark.parametrize("make", ["missing", "empty", "file"])
def test_a_path_without_runs_is_a_user_error(tmp_path: Path, make: str) -> None:
    path = tmp_path / "x"
    if make == "empty":
        (path / "runs").mkdir(parents=True)
    elif make == "file":
        path.write_text("")
    with pytest.raises(UserError) as err:
        analyse([path])
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_a_report_is_still_written_when_every_run_is_skipped(tmp_path: Path) -> None:
    write_run(tmp_path, status="failed")
    write_run(tmp_path, status=None, seed=2)
    report = build_report([tmp_path / "sweep"], tmp_path / "out")
    assert report.summary.empty
    assert len(report.problems) == 2
    assert (tmp_path / "out" / "problems.txt").read_text().startswith("2 skipped")
    assert (tmp_path / "out" / "rank_vs_budget.png").exists()
