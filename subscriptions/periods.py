"""Billing periods, as Stripe computes them: in UTC instants, each period end counted from
the billing cycle anchor (never from the previous end), so an anchor on the 31st bills on
the last day of shorter months and returns to the 31st (Jan 31, Feb 28 or 29, Mar 31,
Apr 30). Daylight saving changes nothing: a period is a count of UTC days or months."""

import calendar
from datetime import datetime, timedelta

from django.utils.translation import gettext as _

from customers.errors import DomainError

from .models import MAX_INTERVAL_COUNT


def interval_check(interval: str, count: int) -> None:
    """At most one year between bills (365 days, 52 weeks, 12 months, 1 year)."""
    if interval not in MAX_INTERVAL_COUNT:
        raise DomainError(
            _("Unknown billing interval %(i)s: use day, week, month or year.") % {"i": interval}
        )
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        raise DomainError(_("The interval count is a whole number of at least 1."))
    if count > MAX_INTERVAL_COUNT[interval]:
        raise DomainError(
            _("At most one year between bills: every %(max)s %(interval)s(s) at most.")
            % {"max": MAX_INTERVAL_COUNT[interval], "interval": interval}
        )


def add_months(anchor: datetime, months: int) -> datetime:
    """`anchor` plus whole months, the day clamped to the month's last day."""
    index = anchor.month - 1 + months
    year, month = anchor.year + index // 12, index % 12 + 1
    day = min(anchor.day, calendar.monthrange(year, month)[1])
    return anchor.replace(year=year, month=month, day=day)


def period_end(anchor: datetime, interval: str, count: int, n: int) -> datetime:
    """The end of the n-th period after `anchor` (n = 1: the first period's end)."""
    if interval == "day":
        return anchor + timedelta(days=count * n)
    if interval == "week":
        return anchor + timedelta(weeks=count * n)
    if interval == "month":
        return add_months(anchor, count * n)
    return add_months(anchor, 12 * count * n)


def period_index_after(anchor: datetime, interval: str, count: int, moment: datetime) -> int:
    """The smallest n whose period end is after `moment` (n >= 1)."""
    n = 1
    if interval in ("day", "week"):
        step = timedelta(days=count * (7 if interval == "week" else 1))
        n = max(1, int((moment - anchor) / step))
    elif moment > anchor:
        months = (moment.year - anchor.year) * 12 + moment.month - anchor.month
        per = count * (12 if interval == "year" else 1)
        n = max(1, months // per)
    while period_end(anchor, interval, count, n) <= moment:
        n += 1
    return n


def proration_fraction(start: datetime, end: datetime, at: datetime) -> tuple[int, int]:
    """The share of the period [start, end) left after `at`, to the second, as
    (seconds left, seconds in the period)."""
    total = int((end - start).total_seconds())
    left = int((end - max(min(at, end), start)).total_seconds())
    return left, max(total, 1)
