"""VGG and Wide ResNets: their sizes, the shapes of CIFAR-100 and STL-10, and their grouped
forwards (G models side by side) against G plain models."""

from __future__ import annotations

import pytest
import torch

from lrbench.models import build_model, count_parameters, vgg
from lrbench.models.grouped import run_grouped
from lrbench.models.wrn import WideResNet

G = 3
BN_STATS = ("running_mean", "running_var")


@pytest.mark.parametrize(
    ("name", "classes", "count"),
    [
        # 14.7M: 13 convs with biases + BN, one 512 -> classes head (the usual CIFAR VGG-16)
        ("vgg16", 10, 14_728_266),
        ("vgg16", 100, 14_728_266 + 90 * 513),
        # Zagoruyko & Komodakis' table: WRN-16-8 11.0M, WRN-28-10 36.5M
        ("wrn16-8", 10, 10_961_370),
        ("wrn28-10", 10, 36_479_194),
    ],
)
def test_parameter_counts(name, classes, count):
    assert count_parameters(build_model(name, classes)) == count


def test_wrn_blocks_are_pre_activation_with_1x1_shortcuts_where_the_shape_changes():
    model = build_model("wrn16-8", 10)
    shortcuts = [
        None if b.shortcut is None else tuple(b.shortcut.weight.shape) for b in model.blocks
    ]
    assert shortcuts == [(128, 16, 1, 1), None, (256, 128, 1, 1), None, (512, 256, 1, 1), None]
    assert [b.stride for b in model.blocks] == [1, 1, 2, 1, 2, 1]
    assert all(b.dropout == 0 for b in model.blocks)


def test_wrn_dropout_is_there_for_those_who_ask():
    torch.manual_seed(0)
    model = WideResNet(depth=10, width=1, num_classes=10, dropout=0.5).train()
    x = torch.randn(2, 3, 8, 8)
    assert not torch.equal(model(x), model(x))
    model.eval()
    assert torch.equal(model(x), model(x))


def test_same_seed_same_initial_weights():
    for name in ("vgg16", "wrn16-8"):
        torch.manual_seed(5)
        a = build_model(name, 10).state_dict()
        torch.manual_seed(5)
        b = build_model(name, 10).state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_vgg16_trains_a_step_on_cifar100_shaped_images(one_thread):
    torch.manual_seed(0)
    model = build_model("vgg16", 100)
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 100)
    torch.nn.functional.cross_entropy(out, torch.tensor([3, 97])).backward()
    assert all(p.grad is not None and p.grad.isfinite().all() for p in model.parameters())


@pytest.mark.slow
def test_wrn16_8_trains_a_step_on_stl10_shaped_images(one_thread):
    torch.manual_seed(0)
    model = build_model("wrn16-8", 10).to(memory_format=torch.channels_last)
    out = model(torch.randn(1, 3, 96, 96).contiguous(memory_format=torch.channels_last))
    assert out.shape == (1, 10)
    torch.nn.functional.cross_entropy(out, torch.tensor([7])).backward()
    assert all(p.grad is not None and p.grad.isfinite().all() for p in model.parameters())


# --- grouped forwards ------------------------------------------------------------------------


def plain_models(name: str, shortcut: str = "A") -> list[torch.nn.Module]:
    """G float64 models, each initialised from its own seed."""
    models = []
    for seed in range(G):
        torch.manual_seed(seed)
        models.append(build_model(name, 10, shortcut).double())
    return models


def is_linear(name: str) -> bool:
    return name.startswith(("fc.", "classifier."))


def packed_weights(models: list[torch.nn.Module]) -> list[torch.Tensor]:
    """Per parameter: the G copies concatenated (conv, BN) or stacked (linear), as leaves."""
    states = [dict(m.named_parameters()) for m in models]
    out = []
    for name, _ in models[0].named_parameters():
        parts = [s[name].detach() for s in states]
        packed = torch.stack(parts) if is_linear(name) else torch.cat(parts)
        out.append(packed.clone().requires_grad_())
    return out


def packed_stats(models: list[torch.nn.Module]) -> list[torch.Tensor]:
    states = [dict(m.named_buffers()) for m in models]
    names = [n for n, _ in models[0].named_buffers() if n.endswith(BN_STATS)]
    return [torch.cat([s[n] for s in states]).clone() for n in names]


def images(size: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(9)
    return [torch.randn(2, 3, size, size, generator=gen, dtype=torch.float64) for _ in range(G)]


def check_grouped_equals_plain(name: str, size: int, backward: bool, shortcut: str = "A") -> None:
    models = plain_models(name, shortcut)
    weights, stats = packed_weights(models), packed_stats(models)
    xs = images(size)
    packed_x = torch.cat(xs, dim=1)  # model g in channels [3g, 3g + 3)

    out = run_grouped(models[0], weights, stats, packed_x, True, G)
    ref = torch.stack([m.train()(x) for m, x in zip(models, xs, strict=True)])
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-10)
    torch.testing.assert_close(stats, packed_stats(models), rtol=0, atol=1e-10)

    if backward:
        out.square().sum().backward()
        ref.square().sum().backward()
        grads = [
            torch.stack(parts) if is_linear(n) else torch.cat(parts)
            for n, _ in models[0].named_parameters()
            for parts in [[dict(m.named_parameters())[n].grad for m in models]]
        ]
        torch.testing.assert_close([w.grad for w in weights], grads, rtol=0, atol=1e-10)

    with torch.no_grad():
        out = run_grouped(models[0], weights, stats, packed_x, False, G)
        ref = torch.stack([m.eval()(x) for m, x in zip(models, xs, strict=True)])
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-10)
    torch.testing.assert_close(stats, packed_stats(models), rtol=0, atol=1e-10)


def test_grouped_vgg16_equals_its_plain_models(one_thread):
    """Train mode (with the running-stat updates) and eval mode; 32 pixels is VGG's least."""
    check_grouped_equals_plain("vgg16", 32, backward=False)


def test_grouped_wrn16_8_equals_its_plain_models(one_thread):
    check_grouped_equals_plain("wrn16-8", 8, backward=False)


@pytest.mark.parametrize("name", ["wrn10-2", "vgg2"])
def test_grouped_gradients_equal_the_plain_models_gradients(one_thread, monkeypatch, name):
    """The grouped forwards train packs: their gradients must be the plain models' too.
    (vgg2: a two-stage VGG, to keep float64 backward passes quick.)"""
    monkeypatch.setitem(vgg.CONFIGS, 2, (8, 8, vgg.M, 16, vgg.M))
    check_grouped_equals_plain(name, 8, backward=True)


@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_grouped_resnets_equal_their_plain_models(one_thread, shortcut):
    """The CIFAR ResNet's grouped form, with either shortcut (A: per-model zero padding; B: a
    1x1 convolution and BatchNorm), forward and backward."""
    check_grouped_equals_plain("resnet8", 8, backward=True, shortcut=shortcut)
