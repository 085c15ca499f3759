"""The staff groups cover branding and stored documents: Finance admins change the
branding, Collections agents and Auditors read it and the documents."""

from django.db import migrations

from ._staff_groups import staff_groups_sync


class Migration(migrations.Migration):
    dependencies = [
        ("automations", "0001_staff_groups"),
        ("invoices", "0005_branding_documents"),
    ]

    operations = [migrations.RunPython(staff_groups_sync, migrations.RunPython.noop)]
