"""Invoice page links: validity, rotation and revocation (domain and admin), and the
fresh link a customer asks for from an expired one."""

from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta

import pytest
from django.core import mail
from django.urls import reverse

from automations.notifications.delivery import outbox_drain
from customers.actors import Actor
from customers.clock import system_now
from customers.errors import DomainError
from invoices.hosted import token_for
from invoices.hosted.fresh_link import hosted_link_request
from invoices.hosted.links import (
    hosted_link_revoke,
    hosted_link_rotate,
    invoice_for_token,
    link_expires_at,
    link_read,
)
from invoices.hosted.page import row
from invoices.models import Branding, Event, Invoice, InvoicingSettings
from invoices.services import invoice_record_payment

from ..factories import NOW, STAFF, add_card, make_customer, make_draft, make_open
from .conftest import page_url, text_of

pytestmark = pytest.mark.usefixtures("frozen")

EXPIRED_DAY = datetime(2026, 5, 3, tzinfo=UTC)
CUSTOMER = Actor.customer("invoice page")


def event_types(invoice) -> list[str]:
    """What happened to the invoice, visits of its page aside."""
    events = Event.objects.filter(invoice=invoice).exclude(type="invoice.hosted_page_viewed")
    return list(events.order_by("id").values_list("type", flat=True))


def settings_row(**fields) -> InvoicingSettings:
    InvoicingSettings.load()
    InvoicingSettings.objects.filter(pk=1).update(**fields)
    return InvoicingSettings.load()


# --- validity -----------------------------------------------------------------------


def test_a_link_works_until_the_set_days_after_the_end_of_the_due_date():
    invoice = make_open(make_customer(timezone="Europe/Paris"))  # due 2026-04-01
    expires = link_expires_at(invoice, settings_row(hosted_link_days_after_due=10))
    assert expires == datetime(2026, 4, 11, 22, 0, tzinfo=UTC)  # midnight in Paris (CEST)


def test_without_a_due_date_the_days_count_from_finalization():
    invoice = make_open(collection_method="charge_automatically")
    assert invoice.due_date is None
    assert link_expires_at(invoice, InvoicingSettings.load()) == NOW + timedelta(days=30)


def test_a_link_never_works_longer_than_the_maximum():
    invoice = make_open(due_date=date(2026, 12, 31))
    assert link_expires_at(invoice, InvoicingSettings.load()) == NOW + timedelta(days=120)
    short = settings_row(hosted_link_max_days=7)
    assert link_expires_at(invoice, short) == NOW + timedelta(days=7)


def test_a_link_issued_after_the_due_date_still_gets_its_days():
    invoice = make_open()  # due 2026-04-01
    later = datetime(2026, 6, 1, tzinfo=UTC)
    hosted_link_rotate(invoice, now=later, actor=STAFF)
    assert link_expires_at(invoice, InvoicingSettings.load()) == later + timedelta(days=30)


def test_changed_settings_apply_to_links_already_sent(client, frozen):
    invoice = make_open()
    frozen.move_to(datetime(2026, 4, 10, tzinfo=UTC))
    assert client.get(page_url(invoice)).status_code == 200
    settings_row(hosted_link_days_after_due=5)
    assert client.get(page_url(invoice)).status_code == 410


# --- rotation and revocation ---------------------------------------------------------


def test_rotating_issues_a_new_link_and_kills_the_old_one(client):
    invoice = make_open()
    old = token_for(invoice)
    hosted_link_rotate(invoice, now=NOW, actor=STAFF)

    assert token_for(invoice) != old
    assert invoice_for_token(old) is None
    assert invoice_for_token(token_for(invoice)).pk == invoice.pk
    assert client.get(f"/i/{old}/").status_code == 404
    assert client.get(page_url(invoice)).status_code == 200
    event = Event.objects.get(invoice=invoice, type="invoice.hosted_link_rotated")
    assert (event.actor_label, event.data) == ("alice", {"reason": "rotated"})
    assert old not in str(event.data) and invoice.hosted_token_salt not in str(event.data)


def test_revoking_kills_the_link_until_a_new_one_is_issued(client):
    invoice = make_open()
    old = token_for(invoice)
    hosted_link_revoke(invoice, now=NOW, actor=STAFF)

    stored = Invoice.objects.get(pk=invoice.pk)
    assert (stored.hosted_token_salt, stored.hosted_token_hash) == ("", "")
    assert client.get(f"/i/{old}/").status_code == 404
    with pytest.raises(DomainError, match="no live page link"):
        hosted_link_revoke(invoice, now=NOW, actor=STAFF)

    hosted_link_rotate(invoice, now=NOW, actor=STAFF)
    assert client.get(page_url(invoice)).status_code == 200
    assert client.get(f"/i/{old}/").status_code == 404
    assert event_types(invoice)[-2:] == ["invoice.hosted_link_revoked",
                                         "invoice.hosted_link_rotated"]


def test_a_draft_has_no_link_to_rotate():
    draft = make_draft()
    with pytest.raises(DomainError, match="finalize it first"):
        hosted_link_rotate(draft, now=NOW, actor=STAFF)
    assert Invoice.objects.get(pk=draft.pk).hosted_token_hash == ""


def test_a_rotated_link_starts_a_new_validity(client, frozen):
    invoice = make_open()
    frozen.move_to(EXPIRED_DAY)
    assert client.get(page_url(invoice)).status_code == 410
    hosted_link_rotate(invoice, now=EXPIRED_DAY, actor=STAFF)
    assert client.get(page_url(invoice)).status_code == 200


# --- the admin's buttons --------------------------------------------------------------


@pytest.fixture
def staff_client(client, admin_user):
    client.force_login(admin_user)
    return client


def change_page(invoice) -> str:
    return reverse("admin:invoices_invoice_change", args=[invoice.pk])


def test_staff_see_the_link_and_the_buttons(staff_client):
    invoice = make_open()
    body = staff_client.get(change_page(invoice)).content.decode()
    assert f"/i/{token_for(invoice)}/" in body
    assert "Works until 2026-05-02 00:00" in body
    assert reverse("admin:invoices_invoice_rotate_link", args=[invoice.pk]) in body
    assert reverse("admin:invoices_invoice_revoke_link", args=[invoice.pk]) in body


def test_staff_rotate_the_link_from_the_invoice(staff_client, admin_user):
    invoice = make_open()
    old = token_for(invoice)
    url = reverse("admin:invoices_invoice_rotate_link", args=[invoice.pk])
    response = staff_client.post(url, follow=True)

    assert "has a new page link" in response.content.decode()
    invoice.refresh_from_db()
    assert token_for(invoice) != old
    event = Event.objects.get(invoice=invoice, type="invoice.hosted_link_rotated")
    assert (event.actor_kind, event.actor_user_id) == ("staff", admin_user.pk)


def test_staff_revoke_the_link_and_then_see_no_revoke_button(staff_client):
    invoice = make_open()
    url = reverse("admin:invoices_invoice_revoke_link", args=[invoice.pk])
    response = staff_client.post(url, follow=True)

    body = response.content.decode()
    assert "page link revoked" in body and "No live link" in body
    assert url not in body
    assert Event.objects.filter(invoice=invoice, type="invoice.hosted_link_revoked").count() == 1
    again = staff_client.post(url, follow=True)
    assert "no live page link to revoke" in again.content.decode()
    assert Event.objects.filter(invoice=invoice, type="invoice.hosted_link_revoked").count() == 1


def test_drafts_have_no_link_buttons(staff_client):
    draft = make_draft()
    body = staff_client.get(change_page(draft)).content.decode()
    assert reverse("admin:invoices_invoice_rotate_link", args=[draft.pk]) not in body
    response = staff_client.post(
        reverse("admin:invoices_invoice_rotate_link", args=[draft.pk]), follow=True
    )
    assert "finalize it first" in response.content.decode()


def test_rotating_needs_the_change_permission(client, django_user_model):
    invoice = make_open()
    viewer = django_user_model.objects.create_user("viewer", password="pw", is_staff=True)
    client.force_login(viewer)
    response = client.post(reverse("admin:invoices_invoice_rotate_link", args=[invoice.pk]))
    assert response.status_code == 403
    assert not Event.objects.filter(type="invoice.hosted_link_rotated").exists()


# --- a fresh link, asked for from an expired one -------------------------------------


@pytest.fixture
def expired_invoice(frozen):
    invoice = make_open(make_customer(email="Billing@Acme.example", preferred_locale="fr"))
    frozen.move_to(EXPIRED_DAY)
    return invoice


@contextmanager
def emails_delivered():
    """What the block emails: queued by the request (the outbox), delivered by the worker
    after it. Emails queued before (the invoice itself) are delivered and set aside."""
    outbox_drain(now=system_now())
    mail.outbox.clear()
    yield
    outbox_drain(now=system_now())


def ask(client, invoice, email, token=None):
    token = token or token_for(invoice)
    return client.post(f"/i/{token}/link", {"email": email})


def test_the_customers_own_address_gets_a_fresh_link(
    client, expired_invoice
):
    old = token_for(expired_invoice)
    with emails_delivered():
        response = ask(client, expired_invoice, "  billing@ACME.example ")

    assert response.status_code == 302 and response["Location"] == "/i/link-sent/?lang=fr"
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.to == ["Billing@Acme.example"]
    expired_invoice.refresh_from_db()
    fresh = token_for(expired_invoice)
    assert fresh != old
    assert f"/i/{fresh}/" in message.body and old not in message.body
    assert expired_invoice.number in message.subject
    assert client.get(f"/i/{fresh}/").status_code == 200
    assert client.get(f"/i/{old}/").status_code == 404
    assert event_types(expired_invoice)[-3:] == ["invoice.hosted_link_rotated",
                                                 "invoice.hosted_link_sent", "email.sent"]
    sent = Event.objects.get(type="invoice.hosted_link_sent")
    assert sent.actor_kind == "customer" and "billing@" not in str(sent.data).lower()


def test_the_email_speaks_the_customers_language(
    client, expired_invoice
):
    with emails_delivered():
        ask(client, expired_invoice, "billing@acme.example")
    assert "Bonjour" in mail.outbox[0].body
    assert "facture" in mail.outbox[0].subject.lower()


def test_another_address_gets_the_same_answer_and_nothing_is_sent(
    client, expired_invoice
):
    with emails_delivered():
        stranger = ask(client, expired_invoice, "someone@else.example")
    token_before = token_for(expired_invoice)
    expired_invoice.refresh_from_db()

    assert stranger.status_code == 302 and stranger["Location"] == "/i/link-sent/?lang=fr"
    assert mail.outbox == [] and token_for(expired_invoice) == token_before
    assert event_types(expired_invoice) == [
        "invoice.created", "invoice.finalized", "email.sent",  # the invoice's own email
    ]
    assert text_of(client.get(stranger["Location"])) == text_of(client.get("/i/link-sent/?lang=fr"))


def test_the_answer_page_says_the_same_in_any_case(client):
    body = client.get("/i/link-sent/?lang=fr").content.decode()
    assert "Consultez votre boîte de réception" in body
    assert client.get("/i/link-sent/?lang=zz").status_code == 200


def test_a_customer_without_an_address_never_gets_a_link(frozen):
    invoice = make_open(make_customer(email=""))
    assert not hosted_link_request(invoice, email="", now=NOW, actor=CUSTOMER)
    assert not hosted_link_request(invoice, email=" ", now=NOW, actor=CUSTOMER)


@pytest.mark.parametrize("email", ["", "not-an-address", "a@b", "x" * 300 + "@example.com"])
def test_a_malformed_address_is_refused_with_a_message(client, expired_invoice, email):
    response = ask(client, expired_invoice, email)
    assert response.status_code == 400
    assert 'class="errorlist' in response.content.decode()
    assert mail.outbox == []
    assert event_types(expired_invoice) == ["invoice.created", "invoice.finalized"]


def test_a_live_link_is_not_replaced_from_its_own_page(client, django_capture_on_commit_callbacks):
    invoice = make_open(make_customer(email="billing@acme.example"))
    with emails_delivered():
        response = ask(client, invoice, "billing@acme.example")
    assert response.status_code == 302 and response["Location"].startswith(page_url(invoice))
    assert mail.outbox == []


def test_asking_with_an_unknown_token_is_the_not_found_page(client, expired_invoice):
    response = ask(client, expired_invoice, "billing@acme.example", token="A" * 43)
    assert response.status_code == 404


def test_asking_too_often_is_refused_for_a_while(
    client, expired_invoice
):
    with emails_delivered():
        answers = [ask(client, expired_invoice, "x@y.example").status_code for _ in range(3)]
        limited = ask(client, expired_invoice, "billing@acme.example")
    assert answers == [302, 302, 302]
    assert limited.status_code == 429
    assert "Trop de tentatives" in limited.content.decode()
    assert mail.outbox == []


def test_requests_from_one_address_are_limited_across_invoices(client, frozen):
    invoices = [make_open() for _ in range(11)]
    frozen.move_to(EXPIRED_DAY)
    statuses = [ask(client, invoice, "x@y.example").status_code for invoice in invoices]
    assert statuses == [302] * 10 + [429]


def test_the_form_needs_the_csrf_token(expired_invoice):
    from django.test import Client

    strict = Client(enforce_csrf_checks=True)
    response = strict.post(f"/i/{token_for(expired_invoice)}/link", {"email": "x@y.example"})
    assert response.status_code == 403


def test_links_work_before_anyone_saved_the_settings(client):
    invoice = make_open()
    InvoicingSettings.objects.all().delete()
    assert client.get(page_url(invoice)).status_code == 200
    assert link_expires_at(invoice_for_token(token_for(invoice)), InvoicingSettings()) == (
        datetime(2026, 5, 2, tzinfo=UTC)
    )


def test_the_lookup_reads_every_row_as_the_orm_does():
    """They are read in plain SQL (rows.py): every value, JSON, dates and decimals
    included, is the one the ORM reads."""
    customer = make_customer(
        name="Acme SARL", address_line1="1 rue de Rivoli", city="Paris", preferred_locale="fr",
        tax_ids=[{"type": "eu_vat", "value": "FR40303265045"}], metadata={"crm": "42"},
    )
    add_card(customer)
    invoice = make_open(customer, lines=((3, 3333),), discount_percent="12.5",
                        metadata={"po": "PO-7"}, description="Thanks")
    invoice_record_payment(invoice, amount=1000, method="cheque", now=NOW, actor=STAFF)
    Branding.objects.update_or_create(pk=1, defaults={"company_name": "Seller SAS"})

    read = link_read(token_for(invoice))
    orm = Invoice.objects.select_related("customer__default_payment_method").get(pk=invoice.pk)
    assert row(read.invoice) == row(orm) and row(read.invoice.customer) == row(orm.customer)
    method = read.invoice.customer.default_payment_method
    assert method.last4 == "4242" and row(method) == row(orm.customer.default_payment_method)
    assert row(read.settings) == row(InvoicingSettings.load())
    assert row(read.branding) == row(Branding.load()) and read.branding.company_name
    assert read.invoice.customer_details["tax_ids"] and read.invoice.metadata == {"po": "PO-7"}


def test_links_work_before_anyone_saved_the_branding(client):
    invoice = make_open()
    Branding.objects.all().delete()
    assert client.get(page_url(invoice)).status_code == 200
    assert Branding.objects.count() == 1
