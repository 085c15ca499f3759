"""Joins the notifications migrations to the documents, collection and hosted ones; the
staff groups are synced once more so that they cover every model, whichever order the
branches' migrations ran in."""

from django.db import migrations

from ._staff_groups import staff_groups_sync


class Migration(migrations.Migration):
    dependencies = [
        ("automations", "0004_merge_documents_and_collection_groups"),
        ("automations", "0004_merge_notifications_collection"),
        ("invoices", "0007_merge_collection_and_hosted"),
    ]

    operations = [migrations.RunPython(staff_groups_sync, migrations.RunPython.noop)]
