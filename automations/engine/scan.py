"""The triggers counted in days (past due by N days, due in N days), found by an indexed
scan of open invoices rather than an event: an invoice starts one run per automation
(key "invoice:<id>"), once its moment comes, if that moment is after the automation was
enabled (enabling one never replays the past). Days are UTC days. New customers are
found the same way (the customers app writes no event), a test clock's at the clock's
time when it advances.

A candidate whose conditions do not match gets a run row too, ended at once as
"skipped": it is never looked at again."""

from datetime import UTC, datetime, time, timedelta

from django.db import transaction
from django.db.models import CharField, Exists, Min, OuterRef, Q, Value
from django.db.models.functions import Cast, Concat
from django.utils.translation import gettext as _

from customers.models import Customer
from customers.singletons import held_read
from invoices.bulkwrite import rows_insert
from invoices.models import Invoice

from .matching import plan_matcher, run_build
from .models import Automation, AutomationRun, AutomationVersion
from .subjects import Subject, subjects_load
from .triggers import CUSTOMER_CREATED, DUE_IN, PAST_DUE, TRIGGERS

BATCH_SIZE = 1000
SCAN_MARGIN = timedelta(days=2)
R = AutomationRun.Status


def day_start(day) -> datetime:
    return datetime.combine(day, time(0), tzinfo=UTC)


def scan_automations() -> list[Automation]:
    keys = [key for key, trigger in TRIGGERS.items() if trigger.days or trigger.scanned]
    return list(Automation.objects.filter(enabled=True, trigger__in=keys,
                                          live_version__isnull=False)
                .select_related("live_version").order_by("priority", "pk"))


def _candidates(automation: Automation, test_clock):
    plan = automation.live_version.plan
    days = plan["days"]
    since = automation.enabled_at
    if test_clock is None and automation.scanned_until is not None:
        # Only what came due since the last scan (and a margin for late changes): a
        # tick never walks the automation's whole history.
        since = max(since, automation.scanned_until - SCAN_MARGIN)
    open_ = Invoice.objects.filter(status=Invoice.Status.OPEN)
    open_ = (open_.filter(customer__test_clock__isnull=True) if test_clock is None
             else open_.filter(customer__test_clock=test_clock))
    ran = AutomationRun.objects.filter(automation=automation, key=_key(OuterRef("pk")))
    if TRIGGERS[plan["trigger"]].days == PAST_DUE:
        by_date = Q(due_date__isnull=False, due_date__gte=(since - timedelta(days=days)).date())
        by_failure = Q(due_date__isnull=True, past_due_at__gte=since - timedelta(days=days))
        return open_.filter(by_date | by_failure), ran
    return open_.filter(due_date__gte=(since + timedelta(days=days)).date()), ran


def _key(pk) -> object:
    return Concat(Value("invoice:"), Cast(pk, CharField()))


def moment_of(invoice: Invoice, trigger_days: str, days: int) -> datetime | None:
    if trigger_days == PAST_DUE:
        if invoice.due_date is not None:
            return day_start(invoice.due_date + timedelta(days=days))
        return invoice.past_due_at + timedelta(days=days) if invoice.past_due_at else None
    return day_start(invoice.due_date - timedelta(days=days)) if invoice.due_date else None


def scan_run(*, now: datetime, test_clock=None) -> dict:
    counts = {"started": 0, "skipped": 0}
    for automation in scan_automations():
        plan = automation.live_version.plan
        if plan["trigger"] == CUSTOMER_CREATED:
            _customers_scan(automation, now, counts, test_clock)
            continue
        kind, days = TRIGGERS[plan["trigger"]].days, plan["days"]
        candidates, ran = _candidates(automation, test_clock)
        if kind == PAST_DUE:
            due = candidates.filter(Q(due_date__lte=(now - timedelta(days=days)).date())
                                    | Q(due_date__isnull=True,
                                        past_due_at__lte=now - timedelta(days=days)))
        else:
            due = candidates.filter(due_date__lte=(now + timedelta(days=days)).date(),
                                    due_date__gt=now.date())
        matches = plan_matcher(plan)
        while True:
            with transaction.atomic():
                invoices = list(due.filter(~Exists(ran)).select_related("customer")
                                .order_by("pk")[:BATCH_SIZE])
                subjects = subjects_load([Subject(now=now, invoice=invoice,
                                                  customer=invoice.customer)
                                          for invoice in invoices])
                runs = []
                for subject in subjects:
                    matched = matches(subject)
                    status = R.WAITING if matched else R.EXITED
                    run = run_build(automation, subject, f"invoice:{subject.invoice.pk}",
                                    status=status)
                    if not matched:
                        run.reason = _("Skipped: the conditions did not match.")
                    runs.append(run)
                    counts["started" if matched else "skipped"] += 1
                rows_insert(AutomationRun, runs, ignore_conflicts=True)
            if len(invoices) < BATCH_SIZE:
                break
        if test_clock is None:
            Automation.objects.filter(pk=automation.pk).update(scanned_until=now)
    return counts


def _new_customers(automation: Automation, test_clock):
    """The customers created since the automation was enabled that it has not looked
    at. A test clock's customers are its own: they start their runs at the clock's time
    when it advances (its first stop), never at the system's."""
    ran = AutomationRun.objects.filter(
        automation=automation, key=Concat(Value("customer:"), Cast(OuterRef("pk"), CharField())))
    new = Customer.objects.filter(created_at__gte=automation.enabled_at).filter(~Exists(ran))
    return (new.filter(test_clock__isnull=True) if test_clock is None
            else new.filter(test_clock=test_clock))


def _customers_scan(automation: Automation, now: datetime, counts: dict, test_clock) -> None:
    plan = automation.live_version.plan
    new = _new_customers(automation, test_clock)
    if test_clock is None:
        new = new.filter(created_at__lte=now)
    matches = plan_matcher(plan)
    while True:
        with transaction.atomic():
            customers = list(new.order_by("pk")[:BATCH_SIZE])
            runs = []
            for customer in customers:
                subject = Subject(now=now, customer=customer)
                matched = matches(subject)
                run = run_build(automation, subject, f"customer:{customer.pk}",
                                status=R.WAITING if matched else R.EXITED)
                if not matched:
                    run.reason = _("Skipped: the conditions did not match.")
                runs.append(run)
                counts["started" if matched else "skipped"] += 1
            rows_insert(AutomationRun, runs, ignore_conflicts=True)
        if len(customers) < BATCH_SIZE:
            return


def scan_next_due_at(test_clock) -> datetime | None:
    moments = []
    # A clock's advance asks this at every stop: the live automations are read once
    # for it (customers.singletons.held_read), again after one is saved.
    live = held_read("engine.scan_automations", scan_automations,
                     watch={Automation, AutomationVersion})
    for automation in live:
        plan = automation.live_version.plan
        if plan["trigger"] == CUSTOMER_CREATED:
            if _new_customers(automation, test_clock).exists():
                moments.append(test_clock.frozen_time)  # due at the clock's time
            continue
        kind, days = TRIGGERS[plan["trigger"]].days, plan["days"]
        candidates, ran = _candidates(automation, test_clock)
        if kind == DUE_IN:
            candidates = candidates.filter(due_date__gt=test_clock.frozen_time.date())
        first = candidates.filter(~Exists(ran)).aggregate(
            due=Min("due_date"), failed=Min("past_due_at", filter=Q(due_date__isnull=True)))
        if first["due"] is not None:
            moments.append(day_start(first["due"] + timedelta(days=days if kind == PAST_DUE
                                                              else -days)))
        if kind == PAST_DUE and first["failed"] is not None:
            moments.append(first["failed"] + timedelta(days=days))
    return min(moments) if moments else None
