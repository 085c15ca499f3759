"""The dry run: replay the last N days of the event log (or, for the triggers counted in
days, the invoices whose moment fell in those days) through an automation, saved or
not, and say which invoices, subscriptions and customers would have matched and which
steps would have run when. Reads only: it writes nothing, sends nothing.

Conditions are evaluated against today's invoices and customers (the log keeps events,
not past states); a run that would have exited since (its invoice paid or voided) says
so."""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db.models import Q
from django.utils.translation import gettext as _

from customers.models import Customer
from invoices.models import Event, Invoice

from .matching import plan_matcher
from .runs import SETTLED
from .scan import day_start, moment_of
from .services import plan_validate
from .steps import STEPS
from .subjects import Subject, subjects_load
from .triggers import PAST_DUE, TRIGGERS

CHUNK = 1000
MAX_DAYS = 90


@dataclass
class DryRunMatch:
    at: datetime
    invoice: Invoice | None
    customer: object
    subscription_id: int | None
    steps: list[tuple[datetime, str]]
    note: str = ""


@dataclass
class DryRun:
    errors: list[str] = field(default_factory=list)
    looked_at: int = 0
    matches: list[DryRunMatch] = field(default_factory=list)
    truncated: bool = False


def dry_run(plan: dict, *, now: datetime, days: int, limit: int = 500) -> DryRun:
    result = DryRun(errors=plan_validate(plan))
    if not 1 <= days <= MAX_DAYS:
        result.errors.append(_("Replay 1 to %(n)s days.") % {"n": MAX_DAYS})
    if result.errors:
        return result
    since = now - timedelta(days=days)
    trigger = TRIGGERS[plan["trigger"]]
    if trigger.days:
        chunks = _invoice_chunks(plan, since, now)
    elif trigger.scanned:
        chunks = _customer_chunks(since, now)
    else:
        chunks = _event_chunks(trigger, since, now)
    matches = plan_matcher(plan)
    for chunk in chunks:
        result.looked_at += len(chunk)
        for subject in subjects_load(chunk):
            if matches(subject):
                if len(result.matches) >= limit:
                    result.truncated = True
                    return result
                result.matches.append(_match(plan, trigger, subject))
    return result


def _event_chunks(trigger, since, now):
    events = (Event.objects.filter(type__in=trigger.event_types, created_at__gt=since,
                                   created_at__lte=now).order_by("created_at", "pk"))
    chunk = []
    for event in events.iterator(chunk_size=CHUNK):
        chunk.append(Subject(now=event.created_at, event=event))
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _customer_chunks(since, now):
    customers = Customer.objects.filter(created_at__gt=since, created_at__lte=now).order_by("pk")
    chunk = []
    for customer in customers.iterator(chunk_size=CHUNK):
        chunk.append(Subject(now=customer.created_at, customer=customer))
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _invoice_chunks(plan, since, now):
    kind, days = TRIGGERS[plan["trigger"]].days, plan["days"]
    shift = timedelta(days=days if kind == PAST_DUE else -days)
    window = Q(due_date__gt=(since - shift).date(), due_date__lte=(now - shift).date())
    if kind == PAST_DUE:
        window |= Q(due_date__isnull=True, past_due_at__gt=since - shift,
                    past_due_at__lte=now - shift)
    invoices = (Invoice.objects.filter(window).exclude(status=Invoice.Status.DRAFT)
                .select_related("customer").order_by("pk"))
    chunk = []
    for invoice in invoices.iterator(chunk_size=CHUNK):
        moment = moment_of(invoice, kind, days) or day_start(now.date())
        chunk.append(Subject(now=moment, invoice=invoice, customer=invoice.customer))
        if len(chunk) == CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _match(plan, trigger, subject: Subject) -> DryRunMatch:
    at, steps = subject.now, []
    for spec in plan["steps"]:
        kind = STEPS[spec["kind"]]
        steps.append((at, kind.describe(spec["params"])))
        if kind.wait is not None:
            at += kind.wait(spec["params"])
    note = ""
    invoice = subject.invoice
    if invoice is not None and invoice.status in SETTLED and trigger.settles:
        note = _("Would have exited since: %(r)s.") % {"r": SETTLED[invoice.status]}
    return DryRunMatch(at=subject.now, invoice=invoice, customer=subject.customer,
                       subscription_id=getattr(subject.subscription, "pk", None),
                       steps=steps, note=note)
