"""Run ids name the data by their content (a fingerprint), never by how their path is spelled."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
from pathlib import Path

import helpers
import pytest
import yaml
from PIL import Image

from lrbench.cli.options import dataset_spec
from lrbench.config import expand, load_config, parse_config, with_data_root
from lrbench.data import identity, load_splits
from lrbench.data.identity import fingerprint, identify
from lrbench.errors import UserError
from lrbench.results import RunDir, read_json
from lrbench.specs import DatasetSpec, OptimizerSpec, RunSpec
from lrbench.train import Runtime, train_run
from lrbench.train.member import claim_run_dir

CONFIGS = Path(__file__).parents[1] / "configs"
SOME, OTHER = "sha256:" + "0" * 64, "sha256:" + "1" * 64
SWEEP = {
    "name": "ids",
    "dataset": {"name": "cifar10", "limit_train": 8},
    "models": ["resnet8"],
    "optimizers": [{"name": "sgd", "lr": 0.05}],
    "full_epochs": 2,
    "budgets": [0.5, 1.0],
    "seeds": 2,
    "batch_size": 8,
    "schedules": ["rex", "cosine"],
}


@pytest.fixture(autouse=True)
def data_cache(tmp_path, monkeypatch) -> Path:
    """Fingerprints are kept in a fresh data cache folder, not the user's."""
    monkeypatch.setenv("LRBENCH_DATA", str(tmp_path / "data"))
    return tmp_path / "data" / "cache"


def write_images(root: Path, shade: int = 0) -> Path:
    """2 classes of 8x8 RGB PNGs: 8 train and 4 test images each."""
    for split, n in (("train", 8), ("test", 4)):
        for cls, colour in (("ant", (200, 40, 40)), ("bee", (40, 40, 200))):
            for i in range(n):
                path = root / split / cls / f"{i}.png"
                path.parent.mkdir(parents=True, exist_ok=True)
                pixel = tuple(min(255, c + 9 * i + shade) for c in colour)
                Image.new("RGB", (8, 8), pixel).save(path)
    return root


def write_archive(folder: Path, dest: Path) -> Path:
    with tarfile.open(dest, "w:gz") as tar:
        tar.add(folder, arcname=".")
    return dest


@pytest.fixture
def archive(tmp_path) -> Path:
    return write_archive(write_images(tmp_path / "imgs"), tmp_path / "imgs.tar.gz")


def spellings(path: Path, tmp_path: Path, monkeypatch) -> list[str]:
    """The same file as the user may name it: relative, absolute, with `..`, by a symlink."""
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    monkeypatch.chdir(work)
    link = tmp_path / f"link-{path.name}"
    link.symlink_to(path)
    return [os.path.relpath(path), str(path), f"{work}/../{path.name}", str(link)]


def run_ids(root: str) -> list[str]:
    return [s.run_id for s in expand(with_data_root(parse_config(SWEEP), root))]


# --- the fingerprint ---------------------------------------------------------------------------


def test_an_archive_is_known_by_its_bytes_whatever_its_path(archive, tmp_path, monkeypatch):
    copy = tmp_path / "elsewhere" / "renamed.tar.gz"
    copy.parent.mkdir()
    shutil.copy(archive, copy)
    roots = [*spellings(archive, tmp_path, monkeypatch), str(copy)]
    sha256sum = hashlib.sha256(archive.read_bytes()).hexdigest()
    assert {fingerprint(root) for root in roots} == {f"sha256:{sha256sum}"}


def test_a_folder_is_known_by_its_images_whatever_its_path(tmp_path, monkeypatch):
    folder = write_images(tmp_path / "imgs")
    (folder / "train" / "ant" / "notes.txt").write_text("not an image: not part of the data")
    copy = tmp_path / "copy" / "other-name"
    shutil.copytree(folder, copy)
    roots = [*spellings(folder, tmp_path, monkeypatch), str(copy), str(copy.parent)]
    assert {fingerprint(root) for root in roots} == {fingerprint(str(folder))}


def test_changed_data_have_another_fingerprint(tmp_path):
    folder = write_images(tmp_path / "imgs")
    before = fingerprint(str(folder))
    changed = write_images(tmp_path / "changed", shade=1)
    assert fingerprint(str(changed)) != before
    renamed = shutil.copytree(folder, tmp_path / "renamed")
    (renamed / "test" / "bee" / "3.png").rename(renamed / "test" / "bee" / "9.png")
    assert fingerprint(str(renamed)) != before
    one_more = shutil.copytree(folder, tmp_path / "more")
    shutil.copy(folder / "train" / "ant" / "0.png", one_more / "train" / "ant" / "8.png")
    assert fingerprint(str(one_more)) != before
    archive = write_archive(folder, tmp_path / "imgs.tar.gz")
    other = write_archive(changed, tmp_path / "changed.tar.gz")
    assert fingerprint(str(archive)) != fingerprint(str(other))


def count_hashing(monkeypatch) -> list[Path]:
    hashed: list[Path] = []
    digest = identity._file_digest

    def counted(path: Path) -> str:
        hashed.append(path)
        return digest(path)

    monkeypatch.setattr(identity, "_file_digest", counted)
    return hashed


def test_an_archive_is_hashed_once_until_its_size_or_mtime_changes(
    archive, data_cache, monkeypatch
):
    hashed = count_hashing(monkeypatch)
    first = fingerprint(str(archive))
    assert fingerprint(str(archive)) == first and len(hashed) == 1
    assert len(list((data_cache / "fingerprints").glob("*.json"))) == 1

    st = archive.stat()
    os.utime(archive, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert fingerprint(str(archive)) == first and len(hashed) == 2

    with archive.open("ab") as f:
        f.write(b"\0" * 512)
    os.utime(archive, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert fingerprint(str(archive)) != first and len(hashed) == 3


def test_a_folder_is_hashed_once_until_an_image_changes(tmp_path, monkeypatch):
    folder = write_images(tmp_path / "imgs")
    hashed = count_hashing(monkeypatch)
    first = fingerprint(str(folder))
    images = len(hashed)
    assert images == 24
    assert fingerprint(str(folder)) == first and len(hashed) == images
    image = folder / "test" / "ant" / "0.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(image)
    os.utime(image, ns=(0, 10**9))
    assert fingerprint(str(folder)) != first and len(hashed) == 2 * images


def test_an_unwritable_cache_still_fingerprints_with_a_warning(archive, tmp_path):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    with pytest.warns(UserWarning, match="cannot write the data cache"):
        assert fingerprint(str(archive), blocked) == fingerprint(str(archive))


def test_a_missing_root_names_the_path(tmp_path):
    with pytest.raises(UserError, match=str(tmp_path / "nope")):
        fingerprint(str(tmp_path / "nope"))


# --- run ids and specs ------------------------------------------------------------------------


def test_run_ids_follow_the_data_not_the_path(archive, tmp_path, monkeypatch):
    copy = tmp_path / "copy.tar.gz"
    shutil.copy(archive, copy)
    ids = run_ids(str(archive))
    assert len(set(ids)) == 8
    for root in [*spellings(archive, tmp_path, monkeypatch), str(copy)]:
        assert run_ids(root) == ids
    other = write_archive(write_images(tmp_path / "other", shade=2), tmp_path / "other.tar.gz")
    assert set(run_ids(str(other))).isdisjoint(ids)


def test_the_cli_spec_names_the_data_by_fingerprint(archive, tmp_path, monkeypatch):
    relative, absolute, *_ = spellings(archive, tmp_path, monkeypatch)
    short = dataset_spec(relative, None, None, 0.0)
    long = dataset_spec("imagefolder", absolute, None, 0.0)
    assert short.root == relative and long.root == absolute
    assert short.fingerprint == long.fingerprint == fingerprint(absolute)
    assert tiny_run(short).run_id == tiny_run(long).run_id


def test_a_config_root_is_fingerprinted_and_sweep_yaml_keeps_it(archive, tmp_path):
    config = tmp_path / "sweep.yaml"
    dataset = {"name": "imagefolder", "root": str(archive), "fingerprint": SOME}
    config.write_text(yaml.safe_dump({**SWEEP, "dataset": dataset}))
    cfg = load_config(config)
    assert cfg.dataset.fingerprint == fingerprint(str(archive))  # lrbench's to write
    resolved = tmp_path / "resolved.yaml"
    resolved.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    archive.unlink()  # status reads sweep.yaml as it is, without the data
    assert load_config(resolved, imports=False).dataset == cfg.dataset


def test_a_config_root_that_is_not_there_is_one_line(tmp_path):
    config = tmp_path / "sweep.yaml"
    dataset = {"name": "imagefolder", "root": str(tmp_path / "gone.tar.xz")}
    config.write_text(yaml.safe_dump({**SWEEP, "dataset": dataset}))
    with pytest.raises(UserError, match=r"dataset: imagefolder root .*gone\.tar\.xz does not"):
        load_config(config)


def test_the_fingerprint_belongs_to_image_folders():
    with pytest.raises(ValueError, match="fingerprint names an image folder's images"):
        DatasetSpec(name="cifar10", fingerprint=SOME)
    with pytest.raises(ValueError, match="fingerprint"):
        DatasetSpec(name="imagefolder", root="x", fingerprint="not a sha256")
    assert "fingerprint" not in DatasetSpec(name="imagefolder", root="x").model_dump()


def test_the_root_is_left_out_of_the_identity_only_when_a_fingerprint_names_the_data():
    named = tiny_run(DatasetSpec(name="imagefolder", root="a.tar", fingerprint=SOME))
    moved = named.model_copy(update={"dataset": named.dataset.model_copy(update={"root": "b"})})
    assert moved.identity() == named.identity() and moved.run_id == named.run_id
    assert "root" not in named.identity()["dataset"]
    unnamed = tiny_run(DatasetSpec(name="imagefolder", root="a.tar"))
    assert unnamed.identity()["dataset"]["root"] == "a.tar"


PINNED = [  # run ids from before fingerprints existed: they must never change
    ("cifar10", "resnet8-cifar10-sgd0.05-cosine-b1-s1-d7d85207"),
    ({"name": "synthetic", "limit_train": 64}, "resnet8-synthetic-sgd0.05-cosine-b1-s1-39faf24b"),
    ({"name": "stl10", "val_fraction": 0.1}, "resnet8-stl10-sgd0.05-cosine-b1-s1-5a364de0"),
    ({"name": "cifar100", "label": "c100"}, "resnet8-c100-sgd0.05-cosine-b1-s1-b827e247"),
]


@pytest.mark.parametrize(("dataset", "run_id"), PINNED)
def test_built_in_datasets_keep_their_run_ids(dataset, run_id):
    assert expand(parse_config({**SWEEP, "dataset": dataset}))[-1].run_id == run_id


@pytest.mark.parametrize("config", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_hash_their_whole_specs_as_before(config):
    for spec in expand(load_config(config)):
        whole = spec.model_dump(mode="json")
        if spec.dataset.name == "text":  # a text counts by its bytes (fingerprint), not its path
            for key in ("root", "path"):
                whole["dataset"].pop(key)
            whole.pop("metric", None)  # what the report ranks by, no part of the run
        assert spec.identity() == whole


# --- runs --------------------------------------------------------------------------------------


def tiny_run(dataset: DatasetSpec) -> RunSpec:
    return helpers.spec(dataset=dataset, optimizer=OptimizerSpec(name="sgd", lr=0.05), batch_size=8)


def test_a_run_trained_by_one_path_is_finished_by_another(
    archive, tmp_path, monkeypatch, one_thread
):
    first, *others = spellings(archive, tmp_path, monkeypatch)
    runtime = Runtime(device="cpu", data_dir=str(tmp_path / "data"))
    spec = tiny_run(dataset_spec(first, None, None, 0.0))
    run_dir = tmp_path / "runs" / spec.run_id
    assert train_run(spec, run_dir, runtime)["status"] == "done"
    recorded = read_json(run_dir / "spec.json")["dataset"]
    assert recorded["root"] == first and recorded["fingerprint"] == fingerprint(first)

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run trained again")

    monkeypatch.setattr("lrbench.train.loop.load_splits", no_training)
    for root in others:
        again = tiny_run(dataset_spec(root, None, None, 0.0))
        assert again.run_id == spec.run_id
        assert train_run(again, run_dir, runtime)["status"] == "done"


def test_a_run_resumes_by_another_path(archive, tmp_path, monkeypatch, one_thread):
    first, second, *_ = spellings(archive, tmp_path, monkeypatch)
    runtime = Runtime(device="cpu", data_dir=str(tmp_path / "data"))
    spec = tiny_run(dataset_spec(first, None, None, 0.0))
    run_dir = tmp_path / "run"
    train_run(spec, run_dir, runtime)
    (run_dir / "summary.json").unlink()  # killed before its summary: resumes at epoch 2
    metrics = (run_dir / "metrics.csv").read_text()
    summary = train_run(tiny_run(dataset_spec(second, None, None, 0.0)), run_dir, runtime)
    assert summary["status"] == "done" and summary["epochs_completed"] == 2
    assert (run_dir / "metrics.csv").read_text() == metrics
    assert read_json(run_dir / "spec.json")["dataset"]["root"] == first


def test_a_folder_holding_a_run_on_other_data_is_refused(archive, tmp_path):
    spec = tiny_run(dataset_spec(str(archive), None, None, 0.0))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    stored = {"run_id": spec.run_id, **spec.model_dump(mode="json")}
    stored["dataset"]["fingerprint"] = OTHER
    (run_dir / "spec.json").write_text(json.dumps(stored))
    with pytest.raises(UserError, match="holds a different run"):
        claim_run_dir(spec, RunDir(run_dir))


def test_data_changed_since_the_run_was_planned_are_refused(archive, tmp_path):
    spec = identify(DatasetSpec(name="imagefolder", root=str(archive)))
    write_archive(write_images(tmp_path / "new", shade=3), archive)
    with pytest.raises(UserError, match="changed since the run was planned") as info:
        load_splits(spec, tmp_path / "data")
    assert str(archive) in str(info.value) and "\n" not in str(info.value)
