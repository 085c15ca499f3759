"""Building automations in tests the way staff do: steps, published, enabled."""

from automations.engine.models import Automation, AutomationStep
from automations.engine.services import automation_publish, automation_set_enabled

from ..factories import NOW


def make_automation(name, trigger, steps, *, conditions=None, days=None, priority=100,
                    enabled=True, now=NOW):
    automation = Automation.objects.create(
        name=name, trigger=trigger, days=days, conditions=conditions or {},
        priority=priority, created_at=now,
    )
    steps_set(automation, steps, now=now)
    if enabled:
        automation_set_enabled(automation, enabled=True, now=now)
    return automation


def steps_set(automation, steps, *, now=NOW):
    """Replace the steps ([(kind, params)]) and publish the new version."""
    automation.steps.all().delete()
    AutomationStep.objects.bulk_create(
        AutomationStep(automation=automation, position=i, kind=kind, params=params)
        for i, (kind, params) in enumerate(steps, start=1)
    )
    automation_publish(automation, now=now)
    return automation
