"""Finalization throughput with numbering: N drafts of three taxed lines, finalized one
after the other in one process (what the auto-finalization sweep does), then removed
so that the data set stays the same from run to run."""

import os
import time
from decimal import Decimal

from django.db import connection
from django.test.utils import CaptureQueriesContext

from customers.actors import Actor
from customers.clock import system_now
from customers.models import BalanceTransaction, Customer, InvoicePrefix
from customers.services import customer_create
from invoices.models import Event, Invoice, InvoiceLine, InvoiceNumberSequence, TaxRate
from invoices.services import invoice_finalize, invoice_recalculate

GOAL_PER_SECOND = 300
CUSTOMERS = 100
ACTOR = Actor.system("bench")
TOTALS = [
    "subtotal", "total_discount_amount", "total_excluding_tax", "tax", "total", "tax_breakdown",
    "amount_due", "amount_remaining",
]
LINE_TOTALS = ["amount", "discount_total", "amount_excluding_tax", "tax_amount"]


def run(summary, *, drafts: int) -> None:
    now = system_now()
    tag = f"F{int(time.time()) % 10**7:07d}"  # prefixes are never reused: new ones per run
    rate = TaxRate.objects.create(display_name="VAT (bench)", percentage=Decimal("20"))
    customers = [
        customer_create(name=f"Bench finalization {tag} {k}", invoice_prefix=f"{tag}{k:03d}")
        for k in range(CUSTOMERS)
    ]
    try:
        invoices = drafts_create(customers, rate, count=drafts, now=now)
        with CaptureQueriesContext(connection) as queries:
            invoice_finalize(invoices[0], now=now, actor=ACTOR)
        started = time.perf_counter()
        for invoice in invoices[1:]:
            invoice_finalize(invoice, now=now, actor=ACTOR)
        elapsed = time.perf_counter() - started
        per_second = (len(invoices) - 1) / elapsed
        numbered = Invoice.objects.filter(customer__in=customers, status="open").count()
        print(
            f"\nfinalization: {len(invoices):,} drafts x 3 lines, per-customer numbering: "
            f"{elapsed:.1f}s, {per_second:.0f} invoices/s, {len(queries)} queries per invoice, "
            f"{numbered:,} open; machine: one simple ORM query takes "
            f"{query_latency_ms(customers[0]):.2f} ms, load average {os.getloadavg()[0]:.1f}"
        )
        summary.goal(
            per_second >= GOAL_PER_SECOND and numbered == len(invoices),
            f"finalization throughput {per_second:.0f}/s (goal >= {GOAL_PER_SECOND}/s)",
        )
    finally:
        cleanup(customers, rate)


def query_latency_ms(customer) -> float:
    """The cost of one trivial ORM round trip here: the floor under every figure above."""
    started = time.perf_counter()
    for _ in range(200):
        list(Customer.objects.filter(pk=customer.pk))
    return (time.perf_counter() - started) / 200 * 1000


def drafts_create(customers, rate, *, count: int, now) -> list[Invoice]:
    """Drafts written in bulk (the setup is not what is measured). Like drafts edited
    through the domain, they carry up-to-date totals: computed once with
    invoice_recalculate (all drafts have the same lines) and copied to the others."""
    invoices = Invoice.objects.bulk_create(
        [
            Invoice(
                customer=customers[n % len(customers)], currency="EUR", created_at=now,
                collection_method=Invoice.CollectionMethod.SEND_INVOICE, auto_advance=False,
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


def cleanup(customers, rate) -> None:
    ids = [customer.pk for customer in customers]
    Event.objects.filter(customer_id__in=ids).delete()
    InvoiceLine.tax_rates.through.objects.filter(taxrate=rate).delete()
    InvoiceLine.objects.filter(invoice__customer_id__in=ids).delete()
    Invoice.objects.filter(customer_id__in=ids).delete()
    BalanceTransaction.objects.filter(customer_id__in=ids).delete()
    InvoiceNumberSequence.objects.filter(
        key__in=[f"C:{customer.invoice_prefix}" for customer in customers]
    ).delete()
    InvoicePrefix.objects.filter(customer_id__in=ids).delete()
    Customer.objects.filter(pk__in=ids).delete()
    rate.delete()
