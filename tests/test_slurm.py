"""`lrbench sweep --executor slurm` without a cluster.

The jobs run through submitit's local executor (`LRBENCH_SUBMITIT_CLUSTER=local`: each array task
is a local process, with submitit's real pickling, signal handling and requeue), or a fake
`sbatch`/`squeue` on PATH records what would go to Slurm. tests/test_slurm_cluster.py does the
same against a real one-node Slurm cluster.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import stat
from pathlib import Path

import pytest
from helpers import metrics_rows, wait_for
from sweepconfigs import tiny
from sweepconfigs import write_config as write_tiny_config

from lrbench.config import ExecutorConfig, parse_config
from lrbench.errors import UserError
from lrbench.results import RunDir, run_dirs

submitit = pytest.importorskip("submitit")

from lrbench.executors import slurm_submit, slurm_watch  # noqa: E402
from lrbench.executors.base import executor_name  # noqa: E402
from lrbench.train import Runtime  # noqa: E402

CONFIG = tiny(
    dataset={"name": "synthetic", "limit_train": 128, "limit_test": 100},
    full_epochs=1,
    budgets=[1.0],
)


def write_config(tmp_path: Path, **changes) -> Path:
    return write_tiny_config(tmp_path, **{**CONFIG, **changes})


def job_processes(folder: Path, kind: str = "submitit") -> list[int]:
    """Processes of submitit's local executor working in `folder` (controllers and tasks)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if kind in cmd and str(folder) in cmd:
            pids.append(int(proc.name))
    return pids


@pytest.fixture(autouse=True)
def no_stray_jobs(tmp_path):
    """A failed test must not leave its local jobs training: end them (SIGTERM is ignored)."""
    yield
    for pid in job_processes(tmp_path):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    """sbatch, srun and squeue stand-ins: sbatch keeps each script and answers job 4242, 4243..."""
    bin_dir = tmp_path / "fakebin"
    bin_dir.mkdir()
    scripts = {
        "sbatch": (
            '#!/bin/bash\nd=$(dirname "$0")\nn=$(cat "$d/next" 2>/dev/null || echo 4242)\n'
            'echo $((n + 1)) > "$d/next"\ncp "$1" "$d/sbatch_$n.sh"\necho "Submitted batch job $n"\n'
        ),
        "srun": "#!/bin/bash\nexit 0\n",
        "squeue": '#!/bin/bash\ncat "$(dirname "$0")/squeue.txt" 2>/dev/null\n',
    }
    for name, text in scripts.items():
        path = bin_dir / name
        path.write_text(text)
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv(slurm_submit.CLUSTER_ENV, raising=False)
    return bin_dir


# --- settings -------------------------------------------------------------------------------------


def test_executor_block_is_validated_like_every_other_key():
    base = {k: v for k, v in CONFIG.items()}
    ok = parse_config(
        {**base, "executor": {"name": "slurm", "partition": "gpu", "time": "4:00:00"}}
    )
    assert ok.executor.partition == "gpu" and ExecutorConfig.minutes(ok.executor.time) == 240
    with pytest.raises(
        UserError, match=r"executor\.partiton: unknown key \(did you mean 'partition'\?\)"
    ):
        parse_config({**base, "executor": {"name": "slurm", "partiton": "gpu"}})
    with pytest.raises(UserError, match=r"executor\.name: required key is missing"):
        parse_config({**base, "executor": {"partition": "gpu"}})
    with pytest.raises(UserError, match=r"executor\.time: .*not a time"):
        parse_config({**base, "executor": {"name": "slurm", "time": "four hours"}})
    with pytest.raises(UserError, match=r"executor\.name: .*(slurm|local)"):
        parse_config({**base, "executor": {"name": "kubernetes"}})


@pytest.mark.parametrize(
    ("text", "minutes"),
    [(90, 90), ("90", 90), ("1:30:00", 90), ("30:30", 31), ("1-0", 1440), ("2-12:00:00", 3600)],
)
def test_time_limits_in_sbatch_formats(text, minutes):
    assert ExecutorConfig.minutes(text) == minutes


def test_flags_win_over_the_config_block_key_by_key():
    block = ExecutorConfig(
        name="slurm",
        partition="cfg-part",
        cpus_per_job=4,
        mem_gb=16,
        time="1:00:00",
        account="cfg-acct",
        sbatch={"constraint": "a100", "exclude": "node1"},
        setup=["module load cuda"],
        runs_per_job=3,
        max_requeues=2,
    )
    flags = dict.fromkeys(slurm_submit.FLAGS)
    flags.update(partition="flag-part", time="30", sbatch=["exclude=node9", "exclusive"])
    s = slurm_submit.resolve_settings(block, flags, device="auto")
    assert (s.partition, s.time_min, s.cpus_per_job, s.mem_gb) == ("flag-part", 30, 4, 16)
    assert (s.account, s.runs_per_job, s.max_requeues, s.gpus_per_job) == ("cfg-acct", 3, 2, 1)
    assert s.sbatch == {"constraint": "a100", "exclude": "node9", "exclusive": True}
    assert s.setup == ("module load cuda",)
    params = s.parameters("lrbench-x")
    assert params["slurm_partition"] == "flag-part" and params["timeout_min"] == 30
    assert params["slurm_additional_parameters"]["exclude"] == "node9"
    # nothing given: the defaults
    d = slurm_submit.resolve_settings(None, dict.fromkeys(slurm_submit.FLAGS), device="auto")
    assert (d.partition, d.time_min, d.runs_per_job, d.gpus_per_job) == (None, 120, 1, 1)


def test_gpus_per_job_follow_the_device():
    none = dict.fromkeys(slurm_submit.FLAGS)
    assert slurm_submit.resolve_settings(None, none, device="cpu").gpus_per_job == 0
    assert (
        slurm_submit.resolve_settings(None, {**none, "gpus_per_job": 2}, "cuda").gpus_per_job == 2
    )
    with pytest.raises(UserError, match="needs GPUs"):
        slurm_submit.resolve_settings(None, {**none, "gpus_per_job": 0}, "cuda")
    with pytest.raises(UserError, match="idle"):
        slurm_submit.resolve_settings(None, {**none, "gpus_per_job": 1}, "cpu")
    with pytest.raises(UserError, match="--time"):
        slurm_submit.resolve_settings(None, {**none, "time": "soon"}, "cpu")


def test_sbatch_options_and_executor_choice():
    assert slurm_submit.parse_sbatch_options(
        ["--constraint=a100", "exclusive", "mail-type = END"]
    ) == {
        "constraint": "a100",
        "exclusive": True,
        "mail-type": "END",
    }
    with pytest.raises(UserError):
        slurm_submit.parse_sbatch_options(["constraint="])
    block = ExecutorConfig(name="slurm")
    assert executor_name(None, None) == "local"
    assert executor_name(None, block) == "slurm"
    assert executor_name("local", block) == "local"
    with pytest.raises(UserError):
        executor_name("k8s", None)


def test_packs_are_chunked_in_order_and_never_split():
    alone = [[(i, Path(f"r{i}"))] for i in range(7)]
    chunks = slurm_submit.chunk(alone, 3)
    assert [[p[0][0] for p in c] for c in chunks] == [[0, 1, 2], [3, 4, 5], [6]]
    assert slurm_submit.chunk(alone, 1) == [[p] for p in alone]
    assert slurm_submit.chunk([], 4) == []
    packs = [[(i, Path(f"r{i}")) for i in range(n)] for n in (2, 2, 5, 1)]
    assert [[len(p) for p in c] for c in slurm_submit.chunk(packs, 4)] == [[2, 2], [5], [1]]


# --- the command line -----------------------------------------------------------------------------


def test_slurm_flags_without_the_slurm_executor_are_an_error(cli, tmp_path):
    config = write_config(tmp_path)
    result = cli("sweep", config, "--results", tmp_path / "r", "--partition", "gpu", "--wait")
    assert result.code == 2
    assert "--partition, --wait only apply to --executor slurm" in result.err


def test_missing_submitit_names_the_install_command(cli, tmp_path, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "submitit", None)
    config = write_config(tmp_path)
    result = cli(
        "sweep", config, "--results", tmp_path / "r", "--executor", "slurm", "--device", "cpu"
    )
    assert result.code == 2
    assert "pip install 'lrbench[slurm]'" in result.err and "Traceback" not in result.output


def test_no_sbatch_is_a_clear_error(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv(slurm_submit.CLUSTER_ENV, raising=False)
    config = write_config(tmp_path)
    result = cli(
        "sweep", config, "--results", tmp_path / "r", "--executor", "slurm", "--device", "cpu"
    )
    assert result.code == 2 and "sbatch/srun not found" in result.err


def test_dry_run_shows_the_job_array_it_would_submit(cli, tmp_path):
    block = {"name": "slurm", "partition": "gpu", "cpus_per_job": 8, "runs_per_job": 2}
    config = write_config(tmp_path, seeds=3, executor=block)
    result = cli("sweep", config, "--results", tmp_path / "r", "--dry-run", "--max-concurrent", "2")
    assert result.code == 0, result.output
    text = " ".join(result.out.split())
    assert "6 runs" in text
    assert (
        "would submit 6 run(s) in 3 pack(s) as a job array of 3 task(s) (2 run(s) each, "
        "at most 2 at once)" in text
    )
    assert "partition gpu" in text and "8 CPUs" in text
    assert not (tmp_path / "r" / "tiny").exists()


def test_the_sbatch_script_carries_config_and_flags(cli, tmp_path, fake_slurm):
    block = {
        "name": "slurm",
        "partition": "cfg-part",
        "cpus_per_job": 4,
        "mem_gb": 12,
        "time": "1:00:00",
        "qos": "low",
        "sbatch": {"constraint": "a100"},
        "setup": ["module load cuda/12"],
    }
    config = write_config(tmp_path, seeds=2, executor=block)
    results = tmp_path / "r"
    args = ["--partition", "flag-part", "--gpus-per-job", "2", "--account", "lab",
            "--max-concurrent", "2", "--runs-per-job", "2", "--sbatch", "exclusive"]  # fmt: skip
    result = cli("sweep", config, "--results", results, *args)
    assert result.code == 0, result.output
    assert "submitted 4 run(s) of tiny as job array 4242 (2 task(s): 4242_0 … 4242_1)" in result.out
    assert "scancel 4242" in result.err and str(results / "tiny" / "slurm") in result.err
    script = (fake_slurm / "sbatch_4242.sh").read_text()
    for line in [
        "#SBATCH --partition=flag-part",
        "#SBATCH --gpus-per-node=2",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --mem=12GB",
        "#SBATCH --time=60",
        "#SBATCH --account=lab",
        "#SBATCH --qos=low",
        "#SBATCH --constraint=a100",
        "#SBATCH --exclusive",
        "#SBATCH --array=0-1%2",
        "#SBATCH --job-name=lrbench-tiny",
        "#SBATCH --signal=USR2@90",
        "module load cuda/12",
    ]:
        assert line in script, line
    assert f"#SBATCH --output={results / 'tiny' / 'slurm'}/%A_%a_0_log.out" in script
    entry = json.loads((results / "tiny" / "slurm" / "jobs.jsonl").read_text())
    assert entry["job"] == "4242" and sorted(entry["tasks"]) == ["4242_0", "4242_1"]
    assert all(len(runs) == 2 for runs in entry["tasks"].values())
    # the pickled task holds its packs: each run's spec as JSON and its absolute folder; GPU
    # jobs pack what a task holds (--pack auto: runs_per_job runs)
    delayed = submitit.helpers.DelayedSubmission.load(
        results / "tiny" / "slurm" / "4242_0_submitted.pkl"
    )
    packs, runtime, device = delayed.args
    assert isinstance(delayed.function, slurm_submit.SweepTask) and device == "auto"
    assert [len(pack) for pack in packs] == [2]
    items = [item for pack in packs for item in pack]
    assert [Path(p).name for _, p in items] == entry["tasks"]["4242_0"]
    assert all(Path(p).is_absolute() for _, p in items) and runtime.precision == "auto"
    assert (results / "tiny" / "sweep.yaml").exists()


def test_a_second_submission_leaves_out_runs_still_queued(cli, tmp_path, fake_slurm):
    config = write_config(tmp_path, seeds=2)
    results = tmp_path / "r"
    first = cli("sweep", config, "--results", results, "--executor", "slurm", "--device", "cpu",
                "--runs-per-job", "2")  # fmt: skip
    assert first.code == 0, first.output
    tasks = json.loads((results / "tiny" / "slurm" / "jobs.jsonl").read_text())["tasks"]
    # task 0 still runs, task 1 was cancelled (completing): only task 1's runs go again
    (fake_slurm / "squeue.txt").write_text("4242_0 R\n4242_1 CG\n999_3 PD\n")
    assert slurm_watch.queued_runs(results / "tiny") == dict.fromkeys(tasks["4242_0"], "4242_0")
    again = cli("sweep", config, "--results", results, "--executor", "slurm", "--device", "cpu",
                "--runs-per-job", "2")  # fmt: skip
    assert again.code == 0, again.output
    assert "2 run(s) are still queued or running in job 4242" in again.err
    assert "submitted 2 run(s) of tiny as job 4243" in again.out
    script = (fake_slurm / "sbatch_4243.sh").read_text()
    assert "--array" not in script  # one task: a plain job
    last = json.loads((results / "tiny" / "slurm" / "jobs.jsonl").read_text().splitlines()[-1])
    assert last["tasks"] == {"4243": tasks["4242_1"]}


def test_sbatch_refusing_the_job_is_a_user_error(cli, tmp_path, fake_slurm):
    (fake_slurm / "sbatch").write_text(
        "#!/bin/bash\necho 'sbatch: error: invalid partition specified: nope' >&2\nexit 1\n"
    )
    config = write_config(tmp_path)
    result = cli("sweep", config, "--results", tmp_path / "r", "--executor", "slurm",
                 "--device", "cpu", "--partition", "nope")  # fmt: skip
    assert result.code == 2 and "invalid partition specified: nope" in result.err


# --- jobs through submitit's local executor ----------------------------------------------------


def test_a_job_skips_a_run_another_process_holds(tmp_path, capsys):
    from lrbench.config import expand

    spec = expand(parse_config(CONFIG))[0]
    run = RunDir(tmp_path / "runs" / spec.run_id)
    lock = run.lock()
    lock.acquire()
    try:
        job = slurm_submit.to_job_packs([[(spec, run.path)]])
        states = slurm_submit.SweepTask()(job, Runtime("cpu"), "cpu")
    finally:
        lock.release()
    assert states == {spec.run_id: "held"}
    assert not run.metrics.exists() and not run.spec.exists()
    assert "held by another process" in capsys.readouterr().out


def test_checkpoint_hands_back_only_the_packs_with_unfinished_runs(tmp_path):
    from lrbench.config import expand
    from lrbench.results import atomic_write_json

    specs = expand(parse_config({**CONFIG, "seeds": 2}))  # 4 runs
    items = [(s, tmp_path / "runs" / s.run_id) for s in specs]
    done, failed_here, partial, _new = (RunDir(p) for _, p in items)
    atomic_write_json(done.summary, {"status": "done"})
    atomic_write_json(failed_here.summary, {"status": "failed", "error": "boom"})
    partial.path.mkdir(parents=True)
    partial.checkpoint.write_bytes(b"epoch 1")
    task = slurm_submit.SweepTask()
    task.ended = {specs[1].run_id}  # it failed in this very job: not retried by a requeue
    runtime = Runtime(device="cpu", precision="fp32")
    packs = [[item] for item in items]
    delayed = task.checkpoint(slurm_submit.to_job_packs(packs), runtime, "cpu")
    assert isinstance(delayed, submitit.helpers.DelayedSubmission)
    assert isinstance(delayed.function, slurm_submit.SweepTask) and delayed.function.ended == set()
    left, rt, device = delayed.args
    assert [Path(p).name for ((_, p),) in left] == [specs[2].run_id, specs[3].run_id]
    assert (rt, device) == (runtime, "cpu")
    assert left == slurm_submit.to_job_packs(packs[2:])  # specs survive the JSON round trip
    assert slurm_submit.from_job_packs(left)[0][0][0] == specs[2]
    # a pack with one unfinished run goes back whole: its finished members ride along
    (whole,) = task.checkpoint(slurm_submit.to_job_packs([items[:3]]), runtime, "cpu").args[0]
    assert [Path(p).name for _, p in whole] == [s.run_id for s in specs[:3]]


@pytest.mark.slow
def test_local_submitit_sweep_equals_a_local_sweep(cli, tmp_path, monkeypatch):
    monkeypatch.setenv(slurm_submit.CLUSTER_ENV, "local")
    config = write_config(tmp_path)
    via_jobs, local = tmp_path / "jobs", tmp_path / "local"
    result = cli("sweep", config, "--results", via_jobs, "--executor", "slurm", "--wait",
                 "--device", "cpu")  # fmt: skip
    assert result.code == 0, result.output
    assert "2 done, 0 diverged, 0 failed; results in" in result.err
    assert re.search(r"epoch 1/1 loss \d", result.err)  # the live progress, read from the folders
    assert cli("sweep", config, "--results", local, "--device", "cpu").code == 0

    jobs_runs, local_runs = run_dirs(via_jobs / "tiny"), run_dirs(local / "tiny")
    assert [r.path.name for r in jobs_runs] == [r.path.name for r in local_runs]
    for a, b in zip(jobs_runs, local_runs, strict=True):
        assert sorted(p.name for p in a.path.iterdir()) == sorted(p.name for p in b.path.iterdir())
        assert metrics_rows(a) == metrics_rows(b)
        assert a.state() == "done"
    logs = sorted((via_jobs / "tiny" / "slurm").glob("*_log.out"))
    assert len(logs) == 2 and all("done" in p.read_text() for p in logs)
    status = cli("status", via_jobs)
    assert re.search(r"tiny\s*│\s*2\s*│", status.out), status.out
    report = cli("report", via_jobs / "tiny", "--out", tmp_path / "report")
    assert report.code == 0, report.output
    again = cli("sweep", config, "--results", via_jobs, "--executor", "slurm", "--device", "cpu")
    assert again.code == 0 and "nothing to submit" in again.err


@pytest.mark.slow
def test_submit_returns_at_once_and_status_sees_the_run_training(cli, tmp_path, monkeypatch):
    from lrbench.config import expand, load_config

    monkeypatch.setenv(slurm_submit.CLUSTER_ENV, "local")
    config = write_config(tmp_path, full_epochs=4, schedules=["cosine"])
    results = tmp_path / "r"
    result = cli("sweep", config, "--results", results, "--executor", "slurm", "--device", "cpu")
    assert result.code == 0, result.output
    assert "submitted 1 run(s)" in result.out
    (spec,) = expand(load_config(config))
    run = RunDir(results / "tiny" / "runs" / spec.run_id)
    assert not run.summary.exists()  # at once: the command returned before its run ended
    wait_for(lambda: run.is_locked() and run.metrics.exists())
    status = cli("status", results)
    # done, diverged, failed, damaged: 0; running: 1
    assert re.search(r"tiny\s*│\s*0\s*│\s*0\s*│\s*0\s*│\s*0\s*│\s*1\s*│", status.out), status.out
    wait_for(lambda: run.state() == "done" and not run.is_locked())
    assert len(metrics_rows(run)) == 4


@pytest.mark.slow
def test_a_preempted_task_is_requeued_and_resumes_from_its_checkpoint(tmp_path):
    """Preemption as Slurm does it (USR2), through submitit's local executor and its requeue."""
    from lrbench.config import expand
    from lrbench.train import train_run

    epochs = 10  # margin: under load the run must not finish before the signal lands
    cfg = parse_config({**CONFIG, "full_epochs": epochs, "schedules": ["cosine"]})
    (spec,) = expand(cfg)
    sweep = tmp_path / "r" / "tiny"
    run = RunDir(sweep / "runs" / spec.run_id)
    settings = slurm_submit.SlurmSettings(gpus_per_job=0)
    executor = slurm_submit.SlurmExecutor(settings, device="cpu", cluster="local")
    sub = executor.submit("tiny", sweep, [[(spec, run.path)]], Runtime("cpu", "fp32"))
    job = sub.tasks[0].job
    wait_for(lambda: run.metrics.exists() and len(metrics_rows(run)) >= 2, every=0.05)
    (task_pid,) = job_processes(sweep / "slurm", "submitit.core._submit")
    os.kill(task_pid, signal.SIGUSR2)  # what Slurm sends: checkpoint, requeue, restart
    before = metrics_rows(run, keep_time=True)
    wait_for(lambda: job.done(), timeout=300)
    assert job.result() == {spec.run_id: "done"}

    log = sub.log_path(sub.tasks[0].task_id).read_text()
    assert "checkpoint: 0 of 1 run(s) finished; requeueing the other 1" in log
    resumed = re.findall(r"resume after epoch (\d+)", log)
    assert len(resumed) == 1
    k = int(resumed[0])
    # the checkpoint's epoch: epoch 2's row may be on disk without its checkpoint
    assert 1 <= k < epochs and f"epoch {k + 1}/{epochs}" in log.split("resume after")[1]
    assert f"epoch {k}/{epochs} " not in log.split("resume after")[1]  # none retrained
    after = metrics_rows(run, keep_time=True)
    assert after[:k] == before[:k]  # the rows before the checkpoint, timings included, kept
    reference = tmp_path / "reference"
    train_run(spec, reference, Runtime("cpu", "fp32"))
    assert metrics_rows(run) == metrics_rows(RunDir(reference))
