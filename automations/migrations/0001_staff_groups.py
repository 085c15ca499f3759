"""Create the staff groups: Finance admin, Collections agent, Auditor."""

from django.db import migrations

from ._staff_groups import staff_groups_delete, staff_groups_sync


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("customers", "0001_initial"),
        ("invoices", "0002_simulatedcharge"),
        ("django_celery_beat", "0019_alter_periodictasks_options"),
    ]

    operations = [migrations.RunPython(staff_groups_sync, staff_groups_delete)]
