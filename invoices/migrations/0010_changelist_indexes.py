"""Indexes for the invoice changelist on PostgreSQL (1,000,000 invoices, bench/changelist.py).

Both are in the list's order (created_at DESC, id DESC) and carry, as INCLUDE columns,
every column the filters and the search read, so that a page of a filtered list (and the
OFFSET before it) can be found by walking one index without reading the table:
- invoice_list_idx: all invoices;
- invoice_open_created_idx: open invoices only (6% of them), for the "past due" filter and
  the status=open filter combined with others, which would otherwise walk the whole list.

PostgreSQL only (INCLUDE); the other databases keep the model's indexes. Built
CONCURRENTLY so that invoices can still be written meanwhile, hence atomic = False.
"""

from django.db import migrations

FILTERED = "customer_id, number, collection_method, currency, past_due_at"
INDEXES = {
    "invoice_list_idx": (
        f"ON invoices_invoice (created_at DESC, id DESC) INCLUDE (status, {FILTERED})"
    ),
    "invoice_open_created_idx": (
        f"ON invoices_invoice (created_at DESC, id DESC) INCLUDE ({FILTERED}) "
        "WHERE status = 'open'"
    ),
}


def indexes_create(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name, definition in INDEXES.items():
        schema_editor.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} {definition}")


def indexes_drop(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for name in INDEXES:
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("invoices", "0009_event_type_and_partial_indexes"),
    ]

    operations = [
        migrations.RunPython(indexes_create, indexes_drop, elidable=False),
    ]
