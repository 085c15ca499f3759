"""manage.py automation_dry_run (AUTOMATION | --plan FILE) [--days N]

Replays the last N days of the event log through a saved automation (id or exact name)
or an unsaved one (a JSON file: {"trigger", "days", "conditions", "steps": [{"kind",
"params"}]}) and prints what would have matched and run. Does nothing."""

import json

from django.core.management.base import BaseCommand, CommandError

from customers.clock import system_now

from ...engine.dryrun import dry_run
from ...engine.models import Automation
from ...engine.services import plan_build, plan_of, plan_summary


class Command(BaseCommand):
    help = "Show what an automation would have done over the last days, doing nothing."

    def add_arguments(self, parser):
        source = parser.add_mutually_exclusive_group(required=True)
        source.add_argument("automation", nargs="?", help="a saved automation's id or name")
        source.add_argument("--plan", help="a JSON file describing an unsaved automation")
        parser.add_argument("--days", type=int, default=30)

    def handle(self, *args, automation=None, plan=None, days=30, **options):
        spec = self._plan(automation, plan)
        result = dry_run(spec, now=system_now(), days=days)
        if result.errors:
            raise CommandError(" ".join(result.errors))
        self.stdout.write(plan_summary(spec))
        self.stdout.write(f"{result.looked_at} looked at, {len(result.matches)} would have "
                          f"matched{' (first 500)' if result.truncated else ''}.")
        for match in result.matches:
            about = match.invoice or match.customer or "-"
            steps = "; ".join(f"{at:%Y-%m-%d %H:%M} {text}" for at, text in match.steps)
            self.stdout.write(f"  {match.at:%Y-%m-%d %H:%M}  {about}: {steps} {match.note}")

    def _plan(self, automation, path) -> dict:
        if path:
            try:
                with open(path, encoding="utf-8") as file:
                    data = json.load(file)
                return plan_build(trigger=data.get("trigger"), days=data.get("days"),
                                  conditions=data.get("conditions"), steps=data.get("steps", []))
            except (OSError, ValueError, AttributeError, TypeError, KeyError) as error:
                raise CommandError(f"Cannot read the automation in {path}: {error}") from None
        found = (Automation.objects.filter(pk=int(automation)).first() if automation.isdigit()
                 else Automation.objects.filter(name=automation).first())
        if found is None:
            raise CommandError(f"No automation {automation!r}.")
        return plan_of(found)
