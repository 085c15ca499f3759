"""Matching: the event subscriber that starts runs, in the transaction that wrote the
events, set-based (one query for the enabled automations of the batch's event types,
one per kind of subject, one for the runs already under way, one INSERT of the runs,
ON CONFLICT DO NOTHING: the same event handled twice starts nothing twice). An
automation runs once at a time per subject: an event for an invoice (else subscription,
else customer) it is already running for starts nothing.

Several automations matching one event all start, in the order of their `priority`
then creation (their runs' ids ascend in that order, which is the order the sweep
takes them in).

Per event, matching only calls compiled functions: each published version's trigger and
conditions are compiled once per process (a version never changes), and the runs are
built only for the pairs that start."""

import json
import logging
from collections.abc import Callable

from django.db.models import Q
from django.db.models.base import ModelState

from customers.singletons import held_read
from invoices.bulkwrite import rows_insert
from invoices.models import Event

from .chain import MAX_CHAIN_DEPTH, acting
from .conditions import conditions_compile
from .models import Automation, AutomationRun, AutomationVersion
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
    # Read once per set of triggers in a clock's advance (customers.singletons.held_read).
    automations = held_read(
        ("engine.on_events", frozenset(keys)),
        lambda: list(
            Automation.objects.filter(enabled=True, trigger__in=keys, live_version__isnull=False)
            .select_related("live_version").order_by("priority", "pk")
        ),
        watch={Automation, AutomationVersion},
    )
    if current is not None:  # an action never re-triggers the automation that caused it
        automations = [a for a in automations if a.pk != current.automation_id]
    if not automations:
        return
    plans = [(a, compiled_matcher(a.live_version.plan)) for a in automations]
    subjects = subjects_load([Subject(now=event.created_at, event=event) for event in relevant])
    matched = [(automation, subject) for subject in subjects
               for automation, matches in plans if matches(subject)]
    rows_insert(AutomationRun, [
        run_build(automation, subject, f"event:{subject.event.pk}", depth)
        for automation, subject in without_running_twice(matched)
    ], ignore_conflicts=True)


# Each plan is compiled once per process, found again by its text: a published
# version never changes, and a version id reused after a rollback (SQLite) carries its
# own text. A bounded cache: a plan dropped from it is compiled again when next needed.
_compiled: dict[str, Callable] = {}
COMPILED_MAX = 2000


def compiled_matcher(plan: dict) -> Callable[[Subject], bool]:
    key = json.dumps(plan, sort_keys=True)
    matcher = _compiled.get(key)
    if matcher is None:
        if len(_compiled) >= COMPILED_MAX:
            _compiled.clear()
        matcher = _compiled[key] = plan_matcher(plan)
    return matcher


SUBJECT_IDS = ("invoice_id", "subscription_id", "customer_id")


def _subject_ids(subject: Subject) -> tuple:
    if subject.invoice is not None:
        return ("invoice_id", subject.invoice.pk)
    if subject.subscription is not None:
        return ("subscription_id", subject.subscription.pk)
    return ("customer_id", subject.customer.pk if subject.customer is not None else None)


def without_running_twice(matched: list[tuple]) -> list[tuple]:
    """The (automation, subject) pairs to start: an automation runs at most once at a
    time for one subject (an invoice, else a subscription, else a customer): each retry
    of a failing invoice fails again, and must not start the dunning flow already under
    way a second time. One query for the whole batch."""
    if not matched:
        return matched
    keyed = [(automation, subject, _subject_ids(subject)) for automation, subject in matched]
    wanted = Q()
    for column in SUBJECT_IDS:
        ids = {value for _a, _s, (name, value) in keyed if name == column}
        if ids:
            wanted |= Q(**{f"{column}__in": ids})
    busy = set()
    for automation_id, *ids in AutomationRun.objects.filter(
        wanted, status=AutomationRun.Status.WAITING,
        automation_id__in={automation.pk for automation, _s, _k in keyed},
    ).values_list("automation_id", *SUBJECT_IDS):
        busy.add((automation_id, _first_id(ids)))
    kept = []
    for automation, subject, key in keyed:
        if (automation.pk, key) not in busy:
            busy.add((automation.pk, key))
            kept.append((automation, subject))
    return kept


def _first_id(ids) -> tuple:
    for name, value in zip(SUBJECT_IDS, ids, strict=True):
        if value is not None:
            return (name, value)
    return ("customer_id", None)


def plan_matcher(plan: dict) -> Callable[[Subject], bool]:
    """matches(subject) for `plan`. Matching runs inside the transaction of the change
    that wrote the event: an automation that cannot be evaluated (a bug) is logged and
    skipped, never allowed to undo the change."""
    trigger = TRIGGERS.get(plan["trigger"])
    if trigger is None:
        return _never
    event_types_, applies = frozenset(trigger.event_types), trigger.applies
    try:
        conditions = conditions_compile(plan.get("conditions"))
    except Exception:  # noqa: BLE001
        logger.exception("automation conditions cannot compile for %s", plan.get("trigger"))
        return _never

    def matches(subject: Subject) -> bool:
        try:
            if subject.event is not None and subject.event.type not in event_types_:
                return False
            if applies is not None and not applies(subject):
                return False
            return conditions(subject)
        except Exception:  # noqa: BLE001
            logger.exception("automation matching failed for %s", plan.get("trigger"))
            return False
    return matches


def _never(subject: Subject) -> bool:
    return False


def run_build(automation: Automation, subject: Subject, key: str, depth: int = 0,
              status=AutomationRun.Status.WAITING) -> AutomationRun:
    """A new run, unsaved. Built as Model.__init__ would build it (every field set, the
    ones not given to their defaults), without its walk over the fields: matching builds
    one per run it starts."""
    subscription = subject.subscription
    run = AutomationRun.__new__(AutomationRun)
    run.__dict__.update(_RUN_DEFAULTS)
    run.__dict__.update(
        automation_id=automation.pk,
        version_id=automation.live_version_id,
        key=key,
        event_id=subject.event.pk if subject.event is not None else None,
        invoice_id=subject.invoice.pk if subject.invoice is not None else None,
        customer_id=subject.customer.pk if subject.customer is not None else None,
        subscription_id=subscription.pk if subscription is not None else None,
        status=status,
        resume_at=subject.now if status == AutomationRun.Status.WAITING else None,
        depth=depth,
        created_at=subject.now,
        updated_at=subject.now,
    )
    run._state = ModelState()
    return run


_RUN_DEFAULTS = {field.attname: field.get_default()
                 for field in AutomationRun._meta.concrete_fields}
