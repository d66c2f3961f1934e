"""Your own schedule: a Python function of progress, named by import path ("module:function").

The function maps progress p in [0, 1) to a multiplier: given a float it returns a number, and
given a numpy array it may return an array of the same shape (then a whole run's table is one
call). Keys of the entry that are not modifiers are its keyword parameters.

The spec records the import path and the module's source hash, so an edited module never
reuses old runs, and any process with the config's folder on its import path can rebuild the
schedule. Built with imports=False (the report), nothing is imported: the schedule knows its
parameters and cycle ends but not its rates.
"""

from __future__ import annotations

import inspect
import json
import math
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
from pydantic import (
    ConfigDict,
    Field,
    ModelWrapValidatorHandler,
    PrivateAttr,
    ValidationInfo,
    model_validator,
)

from lrbench.errors import UserError, did_you_mean
from lrbench.imports import import_ref
from lrbench.schedules.errors import ScheduleError
from lrbench.schedules.profiles import Profile, param

IMPORT = "import"
PROBE = np.arange(1000, dtype=np.float64) / 1000
"""Where a function is tried at build time: every thousandth of the budget."""


def build_context(info: ValidationInfo) -> tuple[bool, str]:
    """(import user code?, where errors say they are) from the validation context."""
    context = info.context or {}
    return bool(context.get("imports", True)), str(context.get("where", "schedule"))


class Imported(Profile):
    name: ClassVar[str] = IMPORT
    doc: ClassVar[str] = (
        "Your own m(p): {import: 'module:function', <its keyword parameters>}. The function "
        "takes p in [0, 1) (a float, or a numpy array it may answer with an array) and returns "
        "multipliers >= 0; the module is looked up next to the config and in the current folder."
    )
    decays: ClassVar[bool] = True
    model_config = ConfigDict(
        strict=True, extra="allow", allow_inf_nan=False, frozen=True, populate_by_name=True
    )

    import_: str = Field(
        alias=IMPORT, description="'module:function', a module next to the config or in ./"
    )
    source_hash: str | None = param(
        None, "the module's source hash; lrbench records it (an edited module is a new schedule)"
    )
    _function: Callable[..., Any] | None = PrivateAttr(None)
    _vectorised: bool = PrivateAttr(False)

    @property
    def keywords(self) -> dict[str, Any]:
        """The entry's keyword parameters for the function."""
        return dict(self.model_extra or {})

    @property
    def user_code(self) -> bool:
        return True

    @model_validator(mode="after")
    def _keywords_are_data(self, info: ValidationInfo) -> Imported:
        _, where = build_context(info)
        for key, value in self.keywords.items():
            _plain_data(key, value, where)
        return self

    @model_validator(mode="wrap")
    @classmethod
    def _import(
        cls, data: Any, handler: ModelWrapValidatorHandler[Imported], info: ValidationInfo
    ) -> Imported:
        """Import and try the function now, so a bad one fails when the config is read."""
        imports, where = build_context(info)
        ref = data.get(IMPORT) if isinstance(data, dict) else None
        if not imports or not isinstance(ref, str):
            return handler(data)
        try:
            found = import_ref(ref, where)
        except UserError as err:
            raise ScheduleError(str(err)) from None
        recorded = data.get("source_hash")
        if recorded is not None and recorded != found.source_hash:
            raise ScheduleError(
                f"{where}: {ref!r} has changed since this run was planned (source hash "
                f"{recorded}, now {found.source_hash}); plan the sweep again"
            )
        profile = handler({**data, "source_hash": found.source_hash})
        if not callable(found.obj):
            raise ScheduleError(f"{where}: {ref!r} is not a function of progress p")
        _check_signature(found.obj, profile.keywords, ref, where)
        profile._function = found.obj
        try:
            profile._vectorised = profile._answers_arrays()
            profile._values(PROBE)
        except ScheduleError as err:
            raise ScheduleError(f"{where}: {err}") from None
        return profile

    def multiplier(self, p: np.ndarray) -> np.ndarray:
        try:
            return self._values(p)
        except ScheduleError as err:
            raise ScheduleError(f"schedule {IMPORT!r}: {err}") from None

    def _values(self, p: np.ndarray) -> np.ndarray:
        """m at every p, checked: finite, >= 0, one per p. Errors start with the import path."""
        ref = repr(self.import_)
        if self._function is None:
            raise ScheduleError(f"{ref} was not imported: this schedule's rates are not known here")
        if not self._vectorised:
            return self._checked(np.array([self._scalar(x) for x in p.tolist()]), p)
        try:
            values = self._function(p.copy(), **self.keywords)  # theirs to change
        except (Exception, SystemExit) as err:
            raise ScheduleError(f"{ref} raised {type(err).__name__}: {err}") from None
        if not isinstance(values, np.ndarray) or values.shape != p.shape:
            raise ScheduleError(
                f"{ref} returned {_shown(values)} for {p.size} values of p; return an array of "
                "one multiplier per value of p"
            )
        if values.dtype.kind not in "iuf":
            raise ScheduleError(f"{ref} returned an array of {values.dtype}; return numbers")
        return self._checked(values, p)

    def _answers_arrays(self) -> bool:
        """Whether the function answers an array of p with an array (of its shape, or an error)."""
        assert self._function is not None
        try:
            out = self._function(PROBE.copy(), **self.keywords)
        except (Exception, SystemExit):  # a function of one float; _scalar reports its own errors
            return False
        if isinstance(out, np.ndarray) and out.ndim > 0:
            if out.shape != PROBE.shape:
                raise ScheduleError(
                    f"{self.import_!r} returned an array of shape {out.shape} for "
                    f"{PROBE.size} values of p; return one multiplier per value of p"
                )
            return True
        return False

    def _scalar(self, p: float) -> float:
        assert self._function is not None
        ref = repr(self.import_)
        try:
            value = self._function(p, **self.keywords)
        except (Exception, SystemExit) as err:
            raise ScheduleError(f"{ref} raised {type(err).__name__} at p={p!r}: {err}") from None
        if isinstance(value, (bool, np.bool_)) or not isinstance(
            value, (int, float, np.integer, np.floating)
        ):
            raise ScheduleError(
                f"{ref} returned {_shown(value)} at p={p!r}; it must return a number (or, given "
                "an array of p, an array of the same shape)"
            )
        return float(value)

    def _checked(self, values: np.ndarray, p: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=np.float64)
        bad = ~np.isfinite(values) | (values < 0)
        if bad.any():
            i = int(np.argmax(bad))
            raise ScheduleError(
                f"{self.import_!r} returned {float(values[i])!r} at p={float(p[i])!r}; "
                "multipliers must be finite and >= 0"
            )
        return values


def _check_signature(
    function: Callable[..., Any], keywords: dict[str, Any], ref: str, where: str
) -> None:
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):  # builtins without a signature: the probe call will tell
        return
    try:
        signature.bind(0.0, **keywords)
    except TypeError as err:
        names = [n for n in signature.parameters if n not in keywords]
        hints = "".join(did_you_mean(k, names) for k in keywords if k not in signature.parameters)
        raise ScheduleError(
            f"{where}: {ref!r} cannot take p and {_listed(keywords)}: {err}{hints}"
        ) from None


def _listed(keywords: dict[str, Any]) -> str:
    return ", ".join(keywords) if keywords else "no keyword parameters"


def _plain_data(key: str, value: Any, where: str) -> None:
    """Keyword parameters go into spec.json and the run id: they must be plain JSON data."""
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        raise ScheduleError(
            f"{where}: {key}={_shown(value)} is not valid; keyword parameters accept plain data "
            "(numbers, text, true/false, lists and mappings of them)"
        ) from None
    if isinstance(value, float) and not math.isfinite(value):
        raise ScheduleError(f"{where}: {key}={value!r} is not valid; it must be finite")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
