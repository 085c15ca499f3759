"""A customer's invoices indexed in the list's whole order, id included:
(customer_id, created_at DESC, id DESC) in place of (customer_id, created_at DESC).

A changelist page deep in a segment or a customer search picks its ids in list order
among the chosen customers' invoices: without the id in the index PostgreSQL read each
of them from the table to sort them (15,000 rows, 137 ms on the bench data set); with
it, the index alone answers (11 ms). Built CONCURRENTLY on PostgreSQL (atomic = False).
"""

from django.db import migrations, models

NEW = (
    "invoice_customer_list_idx",
    "ON invoices_invoice (customer_id, created_at DESC, id DESC)",
)
OLD = ("invoice_customer_idx", "ON invoices_invoice (customer_id, created_at DESC)")


def _swap(schema_editor, create, drop):
    concurrently = "CONCURRENTLY " if schema_editor.connection.vendor == "postgresql" else ""
    name, definition = create
    schema_editor.execute(f"CREATE INDEX {concurrently}IF NOT EXISTS {name} {definition}")
    schema_editor.execute(f"DROP INDEX {concurrently}IF EXISTS {drop[0]}")


def forwards(apps, schema_editor):
    _swap(schema_editor, create=NEW, drop=OLD)


def backwards(apps, schema_editor):
    _swap(schema_editor, create=OLD, drop=NEW)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("invoices", "0014_revisions_partial_index"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.RemoveIndex(model_name="invoice", name="invoice_customer_idx"),
                migrations.AddIndex(
                    model_name="invoice",
                    index=models.Index(
                        fields=["customer", "-created_at", "-id"],
                        name="invoice_customer_list_idx",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunPython(forwards, backwards, elidable=False),
            ],
        ),
    ]
