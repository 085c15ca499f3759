"""The staff groups cover the notification models (settings, templates, outbox,
customers' reminder preferences)."""

from django.db import migrations

from ._staff_groups import staff_groups_sync


class Migration(migrations.Migration):
    dependencies = [("automations", "0002_notifications")]

    operations = [migrations.RunPython(staff_groups_sync, migrations.RunPython.noop)]
