"""Joins the documents branch's staff-groups migration to the others; the groups are
synced once more so that they cover every model, whichever order they ran in."""

from django.db import migrations

from ._staff_groups import staff_groups_sync


class Migration(migrations.Migration):
    dependencies = [
        ("automations", "0002_staff_groups_branding_documents"),
        ("automations", "0004_merge_notifications_collection"),
        ("invoices", "0006_merge_documents_collection"),
    ]

    operations = [migrations.RunPython(staff_groups_sync, migrations.RunPython.noop)]
