"""customers.clock_due: a test clock's next moments, every kind of work in one query."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from automations import clocks
from automations.models import BillingSettings
from customers.clock_due import Due, due_first, dues_first
from customers.models import TestClock
from customers.singletons import singletons_held
from invoices.models import Invoice

from .factories import NOW, make_customer, make_draft

pytestmark = pytest.mark.django_db


def clock_with_drafts(*hours):
    clock = TestClock.objects.create(name="Rehearsal", frozen_time=NOW)
    customer = make_customer(test_clock=clock)
    for hour in hours:
        make_draft(customer, now=NOW + timedelta(hours=hour))
    return clock


def test_the_earliest_moment_of_each_kind_as_the_aggregates_find_it():
    clock = clock_with_drafts(5, 2, 9)
    drafts = Invoice.objects.filter(test_clock=clock)
    Invoice.objects.filter(pk=drafts.order_by("pk")[1].pk).update(automatically_finalizes_at=None)
    first = min(at for at in drafts.values_list("automatically_finalizes_at", flat=True) if at)

    found = dues_first({
        "drafts": [Due(drafts, "automatically_finalizes_at")],
        "later": [Due(drafts, "automatically_finalizes_at", after=timedelta(days=3)),
                  NOW + timedelta(days=1)],
        "nothing": [Due(drafts.filter(status=Invoice.Status.OPEN), "automatically_finalizes_at"),
                    None],
        "known": [NOW],
    })

    assert found == {"drafts": first, "later": NOW + timedelta(days=1), "nothing": None,
                     "known": NOW}
    assert due_first([Due(drafts, "automatically_finalizes_at", after=timedelta(hours=2))]) \
        == first + timedelta(hours=2)
    assert due_first([]) is None


def test_a_keyed_candidate_answers_from_the_rows_of_each_call():
    # Compiled once per key, but the rows are read at every call.
    clock = clock_with_drafts(4)
    drafts = lambda: Invoice.objects.filter(test_clock=clock)  # noqa: E731
    due = Due(drafts, "automatically_finalizes_at", key=f"test-drafts:{clock.pk}")
    before = due_first([due])
    make_draft(clock.customers.get(), now=NOW)

    assert due_first([due]) < before


def test_the_clock_asks_every_kind_of_work_in_one_query():
    clock = clock_with_drafts(3)
    BillingSettings.load()  # created on first read

    # As clock_advance asks: with the settings rows read once for the whole advance.
    with singletons_held(), CaptureQueriesContext(connection) as queries:
        due = clocks._due_by_work(clock)

    # The billing settings (automatic collection on, days until uncollectible), the live
    # automations, then one query for the rows of every kind.
    assert len(queries) == 3
    assert set(due) == {work.name for work in clocks.CLOCK_WORK}
    assert due["auto_finalization"] == Invoice.objects.get(test_clock=clock) \
        .automatically_finalizes_at
    assert due["collection"] is None and due["emails"] is None


def test_moving_the_clock_is_one_statement_and_never_backwards():
    from customers.errors import DomainError
    from customers.services import test_clock_advance

    clock = TestClock.objects.create(name="Rehearsal", frozen_time=NOW)
    with CaptureQueriesContext(connection) as captured:
        test_clock_advance(clock, to=NOW + timedelta(hours=1))
    assert len(captured) == 1
    assert TestClock.objects.get(pk=clock.pk).frozen_time == NOW + timedelta(hours=1)

    stale = TestClock.objects.get(pk=clock.pk)
    stale.frozen_time = NOW  # a copy read before the move
    with pytest.raises(DomainError, match="only moves forward"):
        test_clock_advance(stale, to=NOW + timedelta(minutes=30))
    assert TestClock.objects.get(pk=clock.pk).frozen_time == NOW + timedelta(hours=1)


def test_a_floor_leaves_out_the_moments_before_it():
    # A run's replaced row versions sit in the indexes at their old, earlier moments: with
    # a floor the queries read from there (and the caller knows nothing live is earlier).
    clock = clock_with_drafts(2, 5, 9)
    drafts = Invoice.objects.filter(test_clock=clock)
    at = sorted(drafts.values_list("automatically_finalizes_at", flat=True))
    field = "automatically_finalizes_at"
    key = f"test-floor:{clock.pk}"

    found = dues_first({"drafts": [Due(lambda: drafts, field, key=key, floored=True)],
                        # The floor is the moment's (the field plus `after`).
                        "later": [Due(lambda: drafts, field, after=timedelta(hours=4),
                                      key=key, floored=True)],
                        # A kind whose moments may be written in the past: read whole.
                        "whole": [Due(drafts, field)]},
                       floor=at[1])

    assert found == {"drafts": at[1], "later": at[0] + timedelta(hours=4), "whole": at[0]}
    assert due_first([Due(lambda: drafts, field, key=key, floored=True)]) == at[0]  # no floor
    assert dues_first({"d": [Due(drafts, field, floored=True)]},
                      floor=at[2] + timedelta(hours=1)) == {"d": None}


def test_the_sweeps_due_rows_read_from_the_floor_of_their_clock_only():
    from customers.clock_due import clock_floor
    from invoices.sweeps import due_drafts

    clock = clock_with_drafts(1, 3)
    other = clock_with_drafts(1)
    later = NOW + timedelta(days=10)
    first, second = Invoice.objects.filter(test_clock=clock).order_by(
        "automatically_finalizes_at")

    with clock_floor(clock, second.automatically_finalizes_at):
        assert list(due_drafts(later, clock)) == [second]
        assert due_drafts(later, other).count() == 1
    assert due_drafts(later, clock).count() == 2


def test_a_clock_is_caught_up_only_when_nothing_falls_due_before_its_time():
    from customers.errors import DomainError

    clock = clock_with_drafts(3)
    clocks.caught_up_check(clock)  # due in three hours
    TestClock.objects.filter(pk=clock.pk).update(frozen_time=NOW + timedelta(days=1))
    clock.refresh_from_db()

    with pytest.raises(DomainError, match="not caught up"):
        clocks.caught_up_check(clock)

