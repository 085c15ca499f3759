from celery import shared_task

from customers.clock import system_now

from .clock import sweep


@shared_task(name="automations.engine_sweep", time_limit=300, soft_time_limit=240)
def engine_sweep_task() -> dict:
    return sweep(now=system_now())
