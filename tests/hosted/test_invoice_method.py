"""The page's "Pay with <saved method>" names the method collection would charge: the
invoice's own (a subscription's default payment method), else the customer's."""

import pytest
from django.utils.text import capfirst

from invoices.models import Invoice, PaymentAttempt
from invoices.services import invoice_finalize

from ..factories import NOW, STAFF, add_card, make_customer, make_draft
from .conftest import page_url
from .test_pay import NONCE_INPUT

pytestmark = pytest.mark.django_db


def _open_invoice(customer, **fields) -> Invoice:
    invoice = make_draft(customer, collection_method=Invoice.CollectionMethod.SEND_INVOICE,
                         days_until_due=30, **fields)
    return invoice_finalize(invoice, now=NOW, actor=STAFF)


def test_the_page_offers_the_invoices_own_method_and_charges_it(client, frozen):
    customer = make_customer()
    add_card(customer, "sim_4242")  # the customer's default: Visa •••• 4242
    company_card = add_card(customer, "sim_4444", make_default=False)
    invoice = _open_invoice(customer, default_payment_method=company_card)

    page = client.get(page_url(invoice)).content.decode()
    assert f"with {capfirst(str(company_card))}" in page
    assert "4242" not in page.split('id="pay-title"')[1].split("</form>")[0]

    nonce = NONCE_INPUT.findall(page)[0]
    client.post(page_url(invoice, "pay"), {"with": "saved", "nonce": nonce, "amount": 10000})
    attempt = PaymentAttempt.objects.get(invoice=invoice)
    assert attempt.payment_method_id == company_card.pk


def test_without_a_method_of_its_own_the_page_offers_the_customers(client, frozen):
    customer = make_customer()
    card = add_card(customer, "sim_4242")
    invoice = _open_invoice(customer)
    assert f"with {capfirst(str(card))}" in client.get(page_url(invoice)).content.decode()
