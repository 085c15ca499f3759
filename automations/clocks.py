"""Advancing a test clock runs, in time order, all the work due to its customers.

The clock does not jump to the end: it stops at each moment something falls due (the
earliest of every kind of work in CLOCK_WORK), sets its time there, and runs every kind
at that moment, as the beat sweeps would have. A retry planned during the run is picked
up when its own time comes, so a whole dunning cycle plays out in one advance.
"""

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.db.models import Min
from django.utils.translation import gettext as _

from customers.errors import DomainError
from customers.models import TestClock
from customers.services import test_clock_advance
from invoices import collection
from invoices.models import Invoice
from invoices.sweeps import finalize_due_drafts

from . import sweeps
from .notifications import sweeps as notifications

MAX_STOPS = 100_000  # a clock that keeps stopping without moving is a bug: say so


@dataclass(frozen=True)
class ClockWork:
    name: str
    next_due_at: Callable[[TestClock], datetime | None]
    run: Callable[..., dict]  # run(now=, test_clock=) -> counts


def _drafts_next_due_at(clock: TestClock) -> datetime | None:
    return Invoice.objects.filter(
        status=Invoice.Status.DRAFT, auto_advance=True, customer__test_clock=clock
    ).aggregate(first=Min("automatically_finalizes_at"))["first"]


CLOCK_WORK = [
    ClockWork(
        "auto_finalization",
        _drafts_next_due_at,
        lambda now, test_clock: finalize_due_drafts(
            now=now, test_clock=test_clock, at_scheduled_time=True
        ),
    ),
    ClockWork(
        "collection",
        collection.next_due_at,
        lambda now, test_clock: sweeps.collect_payments(now=now, test_clock=test_clock),
    ),
    ClockWork(
        "uncollectible",
        sweeps.uncollectible_next_due_at,
        lambda now, test_clock: sweeps.mark_past_due_uncollectible(now=now, test_clock=test_clock),
    ),
    ClockWork("reminders", notifications.reminders_next_due_at, notifications.reminders_run),
    ClockWork("overdue_alerts", notifications.alerts_next_due_at, notifications.alerts_run),
    # Last: delivers the emails the work above queued at this same moment.
    ClockWork("emails", notifications.emails_next_due_at, notifications.emails_run),
]


def clock_advance(clock: TestClock, *, to: datetime) -> dict:
    """Move the clock to `to`, doing everything that falls due on the way, in order.
    Returns the counts of each kind of work and how many moments it stopped at."""
    if to <= clock.frozen_time:
        raise DomainError(
            _("A test clock only moves forward: choose a time after %(time)s.")
            % {"time": clock.frozen_time.isoformat()}
        )
    totals = {work.name: Counter() for work in CLOCK_WORK}
    stops = 0
    moment = _next_moment(clock)
    while moment is not None and moment <= to:
        moment = max(moment, clock.frozen_time)
        if moment > clock.frozen_time:
            test_clock_advance(clock, to=moment)
        for work in CLOCK_WORK:
            totals[work.name].update(work.run(now=moment, test_clock=clock))
        stops += 1
        following = _next_moment(clock)
        if following is not None and following <= moment or stops >= MAX_STOPS:
            # Every kind of work takes all that is due by `moment`: what stays due is a bug.
            raise DomainError(f"Test clock {clock} stopped advancing at {moment}: work stays due.")
        moment = following
    if to > clock.frozen_time:
        test_clock_advance(clock, to=to)
    return {"stops": stops, **{name: dict(counts) for name, counts in totals.items()}}


def _next_moment(clock: TestClock) -> datetime | None:
    due = [moment for work in CLOCK_WORK if (moment := work.next_due_at(clock)) is not None]
    return min(due) if due else None
