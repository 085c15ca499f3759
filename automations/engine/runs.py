"""The run sweep: claims due runs (SKIP LOCKED), applies their steps until a wait or the
end, and writes what they did, all in one transaction per batch.

Exactly once: a step's effects, the run's next step and its timeline event commit
together, under the run's row lock. Two workers never hold the same run; a worker killed
mid-batch rolls back, and the run is taken again from the step it was at. Each action
runs in a savepoint: one that cannot apply stops its own run with the reason, the other
runs of the batch keep flowing."""

import logging
from collections import Counter
from datetime import datetime

from django.db import transaction
from django.utils.translation import gettext as _

from customers.clock_due import Due, due_first
from customers.errors import DomainError
from customers.models import Customer
from invoices.bulkwrite import rows_update
from invoices.events import events_save
from invoices.models import Invoice

from ..notifications.outbox import outbox_write
from .chain import acting_as, automation_actor
from .models import Automation, AutomationRun, AutomationVersion
from .steps import STEPS, StepContext, timeline_event, wait_describe
from .subjects import Subject
from .triggers import TRIGGERS

R = AutomationRun.Status
logger = logging.getLogger(__name__)
BATCH_SIZE = 1000
RUN_FIELDS = ["status", "step", "resume_at", "waiting_for", "reason", "updated_at"]
# Steps that write nothing but their timeline event need no savepoint.
PURE = {"add_note"}
SETTLED = {Invoice.Status.PAID: _("the invoice was paid"),
           Invoice.Status.VOID: _("the invoice was voided")}
# exit_checks: (trigger, subject) -> reason or None; the subscription module adds its own.
EXIT_CHECKS: list = []
SUBJECT_REFRESHERS: list = []  # fill run subjects' subscriptions (subscription module)


def runs_due(now: datetime, test_clock=None):
    due = AutomationRun.objects.filter(status=R.WAITING, resume_at__lte=now)
    if test_clock is None:
        return due.filter(customer__test_clock__isnull=True)
    return due.filter(customer__test_clock=test_clock)


def runs_sweep(*, now: datetime, test_clock=None, batch_size: int = BATCH_SIZE) -> dict:
    """Advance every run due at `now`. Counts: steps applied and runs by outcome."""
    counts = Counter()
    # The usual tick: one probe of the partial index of waiting runs.
    if not AutomationRun.objects.filter(status=R.WAITING, resume_at__lte=now).exists():
        return dict(counts)
    while True:
        with transaction.atomic():
            runs = list(
                runs_due(now, test_clock)
                .select_for_update(skip_locked=True, of=("self",))
                .order_by("resume_at", "pk")[:batch_size]
            )
            if runs:
                runs_advance(runs, now=now, counts=counts)
        # Until nothing is left: the runs this batch started (chains) are due now too.
        if not runs:
            return dict(counts)


def runs_advance(runs: list[AutomationRun], *, now: datetime, counts: Counter) -> None:
    # A batch's runs share a few automations and versions: each loaded once (joined,
    # they were built, and their plans parsed, once per run).
    automations = Automation.objects.in_bulk({run.automation_id for run in runs})
    versions = AutomationVersion.objects.in_bulk({run.version_id for run in runs})
    for run in runs:
        run.automation, run.version = automations[run.automation_id], versions[run.version_id]
    subjects = _subjects(runs, now)
    events, messages = [], []
    for run in runs:
        context = StepContext(run=run, subject=subjects[run.pk], now=now,
                              actor=automation_actor(run.automation.name),
                              automation_name=run.automation.name)
        run_advance(run, context, counts)
        events.extend(context.events)
        messages.extend(context.messages)
        run.updated_at = now
    rows_update(AutomationRun, runs, RUN_FIELDS)
    events_save(events)
    outbox_write(messages)


def _subjects(runs: list[AutomationRun], now: datetime) -> dict[int, Subject]:
    invoices = Invoice.objects.in_bulk({r.invoice_id for r in runs} - {None})
    customers = Customer.objects.in_bulk({r.customer_id for r in runs} - {None})
    subjects = {run.pk: Subject(now=now, invoice=invoices.get(run.invoice_id),
                                customer=customers.get(run.customer_id)) for run in runs}
    for refresher in SUBJECT_REFRESHERS:
        refresher(runs, subjects)
    return subjects


def run_advance(run: AutomationRun, context: StepContext, counts: Counter) -> None:
    plan = run.version.plan
    steps = plan["steps"]
    trigger = TRIGGERS[plan["trigger"]]
    resumed = run.step > 0
    applied = None  # the timeline event of the step applied last, in this call
    while run.status == R.WAITING:
        reason = exit_reason(run, trigger, steps, context.subject)
        if reason:
            _finish(run, context, R.EXITED, _("Exited: %(r)s.") % {"r": reason})
            break
        if resumed and _held(run, context, steps[run.step - 1]):
            break
        resumed = False
        if run.step >= len(steps):
            _finish(run, context, R.COMPLETED, _("Completed."), last_step=applied)
            break
        spec = steps[run.step]
        kind = STEPS.get(spec["kind"])
        if kind is None:
            _finish(run, context, R.FAILED, _("Unknown step %(k)s.") % {"k": spec["kind"]})
            break
        if kind.wait is not None:
            _wait(run, context, spec, kind)
            counts["waits"] += 1
            break
        try:
            text = _apply(run, context, spec, kind)
        except DomainError as error:
            _finish(run, context, R.FAILED, _("Step %(n)s (%(step)s) could not apply: %(e)s")
                    % {"n": run.step + 1, "step": kind.label, "e": error})
            break
        except Exception as error:  # noqa: BLE001 - one broken run must not block the others
            logger.exception("automation run %s, step %s", run.pk, run.step + 1)
            _finish(run, context, R.FAILED, _("Step %(n)s (%(step)s) could not apply: %(e)s")
                    % {"n": run.step + 1, "step": kind.label, "e": type(error).__name__})
            break
        applied = timeline_event(context, "automation.step", {
            "text": text, **_data(run), "kind": spec["kind"]})
        context.events.append(applied)
        run.step += 1
        counts["steps"] += 1
        if _held(run, context, spec):
            context.events.append(timeline_event(context, "automation.waiting", {
                "text": run.waiting_for, **_data(run), "until": run.resume_at.isoformat()}))
            break
    if run.status != R.WAITING:
        counts[run.status] += 1


def _apply(run, context, spec, kind) -> str:
    """In a savepoint: a step that fails leaves nothing behind (pure steps write nothing
    until the batch does)."""
    with acting_as(run.automation_id, run.depth):
        if spec["kind"] in PURE:
            return kind.apply(context, spec["params"])
        with transaction.atomic():
            return kind.apply(context, spec["params"])


def _held(run, context, spec) -> bool:
    """Hold the run while what step `spec` started goes on (see StepKind.hold)."""
    kind = STEPS.get(spec["kind"])
    hold = kind.hold(context, spec["params"]) if kind is not None and kind.hold else None
    if hold is None:
        return False
    run.resume_at, run.waiting_for = hold[0], hold[1][:200]
    return True


def _wait(run, context, spec, kind) -> None:
    until = context.now + kind.wait(spec["params"])
    run.resume_at = until
    run.waiting_for = (_("%(wait)s, until %(at)s") % {
        "wait": wait_describe(spec["params"]), "at": until.strftime("%Y-%m-%d %H:%M UTC")})[:200]
    run.step += 1
    context.events.append(timeline_event(context, "automation.waiting", {
        "text": run.waiting_for, **_data(run), "until": until.isoformat()}))


def _finish(run, context, status, reason: str, last_step=None) -> None:
    run.status = status
    run.resume_at = None
    run.waiting_for = ""
    run.reason = reason[:300]
    if last_step is not None:
        # Completed by the step just applied: its event says so (one event, not two).
        last_step.data["outcome"] = str(status)
        return
    context.events.append(timeline_event(context, f"automation.{status}", {
        "text": run.reason, **_data(run)}))


def _data(run) -> dict:
    # The automation's name is the event's actor.
    return {"run": run.pk, "step": run.step + 1, "automation": run.automation_id}


def exit_reason(run, trigger, steps, subject: Subject) -> str:
    invoice = subject.invoice
    settled = SETTLED.get(invoice.status) if invoice is not None else None
    if settled and trigger.settles:
        return settled
    if settled and run.step and steps[run.step - 1]["params"].get("until_paid"):
        return settled
    for check in EXIT_CHECKS:
        reason = check(trigger, subject)
        if reason:
            return reason
    return ""


def run_cancel(run: AutomationRun, *, now: datetime, actor) -> bool:
    """Cancel a waiting run (staff, from the admin). False when it had already ended."""
    with transaction.atomic():
        changed = AutomationRun.objects.filter(pk=run.pk, status=R.WAITING).update(
            status=R.CANCELED, resume_at=None, waiting_for="", updated_at=now,
            reason=(_("Canceled by %(a)s.") % {"a": actor})[:300],
        )
        if changed:
            run.refresh_from_db()
            subject = Subject(now=now, invoice=run.invoice, customer=run.customer)
            context = StepContext(run=run, subject=subject, now=now, actor=actor,
                                  automation_name=run.automation.name)
            events_save([timeline_event(context, "automation.canceled", {
                "text": run.reason, **_data(run)})])
    return bool(changed)


def runs_next_due_parts(test_clock) -> list[Due]:
    return [Due(lambda: AutomationRun.objects.filter(status=R.WAITING,
                                                     customer__test_clock=test_clock),
                "resume_at", key=f"automation_runs:{test_clock.pk}")]


def runs_next_due_at(test_clock) -> datetime | None:
    return due_first(runs_next_due_parts(test_clock))
