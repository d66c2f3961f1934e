"""Durations as people read them; light (no torch), for commands that must answer at once."""

from __future__ import annotations


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "unknown"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m{s:02d}s"


def fmt_hours(seconds: float) -> str:
    """Hours, as a sweep's cost is planned: `1,234.5 h`, `2.25 h`, `0.0042 h`."""
    hours = seconds / 3600
    if hours >= 100:
        return f"{hours:,.0f} h"
    return f"{hours:.2f} h" if hours >= 1 else f"{hours:.2g} h"
