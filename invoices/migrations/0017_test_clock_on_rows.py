"""Invoices and payment attempts carry their customer's test clock, copied when they are
written (a customer's clock never changes), with partial indexes of the clock's "next
action at" columns: a test clock finds its next due moment with one index probe instead
of joining every due row to its customer (what made `simulate` at 5,000 customers take
35-45 minutes a mode). Rows of clock customers written before are filled in here; the
indexes hold only clock rows and are built CONCURRENTLY on PostgreSQL (atomic = False).
"""

import django.db.models.deletion
from django.db import migrations, models
from django.db.models import OuterRef, Subquery

INDEXES = [
    ('invoice', models.Index(condition=models.Q(('auto_advance', True), ('status', 'draft'), ('test_clock__isnull', False)), fields=['test_clock', 'automatically_finalizes_at'], name='invoice_clock_finalize_idx')),
    ('invoice', models.Index(condition=models.Q(('next_payment_attempt__isnull', False), ('status', 'open'), ('test_clock__isnull', False)), fields=['test_clock', 'next_payment_attempt'], name='invoice_clock_attempt_idx')),
    ('invoice', models.Index(condition=models.Q(('past_due_at__isnull', False), ('status', 'open'), ('test_clock__isnull', False)), fields=['test_clock', 'past_due_at'], name='invoice_clock_past_due_idx')),
    ('paymentattempt', models.Index(condition=models.Q(('status__in', ['pending', 'processing']), ('test_clock__isnull', False)), fields=['test_clock', 'check_at'], name='attempt_clock_check_idx')),
]


def clocks_fill(apps, schema_editor):
    Customer = apps.get_model("customers", "Customer")
    clock = Subquery(Customer.objects.filter(pk=OuterRef("customer_id")).values("test_clock"))
    for model_name in ("invoice", "paymentattempt"):
        model = apps.get_model("invoices", model_name)
        model.objects.filter(customer__test_clock__isnull=False).update(test_clock=clock)


def indexes_create(apps, schema_editor):
    concurrently = schema_editor.connection.vendor == "postgresql"
    for model_name, index in INDEXES:
        model = apps.get_model("invoices", model_name)
        if concurrently:
            schema_editor.add_index(model, index, concurrently=True)
        else:
            schema_editor.add_index(model, index)


def indexes_drop(apps, schema_editor):
    for model_name, index in INDEXES:
        schema_editor.remove_index(apps.get_model("invoices", model_name), index)


class Migration(migrations.Migration):
    atomic = False

    dependencies = [
        ('customers', '0003_payment_methods'),
        ('invoices', '0016_number_prefix_index_in_list_order'),
    ]

    operations = [
        migrations.AddField(
            model_name='invoice',
            name='test_clock',
            field=models.ForeignKey(blank=True, db_index=False, editable=False, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='customers.testclock', verbose_name='test clock'),
        ),
        migrations.AddField(
            model_name='paymentattempt',
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
