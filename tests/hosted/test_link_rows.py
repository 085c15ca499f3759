"""The instances the invoice page builds from its one SQL row equal those the ORM reads
(invoices.hosted.rows), and signal listeners on a model still see them built."""

import pytest
from django.db.models.signals import post_init

from customers.models import Customer, PaymentMethod
from invoices.hosted import token_for
from invoices.hosted.links import link_read
from invoices.models import Branding, Invoice, InvoicingSettings
from tests.factories import add_card, make_customer, make_open

pytestmark = pytest.mark.django_db


def fields(instance) -> dict:
    return {f.attname: getattr(instance, f.attname) for f in type(instance)._meta.concrete_fields}


@pytest.fixture
def read():
    customer = make_customer(metadata={"crm": "42"})
    add_card(customer)  # the customer's default payment method, read with the link
    invoice = make_open(customer)
    return link_read(token_for(invoice), with_shown=True)


def test_each_instance_equals_the_orms(read):
    invoice = read.invoice
    pairs = [
        (invoice, Invoice.objects.get(pk=invoice.pk)),
        (invoice.customer, Customer.objects.get(pk=invoice.customer_id)),
        (read.settings, InvoicingSettings.objects.get(pk=read.settings.pk)),
        (read.branding, Branding.objects.get(pk=read.branding.pk)),
    ]
    method = invoice.customer.default_payment_method
    assert method is not None
    pairs.append((method, PaymentMethod.objects.get(pk=method.pk)))
    for built, orm in pairs:
        assert type(built) is type(orm)
        assert fields(built) == fields(orm)
        assert (built._state.adding, built._state.db) == (False, "default")
        assert built == orm and built.pk == orm.pk


def test_a_listener_of_the_init_signals_sees_the_instances_built(read):
    seen = []

    def listener(sender, instance, **kwargs):
        seen.append(type(instance))

    post_init.connect(listener, sender=Invoice)
    try:
        again = link_read(token_for(read.invoice))
    finally:
        post_init.disconnect(listener, sender=Invoice)
    assert seen == [Invoice]
    assert fields(again.invoice) == fields(read.invoice)
