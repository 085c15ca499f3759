from django.db import migrations

from ._staff_groups import staff_groups_sync


class Migration(migrations.Migration):
    """The staff groups cover the subscriptions (finance admins change them, collections
    agents and auditors see them)."""

    dependencies = [
        ("automations", "0006_subscription_after_last_retry"),
        ("subscriptions", "0001_initial"),
    ]

    operations = [migrations.RunPython(staff_groups_sync, migrations.RunPython.noop)]
