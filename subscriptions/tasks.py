"""Celery tasks that beat wakes: thin, they call the sweeps with the time."""

from celery import shared_task

from customers.clock import system_now

from . import renewals


@shared_task(name="subscriptions.sweep", time_limit=600, soft_time_limit=540)
def subscriptions_sweep_task() -> dict:
    return renewals.subscriptions_sweep(now=system_now())
