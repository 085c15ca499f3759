"""Advancing a test clock runs, in time order, the work due to its customers."""

from datetime import datetime

from customers.models import TestClock
from customers.services import test_clock_advance
from invoices.sweeps import finalize_due_drafts

from .notifications.sweeps import notifications_advance


def clock_advance(clock: TestClock, *, to: datetime) -> dict:
    """Move the clock to `to`, then do everything that became due on the way."""
    test_clock_advance(clock, to=to)
    return {
        "auto_finalization": finalize_due_drafts(now=to, test_clock=clock, at_scheduled_time=True),
        "notifications": notifications_advance(clock, to=to),
    }
