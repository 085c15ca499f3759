"""Gapless invoice numbers, per customer (ACME-0001) or account-wide (INV-0001).

The number is taken inside the finalizing transaction with the sequence row locked, so
concurrent finalizations queue on that row and a rolled-back finalization gives its
number back: no gaps, no duplicates.
"""

from django.db import transaction

from customers.models import Customer

from .models import InvoiceNumberSequence, InvoicingSettings


def sequence_key(customer: Customer, settings: InvoicingSettings) -> tuple[str, str]:
    if settings.numbering == InvoicingSettings.Numbering.ACCOUNT:
        return f"A:{settings.account_prefix}", settings.account_prefix
    return f"C:{customer.invoice_prefix}", customer.invoice_prefix


def number_take(customer: Customer, settings: InvoicingSettings) -> str:
    """The next number of the customer's sequence. Call inside the finalizing transaction."""
    key, prefix = sequence_key(customer, settings)
    with transaction.atomic():
        InvoiceNumberSequence.objects.get_or_create(key=key)
    sequence = InvoiceNumberSequence.objects.select_for_update().get(key=key)
    number = sequence.next_number
    InvoiceNumberSequence.objects.filter(key=key).update(next_number=number + 1)
    return f"{prefix}-{number:04d}"
