"""One training, one result: a run found in several folders is one seed, never two."""

from __future__ import annotations

import shutil
from pathlib import Path

from runfolders import write_cell

from lrbench.report import analyse


def test_the_same_sweep_in_two_folders_counts_each_seed_once(tmp_path: Path) -> None:
    write_cell(tmp_path / "a", {"rex": [0.90, 0.91, 0.92], "step": [0.85, 0.86, 0.84]})
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    found = analyse([tmp_path / "a" / "sweep", tmp_path / "b" / "sweep"])
    summary = found.summary.set_index("schedule")
    assert summary["n"].to_dict() == {"rex": 3, "step": 3}
    assert summary.loc["rex", "seeds"] == "1 2 3"
    notes = [p.reason for p in found.problems if p.kind == "note"]
    (note,) = [n for n in notes if "with the same results" in n]
    assert note.startswith("6 run(s) are in each of ") and "each counted once, as one seed" in note


def test_copies_that_differ_are_listed_and_neither_is_counted(tmp_path: Path) -> None:
    runs = write_cell(tmp_path / "a", {"rex": [0.90, 0.91], "step": [0.85, 0.86]})
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    changed = tmp_path / "b" / "sweep" / "runs" / runs[0].name / "metrics.csv"
    lines = changed.read_text().splitlines(keepends=True)  # the first epoch's row differs
    lines[1] = lines[1].replace(",0.9,", ",0.95,", 1)
    changed.write_text("".join(lines))
    found = analyse([tmp_path / "a" / "sweep", tmp_path / "b" / "sweep"])
    skipped = [p for p in found.problems if p.kind == "skipped"]
    assert len(skipped) == 1 and skipped[0].runs == 2
    assert runs[0].name in skipped[0].reason and "different results" in skipped[0].reason
    assert found.summary.set_index("schedule").loc["rex", "seeds"] == "2"


def test_copies_differing_only_in_timing_are_one_run(tmp_path: Path) -> None:
    runs = write_cell(tmp_path / "a", {"rex": [0.90, 0.91], "step": [0.85, 0.86]})
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    slower = tmp_path / "b" / "sweep" / "runs" / runs[0].name / "metrics.csv"
    slower.write_text(slower.read_text().replace(",1.5\n", ",2.5\n"))
    found = analyse([tmp_path / "a" / "sweep", tmp_path / "b" / "sweep"])
    assert not [p for p in found.problems if p.kind == "skipped"]
    assert found.summary["n"].tolist() == [2, 2]


def test_copies_given_by_relative_and_absolute_paths_are_one_run(
    tmp_path: Path, monkeypatch
) -> None:
    write_cell(tmp_path / "a", {"rex": [0.90, 0.91], "step": [0.85, 0.86]})
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    monkeypatch.chdir(tmp_path)
    found = analyse([Path("a") / "sweep", tmp_path / "b" / "sweep"])
    assert found.summary["n"].tolist() == [2, 2]
