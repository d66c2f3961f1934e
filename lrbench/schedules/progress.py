"""Progress p = t/T and boundary tests that land on whole steps exactly.

A boundary such as 0.3 of a 100-step budget is step 30, but 0.3/0.1 is 2.9999999999999996 in
floating point: floor(p / s) would put step 30 in the wrong interval. Every boundary test goes
through `reached`, which counts a point as reached when p is within EPS of it. EPS is a billionth
of the budget, far below one step for any budget under 10^8 steps.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

EPS = 1e-9


def reached(p: np.ndarray, point: float) -> np.ndarray:
    """True where progress p has reached `point` (within EPS)."""
    return p >= point - EPS


def count_reached(p: np.ndarray, points: Sequence[float]) -> np.ndarray:
    """How many of the increasing `points` each p has reached."""
    if len(points) == 0:
        return np.zeros(p.shape, dtype=np.int64)
    return np.searchsorted(np.asarray(points, dtype=np.float64) - EPS, p, side="right")


def intervals_started(p: np.ndarray, width: float) -> np.ndarray:
    """Index of the interval of length `width` that holds p: floor(p / width), boundary-exact."""
    return np.floor((p + EPS) / width).astype(np.int64)
