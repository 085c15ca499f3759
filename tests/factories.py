"""Test data built through the domain functions, so tests start from real states."""

import itertools
from datetime import UTC, datetime
from decimal import Decimal

from customers.actors import Actor
from customers.services import customer_create
from invoices.models import TaxRate
from invoices.services import invoice_create, invoice_finalize, invoice_line_add

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
STAFF = Actor(kind="staff", user_id=None, label="alice")
_seq = itertools.count(1)


def make_customer(**fields):
    n = next(_seq)
    fields.setdefault("name", f"Customer {n}")
    fields.setdefault("email", f"billing{n}@example.com")
    fields.setdefault("currency", "EUR")
    fields.setdefault("invoice_prefix", f"CUS{n:04d}")
    return customer_create(**fields)


def make_tax_rate(percentage="20", inclusive=False, name="VAT"):
    return TaxRate.objects.create(
        display_name=name, percentage=Decimal(percentage), inclusive=inclusive
    )


def make_draft(customer=None, lines=((1, 10000),), now=NOW, tax_rates=(), **fields):
    customer = customer or make_customer()
    invoice = invoice_create(customer=customer, now=now, actor=STAFF, **fields)
    for quantity, unit_amount in lines:
        invoice_line_add(
            invoice, description="Consulting", quantity=quantity, unit_amount=unit_amount,
            tax_rates=tax_rates,
        )
    invoice.refresh_from_db()
    return invoice


def make_open(customer=None, lines=((1, 10000),), now=NOW, **fields):
    invoice = make_draft(customer, lines, now, **fields)
    return invoice_finalize(invoice, now=now, actor=STAFF)
