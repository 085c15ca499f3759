"""Finalization throughput with numbering, in one process: N drafts of three taxed lines
across many customers, finalized through the one-row door (invoice_finalize, one after
the other, as staff would) and by the auto-finalization sweep (finalize_due_drafts, the
bulk path), each with per-customer and with account-wide numbering. Everything is
removed afterwards so that the data set stays the same from run to run.

The bench customers live on a test clock of their own, so the sweep finalizes their
drafts and never the data set's."""

import os
import time
from datetime import timedelta
from decimal import Decimal

from django.db import connection
from django.test.utils import CaptureQueriesContext

from automations.notifications.models import OutboxMessage
from customers.actors import Actor
from customers.clock import system_now
from customers.models import BalanceTransaction, Customer, InvoicePrefix, TestClock
from customers.services import customer_create
from invoices.models import (
    Event,
    Invoice,
    InvoiceLine,
    InvoiceNumberSequence,
    InvoicingSettings,
    TaxRate,
)
from invoices.services import invoice_finalize, invoice_recalculate
from invoices.sweeps import finalize_due_drafts

GOAL_PER_SECOND = 300
CUSTOMERS = 100
ACTOR = Actor.system("bench")
TOTALS = [
    "subtotal", "total_discount_amount", "total_excluding_tax", "tax", "total", "tax_breakdown",
    "amount_due", "amount_remaining",
]
LINE_TOTALS = ["amount", "discount_total", "amount_excluding_tax", "tax_amount"]
NUMBERINGS = {
    InvoicingSettings.Numbering.PER_CUSTOMER: "per-customer numbering",
    InvoicingSettings.Numbering.ACCOUNT: "account-wide numbering",
}


def run(summary, *, drafts: int) -> None:
    now = system_now()
    tag = f"F{int(time.time()) % 10**7:07d}"  # prefixes are never reused: new ones per run
    rate = TaxRate.objects.create(display_name="VAT (bench)", percentage=Decimal("20"))
    clock = TestClock.objects.create(name=f"bench {tag}", frozen_time=now)
    customers = [
        customer_create(
            name=f"Bench finalization {tag} {k}", invoice_prefix=f"{tag}{k:03d}", test_clock=clock
        )
        for k in range(CUSTOMERS)
    ]
    settings = InvoicingSettings.load()
    saved = (settings.numbering, settings.account_prefix)
    print(
        f"\nfinalization: {drafts:,} drafts x 3 lines over {CUSTOMERS} customers per run; "
        f"machine: one simple ORM query takes {query_latency_ms(customers[0]):.2f} ms, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    try:
        for numbering, label in NUMBERINGS.items():
            InvoicingSettings.objects.filter(pk=1).update(numbering=numbering, account_prefix=tag)
            one_row = one_row_rate(customers, rate, count=drafts, now=now)
            swept = sweep_rate(customers, rate, clock, count=drafts, now=now)
            print(
                f"  {label}:\n"
                f"    one-row door (invoice_finalize): {one_row.text}\n"
                f"    sweep (finalize_due_drafts, bulk): {swept.text}"
            )
            summary.goal(
                swept.per_second >= GOAL_PER_SECOND and swept.ok,
                f"finalization throughput, sweep, {label}: {swept.per_second:.0f}/s "
                f"(goal >= {GOAL_PER_SECOND}/s; one-row door {one_row.per_second:.0f}/s)",
            )
    finally:
        InvoicingSettings.objects.filter(pk=1).update(numbering=saved[0], account_prefix=saved[1])
        cleanup(customers, rate, clock, tag)


class Rate:
    def __init__(self, *, count: int, elapsed: float, queries: int, finalized: int):
        self.per_second = count / elapsed
        self.ok = finalized == count
        self.text = (
            f"{elapsed:.1f}s, {self.per_second:.0f} invoices/s, "
            f"{queries / count:.2f} queries per invoice, {finalized:,} finalized"
        )


def one_row_rate(customers, rate, *, count: int, now) -> Rate:
    invoices = drafts_create(customers, rate, count=count, now=now, due=False)
    started = time.perf_counter()
    for invoice in invoices[:-1]:
        invoice_finalize(invoice, now=now, actor=ACTOR)
    elapsed = time.perf_counter() - started
    with CaptureQueriesContext(connection) as queries:  # one, once its sequence exists
        invoice_finalize(invoices[-1], now=now, actor=ACTOR)
    finalized = Invoice.objects.filter(pk__in=[i.pk for i in invoices], status="open").count()
    return Rate(
        count=count - 1, elapsed=elapsed, queries=len(queries) * (count - 1),
        finalized=finalized - 1,
    )


def sweep_rate(customers, rate, clock, *, count: int, now) -> Rate:
    invoices = drafts_create(customers, rate, count=count, now=now, due=True)
    with CaptureQueriesContext(connection) as queries:
        started = time.perf_counter()
        counts = finalize_due_drafts(now=now, test_clock=clock)
        elapsed = time.perf_counter() - started
    finalized = Invoice.objects.filter(pk__in=[i.pk for i in invoices], status="open").count()
    assert counts == {"finalized": finalized, "failed": 0}, counts
    return Rate(count=count, elapsed=elapsed, queries=len(queries), finalized=finalized)


def query_latency_ms(customer) -> float:
    """The cost of one trivial ORM round trip here: the floor under every figure above."""
    started = time.perf_counter()
    for _ in range(200):
        list(Customer.objects.filter(pk=customer.pk))
    return (time.perf_counter() - started) / 200 * 1000


def drafts_create(customers, rate, *, count: int, now, due: bool) -> list[Invoice]:
    """Drafts written in bulk (the setup is not what is measured). Like drafts edited
    through the domain, they carry up-to-date totals: computed once with
    invoice_recalculate (all drafts have the same lines) and copied to the others.
    `due`: automatic collection on and due a minute ago, for the sweep."""
    invoices = Invoice.objects.bulk_create(
        [
            Invoice(
                customer=customers[n % len(customers)], currency="EUR", created_at=now,
                collection_method=Invoice.CollectionMethod.SEND_INVOICE, auto_advance=due,
                automatically_finalizes_at=now - timedelta(milliseconds=count - n) if due else None,
            )
            for n in range(count)
        ]
    )
    lines = InvoiceLine.objects.bulk_create(
        [
            InvoiceLine(
                invoice=invoice, position=p, description=f"Service {p + 1}",
                quantity=p + 1, unit_amount=3333 * (p + 1),
            )
            for invoice in invoices
            for p in range(3)
        ]
    )
    through = InvoiceLine.tax_rates.through
    through.objects.bulk_create(
        [through(invoiceline_id=line.pk, taxrate_id=rate.pk) for line in lines]
    )
    model = invoice_recalculate(Invoice.objects.get(pk=invoices[0].pk))
    Invoice.objects.filter(pk__in=[invoice.pk for invoice in invoices]).update(
        **{name: getattr(model, name) for name in TOTALS}
    )
    for line in model.lines.all():
        InvoiceLine.objects.filter(invoice__in=invoices, position=line.position).update(
            **{name: getattr(line, name) for name in LINE_TOTALS}
        )
    return invoices


def cleanup(customers, rate, clock, tag) -> None:
    ids = [customer.pk for customer in customers]
    # The emails finalizing queued (kept by the outbox when a customer goes): left
    # behind, the outbox bench would drain them too, each failing, its invoice gone.
    OutboxMessage.objects.filter(customer_id__in=ids).delete()
    Event.objects.filter(customer_id__in=ids).delete()
    InvoiceLine.tax_rates.through.objects.filter(taxrate=rate).delete()
    InvoiceLine.objects.filter(invoice__customer_id__in=ids).delete()
    Invoice.objects.filter(customer_id__in=ids).delete()
    BalanceTransaction.objects.filter(customer_id__in=ids).delete()
    InvoiceNumberSequence.objects.filter(
        key__in=[f"C:{customer.invoice_prefix}" for customer in customers] + [f"A:{tag}"]
    ).delete()
    InvoicePrefix.objects.filter(customer_id__in=ids).delete()
    Customer.objects.filter(pk__in=ids).delete()
    clock.delete()
    rate.delete()
