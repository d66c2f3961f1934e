"""The report's metric: accuracies are read as fractions and shown as test error % or accuracy %."""

from __future__ import annotations

import math

METRICS = {"error": "test error (%)", "accuracy": "test accuracy (%)"}


def in_metric(acc: float, metric: str) -> float:
    """An accuracy fraction as the metric's percentage (error = 100 - accuracy); NaN stays."""
    return 100 * (1 - acc) if metric == "error" else 100 * acc


def interval_in_metric(low: float, high: float, metric: str) -> tuple[float, float]:
    """An accuracy interval in the metric, low first (error turns the ends around)."""
    a, b = in_metric(low, metric), in_metric(high, metric)
    return (b, a) if metric == "error" else (a, b)


def rounded(value: float) -> float:
    """A percentage to 6 decimals for the CSVs: enough for any table, without float noise."""
    return round(value, 6) if math.isfinite(value) else math.nan
