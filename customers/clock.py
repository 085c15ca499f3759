"""The one clock. Domain functions take `now`; interfaces ask this module for it.

A customer attached to a test clock lives at the clock's frozen time; everyone else
lives at the system time. Nothing in the domain calls timezone.now() directly.
"""

from datetime import datetime

from django.utils import timezone


def system_now() -> datetime:
    return timezone.now()


def now_for(customer) -> datetime:
    """The time it is for this customer: its test clock's, or the system's."""
    clock = customer.test_clock if customer.test_clock_id else None
    return clock.frozen_time if clock is not None else system_now()
