"""Notification schedules and outbox emails carry their customer's test clock, copied
when written (a customer's clock never changes), with partial indexes of the clock's "next
action at" columns: a test clock finds its next due moment with one index probe instead
of joining every due row to its customer (what made `simulate` at 5,000 customers take
35-45 minutes a mode). Rows of clock customers written before are filled in here; the
indexes hold only clock rows and are built CONCURRENTLY on PostgreSQL (atomic = False).
"""

import django.db.models.deletion
from django.db import migrations, models
from django.db.models import OuterRef, Subquery

INDEXES = [
    ('notificationschedule', models.Index(condition=models.Q(('next_reminder_at__isnull', False), ('test_clock__isnull', False)), fields=['test_clock', 'next_reminder_at'], name='notify_clock_reminder_idx')),
    ('notificationschedule', models.Index(condition=models.Q(('overdue_alert_at__isnull', False), ('test_clock__isnull', False)), fields=['test_clock', 'overdue_alert_at'], name='notify_clock_alert_idx')),
    ('outboxmessage', models.Index(condition=models.Q(('status__in', ['pending', 'sending']), ('test_clock__isnull', False)), fields=['test_clock', 'next_attempt_at'], name='outbox_clock_due_idx')),
]


def clocks_fill(apps, schema_editor):
    Customer = apps.get_model("customers", "Customer")
    Invoice = apps.get_model("invoices", "Invoice")  # filled by invoices' migration
    Schedule = apps.get_model("automations", "NotificationSchedule")
    Outbox = apps.get_model("automations", "OutboxMessage")
    Schedule.objects.filter(invoice__customer__test_clock__isnull=False).update(
        test_clock=Subquery(Invoice.objects.filter(pk=OuterRef("invoice_id")).values("test_clock"))
    )
    Outbox.objects.filter(customer__test_clock__isnull=False).update(
        test_clock=Subquery(Customer.objects.filter(pk=OuterRef("customer_id")).values("test_clock"))
    )


def indexes_create(apps, schema_editor):
    concurrently = schema_editor.connection.vendor == "postgresql"
    for model_name, index in INDEXES:
        model = apps.get_model("automations", model_name)
        if concurrently:
            schema_editor.add_index(model, index, concurrently=True)
        else:
            schema_editor.add_index(model, index)


def indexes_drop(apps, schema_editor):
    for model_name, index in INDEXES:
        schema_editor.remove_index(apps.get_model("automations", model_name), index)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('automations', '0005_merge_notifications'),
        ('customers', '0003_payment_methods'),
        ('invoices', '0017_test_clock_on_rows'),
    ]

    operations = [
        migrations.AddField(
            model_name='notificationschedule',
            name='test_clock',
            field=models.ForeignKey(blank=True, db_index=False, editable=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='customers.testclock', verbose_name='test clock'),
        ),
        migrations.AddField(
            model_name='outboxmessage',
            name='test_clock',
            field=models.ForeignKey(blank=True, db_index=False, editable=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='customers.testclock', verbose_name='test clock'),
        ),
        migrations.RunPython(clocks_fill, migrations.RunPython.noop, elidable=False),
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AddIndex(model_name=model_name, index=index)
                for model_name, index in INDEXES
            ],
            database_operations=[
                migrations.RunPython(indexes_create, indexes_drop, elidable=False),
            ],
        ),
    ]
