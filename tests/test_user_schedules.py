"""Your own schedule, named by import path in a config: imported next to the config and tried
when the config is read, recorded by its module's source hash, rebuilt by any process with the
config's folder on its import path, and never run by `report` or `status`."""

from __future__ import annotations

import csv
import importlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from sweepconfigs import tiny

from lrbench.config import expand, load_config
from lrbench.errors import UserError
from lrbench.imports import source_hash
from lrbench.report.anytime import CYCLE_ENDS, judged_epochs
from lrbench.report.plots import step_rates
from lrbench.schedules import ScheduleError, build_schedule

SCHEDULES = """\
import numpy as np


def warm_rex(p, beta=0.9, floor=0.0):
    return floor + (1 - floor) * (1 - p) / (1 - beta * p)


def halves(p):
    return 1.0 if p < 0.5 else 0.25


def negative(p):
    return -p


def not_a_number(p):
    return "fast"


def infinite(p):
    return np.full_like(p, np.inf)


def three(p):
    return np.ones(3)


def broken(p):
    raise ZeroDivisionError("my bug")


rate = 0.5
"""
WARM_REX = {"import": "schedules:warm_rex", "beta": 0.5, "floor": 0.1, "label": "mine"}


def project(user_code: Path, schedules: list, **changes) -> Path:
    """A config next to the user's schedules.py; the current folder is elsewhere."""
    (user_code / "schedules.py").write_text(SCHEDULES)
    config = user_code / "sweep.yaml"
    config.write_text(yaml.safe_dump(tiny(schedules=schedules, **changes)))
    return config


@pytest.fixture
def elsewhere(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    monkeypatch.chdir(folder)
    return folder


def forget(module: str) -> None:
    """As a new process would see the module: imported again from its file."""
    sys.modules.pop(module, None)
    importlib.invalidate_caches()


def test_a_config_names_its_own_schedule_next_to_it(user_code, elsewhere):
    config = project(user_code, ["cosine", WARM_REX, {"import": "schedules:halves"}])
    runs = expand(load_config(config))
    mine = next(r for r in runs if r.label == "mine")
    digest = source_hash(sys.modules["schedules"])
    assert mine.schedule == {
        "name": "import",
        "label": "mine",
        "import": "schedules:warm_rex",
        "source_hash": digest,
        "beta": 0.5,
        "floor": 0.1,
        "warmup": 0.0,
        "sample_every": "iteration",
        "sample_at": None,
    }
    p = np.arange(40) / 40
    rates = build_schedule(mine.schedule).multipliers(40, 4)
    np.testing.assert_allclose(rates, 0.1 + 0.9 * (1 - p) / (1 - 0.5 * p), rtol=1e-12)
    halves = next(r for r in runs if r.label == "halves")  # a function of one float
    assert build_schedule(halves.schedule).multipliers(4, 4).tolist() == [1, 1, 0.25, 0.25]


def test_the_configs_folder_wins_over_the_current_one(user_code, elsewhere):
    (elsewhere / "schedules.py").write_text("def warm_rex(p, beta=0, floor=0):\n    return 0.5\n")
    spec = expand(load_config(project(user_code, [WARM_REX])))[0].schedule
    assert build_schedule(spec).multipliers(4, 4)[0] == 1.0
    assert sys.modules["schedules"].__file__ == str(user_code / "schedules.py")


def test_warmup_sampling_and_cycles_treat_it_like_a_built_in(user_code):
    (user_code / "schedules.py").write_text(SCHEDULES)
    sys.path.insert(0, str(user_code))
    modifiers = {"beta": 0.5, "warmup": 0.1, "sample_every": "epoch"}
    mine = build_schedule({"import": "schedules:warm_rex", **modifiers}).multipliers(100, 10)
    assert np.array_equal(mine, build_schedule({"name": "rex", **modifiers}).multipliers(100, 10))
    inside = {"step_size": 0.2, "low": 0.05, "warmup": 0.1}
    cyclic = build_schedule({"name": "cyclic", "profile": "schedules:warm_rex", **inside})
    rex = build_schedule({"name": "cyclic", "profile": {"name": "rex", "beta": 0.9}, **inside})
    np.testing.assert_allclose(cyclic.multipliers(100, 10), rex.multipliers(100, 10), atol=1e-15)
    assert cyclic.cycle_end_steps(100, 10) == rex.cycle_end_steps(100, 10)
    restarts = build_schedule({"name": "restarts", "profile": {"import": "schedules:halves"}})
    assert restarts.multipliers(7, 7).tolist() == [1, 1, 0.25, 1, 1, 0.25, 0.25]


def test_an_edited_module_is_a_new_schedule_and_old_specs_refuse_to_run(user_code, elsewhere):
    config = project(user_code, [WARM_REX])
    before = expand(load_config(config))
    (user_code / "schedules.py").write_text(SCHEDULES + "\n# tuned\n")
    forget("schedules")
    after = expand(load_config(config))
    assert [r.schedule["source_hash"] for r in before] != [r.schedule["source_hash"] for r in after]
    assert not {r.run_id for r in before} & {r.run_id for r in after}
    with pytest.raises(ScheduleError, match="has changed since this run was planned"):
        build_schedule(before[0].schedule)


def test_a_recorded_spec_rebuilds_in_another_process_with_the_configs_folder(user_code, elsewhere):
    spec = expand(load_config(project(user_code, [WARM_REX])))[0].schedule
    code = (
        "import json, sys; from lrbench.imports import add_search_path; "
        "from lrbench.schedules import build_schedule; "
        f"add_search_path({str(user_code)!r}); "
        f"print(json.dumps(build_schedule(json.loads({json.dumps(spec)!r}))"
        ".multipliers(20, 5).tolist()))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == build_schedule(spec).multipliers(20, 5).tolist()


BAD = [
    ({"import": "missing:fn"}, "'missing:fn': no module named 'missing'"),
    ({"import": "schedules:nope"}, "module schedules has no 'nope'"),
    ({"import": "schedules"}, "is not an import path"),
    ({"import": "schedules:rate"}, "is not a function of progress p"),
    ({"import": "schedules:not_a_number"}, "returned 'fast' at p=0.0; it must return a number"),
    ({"import": "schedules:negative"}, "returned -0.001 at p=0.001; multipliers must be finite"),
    ({"import": "schedules:infinite"}, "returned inf at p=0.0"),
    ({"import": "schedules:three"}, "array of shape (3,) for 1000 values of p"),
    ({"import": "schedules:broken"}, "raised ZeroDivisionError at p=0.0: my bug"),
    ({"import": "schedules:warm_rex", "bta": 0.5}, "did you mean 'beta'"),
    ({"import": "schedules:warm_rex", "beta": None}, "raised TypeError"),
    ({"name": "cyclic", "profile": "schedules:nope"}, "profile: 'schedules:nope': module"),
]


@pytest.mark.parametrize(("entry", "words"), BAD, ids=[str(e) for e, _ in BAD])
def test_a_bad_import_is_one_line_exit_2_naming_the_entry(cli, user_code, elsewhere, entry, words):
    config = project(user_code, ["cosine", entry])
    result = cli("sweep", config, "--results", elsewhere / "results", "--dry-run")
    assert result.code == 2, result.output
    assert result.out == "" and result.err.count("\n") == 1 and "Traceback" not in result.err
    assert f"{config}: schedules[1]: " in result.err
    assert words in result.err


def test_the_dry_run_lists_the_imported_schedules_runs(cli, user_code, elsewhere):
    config = project(user_code, [WARM_REX, {"name": "cyclic", "profile": "schedules:halves"}])
    result = cli("sweep", config, "--results", elsewhere / "results", "--dry-run")
    assert result.code == 0, result.output
    assert "-mine-b0.5-" in result.out and "-cyclic-b1-" in result.out


def test_lrbench_schedule_previews_it_from_the_current_folder(cli, user_code, monkeypatch):
    """Its rates are lr · m(p) at each step's progress; the png is named by the label."""
    (user_code / "schedules.py").write_text(SCHEDULES)
    monkeypatch.chdir(user_code)
    argv = ["schedule", "schedules:warm_rex", "--set", "beta=0.5", "--steps", "10", "--lr", "1"]
    result = cli(*argv, "--format", "csv")
    assert result.code == 0, result.output
    rates = [float(row["lr"]) for row in csv.DictReader(result.out.splitlines())]
    p = np.arange(10) / 10
    assert np.allclose(rates, (1 - p) / (1 - 0.5 * p), rtol=1e-12)
    png = cli(*argv, "--format", "png")
    assert png.code == 0 and (user_code / "warm_rex.png").stat().st_size > 1000, png.output


def test_the_report_knows_an_imported_schedules_cycles_without_importing_it():
    recorded = {"import": "nowhere:fn", "source_hash": "0123456789abcdef"}
    spec = {"name": "cyclic", "profile": {"name": "import", **recorded}, "step_size": 0.125}
    with pytest.raises(UserError):
        build_schedule(spec)
    assert judged_epochs(spec, 40, 10) == ([10, 20, 30, 40], CYCLE_ENDS)
    run = {"steps_per_epoch": 10, "schedule_params": json.dumps(spec), "epochs": 40, "lr": 0.1}
    assert step_rates(run) is None
    assert "nowhere" not in sys.modules


def test_a_packed_sweep_trains_it_and_report_and_status_never_run_it(cli, user_code, elsewhere):
    cyclic = {"name": "cyclic", "profile": "schedules:warm_rex", "step_size": 0.25, "low": 0.1}
    config = project(user_code, [WARM_REX, cyclic], budgets=[1.0])
    results = elsewhere / "results"
    trained = cli("sweep", config, "--results", results, "--device", "cpu", "--pack", "2")
    assert trained.code == 0, trained.output
    assert "packing up to 2 runs" in trained.output
    for spec in expand(load_config(config)):
        folder = results / "tiny" / "runs" / spec.run_id
        rows = list(csv.DictReader((folder / "metrics.csv").open()))
        spe = json.loads((folder / "spec.json").read_text())["steps_per_epoch"]
        table = 0.05 * build_schedule(spec.schedule).multipliers(spe * spec.epochs, spe)
        last_steps = [int(r["epoch"]) * spe - 1 for r in rows]
        np.testing.assert_allclose([float(r["lr"]) for r in rows], table[last_steps], rtol=1e-6)

    ran = user_code / "ran"
    (user_code / "schedules.py").write_text(f"open({str(ran)!r}, 'w').close()\n" + SCHEDULES)
    forget("schedules")
    report = cli("report", results, "--out", elsewhere / "report")
    assert report.code == 0, report.output
    assert (elsewhere / "report" / "lr_curves.png").exists()
    status = cli("status", results)
    assert status.code == 0, status.output
    assert not ran.exists()
