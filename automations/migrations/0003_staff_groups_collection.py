from django.db import migrations

from ._staff_groups import staff_groups_sync


class Migration(migrations.Migration):
    """The staff groups cover the new collection models (billing settings, retry
    policies, payment methods and attempts)."""

    dependencies = [
        ("automations", "0002_billing_settings_retry_policies"),
        ("customers", "0003_payment_methods"),
        ("invoices", "0005_payment_attempts_and_collection_columns"),
    ]

    operations = [migrations.RunPython(staff_groups_sync, migrations.RunPython.noop)]
