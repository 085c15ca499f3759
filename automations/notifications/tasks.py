"""Celery tasks: wake-ups only. The outbox and the schedules are in the database."""

from celery import shared_task

from customers.clock import system_now

from .delivery import outbox_drain
from .sweeps import notifications_sweep

DELIVERY_LIMIT = 5000  # per run; the next wake-up or the beat sweep takes the rest


@shared_task(name="notifications.outbox_deliver", time_limit=600, soft_time_limit=540)
def outbox_deliver_task() -> dict:
    return outbox_drain(now=system_now(), limit=DELIVERY_LIMIT)


@shared_task(name="notifications.sweep", time_limit=300, soft_time_limit=240)
def notifications_sweep_task() -> dict:
    return notifications_sweep(now=system_now())


@shared_task(name="notifications.schedules_rebuild", time_limit=3600, soft_time_limit=3500)
def schedules_rebuild_task() -> int:
    from .reminders import schedules_rebuild

    return schedules_rebuild(now=system_now())
