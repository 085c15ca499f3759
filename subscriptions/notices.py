"""When a renewal is announced ahead (invoice.upcoming)."""

from collections.abc import Callable
from datetime import datetime, timedelta

# Days before a renewal that invoice.upcoming is announced, by (interval, count); None:
# not announced. A factory, called once per batch (it may read settings): its default is
# Stripe's, on for yearly subscriptions, 7 days before. automations registers its own.
NoticeDays = Callable[[str, int], int | None]
_notice_days: list[Callable[[], NoticeDays]] = [
    lambda: lambda interval, count: 7 if interval == "year" else None
]


def notice_days_register(factory: Callable[[], NoticeDays]) -> None:
    _notice_days[0] = factory


def notice_days() -> NoticeDays:
    return _notice_days[0]()


def upcoming_notice_at(days: int | None, period_end: datetime, now: datetime):
    if not days:
        return None
    at = period_end - timedelta(days=days)
    return at if at > now else None
