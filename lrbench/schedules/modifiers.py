"""Modifiers every schedule accepts: warmup, and sampling (sample_every / sample_at).

Sampling picks, for each step, the progress at which the whole function (warmup included) is
read; warmup then maps that progress onto the profile. The REX paper's "sampling rate" is the
first, a linear warmup the second.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
from pydantic import field_validator, model_validator

from lrbench.schedules.profiles import Strict, increasing_fractions, param
from lrbench.schedules.progress import count_reached, intervals_started, reached

SampleEvery = str | float


class Modifiers(Strict):
    """Validated modifiers; defaults leave a schedule untouched."""

    docs: ClassVar[dict[str, str]] = {
        "warmup": "rise linearly from 0 to m(0) over the first `warmup` of the budget; "
        "the schedule then runs, compressed, over the rest",
        "sample_every": "sample-and-hold: read the schedule at the start of each iteration, "
        "each epoch, or each interval of this fraction of the budget",
        "sample_at": "read the schedule at the largest listed point <= p (0 is implied)",
    }

    warmup: float = param(0.0, "a fraction in [0, 1)", ge=0.0, lt=1.0)
    sample_every: SampleEvery = param(
        "iteration", "iteration, epoch, or a fraction of the budget in (0, 1]"
    )
    sample_at: list[float] | None = param(
        None, "a strictly increasing list of fractions in [0, 1), e.g. [0.5, 0.75]", min_length=1
    )

    @field_validator("sample_every", mode="before")
    @classmethod
    def _interval(cls, value: Any) -> SampleEvery:
        if isinstance(value, str):
            if value in ("iteration", "epoch"):
                return value
            raise ValueError("unknown interval")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if 0 < value <= 1:
                return float(value)
            raise ValueError("outside (0, 1]")
        raise ValueError("neither a word nor a number")

    @field_validator("sample_at")
    @classmethod
    def _points(cls, value: list[float] | None) -> list[float] | None:
        if value is None:
            return value
        return increasing_fractions(value, "points", allow_zero=True)

    @model_validator(mode="after")
    def _one_sampling(self) -> Modifiers:
        if self.sample_at is not None and self.sample_every != "iteration":
            raise ValueError("give sample_every or sample_at, not both")
        return self

    def progress(self, total_steps: int, steps_per_epoch: int) -> np.ndarray:
        """The progress each step reads the schedule at, after sample-and-hold."""
        steps = np.arange(total_steps, dtype=np.int64)
        p = steps / total_steps
        if self.sample_at is not None:
            points = [0.0, *(a for a in self.sample_at if a > 0.0)]
            return np.asarray(points)[count_reached(p, points[1:])]
        if self.sample_every == "epoch":
            return (steps // steps_per_epoch * steps_per_epoch) / total_steps
        if self.sample_every == "iteration":
            return p
        width = float(self.sample_every)
        return intervals_started(p, width) * width

    def warm(
        self, profile: Callable[[np.ndarray], np.ndarray], p: np.ndarray, rising: bool
    ) -> np.ndarray:
        """profile compressed into [warmup, 1); before that a ramp from 0 (rising) or held."""
        if self.warmup == 0.0:
            return profile(p)
        w, start = self.warmup, profile(np.zeros(1))[0]
        inside = profile(np.clip((p - w) / (1.0 - w), 0.0, 1.0))
        before = start * p / w if rising else np.full_like(p, start)
        return np.where(reached(p, w), inside, before)
