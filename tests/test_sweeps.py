"""The due-work sweeps: auto-finalization on the real clock and on test clocks, the bulk
transition door, and the beat schedule sync."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django_celery_beat.models import IntervalSchedule, PeriodicTask

from automations.clocks import clock_advance
from automations.schedule import BEAT_SCHEDULE
from customers.actors import Actor
from customers.errors import DomainError
from customers.models import TestClock
from invoices.models import Event, Invoice
from invoices.services import invoice_void
from invoices.sweeps import finalize_due_drafts
from invoices.transitions import invoices_transition_bulk

from .factories import NOW, make_customer, make_draft, make_open

S = Invoice.Status
HOUR = timedelta(hours=1)


def finalized_events(invoice):
    return Event.objects.filter(invoice=invoice, type="invoice.finalized")


def reload(*invoices):
    for invoice in invoices:
        invoice.refresh_from_db()


# --- auto-finalization on the real clock ------------------------------------------------


def test_due_drafts_are_finalized_and_the_others_left_alone():
    # given drafts due at NOW+1h, one not yet due, one without automatic collection,
    # and one of a customer living on a test clock
    due = make_draft(now=NOW)
    not_yet = make_draft(now=NOW + timedelta(minutes=30))
    manual = make_draft(now=NOW, auto_advance=False)
    clock = TestClock.objects.create(name="rehearsal", frozen_time=NOW)
    on_clock = make_draft(make_customer(test_clock=clock), now=NOW)

    # when the beat sweep runs an hour later
    counts = finalize_due_drafts(now=NOW + HOUR)

    # then only the due draft was finalized, by the system, at the sweep's time
    reload(due, not_yet, manual, on_clock)
    assert counts == {"finalized": 1, "failed": 0}
    assert (due.status, due.finalized_at) == (S.OPEN, NOW + HOUR)
    assert due.number and due.automatically_finalizes_at is None
    assert finalized_events(due).get().actor_label == "auto-finalization"
    assert [not_yet.status, manual.status, on_clock.status] == [S.DRAFT] * 3


def test_the_draft_default_delay_is_one_hour():
    draft = make_draft(now=NOW)
    assert draft.automatically_finalizes_at == NOW + HOUR
    assert finalize_due_drafts(now=NOW + HOUR - timedelta(seconds=1))["finalized"] == 0


def test_a_draft_that_cannot_be_finalized_is_reported_once_and_not_retried():
    # given a due draft whose due date has passed by the time it would be finalized
    broken = make_draft(now=NOW, due_date=NOW.date())
    empty = make_draft(now=NOW, lines=())

    # when the sweep runs, and runs again
    first = finalize_due_drafts(now=NOW + timedelta(days=2))
    second = finalize_due_drafts(now=NOW + timedelta(days=3))

    # then each failure is on the timeline once, with the reason, and the drafts stay drafts
    assert first == {"finalized": 0, "failed": 2} and second == {"finalized": 0, "failed": 0}
    reload(broken, empty)
    assert broken.status == S.DRAFT and broken.automatically_finalizes_at is None
    failures = Event.objects.filter(type="invoice.finalization_failed")
    assert failures.count() == 2
    assert "past" in failures.get(invoice=broken).data["error"]
    assert "at least one line" in failures.get(invoice=empty).data["error"]


def test_many_due_drafts_are_swept_in_batches_in_time_order():
    customer = make_customer(invoice_prefix="BATCH")
    drafts = [make_draft(customer, now=NOW + n * timedelta(minutes=1)) for n in range(7)]

    counts = finalize_due_drafts(now=NOW + 2 * HOUR, batch_size=3)

    assert counts["finalized"] == 7
    reload(*drafts)
    assert [draft.number for draft in drafts] == [f"BATCH-{n:04d}" for n in range(1, 8)]


# --- test clocks ------------------------------------------------------------------------


def test_advancing_a_test_clock_finalizes_its_drafts_at_their_scheduled_time():
    # given a clock at NOW, two drafts of its customer due at NOW+1h and NOW+6h, and a
    # due draft of a customer on the real clock
    clock = TestClock.objects.create(name="rehearsal", frozen_time=NOW)
    customer = make_customer(test_clock=clock, invoice_prefix="CLOCK")
    early = make_draft(customer, now=NOW)
    late = make_draft(customer, now=NOW + 5 * HOUR)
    real = make_draft(now=NOW - 2 * HOUR)

    # when staff advance the clock by a day
    result = clock_advance(clock, to=NOW + timedelta(days=1))

    # then both drafts were finalized at the time each was due, in that order
    assert result["auto_finalization"] == {"finalized": 2, "failed": 0}
    reload(early, late, real, clock)
    assert (early.finalized_at, early.number) == (NOW + HOUR, "CLOCK-0001")
    assert (late.finalized_at, late.number) == (NOW + 6 * HOUR, "CLOCK-0002")
    assert early.due_date == (NOW + HOUR).date() + timedelta(days=30)
    assert clock.frozen_time == NOW + timedelta(days=1)
    assert real.status == S.DRAFT  # the real sweep's business, not the clock's


def test_a_test_clock_only_moves_forward():
    clock = TestClock.objects.create(name="rehearsal", frozen_time=NOW)
    draft = make_draft(make_customer(test_clock=clock), now=NOW)

    with pytest.raises(DomainError, match="forward"):
        clock_advance(clock, to=NOW - HOUR)

    clock.refresh_from_db()
    draft.refresh_from_db()
    assert clock.frozen_time == NOW and draft.status == S.DRAFT


def test_advancing_not_far_enough_finalizes_nothing():
    clock = TestClock.objects.create(name="rehearsal", frozen_time=NOW)
    draft = make_draft(make_customer(test_clock=clock), now=NOW)

    clock_advance(clock, to=NOW + timedelta(minutes=30))

    draft.refresh_from_db()
    assert draft.status == S.DRAFT


# --- the bulk door ----------------------------------------------------------------------


def test_bulk_transition_moves_allowed_rows_and_writes_one_event_each():
    # given open, paid, draft and void invoices
    opens = [make_open(), make_open()]
    paid = make_open(lines=((1, 0),))  # nothing due: paid at finalization
    draft = make_draft()
    voided = make_open()
    invoice_void(voided, now=NOW, actor=Actor.system())
    ids = [invoice.pk for invoice in [*opens, paid, draft, voided]]
    before = Event.objects.count()

    # when a sweep marks them all uncollectible through the bulk door
    moved = invoices_transition_bulk(
        ids, S.UNCOLLECTIBLE, now=NOW, actor=Actor.system("collection"), data={"after_days": 30}
    )

    # then only the open ones moved, each with its event, the others untouched
    assert sorted(moved) == sorted(invoice.pk for invoice in opens)
    reload(*opens, paid, draft, voided)
    assert [invoice.status for invoice in opens] == [S.UNCOLLECTIBLE] * 2
    assert all(i.marked_uncollectible_at == NOW and not i.auto_advance for i in opens)
    assert (paid.status, draft.status, voided.status) == (S.PAID, S.DRAFT, S.VOID)
    events = Event.objects.filter(type="invoice.marked_uncollectible")
    assert Event.objects.count() - before == 2 == events.count()
    for invoice in opens:
        event = events.get(invoice=invoice)
        assert event.customer_id == invoice.customer_id
        assert event.actor_label == "collection"
        assert event.data == {
            "previous_status": "open", "status": "uncollectible", "after_days": 30,
        }


def test_bulk_transition_with_nothing_to_move_writes_nothing():
    draft = make_draft()
    assert invoices_transition_bulk([draft.pk], S.PAID, now=NOW, actor=Actor.system()) == []
    assert not Event.objects.filter(type="invoice.paid").exists()


# --- beat schedule ----------------------------------------------------------------------


def sync():
    out = StringIO()
    call_command("sync_beat_schedule", stdout=out)
    return out.getvalue()


def test_sync_beat_schedule_is_idempotent_and_removes_what_is_no_longer_declared():
    stale_interval = IntervalSchedule.objects.create(every=5, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(name="billing: retired", task="x.y", interval=stale_interval)
    PeriodicTask.objects.create(name="someone else's task", task="x.z", interval=stale_interval)

    first = sync()
    tasks = set(PeriodicTask.objects.values_list("name", "task", "interval__every"))
    second = sync()

    assert f"{len(BEAT_SCHEDULE)} created" in first and "1 removed" in first
    assert "0 created" in second and "0 removed" in second
    assert set(PeriodicTask.objects.values_list("name", "task", "interval__every")) == tasks
    assert ("billing: finalize due drafts", "invoices.finalize_due_drafts", 60) in tasks
    assert ("someone else's task", "x.z", 5) in tasks
    assert not PeriodicTask.objects.filter(name="billing: retired").exists()
