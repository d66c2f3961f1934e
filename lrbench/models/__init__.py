"""The models a run can train, by name: CIFAR ResNets, VGG, Wide ResNets; or the user's own.

    build_model("resnet20", 10)                       # resnet{6n+2}: resnet8 ... resnet1202
    build_model("vgg16", 100)                         # vgg11, vgg13, vgg16, vgg19
    build_model("wrn16-8", 10)                        # wrn{6n+4}-{width}
    build_model("gpt4-128", 65, context=64)           # gpt{layers}-{width}, on text
    build_model(spec.model, num_classes)              # a name, or an ImportedModel (see imported)

Every model draws its initial weights from torch's global RNG: seed it first. A name is checked
(`check_model_name`) without building anything, so an absurd depth is refused at once.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from torch import nn

from lrbench.errors import UserError, did_you_mean
from lrbench.models import gpt, resnet, vgg, wrn
from lrbench.models.imported import build_imported
from lrbench.specs import ImportedModel

_RESNET = re.compile(r"resnet(\d{1,20})")
_VGG = re.compile(r"vgg(\d{1,20})")
_WRN = re.compile(r"wrn(\d{1,20})-(\d{1,20})")
_GPT = re.compile(r"gpt(\d{1,20})-(\d{1,20})")
FORMS = (
    "resnet{6n+2} (resnet8 ... resnet1202), vgg11/13/16/19, wrn{6n+4}-{width} (wrn16-8), "
    "gpt{layers}-{width} (gpt4-128, on text)"
)


def model_names() -> list[str]:
    """The usual names, for suggestions; any resnet{6n+2} and wrn{6n+4}-{k} is accepted too."""
    return [
        *(f"resnet{d}" for d in resnet.STANDARD_DEPTHS),
        *(f"vgg{d}" for d in vgg.CONFIGS),
        "wrn16-8",
        "wrn28-10",
        "gpt4-128",
        "gpt6-384",
    ]


def _parse(name: str) -> tuple[str, tuple[int, ...]]:
    """(family, its numbers) of a built-in name; UserError naming the value when out of bounds."""
    key = name.strip().lower()
    if match := _RESNET.fullmatch(key):
        depth = int(match[1])
        resnet.blocks_per_stage(depth)
        return "resnet", (depth,)
    if match := _VGG.fullmatch(key):
        depth = int(match[1])
        if depth not in vgg.CONFIGS:
            known = ", ".join(map(str, vgg.CONFIGS))
            raise UserError(f"vgg depth must be one of {known}, got {depth}")
        return "vgg", (depth,)
    if match := _WRN.fullmatch(key):
        depth, width = int(match[1]), int(match[2])
        wrn.blocks_per_stage(depth, width)
        return "wrn", (depth, width)
    if match := _GPT.fullmatch(key):
        layers, width = int(match[1]), int(match[2])
        gpt.check_size(layers, width)
        return "gpt", (layers, width)
    raise UserError(
        f"unknown model {name!r}{did_you_mean(key, model_names())}; built in: {FORMS}; "
        "or your own: {import: 'module:factory'}"
    )


def model_family(name: str) -> tuple[str, tuple[int, ...]]:
    """A built-in name's family and numbers: ("resnet", (20,)), ("vgg", (16,)), ("wrn", (16, 8))."""
    return _parse(name)


def check_model_name(name: str) -> None:
    """UserError (one line, naming the value) unless `name` is a built-in model."""
    _parse(name)


def build_model(
    model: str | ImportedModel | Mapping[str, Any],
    num_classes: int | None,
    shortcut: str = "A",
    context: int | None = None,
) -> nn.Module:
    """A freshly initialised model: a built-in name, or an imported factory as a run's spec
    records it (an ImportedModel or its spec.json dict). `shortcut` is the ResNets' option;
    `context` a language model's window (text data). `num_classes` None (your own loss): an
    imported factory is called with its args only."""
    if num_classes is not None and num_classes < 1:
        raise UserError(f"num_classes must be positive, got {num_classes}")
    if not isinstance(model, str):
        return build_imported(ImportedModel.model_validate(model), num_classes, context=context)
    family, numbers = _parse(model)
    if num_classes is None:
        raise UserError(f"{model} needs a class count: with your own loss, import your model")
    if family == "gpt":
        if context is None:
            raise UserError(f"{model} is a language model: it trains on a text dataset")
        return gpt.GPT(*numbers, num_classes, context)
    option = shortcut.upper()
    if option not in resnet.SHORTCUTS:
        raise UserError(f"shortcut must be 'A' or 'B', got {shortcut!r}")
    if family == "resnet":
        return resnet.CifarResNet(numbers[0], num_classes, option)
    if family == "vgg":
        return vgg.VGG(numbers[0], num_classes)
    return wrn.WideResNet(*numbers, num_classes)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
