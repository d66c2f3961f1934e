"""The one place the report rebuilds a schedule from spec.json, and never runs user code.

Schedules are pure functions of their spec, so plots and anytime can redraw every step's rate
and find cycle ends. A schedule that names user code (an import path, anywhere in it) is rebuilt
without importing it (build_schedule(imports=False)): its cycle ends are known, its rates are
not (they are in metrics.csv): a report reads results and never runs code named in a results
folder. A schedule this version does not know is not rebuilt.
"""

from __future__ import annotations

from typing import Any

from lrbench.schedules import Schedule, ScheduleError, build_schedule


def rebuild_schedule(spec: Any) -> Schedule | None:
    """The schedule a run's spec describes, or None where the report cannot or must not."""
    try:
        return build_schedule(spec, imports=False)
    except (ScheduleError, TypeError, ValueError):
        return None
