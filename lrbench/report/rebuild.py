"""The one place the report rebuilds a schedule from spec.json, and refuses to run user code.

Schedules are pure functions of their spec, so plots and anytime can redraw every step's rate
and find cycle ends. A spec that names user code (an `import` key, anywhere in it) is never
rebuilt: a report reads results and never runs code named in a results folder. Neither is a
schedule this version does not know.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from lrbench.schedules import Schedule, ScheduleError, build_schedule


def names_user_code(spec: Any) -> bool:
    if isinstance(spec, Mapping):
        return "import" in spec or any(names_user_code(v) for v in spec.values())
    if isinstance(spec, (list, tuple)):
        return any(names_user_code(v) for v in spec)
    return False


def rebuild_schedule(spec: Any) -> Schedule | None:
    """The schedule a run's spec describes, or None where the report cannot or must not."""
    if names_user_code(spec):
        return None
    try:
        return build_schedule(spec)
    except (ScheduleError, TypeError, ValueError):
        return None
