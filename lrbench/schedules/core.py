"""The Schedule value, the registry of names, and build_schedule: the one way specs are read.

A Schedule is plain data (name, label, resolved parameters) plus pure whole-run tables; the
same dict goes into spec.json and comes back out as an equal Schedule. A schedule named by
import path ({import: "module:function"}) is the user's own code: build_schedule imports it
unless told not to (imports=False, for the report, which never runs user code).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lrbench.errors import did_you_mean
from lrbench.schedules.composite import COMPOSITES
from lrbench.schedules.errors import ScheduleError, check_keys, validated
from lrbench.schedules.imported import IMPORT, Imported
from lrbench.schedules.modifiers import Modifiers
from lrbench.schedules.profiles import PROFILES, Profile
from lrbench.schedules.progress import EPS

REGISTRY: dict[str, type[Profile]] = {cls.name: cls for cls in (*PROFILES, *COMPOSITES, Imported)}
ALIASES: dict[str, tuple[str, dict[str, Any]]] = {
    alias: (cls.name, fixed) for cls in PROFILES for alias, fixed in cls.aliases.items()
}
LABEL_DOC = "the name the schedule carries into results and tables"


@dataclass(frozen=True)
class Schedule:
    """A validated schedule. `params` holds every parameter, defaults and modifiers included.

    Treat it as read-only: the tables come from the parameters as validated at construction.
    """

    name: str
    label: str
    params: dict[str, Any] = field(default_factory=dict)
    imports: bool = field(default=True, compare=False, repr=False)
    _profile: Profile = field(init=False, repr=False, compare=False)
    _modifiers: Modifiers = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        profile, modifiers = _resolve(self.name, self.label, self.params, self.imports)
        object.__setattr__(self, "_profile", profile)
        object.__setattr__(self, "_modifiers", modifiers)
        object.__setattr__(self, "params", {**profile.dump(), **modifiers.dump()})

    def __hash__(self) -> int:
        return hash(json.dumps(self.to_dict(), sort_keys=True))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form for spec.json; build_schedule(s.to_dict()) == s.

        It is what the run id hashes: parameters declared omit_default are left out at their
        default, so adding one to a schedule keeps the ids of the runs recorded before.
        """
        recorded = {**self._profile.spec_dump(), **self._modifiers.spec_dump()}
        return {"name": self.name, "label": self.label, **copy.deepcopy(recorded)}

    @property
    def user_code(self) -> bool:
        """True where the rates come from the user's own code (an import, or a profile that is)."""
        return self._profile.user_code

    @property
    def sets_momentum(self) -> bool:
        return self._profile.sets_momentum

    @property
    def reactive(self) -> bool:
        """True for schedules that react to metrics (plateau): the table is before any decay."""
        return self._profile.reactive

    @property
    def profile(self) -> Profile:
        return self._profile

    def cycle_end_steps(self, total_steps: int, steps_per_epoch: int) -> list[int]:
        """Step counts k (1..T) after which a cycle ends; [T] for schedules without cycles.

        A cycle ending at fraction c of the profile (compressed after warmup) owns every step
        with progress below it, so it ends after the number of such steps.
        """
        total, _ = _budget(total_steps, steps_per_epoch)
        w = self._modifiers.warmup
        ends = {total}
        for c in self._profile.cycle_ends():
            k = int(np.ceil((w + c * (1.0 - w)) * total - EPS * total))
            if 1 <= k <= total:
                ends.add(k)
        return sorted(ends)

    def multipliers(self, total_steps: int, steps_per_epoch: int) -> np.ndarray:
        """m for steps 0..T-1 (float64, shape [T]): the loop's rate table is lr times this."""
        p = self._modifiers.progress(*_budget(total_steps, steps_per_epoch))
        return self._modifiers.warm(self._profile.multiplier, p, rising=True).astype(np.float64)

    def momenta(self, total_steps: int, steps_per_epoch: int) -> np.ndarray | None:
        """Momentum (Adam's beta1) for steps 0..T-1 when the schedule sets it, else None."""
        if not self.sets_momentum:
            return None
        p = self._modifiers.progress(*_budget(total_steps, steps_per_epoch))
        return self._modifiers.warm(self._profile.momentum_at, p, rising=False).astype(np.float64)


def build_schedule(spec: str | Mapping[str, Any] | Schedule, *, imports: bool = True) -> Schedule:
    """A Schedule from a name ("rex"), an import path ("module:function") or a mapping
    ({"name": "rex", "beta": 0.9, ...}, {"import": "module:function", ...}).

    imports=False imports no user code: such a schedule has its parameters, spec and cycle ends,
    but asking for its rates is a ScheduleError (the report reads them from metrics.csv).
    """
    if isinstance(spec, Schedule):
        return spec
    if isinstance(spec, str):
        given, rest = spec, {}
    elif isinstance(spec, Mapping):
        rest = dict(spec)
        given = rest.pop("name", IMPORT if IMPORT in rest else None)
        if given is None:
            raise ScheduleError(
                f"schedule: {dict(spec)!r} has no 'name' (one of {', '.join(schedule_names())}) "
                "and no 'import'"
            )
    else:
        raise ScheduleError(
            f"schedule: {spec!r} is not valid; a schedule is a name or a mapping with a 'name'"
        )
    if not isinstance(given, str):
        raise ScheduleError(f"schedule: name={given!r} is not valid; name accepts text")
    if ":" in given:
        if IMPORT in rest:
            raise ScheduleError(f"schedule {given!r}: give the import path once, as name or import")
        given, rest[IMPORT] = IMPORT, given
    label = rest.pop("label", _function_name(rest.get(IMPORT)) if given == IMPORT else given)
    name, fixed = ALIASES.get(given, (given, {}))
    for key, value in fixed.items():
        if key in rest and rest[key] != value:
            raise ScheduleError(
                f"schedule {given!r}: {key}={rest[key]!r} contradicts the name, which means "
                f"{key}={value!r}; use name {name!r} with {key}={rest[key]!r}"
            )
        rest[key] = value
    return Schedule(name=name, label=label, params=rest, imports=imports)


def _function_name(ref: object) -> str:
    """An import's default label: its function's name ("mod:warm_rex" -> "warm_rex")."""
    if isinstance(ref, str) and ref.count(":") == 1 and ref.rsplit(":", 1)[1].strip():
        return ref.rsplit(":", 1)[1].strip().rsplit(".", 1)[-1]
    return IMPORT


def schedule_names() -> list[str]:
    """Every name build_schedule accepts, aliases after the schedules."""
    return [*REGISTRY, *ALIASES]


def describe_schedules() -> list[dict[str, Any]]:
    """Name, one-line doc, aliases and parameters (name, default, accepts) of each schedule."""
    return [
        {
            "name": cls.name,
            "doc": cls.doc,
            "aliases": list(cls.aliases),
            "parameters": _fields(cls),
        }
        for cls in REGISTRY.values()
    ]


def describe_modifiers() -> list[dict[str, Any]]:
    """The keys every schedule accepts besides its own: warmup, sampling and label."""
    rows = [{**row, "doc": Modifiers.docs[row["name"]]} for row in _fields(Modifiers)]
    return [*rows, {"name": "label", "default": None, "accepts": "text", "doc": LABEL_DOC}]


def _fields(model: type[Profile] | type[Modifiers]) -> list[dict[str, Any]]:
    return [
        {
            "name": info.alias or key,
            "default": None if info.is_required() else copy.deepcopy(info.default),
            "required": info.is_required(),
            "accepts": info.description,
        }
        for key, info in model.model_fields.items()
    ]


def _keys(model: type[Profile] | type[Modifiers]) -> list[str]:
    return [info.alias or key for key, info in model.model_fields.items()]


def _resolve(
    name: str, label: str, params: Mapping[str, Any], imports: bool
) -> tuple[Profile, Modifiers]:
    if name not in REGISTRY:
        raise ScheduleError(
            f"unknown schedule {name!r}{did_you_mean(name, schedule_names())}; "
            f"known: {', '.join(schedule_names())}"
        )
    where = f"schedule {name!r}"
    if not isinstance(label, str) or not label.strip():
        raise ScheduleError(f"{where}: label={label!r} is not valid; label accepts non-empty text")
    if not isinstance(params, Mapping):
        raise ScheduleError(f"{where}: parameters must be a mapping, got {params!r}")
    cls = REGISTRY[name]
    for key in params:
        if key in ("name", "label"):
            raise ScheduleError(f"{where}: {key} is a field of the Schedule, not a parameter")
    modifiers = _keys(Modifiers)
    if cls is not Imported:  # an import's other keys are its function's keyword parameters
        check_keys(params, [*_keys(cls), *modifiers, "label"], where, name)
    ours = {k: v for k, v in params.items() if k not in modifiers}
    mods = {k: v for k, v in params.items() if k in modifiers}
    return validated(cls, ours, where, imports), validated(Modifiers, mods, where)


def _budget(total_steps: Any, steps_per_epoch: Any) -> tuple[int, int]:
    for key, value in (("total_steps", total_steps), ("steps_per_epoch", steps_per_epoch)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ScheduleError(f"{key}={value!r} is not valid; {key} accepts a whole number >= 1")
    return int(total_steps), int(steps_per_epoch)
