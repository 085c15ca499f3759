"""Checks of the management commands' options: bad input is a clear CommandError, never
a traceback (a NaN, an infinity, a step past the calendar, an impossible date)."""

import math
from datetime import datetime, timedelta

from django.core.management.base import CommandError
from django.utils.dateparse import parse_datetime

# A test clock moves at most this far in one advance: far beyond any dunning cycle, and
# far enough from the calendar's end (year 9999) that the work on the way can be dated.
MAX_CLOCK_STEP = timedelta(days=3660)
LATEST_YEAR = 9000  # a simulation starts before this year, for the same reason


def moment_parse(value: str, option: str) -> datetime:
    """An ISO 8601 time with an offset, or a CommandError that says what is wrong."""
    try:
        moment = parse_datetime(value)
    except ValueError as error:  # well formed, but no such time: month 13, offset +99:00
        raise CommandError(f"{option} {value!r} is not a valid time: {error}.") from None
    if moment is None or moment.tzinfo is None:
        raise CommandError(f"{option} {value!r} is not an ISO 8601 time with an offset.")
    if not 1 <= moment.year < LATEST_YEAR:
        raise CommandError(f"{option} {value!r} is too far in the future.")
    return moment


def clock_step(*, days: float | None, hours: float | None) -> timedelta:
    """The step of --days or --hours: a finite positive number, at most MAX_CLOCK_STEP."""
    option, value = ("--days", days) if days is not None else ("--hours", hours)
    if not math.isfinite(value):
        raise CommandError(f"{option} must be a number, not {value}.")
    if value <= 0:
        raise CommandError("The clock only moves forward: give a positive step.")
    limit = MAX_CLOCK_STEP.days if option == "--days" else MAX_CLOCK_STEP.days * 24
    if value > limit:
        raise CommandError(f"{option} must be at most {limit} (a clock moves at most "
                           f"{MAX_CLOCK_STEP.days} days at a time).")
    return timedelta(days=value) if option == "--days" else timedelta(hours=value)


def clock_target_check(clock_time: datetime, target: datetime) -> datetime:
    if target - clock_time > MAX_CLOCK_STEP:
        raise CommandError(f"--to {target.isoformat()} is more than {MAX_CLOCK_STEP.days} "
                           f"days after the clock's time ({clock_time.isoformat()}): "
                           "advance it in several steps.")
    return target
