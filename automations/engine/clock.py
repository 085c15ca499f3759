"""The engine on a test clock: its runs and its day-counted triggers, in time order
(one ClockWork entry in automations/clocks.py)."""

from datetime import datetime

from .runs import runs_next_due_at, runs_sweep
from .scan import scan_next_due_at, scan_run


def next_due_at(test_clock) -> datetime | None:
    moments = [m for m in (runs_next_due_at(test_clock), scan_next_due_at(test_clock)) if m]
    return min(moments) if moments else None


def run(*, now: datetime, test_clock) -> dict:
    counts = scan_run(now=now, test_clock=test_clock)
    counts.update(runs_sweep(now=now, test_clock=test_clock))
    return counts


def sweep(*, now: datetime) -> dict:
    """What beat wakes: the day-counted triggers, then the due runs."""
    counts = scan_run(now=now)
    counts.update(runs_sweep(now=now))
    return counts
