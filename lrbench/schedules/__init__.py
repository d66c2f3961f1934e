"""Learning-rate schedules as pure functions of progress p = t/T (docs/design.md, "Schedules").

build_schedule turns a name or a mapping into a validated Schedule; Schedule.multipliers gives
the whole run's multipliers at once, so the loop indexes a precomputed table per step.
"""

from lrbench.schedules.core import (
    Schedule,
    build_schedule,
    describe_modifiers,
    describe_schedules,
    schedule_names,
)
from lrbench.schedules.errors import ScheduleError

__all__ = [
    "Schedule",
    "ScheduleError",
    "build_schedule",
    "describe_modifiers",
    "describe_schedules",
    "schedule_names",
]
