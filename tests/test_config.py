"""Sweep configs: validated completely before anything trains, then expanded into run specs."""

import json
from pathlib import Path

import pytest
import yaml
from PIL import Image

from lrbench.config import MAX_RUNS, expand, load_config, parse_config, with_data_root
from lrbench.errors import UserError
from lrbench.specs import RunSpec

CONFIGS = Path(__file__).parents[1] / "configs"

BASE = {
    "name": "t",
    "dataset": "synthetic",
    "models": ["resnet20"],
    "optimizers": [{"name": "sgd", "lr": 0.1}],
    "full_epochs": 10,
    "budgets": [0.1, 1.0],
    "seeds": 2,
    "schedules": ["step", {"name": "rex", "beta": 0.9}],
}


def with_(**changes):
    return {**BASE, **changes}


def error_of(raw: dict) -> str:
    with pytest.raises(UserError) as info:
        parse_config(raw, source="sweep.yaml")
    return str(info.value)


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_config_is_valid(path):
    assert expand(load_config(path))


def test_rex_config_is_the_paper_grid():
    cfg = load_config(CONFIGS / "rex.yaml")
    runs = expand(cfg)
    assert len(runs) == 2 * 8 * 6 * 3
    assert sum(r.epochs for r in runs) == 2 * 8 * 3 * (3 + 15 + 30 + 75 + 150 + 300)
    plateau = next(r for r in runs if r.schedule["name"] == "plateau")
    assert plateau.schedule["monitor"] == "val_loss"


@pytest.mark.parametrize(
    ("name", "model", "dataset", "epochs", "batch"),
    [("vgg16-cifar100", "vgg16", "cifar100", 300, 128), ("wrn-stl10", "wrn16-8", "stl10", 200, 64)],
)
def test_the_papers_table_3_settings(name, model, dataset, epochs, batch):
    runs = expand(load_config(CONFIGS / f"{name}.yaml"))
    assert len(runs) == 2 * 8 * 6 * 3
    assert {(r.model, r.dataset.name, r.full_epochs, r.batch_size) for r in runs} == {
        (model, dataset, epochs, batch)
    }
    assert sorted({r.budget for r in runs}) == [0.01, 0.05, 0.1, 0.25, 0.5, 1.0]


def test_expansion_is_the_cartesian_product_with_budgets_as_epochs():
    grid = with_(
        dataset={"name": "synthetic", "val_fraction": 0.1},
        optimizers=[{"name": "sgd", "lr": [0.3, 0.1]}],
    )
    runs = expand(parse_config(grid))
    assert len(runs) == 1 * 2 * 2 * 2 * 2
    assert {r.epochs for r in runs} == {1, 10}
    assert {r.optimizer.lr for r in runs} == {0.3, 0.1}
    assert len({r.run_id for r in runs}) == len(runs)


def test_budget_rounds_and_never_drops_below_one_epoch():
    runs = expand(parse_config(with_(full_epochs=300, budgets=[0.001, 0.05, 0.0125])))
    assert sorted({r.epochs for r in runs}) == [1, 4, 15]


def test_run_ids_are_readable_and_change_when_the_spec_changes():
    a = expand(parse_config(BASE))[0]
    b = expand(parse_config(with_(optimizers=[{"name": "sgd", "lr": 0.1, "weight_decay": 1e-4}])))[
        0
    ]
    assert a.run_id.startswith("resnet20-synthetic-sgd0.1-step-b0.1-s0-")
    assert a.run_id != b.run_id
    assert a.run_id == expand(parse_config(BASE))[0].run_id


def test_seeds_pair_schedules_within_a_cell():
    runs = expand(parse_config(BASE))
    assert {r.seed for r in runs} == {0, 1}
    assert {r.seed for r in expand(parse_config(with_(seeds=[7, 9])))} == {7, 9}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (with_(modles=["resnet20"]), "modles: unknown key (did you mean 'models'?)"),
        (with_(models=["resnet21"]), "resnet depth must be 6n+2"),
        (
            with_(models=["resnt20"]),
            "models[0]: unknown model 'resnt20' (did you mean 'resnet20'?)",
        ),
        (with_(dataset="cifar1O"), "did you mean 'cifar10'?"),
        (with_(dataset="cifar-10"), "dataset.name: Input should be"),
        (with_(budgets=[5, 100]), "(for 5% write 0.05)"),
        (with_(schedules=[{"name": "step", "milestones": [0.75, 0.5]}]), "strictly increasing"),
        (with_(budgets=[0.5, 1.5]), "budgets: 1.5 is not a fraction"),
        (with_(full_epochs=0), "full_epochs: Input should be greater than 0"),
        (with_(schedules=["step", "cosine", {"name": "rex", "beta": 1.5}]), "schedules[2]"),
        (with_(schedules=["stpe"]), "schedules[0]"),
        (with_(optimizers=[{"name": "sgd", "lr": -1}]), "optimizers[0].lr"),
        (
            with_(optimizers=[{"name": "sgd", "lr": 0.1, "momentun": 0.9}]),
            "did you mean 'momentum'?",
        ),
        (with_(optimizers=[{"name": "lamb", "lr": 0.1}]), "optimizers[0].name"),
        (with_(seeds=0), "seeds"),
        (with_(schedules=["rex", "rex"]), "label 'rex' is used twice"),
        ({k: v for k, v in BASE.items() if k != "budgets"}, "budgets: required key is missing"),
    ],
)
def test_bad_configs_name_file_and_key(raw, expected):
    message = error_of(raw)
    assert message.startswith("sweep.yaml: ")
    assert expected in message


def test_schedule_errors_name_the_parameter():
    message = error_of(with_(schedules=["step", {"name": "rex", "betta": 0.5}]))
    assert "schedules[1]" in message and "betta" in message


def test_yaml_and_file_errors_are_user_errors(tmp_path):
    with pytest.raises(UserError, match="no such config file"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(bad)
    bad.write_text("- a list\n")
    with pytest.raises(UserError, match="expected a mapping"):
        load_config(bad)


def test_data_root_keeps_the_dataset_name_in_reports(tmp_path, monkeypatch):
    monkeypatch.setenv("LRBENCH_DATA", str(tmp_path / "data"))
    for split in ("train", "test"):
        (tmp_path / "imgs" / split / "cat").mkdir(parents=True)
        Image.new("RGB", (4, 4)).save(tmp_path / "imgs" / split / "cat" / "0.png")
    cfg = parse_config(with_(dataset={"name": "cifar10", "limit_train": 100}))
    moved = with_data_root(cfg, str(tmp_path / "imgs"))
    assert moved.dataset.name == "imagefolder"
    assert moved.dataset.display_name == "cifar10"
    assert moved.dataset.limit_train == 100
    assert moved.dataset.root == str(tmp_path / "imgs") and moved.dataset.fingerprint
    with pytest.raises(UserError, match="no such file"):
        with_data_root(cfg, str(tmp_path / "nope"))


def test_resolved_sweep_round_trips_through_yaml():
    cfg = load_config(CONFIGS / "rex.yaml")
    again = parse_config(yaml.safe_load(yaml.safe_dump(cfg.model_dump(mode="json"))))
    assert [r.run_id for r in expand(again)] == [r.run_id for r in expand(cfg)]


def test_bounds_allow_the_largest_real_sizes():
    largest = with_(
        dataset={"name": "cifar10", "limit_train": 2**31 - 1, "val_fraction": 0.1},
        full_epochs=100_000,
        batch_size=2**20,
        seeds=[0, 2**31 - 1],
    )
    assert parse_config(largest).seeds == [0, 2**31 - 1]
    counted = with_(budgets=[1.0], schedules=["step"], seeds=MAX_RUNS)
    assert parse_config(counted).seeds == MAX_RUNS
    with pytest.raises(UserError, match=f"expands to {MAX_RUNS + 1:,} runs"):
        parse_config(with_(budgets=[1.0], schedules=["step"], seeds=MAX_RUNS + 1))


def test_run_specs_read_back_from_spec_json_under_strict_types():
    """spec.json holds lists where a spec holds tuples (betas): reading it back still works."""
    for spec in expand(load_config(CONFIGS / "rex.yaml")):
        again = RunSpec.model_validate(json.loads(json.dumps(spec.model_dump(mode="json"))))
        assert again == spec
