"""Option parsing shared by commands."""

from __future__ import annotations

from typing import Any

import yaml

from lrbench.errors import UserError
from lrbench.yamlio import load_yaml


def parse_sets(items: list[str]) -> dict[str, Any]:
    """`--set KEY=VALUE` pairs, each value parsed as YAML (`milestones=[0.3,0.6]`, `beta=0.9`)."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UserError(f"--set {item!r}: expected KEY=VALUE, e.g. --set beta=0.9")
        try:
            out[key] = load_yaml(text) if text.strip() else None
        except yaml.YAMLError as err:
            raise UserError(f"--set {key}: {text!r} is not a valid value ({err.problem})") from None
    return out
