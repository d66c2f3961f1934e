"""ScheduleError, and turning pydantic's validation errors into one line that names the key."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from lrbench.errors import UserError, did_you_mean

M = TypeVar("M", bound=BaseModel)


class ScheduleError(UserError):
    """A schedule spec is wrong. The message names the parameter and what it accepts."""


def accepts(model: type[BaseModel], key: str) -> str:
    """What a parameter accepts, as written in its Field description."""
    fields = {info.alias or name: info for name, info in model.model_fields.items()}
    info = fields.get(key)
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
    if first["type"] == "missing":
        return ScheduleError(f"{where}: {shown} is required; {key} accepts {accepts(model, key)}")
    given = _shown(first.get("input"))
    return ScheduleError(
        f"{where}: {shown}={given} is not valid ({reason}); {key} accepts {accepts(model, key)}"
    )


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_keys(given: Iterable[str], known: list[str], where: str, name: str) -> None:
    """A key `name` does not know is a ScheduleError with the closest known key."""
    for key in given:
        if key not in known:
            raise ScheduleError(
                f"{where}: unknown parameter {key!r}{did_you_mean(key, known)}; "
                f"{name} accepts {', '.join(known)}"
            )


def validated(model: type[M], values: dict[str, Any], where: str, imports: bool = True) -> M:
    """`model` from `values`, or a ScheduleError naming the key; imports=False imports no code."""
    try:
        return model.model_validate(values, context={"imports": imports, "where": where})
    except ValidationError as err:
        raise explain(err, where, model) from None
