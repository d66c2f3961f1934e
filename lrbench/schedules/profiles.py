"""The schedules' shapes: each class validates its parameters and gives m(p), vectorised.

p is progress in [0, 1) as a float64 array. Every `multiplier` is a closed form of p (the
README's Schedules table) so a whole run's table is one numpy expression and resuming at any step
is exact.
Boundaries go through `progress`, so milestones and cycle ends that fall on whole steps are hit
exactly.
"""

from __future__ import annotations

import itertools
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from lrbench.schedules.progress import count_reached, intervals_started, reached

OMIT_DEFAULT = "omit_default"


def param(default: Any, accepts: str, *, omit_default: bool = False, **limits: Any) -> Any:
    """A parameter with its default, its limits, and the words errors use for what it accepts.

    omit_default: the spec (spec.json, hashed into the run id) leaves the parameter out while it
    holds its default. A parameter added to a schedule after runs were recorded needs it, so
    those runs keep their ids.
    """
    extra = {OMIT_DEFAULT: True} if omit_default else None
    return Field(default, description=accepts, json_schema_extra=extra, **limits)


class Strict(BaseModel):
    """No coercion (a string is not a number) and no unknown keys: typos must not pass."""

    model_config = ConfigDict(strict=True, extra="forbid", allow_inf_nan=False, frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _plain_values(cls, data: Any) -> Any:
        """Tuples and numpy scalars from Python callers count as lists and numbers."""
        if not isinstance(data, dict):
            return data
        return {key: _plain(value) for key, value in data.items()}

    def dump(self) -> dict[str, Any]:
        """Every parameter by the key it is written with, defaults included."""
        return self.model_dump(by_alias=True)

    def spec_dump(self) -> dict[str, Any]:
        """The parameters as a spec records them: dump() less omit_default ones at their default."""
        data = self.dump()
        for key, info in type(self).model_fields.items():
            extra = info.json_schema_extra
            if isinstance(extra, dict) and extra.get(OMIT_DEFAULT):
                written = info.alias or key
                if data[written] == info.default:
                    del data[written]
        return data


def increasing_fractions(value: list[float], what: str, allow_zero: bool) -> list[float]:
    """Points in (0, 1), or [0, 1) with allow_zero, strictly increasing."""
    if not all(v < 1.0 and (v >= 0.0 if allow_zero else v > 0.0) for v in value):
        raise ValueError(f"{what} must lie in {'[0, 1)' if allow_zero else '(0, 1)'}")
    if any(b <= a for a, b in itertools.pairwise(value)):
        raise ValueError(f"{what} must be strictly increasing")
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (tuple, np.ndarray)):
        return [_plain(v) for v in value]
    return value


def _momentum_pair(value: list[float]) -> list[float]:
    if len(value) != 2 or not all(0.0 <= v < 1.0 for v in value):
        raise ValueError("momentum needs two numbers in [0, 1)")
    return value


Momentum = Annotated[list[float], AfterValidator(_momentum_pair)]


def full_cycle_ends(period: float) -> list[float]:
    """The ends of the whole cycles of `period` (a fraction of the budget) that fit in it."""
    return [k * period for k in range(1, int((1.0 + 1e-9) / period) + 1)]


class Profile(Strict):
    """A schedule's parameters and its multiplier m(p). Subclasses set `name` and `doc`."""

    name: ClassVar[str]
    doc: ClassVar[str]
    aliases: ClassVar[dict[str, dict[str, Any]]] = {}
    decays: ClassVar[bool] = False
    """A decaying profile starts at 1 and falls (to `final` where it has one): it can run
    inside each half-cycle of `cyclic` and each cycle of `restarts`."""

    def multiplier(self, p: np.ndarray) -> np.ndarray:
        """m(p): the rate as a fraction of the configured (peak) rate."""
        raise NotImplementedError

    def momentum_at(self, p: np.ndarray) -> np.ndarray | None:
        """Momentum (Adam's beta1) at p when the schedule sets it, else None."""
        return None

    @property
    def sets_momentum(self) -> bool:
        return False

    reactive: ClassVar[bool] = False

    def cycle_ends(self) -> list[float]:
        """Fractions of the budget where a cycle ends; empty for schedules without cycles."""
        return []

    @property
    def user_code(self) -> bool:
        """True where m(p) is the user's own code: the report never rebuilds such a schedule."""
        return False


class Constant(Profile):
    name: ClassVar[str] = "constant"
    doc: ClassVar[str] = "m = 1: the configured rate throughout."

    def multiplier(self, p: np.ndarray) -> np.ndarray:
        return np.ones_like(p)


class Step(Profile):
    name: ClassVar[str] = "step"
    doc: ClassVar[str] = "Multiply by gamma at each milestone (a fraction of the budget)."
    decays: ClassVar[bool] = True

    milestones: list[float] = param(
        [0.5, 0.75], "a strictly increasing list of fractions in (0, 1), e.g. [0.5, 0.75]"
    )
    gamma: float = param(0.1, "a number in (0, 1]", gt=0.0, le=1.0)

    @field_validator("milestones")
    @classmethod
    def _increasing(cls, value: list[float]) -> list[float]:
        return increasing_fractions(value, "milestones", allow_zero=False)

    def multiplier(self, p: np.ndarray) -> np.ndarray:
        return self.gamma ** count_reached(p, self.milestones).astype(np.float64)


class Exponential(Profile):
    name: ClassVar[str] = "exponential"
    doc: ClassVar[str] = "m = final + (1 - final) exp(-rate * p)."
    decays: ClassVar[bool] = True

    rate: float = param(3.0, "a number >= 0", ge=0.0)
    final: float = param(0.0, "a number in [0, 1] (the floor)", ge=0.0, le=1.0, omit_default=True)

    def multiplier(self, p: np.ndarray) -> np.ndarray:
        return self.final + (1.0 - self.final) * np.exp(-self.rate * p)


class Linear(Profile):
    name: ClassVar[str] = "linear"
    doc: ClassVar[str] = "Straight line from 1 to final at the end of the budget."
    decays: ClassVar[bool] = True

    final: float = param(0.0, "a number in [0, 1]", ge=0.0, le=1.0)

    def multiplier(self, p: np.ndarray) -> np.ndarray:
        return 1.0 - (1.0 - self.final) * p


class Cosine(Profile):
    name: ClassVar[str] = "cosine"
    doc: ClassVar[str] = "Half cosine from 1 to final at the end of the budget."
    decays: ClassVar[bool] = True

    final: float = param(0.0, "a number in [0, 1]", ge=0.0, le=1.0)

    def multiplier(self, p: np.ndarray) -> np.ndarray:
        return self.final + (1.0 - self.final) * (1.0 + np.cos(np.pi * p)) / 2.0


class Rex(Profile):
    name: ClassVar[str] = "rex"
    doc: ClassVar[str] = (
        "REX: final + (1 - final)(1 - p) / (1 - beta p); beta=0.5 is the paper's, 0.9 the blog's."
    )
    decays: ClassVar[bool] = True

    beta: float = param(0.5, "a number in [0, 1)", ge=0.0, lt=1.0)
    final: float = param(0.0, "a number in [0, 1] (the floor)", ge=0.0, le=1.0, omit_default=True)

    def multiplier(self, p: np.ndarray) -> np.ndarray:
        return self.final + (1.0 - self.final) * (1.0 - p) / (1.0 - self.beta * p)


class Poly(Profile):
    name: ClassVar[str] = "poly"
    doc: ClassVar[str] = "Polynomial decay: final + (1 - final)(1 - p)^power."
    decays: ClassVar[bool] = True

    power: float = param(2.0, "a number > 0", gt=0.0)
    final: float = param(0.0, "a number in [0, 1]", ge=0.0, le=1.0)

    def multiplier(self, p: np.ndarray) -> np.ndarray:
        return self.final + (1.0 - self.final) * np.clip(1.0 - p, 0.0, 1.0) ** self.power


class OneCycle(Profile):
    name: ClassVar[str] = "onecycle"
    doc: ClassVar[str] = (
        "Smith's 1cycle: 1/div up to 1, back to 1/div, then down to 1/final_div; "
        "momentum moves opposite."
    )

    pct_start: float = param(0.45, "a fraction in (0, 0.5]", gt=0.0, le=0.5)
    div: float = param(10.0, "a number >= 1 (the cycle starts at 1/div)", ge=1.0)
    final_div: float = param(1000.0, "a number >= 1 (the run ends at 1/final_div)", ge=1.0)
    momentum: Momentum = param(
        [0.95, 0.85], "[max, min]: two numbers in [0, 1) (max at the start and in the tail)"
    )

    def multiplier(self, p: np.ndarray) -> np.ndarray:
        a, low, end = self.pct_start, 1.0 / self.div, 1.0 / self.final_div
        rising = low + (1.0 - low) * p / a
        falling = 1.0 - (1.0 - low) * (p - a) / a
        tail = low + (end - low) * (p - 2 * a) / (1.0 - 2 * a) if a < 0.5 else np.full_like(p, low)
        return np.where(~reached(p, a), rising, np.where(~reached(p, 2 * a), falling, tail))

    def momentum_at(self, p: np.ndarray) -> np.ndarray:
        a, (high, low) = self.pct_start, self.momentum
        down = high - (high - low) * p / a
        up = low + (high - low) * (p - a) / a
        return np.where(~reached(p, a), down, np.where(~reached(p, 2 * a), up, high))

    @property
    def sets_momentum(self) -> bool:
        return True


class Triangular(Profile):
    name: ClassVar[str] = "triangular"
    doc: ClassVar[str] = (
        "Smith's CLR between low and 1, starting at low; step_size is the half-cycle "
        "(a fraction of the budget). cycle_momentum: true moves momentum from momentum[0] "
        "at low to momentum[1] at the peak."
    )
    aliases: ClassVar[dict[str, dict[str, Any]]] = {
        "triangular2": {"mode": "triangular2"},
        "exp_range": {"mode": "exp_range"},
    }

    mode: Literal["triangular", "triangular2", "exp_range"] = param(
        "triangular", "one of triangular, triangular2 (amplitude halves each cycle), exp_range"
    )
    low: float = param(0.1, "a number in [0, 1] (the bottom of the cycle)", ge=0.0, le=1.0)
    step_size: float = param(0.125, "a fraction in (0, 1] (the half-cycle)", gt=0.0, le=1.0)
    gamma: float = param(
        1.0, "a number in (0, 1] (exp_range: amplitude x gamma per half-cycle)", gt=0.0, le=1.0
    )
    cycle_momentum: bool = param(False, "true or false (cycle momentum opposite to the rate)")
    momentum: Momentum = param(
        [0.9, 0.8],
        "[max, min]: two numbers in [0, 1), used when cycle_momentum is true "
        "(max at the low rate, min at the peak)",
    )

    def _wave(self, p: np.ndarray) -> np.ndarray:
        """Height above the cycle's bottom, as a fraction of the full swing, in [0, 1]."""
        half_cycles = p / self.step_size
        cycle = intervals_started(p, 2 * self.step_size) + 1
        height = np.maximum(0.0, 1.0 - np.abs(half_cycles - 2 * cycle + 1))
        if self.mode == "triangular2":
            return height / 2.0 ** (cycle - 1)
        if self.mode == "exp_range":
            return height * self.gamma**half_cycles
        return height

    def multiplier(self, p: np.ndarray) -> np.ndarray:
        return self.low + (1.0 - self.low) * self._wave(p)

    def momentum_at(self, p: np.ndarray) -> np.ndarray | None:
        if not self.cycle_momentum:
            return None
        high, low = self.momentum
        return high - (high - low) * self._wave(p)

    @property
    def sets_momentum(self) -> bool:
        return self.cycle_momentum

    def cycle_ends(self) -> list[float]:
        return full_cycle_ends(2 * self.step_size)


class Restarting(Profile):
    """`cycles` cycles growing by t_mult fill the budget; each restarts at 1 and ends at final."""

    cycles: int = param(3, "a whole number in [1, 1000]", ge=1, le=1000)
    t_mult: float = param(2.0, "a number >= 1 (each cycle is t_mult times the last)", ge=1.0)
    final: float = param(0.0, "a number in [0, 1] (the bottom of every cycle)", ge=0.0, le=1.0)

    @model_validator(mode="after")
    def _first_cycle_fits(self) -> Restarting:
        if not self.cycle_lengths()[0] >= 1e-6:
            raise ValueError(
                "cycles and t_mult make the first cycle shorter than a millionth of the budget; "
                "lower cycles or t_mult"
            )
        return self

    def cycle_lengths(self) -> np.ndarray:
        """Fractions of the budget: (t_mult - 1)/(t_mult^cycles - 1) growing by t_mult."""
        with np.errstate(over="ignore", invalid="ignore"):
            growth = self.t_mult ** np.arange(self.cycles, dtype=np.float64)
            return growth / growth.sum()

    def cycle_ends(self) -> list[float]:
        ends = np.cumsum(self.cycle_lengths())
        ends[-1] = 1.0
        return ends.tolist()

    def within_cycle(self, p: np.ndarray) -> np.ndarray:
        """How far into its cycle each p is, in [0, 1]."""
        lengths = self.cycle_lengths()
        starts = np.concatenate([[0.0], np.cumsum(lengths)[:-1]])
        cycle = count_reached(p, starts[1:])
        return np.clip((p - starts[cycle]) / lengths[cycle], 0.0, 1.0)


class Sgdr(Restarting):
    name: ClassVar[str] = "sgdr"
    doc: ClassVar[str] = (
        "Cosine restarts: `cycles` cycles growing by t_mult fill the budget exactly."
    )

    def multiplier(self, p: np.ndarray) -> np.ndarray:
        inside = self.within_cycle(p)
        return self.final + (1.0 - self.final) * (1.0 + np.cos(np.pi * inside)) / 2.0


class Wsd(Profile):
    name: ClassVar[str] = "wsd"
    doc: ClassVar[str] = "Warmup-stable-decay: 1, then a cooldown to 0 over the last `decay`."
    decays: ClassVar[bool] = True

    decay: float = param(
        0.2, "a fraction in (0, 1] (the cooldown's share of the budget)", gt=0.0, le=1.0
    )
    shape: Literal["1-sqrt", "linear", "cosine"] = param(
        "1-sqrt", "one of 1-sqrt, linear, cosine (the cooldown's shape)"
    )

    def multiplier(self, p: np.ndarray) -> np.ndarray:
        start = 1.0 - self.decay
        q = np.clip((p - start) / self.decay, 0.0, 1.0)
        if self.shape == "1-sqrt":
            cooldown = 1.0 - np.sqrt(q)
        elif self.shape == "linear":
            cooldown = 1.0 - q
        else:
            cooldown = (1.0 + np.cos(np.pi * q)) / 2.0
        return np.where(reached(p, start), cooldown, 1.0)


def _points(value: list[list[float]]) -> list[list[float]]:
    for i, point in enumerate(value):
        if len(point) != 2:
            raise ValueError(f"points[{i}]={point!r} is not a [p, m] pair")
        if point[1] < 0:
            raise ValueError(f"points[{i}]={point!r}: the multiplier m must be >= 0")
    ps = [point[0] for point in value]
    if len(ps) < 2 or ps[0] != 0 or ps[-1] != 1:
        raise ValueError("the first point's p must be 0 and the last's 1")
    for i, (a, b) in enumerate(itertools.pairwise(ps), start=1):
        if b <= a:
            raise ValueError(f"points[{i}]: p={b!r} does not rise above the previous p={a!r}")
    return value


class Piecewise(Profile):
    name: ClassVar[str] = "piecewise"
    doc: ClassVar[str] = (
        "Straight lines between [p, m] points: your own shape without Python, e.g. "
        "points: [[0, 1], [0.5, 0.2], [1, 0]]."
    )
    decays: ClassVar[bool] = True

    points: Annotated[list[list[float]], AfterValidator(_points)] = param(
        [[0.0, 1.0], [1.0, 0.0]],
        "a list of [p, m] pairs, p strictly increasing from 0 to 1 and m >= 0, "
        "e.g. [[0, 1], [0.5, 0.2], [1, 0]]",
    )

    def multiplier(self, p: np.ndarray) -> np.ndarray:
        ps, ms = zip(*self.points, strict=True)
        return np.interp(p, ps, ms)


def _patience(value: float) -> float:
    if isinstance(value, bool) or value < 0 or (not float(value).is_integer() and value >= 1):
        raise ValueError("patience must be a whole number of epochs >= 0 or a fraction in (0, 1)")
    return value


class Plateau(Profile):
    name: ClassVar[str] = "plateau"
    doc: ClassVar[str] = (
        "Reactive: multiply by factor when the monitored loss has not improved for patience "
        "epochs (torch's ReduceLROnPlateau). Not a function of progress: previews show the rate "
        "before any decay."
    )
    reactive: ClassVar[bool] = True

    factor: float = param(0.1, "a number in (0, 1)", gt=0.0, lt=1.0)
    patience: Annotated[float, AfterValidator(_patience)] = param(
        10, "a whole number of epochs >= 0, or a fraction in (0, 1) of the run's epochs"
    )
    threshold: float = param(1e-4, "a number >= 0 (relative improvement that counts)", ge=0.0)
    cooldown: int = param(0, "a whole number of epochs >= 0", ge=0)
    min_lr: float = param(0.0, "a rate >= 0 (the floor)", ge=0.0)
    monitor: Literal["auto", "val_loss", "train_loss"] = param(
        "auto",
        "auto (val_loss with a validation split, else train_loss), val_loss or train_loss; "
        "never a test metric",
    )

    def multiplier(self, p: np.ndarray) -> np.ndarray:
        return np.ones_like(p)

    def patience_epochs(self, epochs: int) -> int:
        if self.patience < 1 and not float(self.patience).is_integer():
            return max(1, round(self.patience * epochs))
        return int(self.patience)


PROFILES: tuple[type[Profile], ...] = (
    Constant,
    Step,
    Exponential,
    Linear,
    Cosine,
    Rex,
    Poly,
    OneCycle,
    Triangular,
    Sgdr,
    Wsd,
    Plateau,
    Piecewise,
)
