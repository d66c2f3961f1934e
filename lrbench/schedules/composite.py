"""A decaying profile run inside cycles: `cyclic` (rise and fall) and `restarts` (warm restarts).

The composition of "The Best Learning Rate Schedules" (Wolfe): a schedule is a profile (linear,
cosine, exponential, REX, or your own) run once, inside half-cycles that rise and fall, or inside
restarts. The profile is any decaying one, built here with its floor at 0: the cycle's own key
(`low`, `final`) is the floor.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
from pydantic import ValidationInfo, field_serializer, field_validator

from lrbench.errors import did_you_mean
from lrbench.schedules.errors import ScheduleError, check_keys, validated
from lrbench.schedules.imported import IMPORT, Imported, build_context
from lrbench.schedules.profiles import PROFILES, Profile, Restarting, full_cycle_ends, param
from lrbench.schedules.progress import intervals_started

DECAYING: dict[str, type[Profile]] = {cls.name: cls for cls in (*PROFILES, Imported) if cls.decays}
PROFILE_ACCEPTS = (
    f"a decaying profile: {', '.join(n for n in DECAYING if n != IMPORT)} or 'module:function'; "
    "a name, or a mapping such as {name: rex, beta: 0.9}"
)


def decaying_profile(value: Any, info: ValidationInfo, outer: str, floor: str) -> Profile:
    """The profile a cycle runs, from a name, an import path or a mapping, with floor 0."""
    if isinstance(value, Profile):
        return value
    imports, where = build_context(info)
    where = f"{where}: profile"
    if isinstance(value, str):
        spec: dict[str, Any] = {IMPORT: value} if ":" in value else {"name": value}
    elif isinstance(value, Mapping):
        spec = dict(value)
    else:
        raise ScheduleError(f"{where}={value!r} is not valid; profile accepts {PROFILE_ACCEPTS}")
    name = spec.pop("name", IMPORT if IMPORT in spec else None)
    if name not in DECAYING:
        raise ScheduleError(
            f"{where}: {name!r} is not a decaying profile{did_you_mean(name, DECAYING)}; "
            f"profile accepts {PROFILE_ACCEPTS}"
        )
    cls = DECAYING[name]
    if cls is not Imported:
        check_keys(spec, list(cls.model_fields), where, str(name))
        if spec.get("final", 0.0) != 0.0:
            raise ScheduleError(
                f"{where}: final={spec['final']!r} is not used here (the profile decays to 0 "
                f"inside each cycle); set {outer}'s {floor} instead"
            )
    return validated(cls, spec, where, imports)


def profile_spec(profile: Profile) -> dict[str, Any]:
    """The profile as spec.json records it: its name and its parameters."""
    return {"name": profile.name, **profile.spec_dump()}


class Composite(Profile):
    """A schedule that runs a decaying `profile` inside its own shape; its `floor` key (the
    profile's own floor is 0) is where the profile's decay ends."""

    floor: ClassVar[str]
    profile: Profile

    @field_validator("profile", mode="before")
    @classmethod
    def _decaying(cls, value: Any, info: ValidationInfo) -> Profile:
        return decaying_profile(value, info, cls.name, cls.floor)

    @field_serializer("profile")
    def _recorded(self, profile: Profile) -> dict[str, Any]:
        return profile_spec(profile)

    @property
    def user_code(self) -> bool:
        return self.profile.user_code


class Cyclic(Composite):
    name: ClassVar[str] = "cyclic"
    doc: ClassVar[str] = (
        "Half-cycles of step_size (a fraction of the budget) alternate a rise and a fall between "
        "low and 1, starting with a rise: the fall is the profile's decay, the rise the decay "
        "upside down. profile: linear is Smith's triangular."
    )
    floor: ClassVar[str] = "low"

    profile: Profile = param("linear", PROFILE_ACCEPTS, validate_default=True)
    step_size: float = param(0.125, "a fraction in (0, 1] (the half-cycle)", gt=0.0, le=1.0)
    low: float = param(0.1, "a number in [0, 1] (the bottom of the cycle)", ge=0.0, le=1.0)

    def multiplier(self, p: np.ndarray) -> np.ndarray:
        half = intervals_started(p, self.step_size)
        u = np.maximum(p / self.step_size - half, 0.0)
        decay = self.profile.multiplier(u)
        shape = np.where(half % 2 == 0, 1.0 - decay, decay)
        return self.low + (1.0 - self.low) * shape

    def cycle_ends(self) -> list[float]:
        return full_cycle_ends(2 * self.step_size)


class Restarts(Composite, Restarting):
    name: ClassVar[str] = "restarts"
    doc: ClassVar[str] = (
        "The profile decays from 1 to final over each of `cycles` cycles, each t_mult times "
        "the last, filling the budget, and restarts at 1. profile: cosine is sgdr."
    )
    floor: ClassVar[str] = "final"

    profile: Profile = param("cosine", PROFILE_ACCEPTS, validate_default=True)

    def multiplier(self, p: np.ndarray) -> np.ndarray:
        return self.final + (1.0 - self.final) * self.profile.multiplier(self.within_cycle(p))


COMPOSITES: tuple[type[Profile], ...] = (Cyclic, Restarts)
