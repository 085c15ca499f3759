"""The collection sweeps that beat wakes (automations.tasks) and test clocks run
(automations.clocks). Each finds its due work through an indexed "next action at" column,
so a tick with nothing due reads nothing, and works in bounded batches."""

from datetime import datetime, timedelta

from django.db.models import Q

from customers.actors import Actor
from customers.clock_due import Due, due_first
from invoices import collection
from invoices.models import Invoice
from invoices.transitions import S, invoices_transition_bulk

from .models import BillingSettings

PAST_DUE = Actor.system("past-due policy")


def collect_payments(
    *, now: datetime, test_clock=None, at_scheduled_time: bool = False,
    batch_size: int | None = None,
) -> dict:
    """Due attempts and retries, then processing payments and unrecorded attempts
    (`batch_size`: invoices claimed at a time, collect_due's default when None)."""
    sized = {} if batch_size is None else {"batch_size": batch_size}
    attempts = collection.collect_due(
        now=now, test_clock=test_clock, at_scheduled_time=at_scheduled_time, **sized
    )
    checks = collection.attempts_check_due(
        now=now, test_clock=test_clock, at_scheduled_time=at_scheduled_time
    )
    attempts.add(checks)
    return attempts.as_dict()


def past_due_for_too_long(now: datetime, days: int, test_clock=None):
    due = Invoice.objects.filter(status=S.OPEN, past_due_at__lte=now - timedelta(days=days))
    if test_clock is None:
        return due.filter(customer__test_clock__isnull=True)
    return due.filter(test_clock=test_clock)


def mark_past_due_uncollectible(*, now: datetime, test_clock=None, batch_size: int = 5000) -> dict:
    """Open invoices past due for longer than the billing settings allow become
    uncollectible, through the bulk door (same events as one by one)."""
    days = BillingSettings.load().uncollectible_after_days
    moved = 0
    if days is None:
        return {"uncollectible": 0}
    after = None
    while True:
        candidates = past_due_for_too_long(now, days, test_clock).order_by("past_due_at", "pk")
        if after is not None:
            candidates = candidates.filter(
                Q(past_due_at__gt=after[0]) | Q(past_due_at=after[0], pk__gt=after[1])
            )
        batch = list(candidates.values_list("past_due_at", "pk")[:batch_size])
        if batch:
            moved += len(invoices_transition_bulk(
                [pk for _at, pk in batch], S.UNCOLLECTIBLE, now=now, actor=PAST_DUE,
                data={"reason": "past_due", "days": days},
            ))
        if len(batch) < batch_size:
            return {"uncollectible": moved}
        after = batch[-1]


def uncollectible_next_due_parts(test_clock) -> list[Due]:
    days = BillingSettings.load().uncollectible_after_days
    if days is None:
        return []
    return [Due(lambda: Invoice.objects.filter(status=S.OPEN, test_clock=test_clock),
                "past_due_at", after=timedelta(days=days),
                key=f"uncollectible:{test_clock.pk}")]


def uncollectible_next_due_at(test_clock) -> datetime | None:
    return due_first(uncollectible_next_due_parts(test_clock))
