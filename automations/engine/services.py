"""Automations as staff edit them: checked whole (trigger, conditions, steps together)
before anything is saved, published as a frozen version, summarised in one sentence."""

from datetime import datetime

from django.db import transaction
from django.utils.translation import gettext as _

from customers.errors import DomainError
from customers.singletons import held_forget

from .conditions import conditions_describe, conditions_validate
from .models import Automation, AutomationVersion
from .steps import STEPS, step_needs
from .triggers import TRIGGERS

MAX_STEPS = 50


def plan_build(*, trigger: str, days, conditions, steps: list[dict]) -> dict:
    return {"trigger": trigger, "days": days, "conditions": conditions or {},
            "steps": [{"kind": s["kind"], "params": s.get("params") or {}} for s in steps]}


def plan_of(automation: Automation) -> dict:
    return plan_build(
        trigger=automation.trigger, days=automation.days, conditions=automation.conditions,
        steps=[{"kind": s.kind, "params": s.params} for s in automation.steps.all()],
    )


def plan_validate(plan: dict) -> list[str]:
    """Every reason this plan cannot be saved, in words staff can act on."""
    trigger = TRIGGERS.get(plan.get("trigger"))
    if trigger is None:
        return [_("Unknown trigger %(t)s.") % {"t": plan.get("trigger")}]
    errors = []
    days = plan.get("days")
    if trigger.days and not (isinstance(days, int) and 1 <= days <= 365):
        errors.append(_("This trigger needs a number of days, 1 to 365."))
    if not trigger.days and days not in (None, ""):
        errors.append(_("This trigger takes no number of days."))
    errors.extend(conditions_validate(plan.get("conditions"), trigger.carries))
    steps = plan.get("steps") or []
    if not steps:
        errors.append(_("An automation needs at least one step."))
    if len(steps) > MAX_STEPS:
        errors.append(_("At most %(n)s steps.") % {"n": MAX_STEPS})
    for number, step in enumerate(steps, start=1):
        errors.extend(_("Step %(n)s: %(e)s") % {"n": number, "e": error}
                      for error in _step_errors(step, trigger))
    return errors


def _step_errors(step: dict, trigger) -> list[str]:
    kind = STEPS.get(step.get("kind"))
    if kind is None:
        return [_("unknown step %(k)s.") % {"k": step.get("kind")}]
    params = step.get("params")
    if not isinstance(params, dict):
        return [_("its parameters are an object, e.g. {\"days\": 7}.")]
    errors = kind.validate(params)
    if errors:
        return errors
    needs = step_needs(step["kind"], params)
    if needs is not None and needs not in trigger.carries:
        return [_("%(step)s cannot apply: the trigger (%(t)s) carries no %(what)s.")
                % {"step": kind.label, "t": trigger.label, "what": needs}]
    return []


def plan_summary(plan: dict) -> str:
    """"When a payment fails and invoice total ≥ $500.00: wait 7 days, void the invoice"."""
    trigger = TRIGGERS.get(plan.get("trigger"))
    if trigger is None:
        return ""
    when = str(trigger.label)
    if trigger.days and plan.get("days"):
        when = when.replace("N", str(plan["days"]))
    conditions = conditions_describe(plan.get("conditions"))
    if conditions:
        when = _("%(when)s and %(conditions)s") % {"when": when, "conditions": conditions}
    steps = [STEPS[s["kind"]].describe(s["params"]) for s in plan.get("steps", [])
             if s.get("kind") in STEPS]
    return _("When %(when)s: %(steps)s.") % {"when": when, "steps": ", ".join(steps) or "-"}


def automation_publish(automation: Automation, *, now: datetime) -> AutomationVersion:
    """Freeze the automation's current plan as its live version (a new one if it
    changed). Runs already started keep theirs."""
    plan = plan_of(automation)
    errors = plan_validate(plan)
    if errors:
        raise DomainError(" ".join(errors))
    with transaction.atomic():
        live = automation.live_version
        if live is not None and live.plan == plan:
            return live
        number = (automation.versions.order_by("-number").values_list("number", flat=True)
                  .first() or 0) + 1
        version = AutomationVersion.objects.create(automation=automation, number=number,
                                                   plan=plan, created_at=now)
        automation.live_version = version
        Automation.objects.filter(pk=automation.pk).update(live_version=version)
        held_forget()  # no signal from update(): a clock's held reads see it
    return version


def automation_set_enabled(automation: Automation, *, enabled: bool, now: datetime) -> None:
    fields = {"enabled": enabled}
    if enabled and not automation.enabled:
        fields["enabled_at"] = now
    Automation.objects.filter(pk=automation.pk).update(**fields)
    held_forget()  # no signal from update(): a clock's held reads see it
    for name, value in fields.items():
        setattr(automation, name, value)
