"""Advancing a test clock runs, in time order, all the work due to its customers.

The clock does not jump to the end: it stops at each moment something falls due (the
earliest of every kind of work in CLOCK_WORK, all kinds asked in one query:
customers.clock_due), sets its time there, and runs every kind at that moment, as the
beat sweeps would have. A retry planned during the run is picked
up when its own time comes, so a whole dunning cycle plays out in one advance.

Once the first question is answered, nothing of the clock's falls due before the
earliest moment found (or the clock's time, if earlier), and the work of the floored
kinds (drafts, collection, outbox: Due.floored) writes moments at or after the one it
runs at: that is the advance's floor (customers.clock_due), raised as the clock moves,
from which those kinds' next-moment and due queries read their indexes.
"""

from collections import Counter
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime

from django.utils.translation import gettext as _

from customers.clock_due import (
    Candidate,
    Due,
    clock_floor,
    dues_first,
    floor_of,
    floor_raise,
    one_transaction,
)
from customers.errors import DomainError
from customers.models import TestClock
from customers.services import test_clock_advance
from customers.singletons import singletons_held
from invoices import collection
from invoices.models import Invoice
from invoices.sweeps import finalize_due_drafts
from subscriptions import renewals

from . import sweeps
from .engine import clock as engine_clock
from .notifications import sweeps as notifications

MAX_STOPS = 100_000  # a clock that keeps stopping without moving is a bug: say so


@dataclass(frozen=True)
class ClockWork:
    name: str
    # Where its next moment is (customers.clock_due): every kind is asked in one query.
    next_due: Callable[[TestClock], list[Candidate]]
    run: Callable[..., dict]  # run(now=, test_clock=) -> counts


def _drafts_next_due(clock: TestClock) -> list[Due]:
    return [Due(lambda: Invoice.objects.filter(status=Invoice.Status.DRAFT, auto_advance=True,
                                               test_clock=clock),
                "automatically_finalizes_at", key=f"drafts:{clock.pk}", floored=True)]


CLOCK_WORK = [
    # First: a renewal's draft is then finalized and collected in its own time.
    ClockWork("subscriptions", renewals.next_due_parts, renewals.subscriptions_sweep),
    ClockWork(
        "auto_finalization",
        _drafts_next_due,
        lambda now, test_clock: finalize_due_drafts(
            now=now, test_clock=test_clock, at_scheduled_time=True
        ),
    ),
    ClockWork(
        "collection",
        collection.next_due_parts,
        lambda now, test_clock: sweeps.collect_payments(now=now, test_clock=test_clock),
    ),
    ClockWork(
        "uncollectible",
        sweeps.uncollectible_next_due_parts,
        lambda now, test_clock: sweeps.mark_past_due_uncollectible(now=now, test_clock=test_clock),
    ),
    ClockWork("reminders", notifications.reminders_next_due_parts, notifications.reminders_run),
    ClockWork("overdue_alerts", notifications.alerts_next_due_parts, notifications.alerts_run),
    ClockWork("automations", engine_clock.next_due_parts, engine_clock.run),
    # Last: delivers the emails the work above queued at this same moment.
    ClockWork("emails", notifications.emails_next_due_parts, notifications.emails_run),
]


def clock_advance(clock: TestClock, *, to: datetime, caught_up: bool = False,
                  in_one_transaction: bool = False) -> dict:
    """Move the clock to `to`, doing everything that falls due on the way, in order.
    Returns the counts of each kind of work and how many moments it stopped at.

    `caught_up`: the caller knows that nothing of the clock's falls due before its
    current time (it advanced the clock there, and what it wrote since falls due at or
    after that time: automations.simulation), so even the first question reads from
    there. The settings rows are read once for the whole advance (customers.singletons).

    `in_one_transaction`: the caller holds one transaction around the advance, and
    nothing else writes the clock's rows until it ends (a simulation): the sweeps take
    their shorter path (customers.clock_due.one_transaction). Otherwise each takes the
    transactions it takes in production."""
    with singletons_held(), (one_transaction() if in_one_transaction else nullcontext()):
        return _advance(clock, to, caught_up)


def _advance(clock: TestClock, to: datetime, caught_up: bool = False) -> dict:
    if to <= clock.frozen_time:
        raise DomainError(
            _("A test clock only moves forward: choose a time after %(time)s.")
            % {"time": clock.frozen_time.isoformat()}
        )
    totals = {work.name: Counter() for work in CLOCK_WORK}
    stops = 0
    floor = clock.frozen_time if caught_up else None
    due = _due_by_work(clock, floor=floor)
    moment = _earliest(due)
    floor = min(filter(None, [floor, moment, clock.frozen_time]))
    with clock_floor(clock, floor):
        while moment is not None and moment <= to:
            moment = max(moment, clock.frozen_time)
            if moment > clock.frozen_time:
                test_clock_advance(clock, to=moment)
            _stop(clock, moment, due, totals)
            stops += 1
            following = _earliest(due)
            if following is not None and following <= moment or stops >= MAX_STOPS:
                # Every kind of work takes all that is due by `moment`: what stays due is
                # a bug.
                raise DomainError(
                    f"Test clock {clock} stopped advancing at {moment}: work stays due.")
            # Nothing is due before `following` now, and the next stop writes from there.
            floor_raise(clock, min(filter(None, [following, moment])))
            moment = following
    if to > clock.frozen_time:
        test_clock_advance(clock, to=to)
    return {"stops": stops, **{name: dict(counts) for name, counts in totals.items()}}


def caught_up_check(clock: TestClock) -> None:
    """Raise unless nothing of the clock's falls due before its current time (what
    `caught_up` promises), asked without a floor."""
    first = _earliest(_due_by_work(clock))
    if first is not None and first < clock.frozen_time:
        raise DomainError(
            f"Test clock {clock}: work falls due at {first}, before the clock's time "
            f"{clock.frozen_time}: the clock is not caught up."
        )


def _stop(clock: TestClock, moment: datetime, due: dict, totals: dict) -> None:
    """Run, in CLOCK_WORK order, each kind of work due by `moment` (a kind with nothing
    due is not run: a simulation stops thousands of times). What one kind does can make
    a later kind due at this same moment (a failed payment queues an email), so once
    something ran the later kinds are asked again; afterwards `due` is brought up to
    date for the next stop."""
    last = None  # the last kind that ran
    for n, work in enumerate(CLOCK_WORK):
        at = due[work.name]
        if at is None or at > moment:
            continue
        totals[work.name].update(work.run(now=moment, test_clock=clock))
        last = n
        # The kinds after it, asked again (in one query) now that this one ran.
        due.update(_due_by_work(clock, CLOCK_WORK[n + 1:], floor=floor_of(clock)))
    if last is not None:
        # The kinds up to the last that ran: those after it were asked once it had run.
        due.update(_due_by_work(clock, CLOCK_WORK[:last + 1], floor=floor_of(clock)))


def _due_by_work(clock: TestClock, works=None, *, floor: datetime | None = None
                 ) -> dict[str, datetime | None]:
    works = CLOCK_WORK if works is None else works
    return dues_first({work.name: work.next_due(clock) for work in works}, floor=floor)


def _earliest(due: dict) -> datetime | None:
    moments = [moment for moment in due.values() if moment is not None]
    return min(moments) if moments else None
