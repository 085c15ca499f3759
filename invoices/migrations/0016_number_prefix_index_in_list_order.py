"""Number searches (a prefix, LIKE 'B0000%') pick their page's ids from one index: the
number index for prefixes now carries created_at and id, the list's order.

Django made `invoices_invoice_number_..._like` (varchar_pattern_ops) for the unique number
on PostgreSQL. A deep page of a broad prefix (30,000 matches, page 500) then walked the
whole list index to find the page (129 ms on the bench data set); from this index alone
it takes 17 ms. This index replaces Django's, so a status change updates no more indexes
than before. PostgreSQL only; built and dropped CONCURRENTLY (atomic = False).
"""

from django.db import migrations

NEW = (
    "invoice_number_list_idx",
    "ON invoices_invoice (number varchar_pattern_ops) INCLUDE (created_at, id)",
)
DJANGOS = "ON invoices_invoice (number varchar_pattern_ops)"


def _djangos_name(schema_editor) -> str:
    return schema_editor._create_index_name("invoices_invoice", ["number"], suffix="_like")


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {NEW[0]} {NEW[1]}")
    schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {_djangos_name(schema_editor)}")


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(
        f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {_djangos_name(schema_editor)} {DJANGOS}"
    )
    schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {NEW[0]}")


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ("invoices", "0015_customer_index_in_list_order"),
    ]

    operations = [
        migrations.RunPython(forwards, backwards, elidable=False),
    ]
