"""Matching: the event subscriber that starts runs, in the transaction that wrote the
events, set-based (one query for the enabled automations of the batch's event types,
one per kind of subject, one for the runs already under way, one INSERT of the runs,
ON CONFLICT DO NOTHING: the same event handled twice starts nothing twice). An
automation runs once at a time per subject: an event for an invoice (else subscription,
else customer) it is already running for starts nothing.

Several automations matching one event all start, in the order of their `priority`
then creation (their runs' ids ascend in that order, which is the order the sweep
takes them in)."""

import logging

from django.db.models import Q

from invoices.bulkwrite import rows_insert
from invoices.models import Event

from .chain import MAX_CHAIN_DEPTH, acting
from .conditions import conditions_match
from .models import Automation, AutomationRun
from .subjects import Subject, subjects_load
from .triggers import TRIGGERS, event_types, triggers_of_type

logger = logging.getLogger(__name__)


def on_events(events: list[Event]) -> None:
    types = event_types()
    relevant = [event for event in events if event.type in types]
    if not relevant:
        return
    current = acting.get()
    depth = current.depth + 1 if current is not None else 0
    if depth > MAX_CHAIN_DEPTH:
        return
    keys = {t.key for type_ in {e.type for e in relevant} for t in triggers_of_type(type_)}
    automations = list(
        Automation.objects.filter(enabled=True, trigger__in=keys, live_version__isnull=False)
        .select_related("live_version").order_by("priority", "pk")
    )
    if current is not None:  # an action never re-triggers the automation that caused it
        automations = [a for a in automations if a.pk != current.automation_id]
    if not automations:
        return
    subjects = subjects_load([Subject(now=event.created_at, event=event) for event in relevant])
    runs = []
    for subject in subjects:
        for automation in automations:
            if subject_matches(automation.live_version.plan, subject):
                runs.append(run_build(automation, subject, f"event:{subject.event.pk}", depth))
    rows_insert(AutomationRun, without_running_twice(runs), ignore_conflicts=True)


def subject_of(run: AutomationRun) -> tuple:
    if run.invoice_id is not None:
        return ("invoice_id", run.invoice_id)
    if run.subscription_id is not None:
        return ("subscription_id", run.subscription_id)
    return ("customer_id", run.customer_id)


def without_running_twice(runs: list[AutomationRun]) -> list[AutomationRun]:
    """An automation runs at most once at a time for one subject (an invoice, else a
    subscription, else a customer): each retry of a failing invoice fails again, and
    must not start the dunning flow already under way a second time."""
    if not runs:
        return runs
    wanted = Q()
    for column in ("invoice_id", "subscription_id", "customer_id"):
        ids = {value for name, value in map(subject_of, runs) if name == column}
        if ids:
            wanted |= Q(**{f"{column}__in": ids})
    busy = {(run.automation_id, subject_of(run)) for run in AutomationRun.objects.filter(
        wanted, status=AutomationRun.Status.WAITING,
        automation_id__in={run.automation_id for run in runs},
    ).only("automation_id", "invoice_id", "subscription_id", "customer_id")}
    kept = []
    for run in runs:
        key = (run.automation_id, subject_of(run))
        if key not in busy:
            busy.add(key)
            kept.append(run)
    return kept


def subject_matches(plan: dict, subject: Subject) -> bool:
    """Whether `subject` starts a run of `plan`. Matching runs inside the transaction of
    the change that wrote the event: an automation that cannot be evaluated (a bug) is
    logged and skipped, never allowed to undo the change."""
    try:
        return _matches(plan, subject)
    except Exception:  # noqa: BLE001
        logger.exception("automation matching failed for %s", plan.get("trigger"))
        return False


def _matches(plan: dict, subject: Subject) -> bool:
    trigger = TRIGGERS.get(plan["trigger"])
    if trigger is None:
        return False
    if subject.event is not None and subject.event.type not in trigger.event_types:
        return False
    if trigger.applies is not None and not trigger.applies(subject):
        return False
    return conditions_match(plan.get("conditions"), subject)


def run_build(automation: Automation, subject: Subject, key: str, depth: int = 0,
              status=AutomationRun.Status.WAITING) -> AutomationRun:
    subscription = subject.subscription
    return AutomationRun(
        automation_id=automation.pk,
        version_id=automation.live_version_id,
        key=key,
        event_id=subject.event.pk if subject.event is not None else None,
        invoice_id=subject.invoice.pk if subject.invoice is not None else None,
        customer_id=subject.customer.pk if subject.customer is not None else None,
        subscription_id=subscription.pk if subscription is not None else None,
        status=status,
        step=0,
        resume_at=subject.now if status == AutomationRun.Status.WAITING else None,
        depth=depth,
        created_at=subject.now,
        updated_at=subject.now,
    )
