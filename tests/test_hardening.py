"""A results folder is data, never code; damage is found and repaired; every bad input is one
line and exit 2. Attacks as an attacker or a careless user makes them, on a tiny sweep
(ResNet8, 64 synthetic images, 3 epochs): what a damaged run trains again ends equal to the run
nobody touched."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from helpers import metrics_rows
from runfolders import write_run
from sweepconfigs import write_config

import lrbench.train.loop
from lrbench.cli import main
from lrbench.report.load import RETRAIN
from lrbench.results import RunDir, run_dirs

CONFIG = {
    "name": "h",
    "dataset": {"name": "synthetic", "limit_train": 64},
    "models": ["resnet8"],
    "optimizers": [{"name": "sgd", "lr": 0.05, "momentum": 0.9}],
    "full_epochs": 3,
    "budgets": [1.0],
    "seeds": 2,
    "batch_size": 32,
    "schedules": ["cosine"],
}


@dataclass
class Trained:
    """The tiny sweep trained once, untouched, and each run's checkpoint after epoch 2 (what a
    kill during epoch 3 leaves)."""

    root: Path
    epoch2: dict[str, bytes]

    def rows(self, run_id: str) -> list[dict]:
        return metrics_rows(RunDir(self.root / "h" / "runs" / run_id))


def exit_code(*args: object) -> int:
    """The exit code of `lrbench ARGS` (for a fixture that outlives the `cli` fixture)."""
    try:
        main([str(a) for a in args])
    except SystemExit as ex:
        return ex.code if isinstance(ex.code, int) else 1
    return 0


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Trained:
    where = tmp_path_factory.mktemp("trained")
    config = where / "sweep.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    epoch2: dict[str, bytes] = {}
    real = lrbench.train.loop.write_checkpoint

    def keep(path: Path, state: dict) -> None:
        real(path, state)
        if state["epoch"] == 2:
            epoch2[path.parent.name] = path.read_bytes()

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the tests that train it again (fixture one_thread)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(lrbench.train.loop, "write_checkpoint", keep)
            code = exit_code(  # one worker, in this process: where the patch is
                "sweep", config, "--results", where / "results", "--device", "cpu", "--jobs", "1"
            )
    finally:
        torch.set_num_threads(threads)
    assert code == 0
    assert len(epoch2) == 2
    return Trained(where / "results", epoch2)


@dataclass
class Copy:
    """A copy of the trained results to damage: its config, results root and runs."""

    config: Path
    results: Path

    @property
    def runs(self) -> list[RunDir]:
        return run_dirs(self.results / "h")

    def sweep(self, cli, *extra: object):
        return cli("sweep", self.config, "--results", self.results, "--device", "cpu", *extra)


@pytest.fixture
def results(trained, tmp_path, one_thread) -> Copy:
    shutil.copytree(trained.root, tmp_path / "results")
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    return Copy(config, tmp_path / "results")


def killed_in_epoch_3(run: RunDir, trained: Trained) -> None:
    """What a kill during epoch 3 leaves: the checkpoint of epoch 2, no summary.json."""
    run.summary.unlink()
    run.checkpoint.write_bytes(trained.epoch2[run.path.name])


def metrics_lines(run: RunDir) -> list[str]:
    return run.metrics.read_text().splitlines(keepends=True)


# --- a results folder is data, never code ----------------------------------------------------


class Payload:
    """Unpickling this calls os.system: what a crafted checkpoint.pt would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("pack", ["1", "2"], ids=["alone", "packed"])
def test_a_crafted_checkpoint_is_never_unpickled(cli, results, trained, tmp_path, pack):
    marker = tmp_path / "code-ran"
    run = results.runs[0]
    killed_in_epoch_3(run, trained)
    torch.save({"model": Payload(marker), "optimizer": {}, "epoch": 2, "step": 4}, run.checkpoint)
    crafted = run.checkpoint.read_bytes()

    result = results.sweep(cli, "--pack", pack)

    assert not marker.exists(), "the checkpoint's code ran"
    assert result.code == 1 and "Traceback" not in result.output
    lines = [x for x in result.output.splitlines() if "holds more than tensors" in x]
    assert lines and all(str(run.checkpoint) in line for line in lines)
    assert run.checkpoint.read_bytes() == crafted and run.state() == "partial"
    assert results.runs[1].state() == "done"


# --- damaged runs are found, and trained again to the same end -------------------------------


def test_a_torn_last_line_of_an_unfinished_run_is_dropped_and_the_run_resumes(
    cli, results, trained
):
    run = results.runs[0]
    killed_in_epoch_3(run, trained)
    lines = metrics_lines(run)
    run.metrics.write_text("".join(lines[:3]) + lines[3][:17])  # 2 whole rows and a torn one

    dry = cli("sweep", results.config, "--results", results.results, "--dry-run")
    assert dry.code == 0, dry.output
    assert "to resume (epoch 2/3)" in dry.out
    result = results.sweep(cli)
    assert result.code == 0, result.output
    assert run.state() == "done"
    assert metrics_rows(run) == trained.rows(run.path.name)


@pytest.mark.parametrize("lost", ["the last row", "a middle row"])
def test_metrics_short_of_the_checkpoint_train_again_to_the_same_end(cli, results, trained, lost):
    run = results.runs[0]
    run.summary.unlink()  # the checkpoint of epoch 3 stays
    lines = metrics_lines(run)
    del lines[3 if lost == "the last row" else 2]
    run.metrics.write_text("".join(lines))

    result = results.sweep(cli)
    assert result.code == 0, result.output
    assert json.loads(run.summary.read_text())["epochs_completed"] == 3
    assert metrics_rows(run) == trained.rows(run.path.name)


def test_leftover_temp_files_are_removed_when_the_run_goes_on(cli, results, trained):
    run = results.runs[0]
    killed_in_epoch_3(run, trained)
    left = [run.path / ".checkpoint.pt.k9x2_a.tmp", run.path / ".summary.json.p0q1.tmp"]
    for tmp in left:
        tmp.write_bytes(b"\0" * 4096)
    assert results.sweep(cli).code == 0
    assert not any(tmp.exists() for tmp in left)
    assert metrics_rows(run) == trained.rows(run.path.name)


def duplicate_a_row(run: RunDir) -> None:
    lines = metrics_lines(run)
    run.metrics.write_text("".join([*lines[:3], lines[2], *lines[3:]]))


def torn(run: RunDir) -> None:
    run.metrics.write_text(run.metrics.read_text()[:-9])


def empty(run: RunDir) -> None:
    run.metrics.write_text("")


def broken_spec(run: RunDir) -> None:
    run.spec.write_text('{"run_id": "resnet8-')


DAMAGE = {
    "a duplicated row": (duplicate_a_row, "metrics.csv line 4 holds epoch 2, expected 3"),
    "a torn metrics.csv": (torn, "metrics.csv line 4 is truncated"),
    "an empty metrics.csv": (empty, "metrics.csv is empty"),
    "a broken spec.json": (broken_spec, "spec.json is not valid JSON"),
}


@pytest.mark.parametrize(("damage", "why"), DAMAGE.values(), ids=list(DAMAGE))
def test_a_damaged_finished_run_is_shown_and_retrained_by_retry_failed(
    cli, results, trained, damage, why
):
    run = results.runs[0]
    damage(run)
    assert run.state() == "damaged" and why in run.damage()

    status = cli("status", results.results)
    assert status.code == 0, status.output
    assert any(line.startswith(f"damaged {run.path}: {why}") for line in status.out.splitlines())
    assert "damaged 1" in cli("sweep", results.config, "--results", results.results,
                              "--dry-run").out  # fmt: skip
    untouched = run.metrics.read_bytes() if run.metrics.exists() else None
    assert results.sweep(cli).code == 0  # without --retry-failed: left as it is
    assert run.state() == "damaged"
    assert (run.metrics.read_bytes() if run.metrics.exists() else None) == untouched

    result = results.sweep(cli, "--retry-failed")
    assert result.code == 0, result.output
    assert run.state() == "done"
    assert metrics_rows(run) == trained.rows(run.path.name)


def test_the_report_names_a_damaged_run_unreadable_and_ranks_the_others(cli, results, tmp_path):
    damaged = results.runs[0]
    duplicate_a_row(damaged)
    report = cli("report", results.results, "--out", tmp_path / "report")
    assert report.code == 0, report.output
    why = "metrics.csv line 4 holds epoch 2, expected 3"
    assert f"  {damaged.path}: damaged: {why}; {RETRAIN}" in report.err.splitlines()
    [ranked] = csv.DictReader(io.StringIO((tmp_path / "report" / "summary.csv").read_text()))
    assert ranked["schedule"] == "cosine" and ranked["n"] == "1"  # the whole run


def test_a_summary_that_is_not_an_object_is_damage_not_a_traceback(cli, results):
    run = results.runs[0]
    run.summary.write_text("[1, 2]")
    for args in (["status", results.results], ["sweep", results.config, "--results",
                 results.results, "--dry-run"]):  # fmt: skip
        result = cli(*args)
        assert result.code == 0 and "damaged" in result.out, result.output
    assert results.sweep(cli).code == 0
    assert run.damage() == "summary.json is not a JSON object"


def test_a_binary_sweep_yaml_or_plan_in_the_results_is_no_traceback(cli, results):
    sweep_dir = results.results / "h"
    (sweep_dir / "sweep.yaml").write_bytes(bytes(range(256)))
    (sweep_dir / "plan.json").write_bytes(bytes(range(256)))
    assert cli("status", results.results).code == 0
    dry = cli("sweep", results.config, "--results", results.results, "--dry-run")
    assert dry.code == 0 and "done 2" in dry.out, dry.output
    again = results.sweep(cli)
    assert again.code == 0 and "nothing to train" in again.err, again.output
    assert yaml.safe_load((sweep_dir / "sweep.yaml").read_text())["name"] == "h"


def test_a_lock_that_is_a_folder_is_no_traceback(cli, results, trained):
    run = results.runs[0]
    killed_in_epoch_3(run, trained)
    run.lock_path.unlink()
    run.lock_path.mkdir()
    assert cli("status", results.results).code == 0
    assert cli("sweep", results.config, "--results", results.results, "--dry-run").code == 0
    assert results.sweep(cli).code == 0
    assert run.state() == "done" and run.lock_path.is_file()


def test_a_sweep_named_runs_does_not_hide_the_others(cli, results, tmp_path):
    """The config refuses the name `runs`; made by hand (or by an older lrbench), it is one
    sweep among the others."""
    shutil.copytree(results.results / "h", results.results / "runs")
    status = cli("status", results.results)
    assert status.code == 0, status.output
    listed = [line.split()[1] for line in status.out.splitlines() if " 2 " in line]
    assert sorted(listed) == ["h", "runs"]

    from lrbench.report.load import find_run_dirs

    found = find_run_dirs([results.results])
    assert sorted({p.parent.parent.name for p in found}) == ["h", "runs"] and len(found) == 4
    assert cli("report", results.results, "--out", tmp_path / "report").code == 0


# --- bad input: one line, exit 2 --------------------------------------------------------------


def one_line(result, *parts: str) -> str:
    assert result.code == 2, result.output
    assert "Traceback" not in result.output
    [line] = result.err.splitlines()
    for part in parts:
        assert part in line
    return line


def test_jobs_below_one_is_one_line(cli, tmp_path):
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    for jobs in ("-1", "0"):
        one_line(cli("sweep", config, "--jobs", jobs, "--dry-run"), "--jobs", f"got {jobs}")


def test_a_results_path_that_is_a_file_is_one_line(cli, tmp_path):
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    file = tmp_path / "results"
    file.write_text("")
    for args in (["--dry-run"], ["--device", "cpu"]):
        one_line(cli("sweep", config, "--results", file, *args), str(file), "is a file")
        inside = file / "more"
        one_line(cli("sweep", config, "--results", inside, *args), str(file), "is a file")
    one_line(cli("status", file), str(file), "is a file")


@pytest.mark.parametrize(
    ("dataset", "expected"),
    [
        ({"name": "synthetic", "limit_train": 10**6}, "limit_train=1000000 exceeds"),
        ({"name": "imagefolder", "root": "no-such-images"}, "no-such-images does not exist"),
    ],
    ids=["limit_train beyond the data", "no image folder"],
)
def test_the_dry_run_loads_the_data(cli, tmp_path, dataset, expected):
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump({**CONFIG, "dataset": dataset}))
    one_line(cli("sweep", config, "--dry-run"), expected)


def lrbench_read_only(folder: Path, *args: object) -> subprocess.CompletedProcess:
    """`lrbench ARGS` while `folder` is read-only. Root writes through any mode, so as root the
    folder is bind-mounted read-only in a mount namespace of the command's own."""
    command = [sys.executable, "-m", "lrbench", *map(str, args)]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            return subprocess.run(command, capture_output=True, text=True, env=env)
        finally:
            folder.chmod(0o755)
    if subprocess.run(["unshare", "-m", "true"], capture_output=True).returncode != 0:
        pytest.skip("as root, a read-only folder needs a mount namespace (unshare -m)")
    script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", script, str(folder), *command],
        capture_output=True,
        text=True,
        env=env,
    )


def test_read_only_results_and_report_out_are_one_line_naming_the_path(trained, tmp_path):
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    locked = tmp_path / "locked"
    locked.mkdir()
    result = lrbench_read_only(locked, "sweep", config, "--results", locked, "--device", "cpu")
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.splitlines()
    assert str(locked / "h") in line and ("Read-only" in line or "Permission" in line)

    result = lrbench_read_only(locked, "report", trained.root, "--out", locked)
    assert result.returncode == 2, result.stderr
    [line] = result.stderr.splitlines()
    assert str(locked) in line and ("Read-only" in line or "Permission" in line)


def test_a_report_out_that_cannot_hold_the_files_is_one_line(cli, trained, tmp_path):
    file = tmp_path / "file"
    file.write_text("")
    one_line(cli("report", trained.root, "--out", file), f"{file}: is a file")
    taken = tmp_path / "taken"
    (taken / "summary.csv").mkdir(parents=True)
    one_line(cli("report", trained.root, "--out", taken), str(taken / "summary.csv"))


@pytest.fixture
def fifo(tmp_path) -> Path:
    path = tmp_path / "pipe"
    os.mkfifo(path)
    return path


SCHEDULE = ["schedule", "rex", "--steps", "10"]
LR_FIND = ["lr-find", "--model", "resnet8", "--dataset", "synthetic", "--device", "cpu"]
RUN = ["run", "--model", "resnet8", "--dataset", "synthetic", "--epochs", "1", "--device", "cpu"]
BAD_OPTIONS = {
    # typer's own checks: one line that names the option and the value
    "sweep --jobs huge": (["sweep", "CONFIG", "--jobs", str(10**20), "--dry-run"], "--jobs"),
    "sweep --threads 0": (["sweep", "CONFIG", "--threads", "0", "--dry-run"], "got 0"),
    "sweep --jbos": (["sweep", "CONFIG", "--jbos", "2"], "No such option: --jbos"),
    "sweep --mem-gb inf": (
        ["sweep", "CONFIG", "--executor", "slurm", "--mem-gb", "inf", "--dry-run"],
        "--mem-gb",
    ),
    "report --target x": (["report", "RESULTS", "--target", "x"], "--target", "got x"),
    "schedules x": (["schedules", "x"], "unexpected extra argument"),
    # what a dry run did not check
    "sweep --device": (["sweep", "CONFIG", "--device", "gpu", "--dry-run"], "'gpu'"),
    "sweep --precision": (["sweep", "CONFIG", "--precision", "fp16", "--dry-run"], "'fp16'"),
    # tracebacks, hangs and guesses
    "report --reference fifo": (["report", "RESULTS", "--reference", "FIFO"], "regular file"),
    "schedule --steps huge": ([*SCHEDULE[:2], "--steps", str(10**13)], "--steps 10000000000000"),
    "schedule png --out folder": ([*SCHEDULE, "--format", "png", "--out", "TMP"], "--out"),
    "lr-find --steps huge": ([*LR_FIND, "--steps", str(10**11), "--out", "TMP/f"], "--steps"),
    "lr-find --stop-factor nan": ([*LR_FIND, "--stop-factor", "nan", "--out", "TMP/f"], "nan"),
    "lr-find --seed -1": ([*LR_FIND, "--seed", "-1", "--out", "TMP/f"], "--seed", "-1"),
    "lr-find --batch-size huge": (
        [*LR_FIND, "--batch-size", str(10**11), "--out", "TMP/f"],
        "--batch-size",
    ),
    "lr-find --dataset fifo": ([*LR_FIND, "--dataset", "FIFO", "--out", "TMP/f"], "FIFO"),
    "run --dataset": ([*RUN, "--dataset", "cifar11", "--out", "TMP/r"], "--dataset", "'cifar11'"),
    "run --dataset fifo": ([*RUN, "--dataset", "FIFO", "--out", "TMP/r"], "neither a folder"),
    "run --out file": ([*RUN, "--out", "FILE"], "--out FILE: is a file"),
    "run --out in a file": ([*RUN, "--out", "FILE/run"], "--out FILE/run"),
    "bench --workers -1": (["bench", "--device", "cpu", "--workers", "-1"], "--workers"),
    "bench --steps 0": (["bench", "--device", "cpu", "--steps", "0"], "--steps 0"),
    "bench --pack huge": (
        ["bench", "--device", "cpu", "--model", "resnet8", "--json", "--pack", str(10**7)],
        "--pack 10000000: does not fit in memory",
    ),
}


@pytest.mark.parametrize(("args", "expected"), [(a, x) for a, *x in BAD_OPTIONS.values()],
                         ids=list(BAD_OPTIONS))  # fmt: skip
def test_a_bad_option_value_is_one_line(cli, trained, tmp_path, fifo, args, expected):
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    file = tmp_path / "file"
    file.write_text("")
    names = {"CONFIG": config, "RESULTS": trained.root, "FIFO": fifo, "TMP": tmp_path,
             "FILE": file}  # fmt: skip

    def spelled(text: str) -> str:
        for name, path in names.items():
            text = text.replace(name, str(path))
        return text

    one_line(cli(*map(spelled, args)), *map(spelled, expected))


def readme_command_rows() -> list[tuple[str, str]]:
    """README's rows of bad command-line values that run as written: (command, answer)."""
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    section = readme.split("### Bad configs and what lrbench answers")[1].split("\n## ")[0]
    return re.findall(r"^\| `lrbench ([^`]*)` \| `error: (.*)` \|$", section, flags=re.M)


def test_readme_command_rows_are_what_lrbench_answers(cli, tmp_path, monkeypatch):
    rows = readme_command_rows()
    assert len(rows) >= 15
    monkeypatch.chdir(tmp_path)
    write_config(tmp_path)
    Path("file").write_text("")
    os.mkfifo("pipe")
    write_run(Path("results"))
    for command, answer in rows:
        result = cli(*shlex.split(command))
        assert (result.code, result.err) == (2, f"error: {answer}\n"), command
