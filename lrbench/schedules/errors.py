"""ScheduleError, and turning pydantic's validation errors into one line that names the key."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from lrbench.errors import UserError


class ScheduleError(UserError):
    """A schedule spec is wrong. The message names the parameter and what it accepts."""


def accepts(model: type[BaseModel], key: str) -> str:
    """What a parameter accepts, as written in its Field description."""
    info = model.model_fields.get(key)
    return (info.description if info and info.description else "a valid value") or ""


def explain(err: ValidationError, where: str, model: type[BaseModel]) -> ScheduleError:
    """The first error of `err` as a ScheduleError: key, value given, why, what it accepts."""
    first = err.errors()[0]
    key = str(first["loc"][0]) if first["loc"] else ""
    reason = str(first["msg"]).removeprefix("Value error, ")
    reason = reason[:1].lower() + reason[1:]
    if not key:
        return ScheduleError(f"{where}: {reason}")
    shown = key + "".join(f"[{part}]" for part in first["loc"][1:] if isinstance(part, int))
    given = _shown(first.get("input"))
    return ScheduleError(
        f"{where}: {shown}={given} is not valid ({reason}); {key} accepts {accepts(model, key)}"
    )


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
