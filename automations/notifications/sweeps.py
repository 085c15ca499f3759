"""The notification sweeps, for beat (real time) and for test clocks (each kind of work
stops the clock at its own next moment: see automations.clocks.CLOCK_WORK)."""

from datetime import datetime

from django.db.models import Min

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
    return NotificationSchedule.objects.filter(test_clock=clock)


def reminders_next_due_at(clock) -> datetime | None:
    rows = _clock_schedules(clock).filter(next_reminder_at__isnull=False)
    return rows.aggregate(first=Min("next_reminder_at"))["first"]


def alerts_next_due_at(clock) -> datetime | None:
    rows = _clock_schedules(clock).filter(overdue_alert_at__isnull=False)
    return rows.aggregate(first=Min("overdue_alert_at"))["first"]


def emails_next_due_at(clock) -> datetime | None:
    rows = OutboxMessage.objects.filter(
        status__in=[OutboxMessage.Status.PENDING, OutboxMessage.Status.SENDING],
        test_clock=clock,
    )
    return rows.aggregate(first=Min("next_attempt_at"))["first"]


def reminders_run(*, now: datetime, test_clock) -> dict:
    return reminders_sweep(now=now, test_clock=test_clock)


def alerts_run(*, now: datetime, test_clock) -> dict:
    return alerts_sweep(now=now, test_clock=test_clock)


def emails_run(*, now: datetime, test_clock) -> dict:
    return outbox_drain(now=now, test_clock=test_clock)


