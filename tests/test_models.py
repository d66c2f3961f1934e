"""The model registry and the CIFAR ResNets: the sizes of He et al. 2016, the shapes a trainer
relies on, names and their bounds, and errors."""

from __future__ import annotations

import pytest
import torch

from lrbench.errors import UserError
from lrbench.models import (
    build_model,
    check_model_name,
    count_parameters,
    model_names,
)

# Option A counts are the paper's table (0.27M, 0.46M, 0.66M, 0.85M, 1.7M); option B adds the two
# 1x1 projection convs and their BNs: 16*32 + 32*64 + 2*(32 + 64) = 2,752 parameters.
OPTION_A = {
    "resnet20": 269_722,
    "resnet32": 464_154,
    "resnet44": 658_586,
    "resnet56": 853_018,
    "resnet110": 1_727_962,
}


@pytest.mark.parametrize(("name", "count"), OPTION_A.items())
def test_option_a_parameter_counts_match_the_paper(name, count):
    assert count_parameters(build_model(name, 10)) == count


def test_option_b_adds_the_projection_shortcuts():
    assert count_parameters(build_model("resnet20", 10, shortcut="B")) == 272_474
    assert count_parameters(build_model("resnet20", 10, shortcut="b")) == 272_474


def test_class_count_only_changes_the_last_layer():
    assert count_parameters(build_model("resnet20", 100)) == 269_722 + 90 * 65


@pytest.mark.parametrize("shortcut", ["A", "B"])
@pytest.mark.parametrize("num_classes", [10, 100])
def test_output_shape(shortcut, num_classes):
    model = build_model("resnet20", num_classes, shortcut).eval()
    with torch.no_grad():
        assert model(torch.randn(3, 3, 32, 32)).shape == (3, num_classes)


def test_channels_last_forward_and_backward_agree_with_nchw():
    torch.manual_seed(0)
    model = build_model("resnet8", 10).double()
    x = torch.randn(4, 3, 32, 32, dtype=torch.float64)
    ref = model(x)
    out = model.to(memory_format=torch.channels_last)(
        x.contiguous(memory_format=torch.channels_last)
    )
    torch.testing.assert_close(out, ref)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_same_seed_same_initial_weights():
    torch.manual_seed(3)
    a = build_model("resnet20", 10).state_dict()
    torch.manual_seed(3)
    b = build_model("resnet20", 10).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_convs_get_kaiming_normal_init():
    torch.manual_seed(0)
    conv = build_model("resnet56", 10).layers[-1].conv2
    fan_out = conv.out_channels * 9
    assert conv.weight.std().item() == pytest.approx((2 / fan_out) ** 0.5, rel=0.05)


def test_registry_lists_the_standard_depths_and_the_other_families():
    assert model_names() == [
        "resnet20",
        "resnet32",
        "resnet38",
        "resnet44",
        "resnet56",
        "resnet110",
        "vgg11",
        "vgg13",
        "vgg16",
        "vgg19",
        "wrn16-8",
        "wrn28-10",
        "gpt4-128",
        "gpt6-384",
    ]


@pytest.mark.parametrize(("name", "blocks"), [("resnet8", 1), ("resnet14", 2), ("resnet38", 6)])
def test_any_6n_plus_2_depth_builds(name, blocks):
    model = build_model(name, 10)
    assert len(model.layers) == 3 * blocks


@pytest.mark.parametrize("name", ["resnet21", "resnet2", "resnet0"])
def test_depth_must_be_6n_plus_2(name):
    with pytest.raises(UserError, match=r"6n\+2"):
        build_model(name, 10)


def test_unknown_name_suggests_the_closest():
    with pytest.raises(UserError, match="did you mean 'resnet20'") as info:
        build_model("resnt20", 10)
    assert "\n" not in str(info.value)


def test_unknown_name_without_a_close_match_lists_the_families():
    with pytest.raises(UserError, match=r"resnet\{6n\+2\}.*vgg11/13/16/19.*wrn.*import") as info:
        build_model("alexnet", 10)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("name", ["resnet1202", "vgg11", "vgg19", "wrn10-1", "wrn28-10", "WRN16-8"])
def test_the_largest_and_smallest_of_each_family_are_names(name):
    check_model_name(name)


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("resnet6000000002", "resnet depth 6000000002 is beyond 1202"),
        ("resnet1208", "resnet depth 1208 is beyond 1202"),
        ("vgg15", "vgg depth must be one of 11, 13, 16, 19, got 15"),
        ("wrn15-8", "wrn depth must be 6n+4 with n >= 1 (10, 16, 22, 28, 40, ...), got 15"),
        ("wrn106-8", "wrn depth 106 is beyond 100"),
        ("wrn16-80", "wrn width must be between 1 and 16, got 80"),
        ("wrn16-0", "wrn width must be between 1 and 16, got 0"),
    ],
)
def test_absurd_sizes_are_refused_at_once_naming_the_value(name, says):
    with pytest.raises(UserError) as info:
        check_model_name(name)
    assert says in str(info.value) and "\n" not in str(info.value)


def test_bad_shortcut_and_class_count():
    with pytest.raises(UserError, match="shortcut"):
        build_model("resnet20", 10, shortcut="C")
    with pytest.raises(UserError, match="num_classes"):
        build_model("resnet20", 0)
