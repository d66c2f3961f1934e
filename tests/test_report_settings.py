"""Runs are averaged only with runs whose spec.json differs in nothing but the seed; the stale
runs of an edited sweep are listed, not ranked, unless --include-stale."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from runfolders import write_cell, write_plan, write_run

from lrbench.report import analyse, build_report
from lrbench.report.plots import step_rates
from lrbench.report.rebuild import rebuild_schedule


def _rows(summary: pd.DataFrame) -> dict[tuple[str, str], dict]:
    return {(r["schedule"], r["variant"]): r for r in summary.to_dict("records")}


def _edited_sweep(root: Path) -> None:
    """A sweep run with full_epochs 4, then edited to 8: plan.json names the 8-epoch runs."""
    write_cell(root, {"rex": [0.80, 0.81], "step": [0.82, 0.83]}, full_epochs=4, budget=0.5)
    new = write_cell(root, {"rex": [0.90, 0.91], "step": [0.85, 0.86]}, full_epochs=8, budget=0.5)
    write_plan(root / "sweep", new)


def test_stale_runs_are_listed_not_ranked(tmp_path: Path) -> None:
    _edited_sweep(tmp_path)
    found = analyse([tmp_path / "sweep"])
    rows = _rows(found.summary)
    assert set(rows) == {("rex", ""), ("step", "")}
    assert rows["rex", ""]["n"] == 2
    assert rows["rex", ""]["mean_test_acc"] == pytest.approx(0.905)  # the 8-epoch runs only
    [stale] = [p for p in found.problems if "stale" in p.reason]
    assert stale.kind == "skipped" and stale.path == str(tmp_path / "sweep") and stale.runs == 4
    assert stale.reason.startswith("4 stale run(s) not in plan.json")
    assert "they differ from the current runs in full_epochs" in stale.reason
    assert "--include-stale" in stale.reason


def test_include_stale_reports_them_as_a_setting_of_their_own(tmp_path: Path) -> None:
    _edited_sweep(tmp_path)
    found = analyse([tmp_path / "sweep"], include_stale=True)
    rows = _rows(found.summary)
    assert {k: r["n"] for k, r in rows.items()} == {
        ("rex", "full_epochs=4"): 2,
        ("rex", "full_epochs=8"): 2,
        ("step", "full_epochs=4"): 2,
        ("step", "full_epochs=8"): 2,
    }
    # each setup is a cell of its own: rex wins with 8 epochs, step with 4
    assert {k: r["rank"] for k, r in rows.items()} == {
        ("rex", "full_epochs=4"): 2,
        ("rex", "full_epochs=8"): 1,
        ("step", "full_epochs=4"): 1,
        ("step", "full_epochs=8"): 2,
    }
    assert not any("stale" in p.reason for p in found.problems)
    assert any(
        "cifar10/resnet20/sgd: runs differ in more than the seed" in p.reason
        and "full_epochs=4 (4 runs); full_epochs=8 (4 runs)" in p.reason
        for p in found.problems
    )


def test_without_plan_json_every_run_counts_and_setups_still_split(tmp_path: Path) -> None:
    _edited_sweep(tmp_path)
    (tmp_path / "sweep" / "plan.json").unlink()
    rows = _rows(analyse([tmp_path / "sweep"]).summary)
    assert sorted(v for _, v in rows) == ["full_epochs=4"] * 2 + ["full_epochs=8"] * 2


def test_an_unreadable_plan_counts_every_run_and_says_so(tmp_path: Path) -> None:
    _edited_sweep(tmp_path)
    (tmp_path / "sweep" / "plan.json").write_text('{"name": "sweep"}')
    found = analyse([tmp_path / "sweep"])
    assert len(found.summary) == 4
    [note] = [p for p in found.problems if p.path.endswith("plan.json")]
    assert note.kind == "note" and "every run of this sweep counts as current" in note.reason


def test_two_sweeps_with_different_full_epochs_are_never_pooled(tmp_path: Path) -> None:
    write_cell(tmp_path, {"rex": [0.90, 0.91], "step": [0.85, 0.86]}, sweep="short", full_epochs=4)
    write_cell(tmp_path, {"rex": [0.92, 0.93], "step": [0.88, 0.87]}, sweep="long", full_epochs=8)
    report = build_report([tmp_path], tmp_path / "out")
    summary = pd.read_csv(tmp_path / "out" / "summary.csv", keep_default_na=False)
    assert summary["n"].tolist() == [2, 2, 2, 2]
    assert sorted(summary["variant"]) == ["full_epochs=4"] * 2 + ["full_epochs=8"] * 2
    assert summary["top1"].sum() == 2  # one winner per setup
    md = report.markdown
    assert "## cifar10 · resnet20 · sgd · full\\_epochs=4 — test error (%)" in md
    assert "## cifar10 · resnet20 · sgd · full\\_epochs=8 — test error (%)" in md
    finishes = pd.read_csv(tmp_path / "out" / "finishes.csv", keep_default_na=False)
    assert sorted(zip(finishes["schedule"], finishes["variant"], strict=True))[0] == (
        "rex",
        "full_epochs=4",
    )
    assert "| rex [full\\_epochs=8] | 1 |" in md


def test_the_same_config_in_two_sweeps_is_pooled_as_seeds(tmp_path: Path) -> None:
    # sweep name, provenance and steps_per_epoch cannot change a run's numbers by design
    write_run(tmp_path, sweep="a", seed=1, test_acc=0.90)
    write_run(tmp_path, sweep="a", seed=2, test_acc=0.92)
    write_run(
        tmp_path,
        sweep="b",
        seed=3,
        test_acc=0.94,
        steps_per_epoch=20,
        spec={"provenance": {"created": "2027-01-01T00:00:00Z", "pack": {"size": 4, "slot": 2}}},
    )
    found = analyse([tmp_path])
    assert found.summary["n"].tolist() == [3]
    assert found.summary["variant"].tolist() == [""]
    assert found.summary["mean_test_acc"].tolist() == [pytest.approx(0.92)]


@pytest.mark.parametrize(
    ("spec", "variant"),
    [
        ({"batch_size": 256}, "batch_size=256"),
        ({"dataset": {"limit_train": 5000}}, "dataset.limit_train=5000"),
        ({"early_stop": {"patience": 3}}, "early_stop=none"),
        ({"optimizer": {"momentum": 0.95}}, "optimizer.momentum=0.9"),
    ],
)
def test_runs_differing_in_more_than_the_seed_are_not_averaged(
    tmp_path: Path, spec: dict, variant: str
) -> None:
    write_run(tmp_path, seed=1, test_acc=0.90)
    write_run(tmp_path, seed=2, test_acc=0.80, spec=spec)
    found = analyse([tmp_path])
    assert found.summary["n"].tolist() == [1, 1]
    assert variant in found.summary["variant"].tolist()


def test_a_schedules_parameters_under_one_label_are_rows_of_one_cell(tmp_path: Path) -> None:
    write_cell(tmp_path, {"step": [0.85, 0.86]})
    for beta, acc in ((0.5, 0.90), (0.9, 0.80)):
        for seed in (1, 2):
            write_run(tmp_path, schedule="rex", schedule_params={"beta": beta}, seed=seed,
                      test_acc=acc + seed / 100)  # fmt: skip
    summary = analyse([tmp_path]).summary
    assert {k: r["rank"] for k, r in _rows(summary).items()} == {
        ("rex", "schedule.beta=0.5"): 1,
        ("step", ""): 2,
        ("rex", "schedule.beta=0.9"): 3,
    }


def test_data_is_identified_by_its_fingerprint_not_its_path(tmp_path: Path) -> None:
    data = {"root": "../data/cifar10.tar.xz", "fingerprint": "sha256:aaaa"}
    write_run(tmp_path, seed=1, test_acc=0.90, spec={"dataset": data})
    write_run(tmp_path, seed=2, test_acc=0.91,
              spec={"dataset": {**data, "root": "/home/me/data/cifar10.tar.xz"}})  # fmt: skip
    write_run(tmp_path, seed=3, test_acc=0.70,
              spec={"dataset": {**data, "fingerprint": "sha256:bbbb"}})  # fmt: skip
    rows = _rows(analyse([tmp_path]).summary)
    assert {k: r["n"] for k, r in rows.items()} == {
        ("rex", "dataset.fingerprint=sha256:aaaa"): 2,
        ("rex", "dataset.fingerprint=sha256:bbbb"): 1,
    }


def test_seeds_run_with_different_thread_counts_are_pooled_with_a_note(tmp_path: Path) -> None:
    write_run(tmp_path, seed=1, spec={"provenance": {"threads": 1}})
    write_run(tmp_path, seed=2, spec={"provenance": {"threads": 8}})
    found = analyse([tmp_path])
    assert found.summary["n"].tolist() == [2]
    [note] = [p for p in found.problems if "threads" in p.reason]
    assert note.kind == "note"
    assert "schedule rex: its seeds ran with different threads {1, 8}" in note.reason


def test_a_schedule_naming_user_code_is_never_imported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "IMPORTED"
    (tmp_path / "my_schedules.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('x')\n"
        "def linear(p):\n    return 1 - p\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    params = {"import": "my_schedules:linear"}
    for seed in (1, 2):
        write_run(tmp_path / "results", schedule="import", label="mine", seed=seed,
                  schedule_params=params)  # fmt: skip
    report = build_report([tmp_path / "results"], tmp_path / "out")
    assert report.summary["schedule"].tolist() == ["mine"]
    assert (tmp_path / "out" / "lr_curves.png").exists()  # drawn from metrics.csv's rates
    run = report.runs.iloc[0]
    assert step_rates(run) is None
    assert rebuild_schedule(json.loads(run["schedule_params"])).user_code  # known, not run
    assert not marker.exists()
