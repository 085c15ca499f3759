"""The open invoices' list index (0010) also carries due_date, and invoice_open_due_idx goes.

With invoice_open_due_idx there, PostgreSQL chose it for the changelist's open filters
combined with a customer search or segment (its statistics say due dates follow the
table's order, so it expects the open rows' heap pages to be read in order): it then
read all 64,000 open rows from the table to keep a few thousand, 230-250 ms per query on
the bench data set. Without it, the same queries walk the open list index alone (10-25
ms). The daily digest's due-date range (its one other user) reads due_date from the
list index. One index fewer is also one fewer to update at each status change.

PostgreSQL: built and dropped CONCURRENTLY (atomic = False), like 0010. Elsewhere only
the model's index goes.
"""

from django.db import migrations

OPEN_LIST = (
    "invoice_open_list_idx",
    "ON invoices_invoice (created_at DESC, id DESC) "
    "INCLUDE (customer_id, number, collection_method, currency, past_due_at, due_date) "
    "WHERE status = 'open'",
)
PREVIOUS = (
    "invoice_open_created_idx",
    "ON invoices_invoice (created_at DESC, id DESC) "
    "INCLUDE (customer_id, number, collection_method, currency, past_due_at) "
    "WHERE status = 'open'",
)
DUE = ("invoice_open_due_idx", "ON invoices_invoice (due_date) WHERE status = 'open'")


def _swap(schema_editor, create, drop):
    postgres = schema_editor.connection.vendor == "postgresql"
    concurrently = "CONCURRENTLY " if postgres else ""
    for name, definition in create:
        if postgres or name == DUE[0]:
            schema_editor.execute(
                f"CREATE INDEX {concurrently}IF NOT EXISTS {name} {definition}"
            )
    for name, _definition in drop:
        if postgres or name == DUE[0]:
            schema_editor.execute(f"DROP INDEX {concurrently}IF EXISTS {name}")


def forwards(apps, schema_editor):
    _swap(schema_editor, create=[OPEN_LIST], drop=[PREVIOUS, DUE])


def backwards(apps, schema_editor):
    _swap(schema_editor, create=[PREVIOUS, DUE], drop=[OPEN_LIST])


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("invoices", "0012_drop_currency_and_method_list_indexes"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveIndex(model_name="invoice", name="invoice_open_due_idx"),
            ],
            database_operations=[
                migrations.RunPython(forwards, backwards, elidable=False),
            ],
        ),
    ]
