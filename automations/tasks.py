"""Celery tasks that beat wakes: thin, they call the sweeps with the time."""

from celery import shared_task

from customers.clock import system_now

from . import sweeps


@shared_task(name="automations.collect_payments", time_limit=300, soft_time_limit=240)
def collect_payments_task() -> dict:
    return sweeps.collect_payments(now=system_now())


@shared_task(name="automations.mark_past_due_uncollectible", time_limit=300, soft_time_limit=240)
def mark_past_due_uncollectible_task() -> dict:
    return sweeps.mark_past_due_uncollectible(now=system_now())
