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


def add_card(customer, token="sim_4242", now=NOW, **fields):
    """Attach a simulated test card (see docs/gateways.md) as the default method."""
    from invoices.collection import payment_method_add
    from invoices.gateways.simulated import CARDS_BY_TOKEN

    card = CARDS_BY_TOKEN[token]
    return payment_method_add(
        customer, type="card", gateway_reference=token, brand=card.brand, last4=card.last4,
        exp_month=12, exp_year=now.year + 2, now=now, actor=STAFF, **fields,
    )


def make_charged(token="sim_4242", now=NOW, customer=None, **fields):
    """An open charge_automatically invoice of a customer paying with `token`, finalized
    at `now` (so due for its first attempt at `now`)."""
    customer = customer or make_customer()
    if customer.default_payment_method_id is None:
        add_card(customer, token, now=now)
    fields.setdefault("collection_method", "charge_automatically")
    return make_open(customer, now=now, **fields)
