"""manage.py advance_clock CLOCK (--to TIME | --days N | --hours N)

Moves a test clock forward and runs, in time order, the collection work due to its
customers on the way (automations.clocks), then says what happened."""

from django.core.management.base import BaseCommand, CommandError

from customers.errors import DomainError
from customers.models import TestClock

from ...admin import advance_summary
from ...clocks import clock_advance
from ..options import clock_step, clock_target_check, moment_parse


class Command(BaseCommand):
    help = "Advance a test clock, running the collection work due on the way."

    def add_arguments(self, parser):
        parser.add_argument("clock", help="the test clock's id or exact name")
        target = parser.add_mutually_exclusive_group(required=True)
        target.add_argument("--to", help="new time, ISO 8601 with an offset, e.g. "
                                         "2026-12-01T09:00:00+00:00")
        target.add_argument("--days", type=float)
        target.add_argument("--hours", type=float)

    def handle(self, *args, clock, to=None, days=None, hours=None, **options):
        found = self._clock(clock)
        target = self._target(found, to, days, hours)
        try:
            result = clock_advance(found, to=target)
        except DomainError as error:
            raise CommandError(error.message) from None
        self.stdout.write(
            f"{found.name}: {found.frozen_time.isoformat()} — {advance_summary(result)} "
            f"({result['stops']} moments with due work)."
        )

    def _clock(self, key: str) -> TestClock:
        clocks = TestClock.objects.none()
        if key.isdigit():
            clocks = TestClock.objects.filter(pk=int(key))
        found = clocks.first() or TestClock.objects.filter(name=key).first()
        if found is None:
            raise CommandError(f"No test clock with id or name {key!r}.")
        return found

    def _target(self, clock, to, days, hours):
        if to is not None:
            return clock_target_check(clock.frozen_time, moment_parse(to, "--to"))
        return clock_target_check(clock.frozen_time,
                                  clock.frozen_time + clock_step(days=days, hours=hours))
