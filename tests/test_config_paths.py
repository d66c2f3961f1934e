"""Paths in a config are read from the config's folder, whichever folder lrbench runs in;
`--data-root` replaces the config's data before the config's own path is looked at; a dataset
keeps one name whichever command made the run."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from PIL import Image

from lrbench.cli.options import dataset_spec
from lrbench.config import config_relative, expand, load_config

SWEEP = {
    "name": "paths",
    "models": ["resnet8"],
    "optimizers": [{"name": "sgd", "lr": 0.05}],
    "full_epochs": 2,
    "budgets": [1.0],
    "seeds": 1,
    "batch_size": 4,
    "schedules": ["rex"],
}


@pytest.fixture(autouse=True)
def data_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LRBENCH_DATA", str(tmp_path / "data"))


def images(root: Path) -> Path:
    for split in ("train", "test"):
        for cls in ("ant", "bee"):
            (root / split / cls).mkdir(parents=True)
            Image.new("RGB", (4, 4), (9, 9, 9)).save(root / split / cls / "0.png")
    return root


def config_beside_its_data(tmp_path: Path, dataset: dict) -> Path:
    project = tmp_path / "project"
    images(project / "imgs")
    path = project / "configs" / "sweep.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump({**SWEEP, "dataset": dataset}))
    return path


def test_a_relative_root_is_read_from_the_configs_folder(tmp_path, monkeypatch, cli):
    config = config_beside_its_data(tmp_path, {"name": "imagefolder", "root": "../imgs"})
    monkeypatch.chdir(config.parent)
    here = [s.run_id for s in expand(load_config("sweep.yaml"))]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(config)
    assert Path(cfg.dataset.root).resolve() == (tmp_path / "project" / "imgs").resolve()
    assert [s.run_id for s in expand(cfg)] == here
    dry = cli("sweep", config, "--results", tmp_path / "results", "--dry-run")
    assert dry.code == 0, dry.output
    assert here[0] in dry.out


def test_data_root_replaces_a_config_path_that_does_not_exist(tmp_path, cli):
    config = config_beside_its_data(tmp_path, {"name": "cifar10", "root": "../nowhere"})
    config.write_text(
        yaml.safe_dump({**SWEEP, "dataset": {"name": "imagefolder", "root": "../nowhere"}})
    )
    refused = cli("sweep", config, "--results", tmp_path / "r", "--dry-run")
    assert refused.code == 2 and "nowhere" in refused.err
    data = tmp_path / "project" / "imgs"
    dry = cli("sweep", config, "--results", tmp_path / "r", "--dry-run", "--data-root", data)
    assert dry.code == 0, dry.output
    missing = cli("sweep", config, "--dry-run", "--data-root", tmp_path / "gone")
    assert missing.code == 2 and "--data-root" in missing.err


def test_a_dataset_read_from_a_folder_keeps_its_name_in_run_and_sweep(tmp_path):
    config = config_beside_its_data(tmp_path, {"name": "cifar10", "limit_train": 2})
    data = str(tmp_path / "project" / "imgs")
    swept = load_config(config, data_root=data).dataset
    run = dataset_spec("cifar10", data, 2, 0.0)
    assert swept.display_name == run.display_name == "cifar10"
    assert swept.fingerprint == run.fingerprint


def test_config_paths_resolve_from_a_base_unless_absolute_or_home(tmp_path):
    assert config_relative("a/b.tar", tmp_path) == str(tmp_path / "a" / "b.tar")
    assert config_relative("/x/y", tmp_path) == "/x/y"
    assert config_relative("~/d", tmp_path) == str(Path.home() / "d")
