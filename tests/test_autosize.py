"""`--pack auto` on CUDA: G from the GPU's memory and measured speed, kept for resumes."""

import json

import pytest
import torch
from sweepconfigs import TINY as CONFIG
from sweepconfigs import write_config

from lrbench import imports
from lrbench.config import expand, parse_config
from lrbench.sweep import autosize
from lrbench.sweep.autosize import (
    CACHE_NAME,
    Setting,
    choose_pack,
    decide,
    largest_group,
    measure_throughput,
    pack_sizes,
    sweep_pack_size,
)

H200 = Setting("NVIDIA H200", "resnet20", 128, "bf16")


class Fake:
    """A measure(G) with fixed timings that records which G it was asked for."""

    def __init__(self, speeds: dict[int, float], oom_at: int | None = None) -> None:
        self.speeds, self.oom_at, self.calls = speeds, oom_at, []

    def __call__(self, g: int) -> float:
        self.calls.append(g)
        if g == self.oom_at:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return self.speeds[g]


def never(g: int) -> float:
    raise AssertionError(f"measured G={g}, but nothing should have been measured")


# --- the rule ------------------------------------------------------------------------------


def test_candidates_double_up_to_the_cap_and_include_the_cap_itself():
    assert pack_sizes(1) == [1]
    assert pack_sizes(8) == [1, 2, 4, 8]
    assert pack_sizes(6) == [1, 2, 4, 6]
    assert pack_sizes(64) == [1, 2, 4, 8, 16, 32, 64]


def test_on_a_plateau_the_smallest_pack_within_5_percent_of_the_best_wins():
    fake = Fake({1: 100, 2: 180, 4: 300, 8: 340, 16: 352, 32: 1000})
    choice = choose_pack(64, fake)
    assert fake.calls == [1, 2, 4, 8, 16]  # 16 gained 3.5% over 8: no need to try 32
    assert choice.size == 8  # 340 >= 0.95 * 352
    assert choice.measured == {1: 100, 2: 180, 4: 300, 8: 340, 16: 352}


def test_doubling_stops_at_the_first_gain_under_10_percent():
    fake = Fake({1: 100, 2: 200, 4: 215, 8: 800})
    choice = choose_pack(8, fake)
    assert fake.calls == [1, 2, 4]
    assert choice.size == 4  # 215 is the best measured; 200 is more than 5% below it


def test_a_gain_of_more_than_10_percent_keeps_doubling():
    fake = Fake({1: 100, 2: 111, 4: 124})
    assert choose_pack(4, fake).size == 4 and fake.calls == [1, 2, 4]


def test_out_of_memory_stops_and_the_best_pack_below_it_wins():
    fake = Fake({1: 100, 2: 200, 4: 400}, oom_at=8)
    choice = choose_pack(64, fake)
    assert fake.calls == [1, 2, 4, 8]
    assert choice.size == 4 and choice.out_of_memory_at == 8 and 8 not in choice.measured


def test_out_of_memory_at_one_model_leaves_a_pack_of_one():
    choice = choose_pack(16, Fake({}, oom_at=1))
    assert choice.size == 1 and choice.measured == {} and choice.out_of_memory_at == 1


def test_the_cap_is_respected_and_measured_when_not_a_power_of_two():
    fake = Fake({g: 100.0 * g for g in range(1, 65)})
    choice = choose_pack(12, fake)
    assert fake.calls == [1, 2, 4, 8, 12]
    assert choice.size == 12


# --- the cache -----------------------------------------------------------------------------


def test_a_measured_choice_is_written_then_reused_when_it_matches(tmp_path):
    path = tmp_path / "sweep" / CACHE_NAME
    choice, reused = decide(path, H200, 8, Fake({1: 100, 2: 190, 4: 370, 8: 380}))
    assert (choice.size, reused) == (4, False)
    record = json.loads(path.read_text())
    assert record["device"] == "NVIDIA H200" and record["model"] == "resnet20"
    assert record["batch_size"] == 128 and record["precision"] == "bf16"
    assert record["chosen"] == 4
    assert [r["pack"] for r in record["measured"]] == [1, 2, 4, 8]

    again, reused = decide(path, H200, 2, never)  # a smaller cap does not change the packs
    assert (again.size, reused) == (4, True)
    assert again.measured == {1: 100, 2: 190, 4: 370, 8: 380}


@pytest.mark.parametrize(
    "other",
    [
        Setting("NVIDIA A100-SXM4-80GB", "resnet20", 128, "bf16"),
        Setting("NVIDIA H200", "resnet56", 128, "bf16"),
        Setting("NVIDIA H200", "resnet20", 256, "bf16"),
        Setting("NVIDIA H200", "resnet20", 128, "fp32"),
    ],
    ids=["device", "model", "batch", "precision"],
)
def test_a_cached_choice_for_another_setting_is_measured_again(tmp_path, other):
    path = tmp_path / CACHE_NAME
    decide(path, H200, 4, Fake({1: 100, 2: 200, 4: 400}))
    fake = Fake({1: 100, 2: 105})
    choice, reused = decide(path, other, 4, fake)
    assert (choice.size, reused, fake.calls) == (1, False, [1, 2])
    assert json.loads(path.read_text())["chosen"] == 1


def test_an_unreadable_cache_is_measured_again(tmp_path):
    path = tmp_path / CACHE_NAME
    path.write_text("{not json")
    choice, reused = decide(path, H200, 2, Fake({1: 100, 2: 200}))
    assert (choice.size, reused) == (2, False)
    assert json.loads(path.read_text())["chosen"] == 2


def test_nothing_is_measured_or_written_when_the_cap_leaves_one_model(tmp_path):
    path = tmp_path / CACHE_NAME
    assert decide(path, H200, 1, never)[0].size == 1
    assert not path.exists()


# --- the sweep's group -----------------------------------------------------------------------


def specs_of(**changes):
    return expand(parse_config({**CONFIG, **changes}))


def test_the_largest_group_of_packable_runs_is_sized_for():
    specs = specs_of(
        models=["resnet8", "resnet14"], budgets=[1.0], seeds=3, schedules=["cosine", "plateau"]
    )
    resnet8_cosine = [s for s in specs if s.model == "resnet8" and s.schedule["name"] == "cosine"]
    group = largest_group([s for s in specs if s is not resnet8_cosine[0]])
    assert {s.model for s in group} == {"resnet14"} and len(group) == 6  # plateau packs too
    assert len(largest_group(specs_of(schedules=["plateau"], seeds=2))) == 2


def test_a_sweep_measures_its_largest_group_on_the_gpu_then_reuses_the_choice(
    tmp_path, monkeypatch
):
    """The CUDA path without a GPU: the device's name, free memory and speed are faked."""
    asked = []

    def fake_measure(model, num_classes, batch_size, groups, device, precision, channels_last,
                     image_size):  # fmt: skip
        asked.append((model, num_classes, batch_size, groups, precision))
        return {1: 100.0, 2: 200.0, 4: 390.0}[groups]

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (100 * 2**30, 141 * 2**30))
    monkeypatch.setattr(autosize, "measure_throughput", fake_measure)
    specs = specs_of(budgets=[1.0], seeds=2)  # one group of 4: cosine and rex, 2 seeds each
    path, lines = tmp_path / CACHE_NAME, []
    args = (specs, 10, torch.device("cuda:0"), "bf16", True, path, lines.append)

    assert sweep_pack_size(*args) == 4
    assert asked == [("resnet8", 10, 64, g, "bf16") for g in (1, 2, 4)]  # capped by the group
    assert "G=4 390 img/s" in lines[0] and "chosen 4" in lines[0] and str(path) in lines[0]
    assert sweep_pack_size(*args) == 4 and len(asked) == 3
    assert "reused" in lines[1]


def test_a_group_is_measured_at_its_datasets_image_size_and_your_own_model_is_kept(
    tmp_path, monkeypatch, user_code
):
    """STL-10's 96-px images cost 9x CIFAR's per model: a pack sized at 32 px may not fit.
    Your own model's entry is what the cache records (and matches on)."""
    (user_code / "nets.py").write_text(
        "from torch import nn\n\n\ndef net(num_classes):\n"
        "    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(3, num_classes))"
    )
    imports.add_search_path(user_code)
    sizes = []

    def fake_measure(model, num_classes, batch_size, groups, device, precision, channels_last,
                     image_size):  # fmt: skip
        sizes.append(image_size)
        return 100.0 * groups

    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (100 * 2**30, 141 * 2**30))
    monkeypatch.setattr(autosize, "measure_throughput", fake_measure)
    own = {"import": "nets:net", "label": "mine"}
    specs = specs_of(budgets=[1.0], dataset="stl10", models=[own])
    path = tmp_path / CACHE_NAME
    args = (specs, 10, torch.device("cuda:0"), "bf16", True, path, [].append)
    assert sweep_pack_size(*args) == 2
    assert sizes == [(96, 96), (96, 96)]
    assert json.loads(path.read_text())["model"]["label"] == "mine"
    assert sweep_pack_size(*args) == 2 and len(sizes) == 2  # reused


def test_a_number_given_to_pack_is_used_as_is_even_on_cuda(tmp_path):
    from lrbench.sweep.packs import pack_size
    from lrbench.train import Runtime

    assert pack_size("12", "cuda:0", [], 10, Runtime(), tmp_path, print) == 12
    assert not (tmp_path / CACHE_NAME).exists()


# --- the real measurement ------------------------------------------------------------------


def test_the_real_measurement_trains_a_pack_on_the_cpu():
    choice = choose_pack(
        2,
        lambda g: measure_throughput("resnet8", 10, 8, g, torch.device("cpu"), warmup=1, steps=2),
    )
    assert sorted(choice.measured) == [1, 2]
    assert all(speed > 0 for speed in choice.measured.values())


def test_pack_auto_on_the_cpu_trains_unpacked_and_measures_nothing(cli, tmp_path):
    config = write_config(tmp_path, budgets=[0.5])
    results = tmp_path / "results"
    result = cli("sweep", config, "--results", results, "--device", "cpu", "--pack", "auto")
    assert result.code == 0, result.output
    assert "packing up to" not in result.err and "pack auto" not in result.err
    assert not (results / "tiny" / CACHE_NAME).exists()
    assert len(list((results / "tiny" / "runs").iterdir())) == 2
