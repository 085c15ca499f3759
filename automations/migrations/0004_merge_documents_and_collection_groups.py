"""Merge of the documents and collection branches: the staff groups synced once more,
so that they cover both sets of new models whichever order the two ran in."""

from django.db import migrations

from ._staff_groups import staff_groups_sync


class Migration(migrations.Migration):
    dependencies = [
        ("automations", "0002_staff_groups_branding_documents"),
        ("automations", "0003_staff_groups_collection"),
    ]

    operations = [migrations.RunPython(staff_groups_sync, migrations.RunPython.noop)]
