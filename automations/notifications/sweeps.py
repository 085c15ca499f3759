"""The notification sweeps, for beat (real time) and for test clocks (in time order)."""

from datetime import datetime

from django.db.models import Min

from .alerts import alerts_sweep, due_alerts
from .delivery import outbox_drain
from .digest import digest_queue
from .reminders import due_schedules, reminders_sweep


def notifications_sweep(*, now: datetime) -> dict:
    """Beat, every minute: queue the reminders, alerts and digest due now."""
    return {
        "reminders": reminders_sweep(now=now),
        "alerts": alerts_sweep(now=now),
        "digest": digest_queue(now=now),
    }


def next_moment(test_clock, until: datetime) -> datetime | None:
    """The earliest reminder or alert of the clock's customers due by `until`."""
    moments = [
        due_schedules(until, test_clock).aggregate(m=Min("next_reminder_at"))["m"],
        due_alerts(until, test_clock).aggregate(m=Min("overdue_alert_at"))["m"],
    ]
    moments = [moment for moment in moments if moment is not None]
    return min(moments) if moments else None


def notifications_advance(test_clock, *, to: datetime) -> dict:
    """Everything notifications would have done to the clock's customers up to `to`,
    each reminder and alert at its own moment, then deliver their emails."""
    counts = {"reminders": 0, "alerts": 0}
    moment = next_moment(test_clock, to)
    while moment is not None:
        reminders = reminders_sweep(now=moment, test_clock=test_clock)
        alerts = alerts_sweep(now=moment, test_clock=test_clock)
        counts["reminders"] += reminders["queued"]
        counts["alerts"] += alerts["queued"]
        following = next_moment(test_clock, to)
        if following is not None and following <= moment:
            break  # rows held by another worker: the real sweep will take them
        moment = following
    return {**counts, "emails": outbox_drain(now=to, test_clock=test_clock)}
