"""The revisions' index (from_invoice) covers only the invoices that are revisions: on a
status change, every other invoice then updates one index fewer."""

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('customers', '0003_payment_methods'),
        ('invoices', '0013_open_list_index_carries_due_date'),
    ]

    operations = [
        migrations.AddIndex(
            model_name='invoice',
            index=models.Index(condition=models.Q(('from_invoice__isnull', False)), fields=['from_invoice'], name='invoice_from_invoice_idx'),
        ),
        migrations.AlterField(
            model_name='invoice',
            name='from_invoice',
            field=models.ForeignKey(blank=True, db_index=False, editable=False, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='revisions', to='invoices.invoice', verbose_name='revision of'),
        ),
    ]
