"""Every feature trains packed exactly as alone: plateau, early stopping, snapshot ensembles,
schedule-free optimizers, VGG and Wide ResNets, STL-10-sized images, your own model.

A twin is one run trained twice: as one slot of a pack (`train_runs`) and alone (`train_run`).
Twins must leave the same run folder: every metrics row (epoch_time_s aside), the summary (wall
time aside) and the checkpoint's model, optimizer and reactive state. On the CPU in float32 the
pack runs each model through its plain module (impl loop), so twins are bit-identical; the
grouped layers CUDA uses sum in another order and agree in float64 to rounding (1e-9 asked,
at most 5e-16 seen). A checkpoint written by either path resumes in the other, and a packed
sweep killed with SIGKILL while it trains or writes checkpoints resumes to the folders of an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import json
import math
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

import helpers
import pytest
import torch
import yaml
from helpers import CPU, FP64, kill_after_new_row, kill_when, train_twins
from sweepconfigs import tiny

from lrbench import imports
from lrbench.data import DeviceData, load_splits
from lrbench.errors import UserError
from lrbench.models import vgg
from lrbench.models.imported import resolve_import
from lrbench.results import RunDir, run_dirs
from lrbench.schedules import build_schedule
from lrbench.specs import DatasetSpec, OptimizerSpec, RunSpec
from lrbench.sweep.packing import plan_packs
from lrbench.train import Runtime, train_run, train_runs
from lrbench.train.packed.sharing import unpackable_reason

pytestmark = pytest.mark.usefixtures("one_thread")

DATASET = DatasetSpec(name="synthetic", limit_train=48, limit_test=40)
SGD = OptimizerSpec(name="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4)
SCHEDULE_FREE = {
    "sgd_schedulefree": OptimizerSpec(name="sgd_schedulefree", lr=0.5, weight_decay=5e-4),
    "adamw_schedulefree": OptimizerSpec(name="adamw_schedulefree", lr=5e-3, weight_decay=5e-4),
}
NOT_COMPARED = {"epoch_time_s", "wall_time_s", "torch_rng", "cuda_rng"}  # timing; the pack's RNG


def schedule(name: str, **params: Any) -> dict[str, Any]:
    return build_schedule({"name": name, **params}).to_dict()


# ResNet8 on 48 synthetic images, batch 24: two steps an epoch
spec = functools.partial(
    helpers.spec,
    dataset=DATASET,
    schedule=schedule("cosine"),
    full_epochs=4,
    epochs=4,
    batch_size=24,
)


def members(schedules: list[dict], rates: tuple[float, ...] = (1.0, 0.5, 2.0), **changes):
    """One run per schedule, each with its own seed and rate (what a pack may vary)."""
    optimizer = changes.pop("optimizer", SGD)
    return [
        spec(
            schedule=s,
            seed=i,
            optimizer=optimizer.model_copy(update={"lr": optimizer.lr * f}),
            **changes,
        )
        for i, (s, f) in enumerate(zip(schedules, rates, strict=False))
    ]


@functools.cache
def _device_data(dataset_json: str) -> DeviceData:
    return DeviceData(load_splits(DatasetSpec.model_validate_json(dataset_json)), "cpu")


def device_data(dataset: DatasetSpec) -> DeviceData:
    """The data every run of a dataset trains on, made once (making it is most of a tiny run)."""
    return _device_data(dataset.model_dump_json())


# --- what a run folder holds, and how far two are apart ---------------------------------------


def record(run: Path) -> dict[str, Any]:
    """What a run leaves that must not depend on how it trained: metrics rows, summary,
    checkpoint (model, optimizer, epoch, step, plateau, early stopping, ensemble)."""
    with open(run / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    ckpt = run / "checkpoint.pt"
    return {
        "rows": [{k: _number(v) for k, v in r.items()} for r in rows],
        "summary": json.loads((run / "summary.json").read_text()),
        "checkpoint": torch.load(ckpt, weights_only=True) if ckpt.exists() else None,
    }


def _number(text: str) -> Any:
    try:
        return float(text) if text else None
    except ValueError:
        return text


def leaves(obj: Any, path: str = "") -> dict[str, Any]:
    if isinstance(obj, dict):
        items = obj.items()
    elif isinstance(obj, list | tuple):
        items = enumerate(obj)
    else:
        return {path: obj}
    out = {}
    for key, value in items:
        if key not in NOT_COMPARED:
            out.update(leaves(value, f"{path}/{key}"))
    return out


def difference(a: Any, b: Any) -> float:
    """The largest relative difference between two records' numbers (a tensor's relative to its
    largest element); anything else (keys, shapes, strings, None, ints) must be equal."""
    la, lb = leaves(a), leaves(b)
    assert la.keys() == lb.keys(), sorted(set(la) ^ set(lb))
    worst = 0.0
    for key, x in la.items():
        y = lb[key]
        if isinstance(y, torch.Tensor):
            assert isinstance(x, torch.Tensor) and x.shape == y.shape and x.dtype == y.dtype, key
            if not y.is_floating_point():
                assert torch.equal(x, y), key
                continue
            scale = max(y.abs().max().item(), 1e-30) if y.numel() else 1.0
            gap = (x.double() - y.double()).abs().max().item() if y.numel() else 0.0
            worst = max(worst, gap / scale)
        elif isinstance(y, float) and not isinstance(x, bool):
            assert isinstance(x, float | int), key
            if not (math.isnan(x) and math.isnan(y)) and x != y:
                worst = max(worst, abs(x - y) / max(abs(y), 1e-30))
        else:
            assert x == y, (key, x, y)
    return worst


@pytest.fixture(scope="module")
def alone(tmp_path_factory):
    """`alone(spec, runtime)`: the folder of `spec` trained alone, uninterrupted (once per
    module: the twins and the resume tests compare with the same runs)."""
    root = tmp_path_factory.mktemp("alone")

    def train(spec: RunSpec, runtime: Runtime = CPU) -> Path:
        path = root / f"{runtime.precision}-{spec.run_id}"
        train_run(spec, path, runtime, data=device_data(spec.dataset))
        return path

    return train


def twins(tmp_path: Path, alone, specs: list[RunSpec], runtime: Runtime = CPU) -> list[float]:
    """Train `specs` as one pack; the relative difference of each run's record from its twin's
    trained alone."""
    data = device_data(specs[0].dataset)
    pairs = train_twins(tmp_path, specs, runtime, alone, data=data)
    return [difference(record(p), record(a)) for p, a in pairs]


def lrs(run: Path) -> list[float]:
    return [row["lr"] for row in record(run)["rows"]]


# --- plateau ----------------------------------------------------------------------------------

# a 50% threshold: no epoch halves the loss, so every epoch after the first is a bad one
PLATEAU_PACK = [
    schedule("plateau", patience=0, threshold=0.5),  # decays after epochs 2, 3, 4
    schedule("plateau", patience=1, threshold=0.5),  # after epoch 3
]


def test_plateau_members_decay_on_their_own_losses_packed_as_alone(tmp_path, alone):
    diffs = twins(tmp_path, alone, members(PLATEAU_PACK, (1.0, 1.0)))
    assert diffs == [0.0, 0.0]
    base = SGD.lr
    assert lrs(tmp_path / "packed0") == pytest.approx([base, base, base / 10, base / 100])
    assert lrs(tmp_path / "packed1") == pytest.approx([base, base, base, base / 10])
    ckpt = record(tmp_path / "packed0")["checkpoint"]
    assert ckpt["plateau"]["scale"] == pytest.approx(1e-3)  # the decay after epoch 4 is kept


# --- early stopping ---------------------------------------------------------------------------

# judged every epoch: a run stops when an epoch improves its train loss by less than 0.05
EARLY_STOP = {"metric": "train_loss", "patience": 1, "min_delta": 0.05}


def early_pack() -> list[RunSpec]:
    """A run at a millionth of the rate learns nothing and stops after epoch 2; a plateau run
    learns, decays and goes on to the end."""
    return members([schedule("constant"), PLATEAU_PACK[0]], (1e-6, 1.0), early_stop=EARLY_STOP)


def test_an_early_stopped_member_is_done_and_rides_on_while_the_others_train(tmp_path, alone):
    diffs = twins(tmp_path, alone, early_pack())
    assert diffs == [0.0, 0.0]
    stopped = record(tmp_path / "packed0")
    assert stopped["summary"]["status"] == "done"
    assert stopped["summary"]["stopped_early"] is True
    assert stopped["summary"]["stopped_epoch"] == stopped["summary"]["epochs_completed"] == 2
    assert len(stopped["rows"]) == 2
    going = record(tmp_path / "packed1")
    assert going["summary"]["stopped_early"] is False
    assert going["summary"]["epochs_completed"] == len(going["rows"]) == 4
    assert lrs(tmp_path / "packed1")[-1] < SGD.lr


# --- snapshot ensembles -----------------------------------------------------------------------

SNAPSHOT_PACK = [
    schedule("sgdr", cycles=2, t_mult=1),  # cycles end after epochs 2 and 4
    schedule("triangular", step_size=0.125),  # a cycle every epoch
]


def test_snapshot_ensembles_are_taken_at_each_members_own_cycle_ends(tmp_path, alone):
    specs = members(SNAPSHOT_PACK, snapshots=True)
    assert twins(tmp_path, alone, specs) == [0.0, 0.0]
    sizes = [
        [row["ensemble_size"] for row in record(tmp_path / f"packed{i}")["rows"]] for i in range(2)
    ]
    assert sizes == [[None, 1, None, 2], [1, 2, 3, 4]]
    last = record(tmp_path / "packed1")["rows"][-1]
    assert 0 <= last["ensemble_test_acc"] <= 1


# --- schedule-free optimizers -----------------------------------------------------------------

SCHEDULE_FREE_PACK = [schedule("constant", warmup=0.25), schedule("cosine")]


def schedule_free_pack(name: str, **changes: Any) -> list[RunSpec]:
    return members(SCHEDULE_FREE_PACK, optimizer=SCHEDULE_FREE[name], **changes)


@pytest.mark.parametrize("name", sorted(SCHEDULE_FREE))
def test_a_schedule_free_pack_follows_the_schedulefree_package_exactly(tmp_path, alone, name):
    """Alone, the package steps (y, z and the average's weights), evaluates at x with the
    BatchNorm statistics re-estimated there; packed, lrbench's fused step does the same with
    tensor-valued weights. Same kernels, same rounding: 0 difference (measured, 8 steps)."""
    pytest.importorskip("schedulefree")
    diffs = twins(tmp_path, alone, schedule_free_pack(name))
    print(f"{name}: packed vs alone, largest relative difference {max(diffs):.1e}")
    assert diffs == [0.0, 0.0]
    saved = record(tmp_path / "packed0")["checkpoint"]["optimizer"]
    assert saved["schedule_free"]["k"] == 8  # lrbench's own layout, which both paths read


# --- float64, grouped layers (CUDA's implementation) ------------------------------------------

FEATURES = {
    "plateau": lambda: members(PLATEAU_PACK, (1.0, 1.0)),
    "early_stop": early_pack,
    "snapshots": lambda: members(SNAPSHOT_PACK, snapshots=True),
    "sgd_schedulefree": lambda: schedule_free_pack("sgd_schedulefree", epochs=2, full_epochs=2),
    "adamw_schedulefree": lambda: schedule_free_pack("adamw_schedulefree", epochs=2, full_epochs=2),
}


@pytest.mark.parametrize(
    "feature",
    [
        pytest.param(f, marks=[] if f == "adamw_schedulefree" else pytest.mark.slow)
        for f in FEATURES
    ],
)
def test_in_float64_the_grouped_layers_pack_every_feature_to_rounding(tmp_path, alone, feature):
    if "schedulefree" in feature:
        pytest.importorskip("schedulefree")
    diffs = twins(tmp_path, alone, FEATURES[feature](), replace(FP64, impl="grouped"))
    print(f"float64 grouped pack, {feature}: largest relative difference {max(diffs):.1e}")
    assert max(diffs) < 1e-9


# --- resume across paths ----------------------------------------------------------------------


def stop_in(epoch: int):
    """An on_event that interrupts training at the first step of `epoch` (1-based): the
    checkpoints of the epochs before it are written, as after a kill."""

    def on_event(event):
        if event.kind == "step" and event.epoch == epoch:
            raise KeyboardInterrupt

    return on_event


def interrupted(train, *args, **kw) -> None:
    """Run `train` until its on_event interrupts it (a run that ends first is not an error)."""
    with contextlib.suppress(KeyboardInterrupt):
        train(*args, **kw)


RESUMABLE = {
    "plateau, early_stop": early_pack,  # both reactive states in one pack
    "adamw_schedulefree": lambda: schedule_free_pack("adamw_schedulefree"),
    "sgd_schedulefree": lambda: schedule_free_pack("sgd_schedulefree"),
}


@pytest.mark.parametrize(
    "feature",
    [pytest.param(f, marks=pytest.mark.slow if f == "sgd_schedulefree" else []) for f in RESUMABLE],
)
def test_a_checkpoint_written_packed_resumes_alone_and_the_other_way_round(
    tmp_path, alone, feature
):
    """Packed and interrupted, each run resumes alone; alone and interrupted at different
    epochs, the runs resume as one pack (the laggard catches up first). Both end exactly as
    runs trained alone without a break."""
    if "schedulefree" in feature:
        pytest.importorskip("schedulefree")
    specs = RESUMABLE[feature]()
    data = device_data(DATASET)
    packed = [tmp_path / f"packed{i}" for i in range(len(specs))]
    interrupted(train_runs, specs, packed, CPU, on_event=stop_in(3), data=data)
    starts = []
    for s, path in zip(specs, packed, strict=True):
        trained: list[int] = []

        def note(event, seen=trained):
            if event.kind == "epoch":
                seen.append(event.epoch)

        train_run(s, path, CPU, on_event=note, data=data)
        starts.append(min(trained, default=None))  # None: it had ended (stopped early)

    lone = [tmp_path / f"alone{i}" for i in range(len(specs))]
    for i, (s, path) in enumerate(zip(specs, lone, strict=True)):
        interrupted(train_run, s, path, CPU, on_event=stop_in(2 + i), data=data)
    assert [RunDir(p).state() for p in lone] != ["done"] * len(lone)
    train_runs(specs, lone, CPU, data=data)

    for s, p, a in zip(specs, packed, lone, strict=True):
        reference = record(alone(s))
        assert difference(record(p), reference) == 0.0
        assert difference(record(a), reference) == 0.0
    if feature.startswith("plateau"):  # the states resumed did something
        assert record(packed[0])["summary"]["stopped_epoch"] == 2 and lrs(packed[1])[-1] < SGD.lr
    assert 3 in starts and 1 not in starts  # resumed, not started over


# --- VGG and Wide ResNets; STL-10's image size -----------------------------------------------

SMALL_VGG = (16, vgg.M, 32, vgg.M)  # two stages of VGG's layers: the same code, ~1/100 the cost


@pytest.fixture
def vgg2(monkeypatch) -> str:
    """`vgg2`: a two-stage VGG, built and packed by the VGG code like vgg16."""
    monkeypatch.setitem(vgg.CONFIGS, 2, SMALL_VGG)
    return "vgg2"


@pytest.mark.parametrize("model", ["vgg2", "wrn10-1"])
def test_vgg_and_wide_resnet_packs_equal_their_runs_alone(tmp_path, alone, request, model):
    """Float32 loop: bit-identical; float64 grouped layers (CUDA's): to rounding."""
    if model == "vgg2":
        request.getfixturevalue("vgg2")
    specs = members([schedule("cosine"), schedule("rex")], model=model, epochs=1, full_epochs=1)
    assert twins(tmp_path / "fp32", alone, specs) == [0.0, 0.0]
    diffs = twins(tmp_path / "fp64", alone, specs, replace(FP64, impl="grouped"))
    print(f"float64 grouped pack of {model}: largest relative difference {max(diffs):.1e}")
    assert max(diffs) < 1e-9


@pytest.mark.slow
@pytest.mark.parametrize("model", ["vgg16", "wrn16-8"])
def test_the_papers_vgg16_and_wrn16_8_pack_as_alone(tmp_path, alone, model):
    """The real architectures, two steps at batch 4: float32 loop exact, float64 grouped to
    rounding."""
    dataset = DatasetSpec(name="synthetic", limit_train=10, limit_test=10)
    specs = members([schedule("cosine"), schedule("rex")], model=model, dataset=dataset,
                    batch_size=5, epochs=1, full_epochs=1)  # fmt: skip
    assert twins(tmp_path / "fp32", alone, specs) == [0.0, 0.0]
    diffs = twins(tmp_path / "fp64", alone, specs, replace(FP64, impl="grouped"))
    print(f"float64 grouped pack of {model}: largest relative difference {max(diffs):.1e}")
    assert max(diffs) < 1e-9


STL_LIKE = """
    from lrbench.data.synthetic import make_synthetic


    def images(size=96):
        raw = make_synthetic(num_train=20, num_test=10, size=size)
        return (raw.train_x, raw.train_y), (raw.test_x, raw.test_y)
"""


@pytest.fixture
def stl_like(user_code) -> DatasetSpec:
    """Synthetic images of STL-10's size (96 px: the random crop pads by 12, not 4)."""
    (user_code / "stl_like.py").write_text(textwrap.dedent(STL_LIKE))
    imports.add_search_path(user_code)
    from lrbench.data.imported import resolve_dataset

    return resolve_dataset(DatasetSpec(name="import", ref="stl_like:images"), "dataset")


def test_each_member_of_a_pack_gets_its_runs_batches_at_stl10s_size(stl_like):
    from lrbench.train.packed.data import PackEpoch

    data = device_data(stl_like)
    assert data.pad == 12
    seeds = [0, 5]
    batches = list(PackEpoch(data, seeds, 1, 8))
    for g, seed in enumerate(seeds):
        for (x, y), (xs, ys) in zip(batches, data.train_batches(seed, 1, 8), strict=True):
            assert torch.equal(x[:, 3 * g : 3 * g + 3], xs) and torch.equal(y[g], ys)


def test_a_pack_on_stl10_sized_images_equals_its_runs_alone(tmp_path, alone, stl_like):
    specs = members([schedule("cosine"), schedule("rex")], dataset=stl_like, batch_size=10,
                    epochs=1, full_epochs=1)  # fmt: skip
    assert twins(tmp_path, alone, specs) == [0.0, 0.0]


# --- your own model ---------------------------------------------------------------------------

USER_MODELS = """
    import torch
    from torch import nn


    class Small(nn.Module):
        def __init__(self, num_classes, dropout=0.0):
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.bn = nn.BatchNorm2d(8)
            self.drop = nn.Dropout(dropout)
            self.fc = nn.Linear(8, num_classes)

        def forward(self, x):
            x = torch.relu(self.bn(self.conv(x))).mean((2, 3))
            return self.fc(self.drop(x))


    def small(num_classes, dropout=0.0):
        return Small(num_classes, dropout)
"""


@pytest.fixture
def small_net(user_code):
    """`small_net(dropout=p)`: the model entry of a tiny conv net the test wrote, imported."""
    (user_code / "usernets.py").write_text(textwrap.dedent(USER_MODELS))
    imports.add_search_path(user_code)
    return lambda **args: resolve_import("usernets:small", "small", args, "model")


def test_your_own_model_packs_exactly_with_the_loop_and_to_rounding_with_vmap(
    tmp_path, alone, small_net
):
    specs = members([schedule("cosine"), schedule("rex")], model=small_net(), epochs=2,
                    full_epochs=2)  # fmt: skip
    assert unpackable_reason(specs[0]) is None
    assert twins(tmp_path / "loop", alone, specs, replace(CPU, impl="loop")) == [0.0, 0.0]
    diffs = twins(tmp_path / "vmap", alone, specs, replace(FP64, impl="vmap"))
    print(f"float64 vmap pack of a user's model: largest relative difference {max(diffs):.1e}")
    assert max(diffs) < 1e-9
    with pytest.raises(UserError, match="no grouped form"):
        train_runs(specs, [tmp_path / "g0", tmp_path / "g1"], replace(CPU, impl="grouped"))


def test_your_own_model_with_dropout_trains_alone_and_says_why(tmp_path, small_net):
    specs = members([schedule("cosine"), schedule("rex")], model=small_net(dropout=0.5),
                    epochs=1, full_epochs=1)  # fmt: skip
    assert unpackable_reason(specs[0]) == (
        "its model uses dropout (packed models would share one random stream)"
    )
    assert plan_packs(specs, max_pack=8) == [[specs[0]], [specs[1]]]
    with pytest.raises(UserError, match=r"cannot share a pack: its model uses dropout"):
        train_runs(specs, [tmp_path / "p0", tmp_path / "p1"], CPU)
    assert train_run(specs[0], tmp_path / "alone", CPU)["status"] == "done"
    assert unpackable_reason(specs[0].model_copy(update={"model": small_net(dropout=0.0)})) is None


# --- kill -9 of a packed sweep ----------------------------------------------------------------

SWEEP = tiny(
    dataset={"name": "synthetic", "limit_train": 72, "limit_test": 40},
    full_epochs=4,
    budgets=[1.0],
    batch_size=24,
    schedules=["cosine", {"name": "rex", "beta": 0.5},
               {"name": "plateau", "patience": 0, "threshold": 0.5}],
)  # fmt: skip


def sweep(config: Path, results: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "lrbench", "sweep", str(config), "--results", str(results),
               "--device", "cpu", "--pack", "3", "--jobs", "1"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def kill_at(proc: subprocess.Popen, folder: Path, moment: str) -> bool:
    """SIGKILL `proc` while it writes a checkpoint, or as soon as it wrote an epoch row (in
    training, never while it starts); False when it ended first."""
    if moment == "row":
        return kill_after_new_row(proc, folder)

    def writing() -> bool:
        return bool(list(folder.glob("*/runs/*/.checkpoint.pt.*.tmp")))

    return kill_when(proc, writing, "checkpoint being written", every=0.001)


@pytest.mark.slow
def test_a_packed_sweep_killed_at_any_moment_resumes_to_the_uninterrupted_runs(tmp_path, cli):
    """`lrbench sweep --pack 3` (a plateau run in the pack) is killed with SIGKILL while it
    writes checkpoints and as soon as it has written an epoch row, and run again until it finishes: every run
    folder ends as in a sweep never interrupted (checkpoints included)."""
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump(SWEEP))
    clean = cli("sweep", config, "--results", tmp_path / "clean", "--device", "cpu", "--pack", "3")
    assert clean.code == 0, clean.output

    killed = tmp_path / "killed"
    kills = [kill_at(sweep(config, killed), killed, moment) for moment in ("checkpoint", "row")]
    assert kills == [True, True], "the sweep ended before it was killed"
    final = sweep(config, killed)
    assert final.wait(timeout=600) == 0, final.communicate()[1].decode()

    runs = {r.path.name: r.path for r in run_dirs(killed / "tiny")}
    reference = {r.path.name: r.path for r in run_dirs(tmp_path / "clean" / "tiny")}
    assert runs.keys() == reference.keys() and len(runs) == 3
    for name, path in runs.items():
        assert json.loads((path / "spec.json").read_text())["provenance"]["pack"]["size"] == 3
        assert difference(record(path), record(reference[name])) == 0.0, name
        assert not list(path.glob(".*.tmp")), "a torn temp file was left behind"
    plateau = next(p for n, p in runs.items() if "plateau" in n)
    assert min(lrs(plateau)) < SWEEP["optimizers"][0]["lr"]  # it decayed, across the kills
