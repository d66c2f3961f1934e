"""Your own model: `{import: "module:factory", label: mynet, args: {...}}` in a sweep's models.

The factory is called as `factory(num_classes=K, **args)` and must return an nn.Module whose
forward maps images [B, 3, H, W] to logits [B, K]. A run's spec records the import path, the
label, the args and a hash of the factory's module source, so an edited model never reuses old
runs; a run refuses to build from source that changed since it was planned.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lrbench.errors import UserError, one_line
from lrbench.imports import check_callable, import_planned, import_ref
from lrbench.specs import ImportedModel, import_label

WHAT = "a factory taking num_classes (and the entry's args) and returning an nn.Module"


def resolve_import(ref: str, label: str | None, args: dict[str, Any], where: str) -> ImportedModel:
    """Import the factory (UserError naming `where` if that fails) and record what a run needs.
    The label defaults to the factory's name."""
    imported = import_ref(ref, where)
    check_callable(imported, where, WHAT)
    return ImportedModel(
        ref=imported.ref,
        label=label or import_label(imported.ref),
        args=args,
        source=imported.source_hash,
    )


def build_imported(
    model: ImportedModel, num_classes: int | None, where: str = "", context: int | None = None
) -> nn.Module:
    """`factory(num_classes=..., **args)`, from the very source the run was planned with; with
    text data `context=` too; with your own loss (num_classes None) `factory(**args)`."""
    where = where or f"model {model.label!r}"
    imported = import_planned(model.ref, model.source, where)
    given: dict[str, Any] = {}
    if num_classes is not None:
        given["num_classes"] = num_classes
    if context is not None:
        given["context"] = context
    kwargs = {**given, **model.args}
    call = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    try:
        net = imported.obj(**kwargs)
    except (Exception, SystemExit) as err:  # the user's factory failed
        raise UserError(f"{where}: {model.ref}({call}) raised {one_line(err)}") from err
    if not isinstance(net, nn.Module):
        raise UserError(
            f"{where}: {model.ref}({call}) returned a {type(net).__name__}, not an nn.Module"
        )
    return net


def check_imported(
    model: ImportedModel,
    num_classes: int,
    image_size: tuple[int, int] | None,
    where: str,
    channels: int = 3,
) -> None:
    """Build the model (leaving torch's RNG as it was) and, when the image size is known, check
    that it maps a batch of 2 images to logits [2, num_classes]."""
    with torch.random.fork_rng(devices=[]):
        net = build_imported(model, num_classes, where)
        if image_size is None:
            return
        x = torch.randn(2, channels, *image_size)
        try:
            with torch.no_grad():
                out = net.eval()(x)
        except (Exception, SystemExit) as err:  # the user's forward failed
            size = "x".join(map(str, image_size))
            raise UserError(
                f"{where}: {model.label} failed on a batch of 2 images of {channels}x{size}: "
                f"{one_line(err)}"
            ) from err
    shape = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if shape != [2, num_classes]:
        raise UserError(
            f"{where}: {model.label} returned {shape} for a batch of 2 images; it must return "
            f"logits [2, {num_classes}] (one per class)"
        )
