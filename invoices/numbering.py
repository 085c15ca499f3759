"""Gapless invoice numbers, per customer (ACME-0001) or account-wide (INV-0001).

The number is taken inside the finalizing transaction with the sequence row locked, so
concurrent finalizations queue on that row and a rolled-back finalization gives its
number back: no gaps, no duplicates.
"""

from django.db import connection

from customers.models import Customer

from .bulkwrite import rows_update
from .models import InvoiceNumberSequence, InvoicingSettings


def sequence_key(customer: Customer, settings: InvoicingSettings) -> tuple[str, str]:
    if settings.numbering == InvoicingSettings.Numbering.ACCOUNT:
        return f"A:{settings.account_prefix}", settings.account_prefix
    return f"C:{customer.invoice_prefix}", customer.invoice_prefix


def number_take(customer: Customer, settings: InvoicingSettings) -> str:
    """The next number of the customer's sequence. Call inside the finalizing transaction."""
    return numbers_take(customer, settings, count=1)[0]


def numbers_take(customer: Customer, settings: InvoicingSettings, *, count: int) -> list[str]:
    """The next `count` numbers of the customer's sequence, in one statement (the sweep's
    bulk path takes a block per sequence). Call inside the finalizing transaction."""
    key, prefix = sequence_key(customer, settings)
    first = _number_increment(key, count)
    if first is None:  # the sequence's first number
        InvoiceNumberSequence.objects.bulk_create(
            [InvoiceNumberSequence(key=key)], ignore_conflicts=True
        )
        first = _number_increment(key, count)
    return [f"{prefix}-{number:04d}" for number in range(first, first + count)]


def numbers_take_many(wanted: dict[str, tuple[str, int]]) -> dict[str, list[str]]:
    """For each sequence key, its prefix and a count: the next `count` numbers of each
    sequence, in three statements whatever the number of sequences (one on PostgreSQL:
    _numbers_upsert; numbers_take costs
    one to three a sequence, and a sweep's batch spans a sequence per customer). The
    same numbers as numbers_take key by key in key order, and the same locking: the
    missing sequences are created first (in key order, so two batches wait on each
    other's new sequences in one order), then the rows are locked in key order before
    they are moved. Call inside the finalizing transaction."""
    if not wanted:
        return {}
    if connection.vendor == "postgresql":
        return _numbers_upsert(wanted)
    keys = sorted(wanted)
    InvoiceNumberSequence.objects.bulk_create(
        [InvoiceNumberSequence(key=key) for key in keys], ignore_conflicts=True
    )
    # Locked as they come out sorted (ORDER BY before FOR UPDATE), the values read after
    # the lock: no other finalization moves them until this transaction ends.
    locked = list(InvoiceNumberSequence.objects.select_for_update().filter(key__in=keys)
                  .order_by("key"))
    firsts = {sequence.key: sequence.next_number for sequence in locked}
    for sequence in locked:
        sequence.next_number += wanted[sequence.key][1]
    rows_update(InvoiceNumberSequence, locked, ["next_number"])
    return {
        key: [f"{prefix}-{number:04d}" for number in range(firsts[key], firsts[key] + count)]
        for key, (prefix, count) in wanted.items()
    }


def _numbers_upsert(wanted: dict[str, tuple[str, int]]) -> dict[str, list[str]]:
    """numbers_take_many on PostgreSQL, in one statement: each sequence created with its
    block taken, or moved past it, row by row in key order (INSERT ... ON CONFLICT DO
    UPDATE locks each row as it comes to it, as it comes out sorted: the order of the
    three statements, and the same numbers)."""
    keys = sorted(wanted)
    counts = [wanted[key][1] for key in keys]
    quote = connection.ops.quote_name
    table = quote(InvoiceNumberSequence._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({quote('key')}, next_number) "
            "SELECT k, 1 + n FROM unnest(%s::varchar[], %s::integer[]) AS t(k, n) ORDER BY k "
            f"ON CONFLICT ({quote('key')}) DO UPDATE "
            f"SET next_number = {table}.next_number + EXCLUDED.next_number - 1 "
            f"RETURNING {quote('key')}, next_number",
            [keys, counts],
        )
        after = dict(cursor.fetchall())
    numbers = {}
    for key, (prefix, count) in wanted.items():
        first = after[key] - count
        numbers[key] = [f"{prefix}-{number:04d}" for number in range(first, first + count)]
    return numbers


def _number_increment(key: str, count: int) -> int | None:
    """Take `count` numbers and lock the sequence row until commit, in one statement
    (finalization throughput): UPDATE ... RETURNING, which the ORM cannot express.
    Returns the first number taken."""
    quote = connection.ops.quote_name
    table, column = InvoiceNumberSequence._meta.db_table, quote("key")
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {quote(table)} SET next_number = next_number + %s WHERE {column} = %s "
            "RETURNING next_number - %s",
            [count, key, count],
        )
        row = cursor.fetchone()
    return row[0] if row else None
