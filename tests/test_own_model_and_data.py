"""Your own model and data by import path: modules written into a temporary folder next to the
config, imported, checked at config time (each problem one line naming its entry), recorded in
the run's spec, built and loaded like the built-ins."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from lrbench import imports
from lrbench.config import expand, load_config
from lrbench.data import DeviceData, load_splits
from lrbench.errors import UserError
from lrbench.models import build_model, count_parameters
from lrbench.specs import DatasetSpec, ImportedModel, RunSpec
from lrbench.train import Runtime, train_run

MODELS = """
    import torch
    from torch import nn


    class TinyNet(nn.Module):
        def __init__(self, num_classes, width=8):
            super().__init__()
            self.conv = nn.Conv2d(3, width, 3, padding=1)
            self.bn = nn.BatchNorm2d(width)
            self.fc = nn.Linear(width, num_classes)

        def forward(self, x):
            return self.fc(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


    def tiny(num_classes, width=8):
        return TinyNet(num_classes, width)


    def not_a_model(num_classes):
        return "a network"


    def wrong_logits(num_classes):
        return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, 5))


    def only_32_pixels(num_classes):
        return nn.Sequential(nn.Flatten(), nn.Linear(3 * 32 * 32, num_classes))


    def broken(num_classes):
        raise RuntimeError("no GPU here")
"""

DATA = """
    import numpy as np
    import torch
    from PIL import Image


    def tensors(n_train=40, n_test=20, size=16, classes=4):
        gen = torch.Generator().manual_seed(0)
        x = torch.randint(0, 256, (n_train + n_test, 3, size, size), dtype=torch.uint8, generator=gen)
        y = torch.arange(n_train + n_test) % classes
        return (x[:n_train], y[:n_train]), (x[n_train:], y[n_train:])


    def floats_channels_last():
        x = np.random.default_rng(0).random((30, 12, 12, 3)).astype(np.float32)
        y = np.arange(30) % 3
        return (x[:20], y[:20]), (x[20:], y[20:])


    class Pictures:
        classes = ["dark", "light"]

        def __init__(self, n):
            self.n = n

        def __len__(self):
            return self.n

        def __getitem__(self, i):
            return Image.fromarray(np.full((10, 10), 20 * i, np.uint8)), i % 2


    def pictures():
        return Pictures(8), Pictures(4)


    def bad(kind):
        x = np.zeros((6, 3, 8, 8), np.uint8)
        y = np.arange(6) % 2
        if kind == "type":
            return 3
        if kind == "dtype":
            x = x.astype(np.int32)
        if kind == "range":
            x = x.astype(np.float32) + 255.0
        if kind == "float_labels":
            y = y.astype(np.float32)
        if kind == "negative":
            y = y - 1
        if kind == "shape":
            x = np.zeros((6, 5, 8, 8), np.uint8)
        if kind == "count":
            y = y[:4]
        if kind == "raise":
            raise FileNotFoundError("cats.npz")
        test_x = np.zeros((4, 3, 6, 6), np.uint8) if kind == "sizes" else x[:4]
        return (x, y), (test_x, y[:4])
"""


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """A folder holding mymodels.py and userdata.py, imported fresh by each test."""
    (tmp_path / "mymodels.py").write_text(textwrap.dedent(MODELS))
    (tmp_path / "userdata.py").write_text(textwrap.dedent(DATA))
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(imports, "_SEARCH", [])
    for name in ("mymodels", "userdata"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    imports.add_search_path(tmp_path)
    yield tmp_path
    for name in ("mymodels", "userdata"):
        sys.modules.pop(name, None)


TINY_ENTRY = {"import": "mymodels:tiny", "label": "tiny8", "args": {"width": 8}}


def write_sweep(folder: Path, **changes) -> Path:
    config = {
        "name": "own",
        "dataset": {"name": "synthetic", "limit_train": 100, "limit_test": 100},
        "models": ["resnet8", TINY_ENTRY],
        "optimizers": [{"name": "sgd", "lr": 0.05}],
        "full_epochs": 1,
        "budgets": [1.0],
        "schedules": ["cosine"],
        "batch_size": 50,
        **changes,
    }
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def config_error(folder: Path, **changes) -> str:
    with pytest.raises(UserError) as info:
        load_config(write_sweep(folder, **changes))
    message = str(info.value)
    assert "\n" not in message
    return message


# --- your own model --------------------------------------------------------------------------


def test_an_imported_model_is_an_object_in_the_spec_and_a_built_in_stays_a_name(folder):
    builtin, own = expand(load_config(write_sweep(folder)))
    assert builtin.model == "resnet8"
    assert builtin.model_dump(mode="json")["model"] == "resnet8"
    assert own.model_dump(mode="json")["model"] == {
        "import": "mymodels:tiny",
        "label": "tiny8",
        "args": {"width": 8},
        "source": imports.source_hash(sys.modules["mymodels"]),
    }
    assert own.run_id.startswith("tiny8-synthetic-sgd0.05-cosine-b1-s0-")
    assert RunSpec.model_validate(own.model_dump(mode="json")) == own  # spec.json round trip


def test_the_label_defaults_to_the_factory_name(folder):
    _, own = expand(
        load_config(write_sweep(folder, models=["resnet8", {"import": "mymodels:tiny"}]))
    )
    assert own.model.label == "tiny" and own.model.args == {}


def test_build_model_builds_from_the_spec_value_or_its_json(folder):
    _, own = expand(load_config(write_sweep(folder)))
    torch.manual_seed(0)
    net = build_model(own.model, 7)
    torch.manual_seed(0)
    again = build_model(own.model_dump(mode="json")["model"], 7)
    assert type(net).__name__ == "TinyNet" and net.fc.out_features == 7
    assert count_parameters(net) == 3 * 8 * 9 + 8 + 2 * 8 + 8 * 7 + 7
    assert all(torch.equal(a, b) for a, b in zip(net.parameters(), again.parameters(), strict=True))


def test_an_imported_model_trains_in_the_same_loop(folder, one_thread):
    _, own = expand(load_config(write_sweep(folder)))
    summary = train_run(own, folder / "run", Runtime(device="cpu"))
    assert summary["status"] == "done"
    assert yaml.safe_load((folder / "run" / "spec.json").read_text())["model"]["label"] == "tiny8"


def test_an_edited_model_gets_new_run_ids_and_old_runs_refuse_the_new_code(folder):
    _, before = expand(load_config(write_sweep(folder)))
    with open(folder / "mymodels.py", "a") as f:
        f.write("\n# wider next time\n")
    _, after = expand(load_config(write_sweep(folder)))
    assert after.model.source != before.model.source and after.run_id != before.run_id
    with pytest.raises(UserError, match="changed since this run was planned"):
        build_model(before.model, 10)


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ({"import": "nosuchmodule:tiny"}, "models[1]: 'nosuchmodule:tiny': no module named"),
        ({"import": "mymodels:tyni"}, "models[1]: 'mymodels:tyni': module mymodels has no"),
        ({"import": "mymodels"}, "models[1]: 'mymodels' is not an import path"),
        ({"import": "mymodels:not_a_model"}, "returned a str, not an nn.Module"),
        ({"import": "mymodels:broken"}, "models[1]: mymodels:broken(num_classes=10) raised"),
        ({"import": "mymodels:tiny", "args": {"depth": 3}}, "raised TypeError"),
        ({"import": "mymodels:wrong_logits"}, "returned [2, 5] for a batch of 2 images"),
        ({"improt": "mymodels:tiny"}, "models[1].improt: unknown key (did you mean 'import'?)"),
        ({"import": "mymodels:tiny", "label": "my net"}, "models[1].label: String should match"),
        ({"import": "mymodels:tiny", "label": "resnet20"}, "'resnet20' is a built-in model's"),
        ({"import": "mymodels:tiny", "label": "resnet8"}, "models[1]: 'resnet8' is listed twice"),
    ],
)
def test_a_bad_model_entry_is_one_line_naming_it(folder, entry, says):
    message = config_error(folder, models=["resnet8", entry])
    assert message.startswith(f"{folder / 'sweep.yaml'}: ")
    assert says in message


def test_the_trial_batch_has_the_datasets_image_size(folder):
    """A model that only takes 32 pixels is fine for CIFAR and refused for STL-10 (96)."""
    only_32 = {"import": "mymodels:only_32_pixels"}
    load_config(write_sweep(folder, models=[only_32], dataset="cifar100"))
    message = config_error(folder, models=[only_32], dataset="stl10")
    assert "models[0]: only_32_pixels failed on a batch of 2 images of 3x96x96" in message


def test_checking_a_model_leaves_torchs_random_stream_alone(folder):
    torch.manual_seed(1)
    expected = torch.rand(3)
    torch.manual_seed(1)
    load_config(write_sweep(folder))
    assert torch.equal(torch.rand(3), expected)


def test_a_bad_model_entry_is_exit_2_in_a_dry_run(folder, cli):
    path = write_sweep(folder, models=[{"import": "mymodels:wrong_logits"}])
    result = cli("sweep", path, "--dry-run", "--results", folder / "results")
    assert result.code == 2
    assert "models[0]: wrong_logits returned [2, 5]" in result.output


# --- your own data ---------------------------------------------------------------------------


def test_imported_tensors_become_the_splits_of_a_run(folder):
    spec = DatasetSpec.model_validate({"import": "userdata:tensors", "args": {"size": 16}})
    assert spec.name == "import" and spec.display_name == "tensors"
    s = load_splits(spec)
    from userdata import tensors

    (train_x, train_y), _ = tensors(size=16)
    assert torch.equal(s.train_x, train_x) and torch.equal(s.train_y, train_y)
    assert s.test_x.shape == (20, 3, 16, 16) and s.num_classes == 4
    assert s.classes == ["0", "1", "2", "3"]
    assert DeviceData(s, "cpu").pad == 4


def test_float_images_in_0_1_are_stored_as_rounded_uint8_and_channels_last_is_read(folder):
    s = load_splits(DatasetSpec.model_validate({"import": "userdata:floats_channels_last"}))
    from userdata import floats_channels_last

    (x, _), _ = floats_channels_last()
    assert s.train_x.dtype == torch.uint8 and s.train_x.shape == (20, 3, 12, 12)
    expected = np.rint(x * 255.0).astype(np.uint8).transpose(0, 3, 1, 2)
    assert np.array_equal(s.train_x.numpy(), expected)


def test_a_torchvision_style_dataset_of_grayscale_pictures(folder):
    s = load_splits(DatasetSpec.model_validate({"import": "userdata:pictures"}))
    assert s.train_x.shape == (8, 3, 10, 10) and s.classes == ["dark", "light"]
    assert torch.equal(s.train_x[3], torch.full((3, 10, 10), 60, dtype=torch.uint8))
    assert s.train_y.tolist() == [0, 1] * 4


def test_limit_train_and_a_validation_split_work_on_your_own_data(folder):
    spec = DatasetSpec.model_validate(
        {"import": "userdata:tensors", "limit_train": 30, "val_fraction": 0.2}
    )
    s = load_splits(spec)
    assert len(s.train_y) + len(s.val_y) == 30


@pytest.mark.parametrize(
    ("kind", "says"),
    [
        ("type", "returned a int, not (train, test), each (images, labels) or a dataset"),
        ("dtype", "train: images must be uint8 or float in [0, 1], got int32"),
        ("range", "train: float images must hold intensities in [0, 1], got values in [255, 255]"),
        ("float_labels", "train: labels must be integers 0 .. K-1, got float32"),
        ("negative", "train: labels must be integers 0 .. K-1, got -1"),
        ("shape", "train: images must be [N, 3, H, W] or [N, H, W, 3]"),
        ("count", "train: 6 images but labels of shape [4]"),
        ("sizes", "train images are 8x8 but test images 6x6"),
        ("raise", "calling it raised FileNotFoundError: cats.npz"),
    ],
)
def test_bad_data_is_one_line_naming_the_function(folder, kind, says):
    spec = DatasetSpec.model_validate({"import": "userdata:bad", "args": {"kind": kind}})
    with pytest.raises(UserError) as info:
        load_splits(spec)
    message = str(info.value)
    assert message.startswith("dataset userdata:bad: ") and says in message
    assert "\n" not in message


def test_a_sweep_records_the_datas_source_hash_and_label(folder):
    dataset = {"import": "userdata:tensors", "args": {"size": 16}, "limit_train": 20}
    (spec,) = expand(load_config(write_sweep(folder, dataset=dataset, models=["resnet8"])))
    dumped = spec.model_dump(mode="json")["dataset"]
    assert dumped["import"] == "userdata:tensors" and dumped["args"] == {"size": 16}
    assert dumped["source"] == imports.source_hash(sys.modules["userdata"])
    assert dumped["label"] == "tensors" and "-tensors-" in spec.run_id
    assert len(load_splits(spec.dataset).train_y) == 20


def test_built_in_datasets_record_no_import_fields():
    """So the run ids of every existing run stay what they were."""
    assert list(DatasetSpec(name="cifar10").model_dump(mode="json")) == [
        "name",
        "root",
        "limit_train",
        "limit_test",
        "val_fraction",
        "label",
    ]


@pytest.mark.parametrize(
    ("dataset", "says"),
    [
        ({"import": "userdata:nope"}, "dataset: 'userdata:nope': module userdata has no 'nope'"),
        ({"import": "nosuchdata:load"}, "dataset: 'nosuchdata:load': no module named"),
        ({"name": "import"}, "name: import needs `import: module:function`"),
        ({"name": "cifar10", "import": "userdata:tensors"}, "belong to your own dataset"),
    ],
)
def test_a_bad_dataset_entry_is_one_line_at_config_time(folder, dataset, says):
    assert says in config_error(folder, dataset=dataset, models=["resnet8"])


def test_imported_models_are_a_spec_type_of_their_own():
    model = ImportedModel.model_validate(
        {"import": "m:f", "label": "f", "args": {}, "source": "0" * 16}
    )
    assert model.ref == "m:f"
    assert {model: 1}[ImportedModel.model_validate(model.model_dump())] == 1  # a key, like a name
    with pytest.raises(ValueError, match="label"):
        ImportedModel.model_validate({"import": "m:f", "source": "0" * 16})
