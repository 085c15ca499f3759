"""Joins the notifications and collection migrations; the staff groups are synced once
more so that they cover the models of both, whichever order they ran in."""

from django.db import migrations

from ._staff_groups import staff_groups_sync


class Migration(migrations.Migration):
    dependencies = [
        ("automations", "0003_notifications_staff_groups"),
        ("automations", "0003_staff_groups_collection"),
    ]

    operations = [migrations.RunPython(staff_groups_sync, migrations.RunPython.noop)]
