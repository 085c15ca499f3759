"""The notification sweeps, for beat (real time) and for test clocks (each kind of work
stops the clock at its own next moment: see automations.clocks.CLOCK_WORK)."""

from datetime import datetime

from customers.clock_due import Due, due_first

from .alerts import alerts_sweep
from .delivery import outbox_drain
from .digest import digest_queue
from .models import NotificationSchedule, OutboxMessage
from .reminders import reminders_sweep


def notifications_sweep(*, now: datetime) -> dict:
    """Beat, every minute: queue the reminders, alerts and digest due now."""
    return {
        "reminders": reminders_sweep(now=now),
        "alerts": alerts_sweep(now=now),
        "digest": digest_queue(now=now),
    }


def _clock_schedules(clock):
    return lambda: NotificationSchedule.objects.filter(test_clock=clock)


def reminders_next_due_parts(clock) -> list[Due]:
    return [Due(_clock_schedules(clock), "next_reminder_at", key=f"schedules:{clock.pk}")]


def alerts_next_due_parts(clock) -> list[Due]:
    return [Due(_clock_schedules(clock), "overdue_alert_at", key=f"schedules:{clock.pk}")]


def emails_next_due_parts(clock) -> list[Due]:
    def rows():
        return OutboxMessage.objects.filter(
            status__in=[OutboxMessage.Status.PENDING, OutboxMessage.Status.SENDING],
            test_clock=clock,
        )
    return [Due(rows, "next_attempt_at", key=f"outbox:{clock.pk}", floored=True)]


def reminders_next_due_at(clock) -> datetime | None:
    return due_first(reminders_next_due_parts(clock))


def alerts_next_due_at(clock) -> datetime | None:
    return due_first(alerts_next_due_parts(clock))


def emails_next_due_at(clock) -> datetime | None:
    return due_first(emails_next_due_parts(clock))


def reminders_run(*, now: datetime, test_clock) -> dict:
    return reminders_sweep(now=now, test_clock=test_clock)


def alerts_run(*, now: datetime, test_clock) -> dict:
    return alerts_sweep(now=now, test_clock=test_clock)


def emails_run(*, now: datetime, test_clock) -> dict:
    return outbox_drain(now=now, test_clock=test_clock)


