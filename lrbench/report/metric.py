"""The report's metric: what a run is judged by, which way is better, and how it is shown.

Inside the report a run's `score` is its metric oriented so that higher is always better (an
accuracy as a fraction, a loss negated): ranking, bootstrap and finishes need no direction of
their own. A `Metric` reads the score from a metrics.csv value and turns a score back into what
the reader sees (test error %, accuracy %, loss in nats, bits per character).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from lrbench.errors import UserError

LN2 = math.log(2)


@dataclass(frozen=True)
class Metric:
    """One metric: `column` of metrics.csv, its direction and how a score is shown."""

    name: str
    column: str
    lower_is_better: bool
    label: str
    # shown = factor * (offset + sign * score); a score is the column's value, negated for losses
    percent: bool = False
    divisor: float = 1.0

    @property
    def val_column(self) -> str:
        """The same metric on the validation split (used to pick a rate in a tuning grid)."""
        return self.column.replace("test_", "val_", 1)

    @property
    def title(self) -> str:
        """The label without its unit: 'test error' for 'test error (%)'."""
        return self.label.split(" (")[0]

    def score(self, value: float) -> float:
        """A metrics.csv value as a score (higher is better)."""
        return -value if _is_loss(self.column) else value

    def shown(self, score: float) -> float:
        """A score as the reader sees it; NaN stays NaN (works on arrays and Series too)."""
        if _is_loss(self.column):
            return -score / self.divisor
        if self.lower_is_better:  # error from an accuracy
            return 100 * (1 - score)
        return 100 * score if self.percent else score

    def shown_difference(self, difference: float) -> float:
        """A difference of scores in the metric's unit, its sign kept: positive when the first
        score is better (a margin in error points, nats, bits or accuracy points)."""
        if _is_loss(self.column):
            return difference / self.divisor
        return 100 * difference if self.percent or self.lower_is_better else difference

    def shown_spread(self, spread: float) -> float:
        """A standard deviation (or any spread) of scores in the metric's unit."""
        return abs(self.shown_difference(spread))

    def readable(self, value: float) -> bool:
        """Whether a metrics.csv value can be this metric's: an accuracy in [0, 1], a finite loss."""
        if not math.isfinite(value):
            return False
        return _is_loss(self.column) or 0.0 <= value <= 1.0

    @property
    def score_bounds(self) -> tuple[float, float]:
        """The range a score can take: an accuracy's [0, 1]; a loss's unbounded."""
        return (-math.inf, math.inf) if _is_loss(self.column) else (0.0, 1.0)

    @property
    def expected(self) -> str:
        """What a readable metrics.csv value is, for messages."""
        return "a finite number" if _is_loss(self.column) else "a fraction in [0, 1]"

    def shown_interval(self, low: float, high: float) -> tuple[float, float]:
        """A score interval as shown, low end first (a lower-is-better metric turns it around)."""
        a, b = self.shown(low), self.shown(high)
        return (b, a) if self.lower_is_better else (a, b)


def _is_loss(column: str) -> bool:
    return column.endswith("_loss")


BUILT_IN = {
    "error": Metric("error", "test_acc", True, "test error (%)", percent=True),
    "accuracy": Metric("accuracy", "test_acc", False, "test accuracy (%)", percent=True),
    "loss": Metric("loss", "test_loss", True, "test loss (nats)"),
    "bpc": Metric("bpc", "test_loss", True, "test loss (bits per character)", divisor=LN2),
}
# name -> label, for help texts and older callers
METRICS = {name: m.label for name, m in BUILT_IN.items()}


def metric_named(name: str | Metric) -> Metric:
    """A built-in metric, or any metrics.csv column ending in _loss (lower is better) or _acc."""
    if isinstance(name, Metric):
        return name
    if name in BUILT_IN:
        return BUILT_IN[name]
    if name.endswith("_loss"):
        return Metric(name, name, True, f"{name.replace('_', ' ')} (nats)")
    if name.endswith("_acc"):
        return Metric(name, name, False, f"{name.replace('_', ' ')} (%)", percent=True)
    raise UserError(
        f"metric {name!r} is not known; use one of {', '.join(BUILT_IN)} or a metrics.csv "
        "column ending in _loss or _acc"
    )


def in_metric(score: float, metric: str | Metric) -> float:
    """A score as the metric shows it (error = 100 - accuracy %, a loss as itself); NaN stays."""
    return metric_named(metric).shown(score)


def interval_in_metric(low: float, high: float, metric: str | Metric) -> tuple[float, float]:
    """A score interval in the metric, low first (lower-is-better metrics turn the ends around)."""
    return metric_named(metric).shown_interval(low, high)


def rounded(value: float) -> float:
    """A shown value to 6 decimals for the CSVs: enough for any table, without float noise."""
    return round(value, 6) if math.isfinite(value) else math.nan
