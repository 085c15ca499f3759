"""Gapless invoice numbers, per customer (ACME-0001) or account-wide (INV-0001).

The number is taken inside the finalizing transaction with the sequence row locked, so
concurrent finalizations queue on that row and a rolled-back finalization gives its
number back: no gaps, no duplicates.
"""

from django.db import connection

from customers.models import Customer

from .models import InvoiceNumberSequence, InvoicingSettings


def sequence_key(customer: Customer, settings: InvoicingSettings) -> tuple[str, str]:
    if settings.numbering == InvoicingSettings.Numbering.ACCOUNT:
        return f"A:{settings.account_prefix}", settings.account_prefix
    return f"C:{customer.invoice_prefix}", customer.invoice_prefix


def number_take(customer: Customer, settings: InvoicingSettings) -> str:
    """The next number of the customer's sequence. Call inside the finalizing transaction."""
    key, prefix = sequence_key(customer, settings)
    number = _number_increment(key)
    if number is None:  # the sequence's first number
        InvoiceNumberSequence.objects.bulk_create(
            [InvoiceNumberSequence(key=key)], ignore_conflicts=True
        )
        number = _number_increment(key)
    return f"{prefix}-{number:04d}"


def _number_increment(key: str) -> int | None:
    """Take a number and lock the sequence row until commit, in one statement (finalization
    throughput): UPDATE ... RETURNING, which the ORM cannot express."""
    quote = connection.ops.quote_name
    table, column = InvoiceNumberSequence._meta.db_table, quote("key")
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {quote(table)} SET next_number = next_number + 1 WHERE {column} = %s "
            "RETURNING next_number - 1",
            [key],
        )
        row = cursor.fetchone()
    return row[0] if row else None
