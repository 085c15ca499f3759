"""The engine on a test clock: its runs and its day-counted triggers, in time order
(one ClockWork entry in automations/clocks.py)."""

from datetime import datetime

from customers.clock_due import Candidate, due_first

from .runs import runs_next_due_parts, runs_sweep
from .scan import scan_next_due_at, scan_run


def next_due_parts(test_clock) -> list[Candidate]:
    # The day-counted triggers' moment is computed (one query per live automation).
    return [*runs_next_due_parts(test_clock), scan_next_due_at(test_clock)]


def next_due_at(test_clock) -> datetime | None:
    return due_first(next_due_parts(test_clock))


def run(*, now: datetime, test_clock) -> dict:
    counts = scan_run(now=now, test_clock=test_clock)
    counts.update(runs_sweep(now=now, test_clock=test_clock))
    return counts


def sweep(*, now: datetime) -> dict:
    """What beat wakes: the day-counted triggers, then the due runs."""
    counts = scan_run(now=now)
    counts.update(runs_sweep(now=now))
    return counts
