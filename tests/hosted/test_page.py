"""The invoice page through the test client: every state, the language, what it never
shows, its headers and its cost."""

import re
from datetime import UTC, datetime

import pytest
from django.db import connection
from django.test import Client

from invoices.hosted import hosted_url, token_for
from invoices.hosted.links import hosted_link_revoke, link_states
from invoices.hosted.page import VIEW_WINDOW_SECONDS
from invoices.hosted.rendered import rendered_pages
from invoices.models import Event, Invoice
from invoices.services import invoice_mark_uncollectible, invoice_record_payment, invoice_void

from ..factories import NOW, STAFF, make_customer, make_draft, make_open
from .conftest import page_url, text_of

pytestmark = pytest.mark.usefixtures("frozen")

PAST_DUE_DAY = datetime(2026, 4, 10, 12, 0, tzinfo=UTC)  # due 2026-04-01
EXPIRED_DAY = datetime(2026, 5, 2, 0, 0, tzinfo=UTC)  # 30 days after the due date


def views(invoice) -> int:
    return Event.objects.filter(invoice=invoice, type="invoice.hosted_page_viewed").count()


@pytest.fixture
def invoice():
    customer = make_customer(name="Acme SARL", address_line1="1 rue de Rivoli", city="Paris")
    return make_open(customer, lines=((2, 4500), (1, 1000)))


# --- states ---------------------------------------------------------------------------


def test_an_open_invoice_shows_what_is_due_and_records_the_visit(client, invoice):
    response = client.get(page_url(invoice))

    assert response.status_code == 200
    body = response.content.decode()
    assert f"Invoice {invoice.number}" in body
    assert 'class="badge open">Open<' in body
    assert "€100.00" in body  # amount due
    assert "April 1, 2026" in body  # due date
    assert "Acme SARL" in body and "1 rue de Rivoli" in body
    assert "Consulting" in body and "€45.00" in body and "€90.00" in body
    event = Event.objects.get(invoice=invoice, type="invoice.hosted_page_viewed")
    assert (event.actor_kind, event.created_at) == ("customer", NOW)
    assert event.customer_id == invoice.customer_id


def test_a_visitor_is_recorded_once_per_window_and_every_visitor_is(client, invoice, frozen):
    for _ in range(3):  # a customer reloading, a mail filter opening the link again
        client.get(page_url(invoice))
    client.get(page_url(invoice), HTTP_USER_AGENT="another browser")
    assert views(invoice) == 2

    frozen.shift(VIEW_WINDOW_SECONDS + 1)
    client.get(page_url(invoice))
    assert views(invoice) == 3  # the window passed: Smart Retries still see recent visits


def test_a_client_trying_unknown_links_is_throttled(client, invoice):
    guesses = [client.get(f"/i/{'x' * 42}{n % 10}/").status_code for n in range(25)]

    assert guesses == [404] * 20 + [429] * 5
    assert client.get("/i/anything-else/").status_code == 429
    assert Client(REMOTE_ADDR="10.0.0.2").get(f"/i/{'x' * 43}/").status_code == 404
    assert client.get(page_url(invoice)).status_code == 200  # live links are not throttled


def test_a_head_is_no_visit(client, invoice):
    client.head(page_url(invoice))
    assert views(invoice) == 0


def test_a_past_due_invoice_says_so(client, invoice, frozen):
    frozen.move_to(PAST_DUE_DAY)
    body = client.get(page_url(invoice)).content.decode()
    assert 'class="badge past_due">Past due<' in body
    assert "€100.00" in body


def test_a_paid_invoice_shows_the_payment_and_nothing_due(client, invoice):
    invoice_record_payment(
        invoice, amount=10000, method="bank_transfer", now=NOW, actor=STAFF, reference="TX-1"
    )
    body = client.get(page_url(invoice)).content.decode()
    assert 'class="badge paid">Paid<' in body
    assert "€0.00" in body
    assert "Bank transfer" in body and "Amount paid" in body
    assert "TX-1" not in body  # staff's reference stays in the back office


def test_a_partly_paid_invoice_shows_the_remaining_amount(client, invoice):
    invoice_record_payment(invoice, amount=2500, method="cheque", now=NOW, actor=STAFF)
    body = client.get(page_url(invoice)).content.decode()
    assert 'id="amount-due">€75.00<' in body
    assert "Cheque" in body


def test_a_void_invoice_says_nothing_is_due(client, invoice):
    invoice_void(invoice, now=NOW, actor=STAFF)
    body = client.get(page_url(invoice)).content.decode()
    assert 'class="badge void">Void<' in body
    assert "Nothing is due" in body


def test_an_uncollectible_invoice_can_still_be_read(client, invoice):
    invoice_mark_uncollectible(invoice, now=NOW, actor=STAFF)
    body = client.get(page_url(invoice)).content.decode()
    assert 'class="badge uncollectible">Uncollectible<' in body
    assert "€100.00" in body


def test_an_expired_link_offers_a_fresh_one_and_shows_nothing_of_the_invoice(
    client, invoice, frozen
):
    frozen.move_to(EXPIRED_DAY)
    response = client.get(page_url(invoice))

    assert response.status_code == 410
    body = response.content.decode()
    assert "This link has expired" in body
    assert 'type="email"' in body and "Email me a fresh link" in body
    assert "€100.00" not in body and "Acme SARL" not in body and "Consulting" not in body
    assert views(invoice) == 0


def test_the_link_works_until_its_last_moment(client, invoice, frozen):
    frozen.move_to(datetime(2026, 5, 1, 23, 59, tzinfo=UTC))
    assert client.get(page_url(invoice)).status_code == 200


def test_a_revoked_link_is_the_same_page_as_an_unknown_one(client, invoice):
    old = page_url(invoice)
    hosted_link_revoke(invoice, now=NOW, actor=STAFF)
    revoked = client.get(old)
    unknown = client.get("/i/" + "A" * 43 + "/")
    assert revoked.status_code == unknown.status_code == 404
    assert text_of(revoked) == text_of(unknown)
    assert "Invoice not found" in text_of(revoked)


@pytest.mark.parametrize("mangle", [
    pytest.param(lambda t: t[:-1], id="truncated"),
    pytest.param(lambda t: t[:-1] + ("B" if t[-1] != "B" else "C"), id="last character changed"),
    pytest.param(lambda t: t + "A", id="one character more"),
    pytest.param(lambda t: t.upper(), id="case changed"),
    pytest.param(lambda t: t[:20], id="half"),
    pytest.param(lambda t: "%00" + t, id="nul byte"),
    pytest.param(lambda t: "..%2F..%2Fadmin", id="path tricks"),
    pytest.param(lambda t: "x" * 5000, id="very long"),
])
def test_tampered_tokens_all_get_the_same_not_found_page(client, invoice, mangle):
    reference = client.get("/i/" + "A" * 43 + "/")
    response = client.get(f"/i/{mangle(token_for(invoice))}/")
    assert response.status_code == 404
    assert text_of(response) == text_of(reference)
    assert views(invoice) == 0


def test_unknown_paths_under_the_page_are_the_same_not_found_page(client, invoice):
    reference = client.get("/i/" + "A" * 43 + "/")
    response = client.get(page_url(invoice, "settings/../admin"))
    assert response.status_code == 404
    assert text_of(response) == text_of(reference)


def test_a_draft_has_no_page(client):
    draft = make_draft()
    assert draft.hosted_token_hash == ""
    assert client.get("/i/" + "A" * 43 + "/").status_code == 404


def test_only_get_reads_the_page(client, invoice):
    assert client.post(page_url(invoice)).status_code == 405
    assert views(invoice) == 0


# --- language -----------------------------------------------------------------------


def test_the_page_speaks_the_customers_language(client):
    invoice = make_open(make_customer(preferred_locale="fr"))
    response = client.get(page_url(invoice), HTTP_ACCEPT_LANGUAGE="en")
    body = response.content.decode()
    assert '<html lang="fr">' in body
    assert "Montant dû" in body and "100,00\xa0€" in body and "1 avril 2026" in body
    assert response["Content-Language"] == "fr"


def test_the_page_does_not_vary_with_the_browsers_language(client, invoice):
    """Its language is the customer's or the one picked on the page: the locale
    middleware, which negotiates Accept-Language, skips invoice pages."""
    response = client.get(page_url(invoice), HTTP_ACCEPT_LANGUAGE="fr")
    assert "Amount due" in response.content.decode() and response["Content-Language"] == "en"
    assert "Accept-Language" not in response.get("Vary", "")


def test_the_not_found_page_speaks_the_browsers_language(client):
    response = client.get("/i/" + "A" * 43 + "/", HTTP_ACCEPT_LANGUAGE="fr")
    assert response.status_code == 404
    assert "Facture introuvable" in response.content.decode()
    assert response["Content-Language"] == "fr" and "Accept-Language" in response["Vary"]
    english = client.get("/i/unknown/path", HTTP_ACCEPT_LANGUAGE="en")
    assert "Invoice not found" in english.content.decode()


def test_the_reader_can_switch_language(client):
    invoice = make_open(make_customer(preferred_locale="fr"))
    body = client.get(page_url(invoice, lang="pt-br")).content.decode()
    assert '<html lang="pt-br">' in body
    assert "Valor devido" in body and "€\xa0100,00" in body and "1 de Abril de 2026" in body
    for code in ("en", "fr", "pt-br"):
        assert f'hreflang="{code}"' in body
    assert Event.objects.get(type="invoice.hosted_page_viewed").data == {"language": "pt-br"}


@pytest.mark.parametrize("lang", ["xx", "de", "pt", "fr-FR<script>", "", "%00"])
def test_a_language_that_does_not_exist_falls_back_to_the_customers(client, lang):
    invoice = make_open(make_customer(preferred_locale="fr"))
    response = client.get(page_url(invoice) + f"?lang={lang}")
    assert response.status_code == 200
    assert '<html lang="fr">' in response.content.decode()


def test_language_codes_are_read_in_any_case(client, invoice):
    body = client.get(page_url(invoice, lang="pt_BR")).content.decode()
    assert '<html lang="pt-br">' in body


# --- never shown --------------------------------------------------------------------


def test_the_page_shows_no_back_office_data(client):
    customer = make_customer(name="Acme", metadata={"crm_secret": "VIP-discount-99"})
    invoice = make_open(customer, metadata={"internal_note": "chase-hard-42"})
    Invoice.objects.filter(pk=invoice.pk).update(last_payment_error="issuer says stolen")
    body = client.get(page_url(invoice)).content.decode()
    for secret in ("VIP-discount-99", "chase-hard-42", "crm_secret", "alice", "/admin/",
                   "issuer says stolen", invoice.hosted_token_salt, invoice.hosted_token_hash):
        assert secret not in body


def test_the_page_shows_the_billing_details_frozen_at_finalization(client, invoice):
    invoice.customer.name = "Renamed Later Ltd"
    invoice.customer.save()
    body = client.get(page_url(invoice)).content.decode()
    assert "Acme SARL" in body and "Renamed Later Ltd" not in body


# --- headers ------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["open", "expired", "unknown"])
def test_every_response_carries_the_security_headers(client, invoice, frozen, state):
    if state == "expired":
        frozen.move_to(EXPIRED_DAY)
    url = "/i/" + "A" * 43 + "/" if state == "unknown" else page_url(invoice)
    response = client.get(url)
    csp = response["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp
    nonce = csp.split("'nonce-")[1].split("'")[0]
    assert f'<style nonce="{nonce}">' in response.content.decode()
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "no-referrer"
    assert response["Cache-Control"] == "no-store"
    assert "noindex" in response["X-Robots-Tag"]


def test_the_page_loads_nothing_from_elsewhere(client, invoice):
    body = client.get(page_url(invoice)).content.decode()
    assert "<script" not in body and "http://" not in body and "https://" not in body


# --- cost -----------------------------------------------------------------------------


def test_the_page_costs_a_few_queries_whatever_the_number_of_lines(
    client, django_assert_max_num_queries
):
    small = make_open(lines=((1, 100),))
    big = make_open(lines=[(1, 100 + n) for n in range(40)])
    for invoice in (small, big):
        invoice_record_payment(invoice, amount=50, method="cheque", now=NOW, actor=STAFF)
    client.get(page_url(small))  # the settings and branding rows exist from here on
    rendered_pages.clear()
    link_states.clear()
    # Invoice with customer, settings and branding (on PostgreSQL: their versions, then
    # the rows), the visit (savepoint, SET LOCAL on PostgreSQL, INSERT, release),
    # payments, attempts, and to render the page: lines.
    # (A new visitor each time: a visitor's first visit is the one recorded.)
    budget = 8 if connection.vendor == "postgresql" else 7
    with django_assert_max_num_queries(budget) as small_queries:
        client.get(page_url(small), HTTP_USER_AGENT="first visit")
    with django_assert_max_num_queries(budget) as big_queries:
        client.get(page_url(big), HTTP_USER_AGENT="first visit")
    assert len(small_queries) == len(big_queries)
    inserts = [q["sql"] for q in big_queries.captured_queries if q["sql"].startswith("INSERT")]
    assert len(inserts) == 1 and "invoices_event" in inserts[0]


def test_a_page_seen_before_in_the_same_state_is_not_rendered_again(
    client, invoice, django_assert_max_num_queries
):
    first = client.get(page_url(invoice))
    # The same visitor again: the link's row, payments, attempts; no lines, no visit
    # written, nothing rendered.
    with django_assert_max_num_queries(3) as queries:
        again = client.get(page_url(invoice))
    assert not any("invoices_invoiceline" in q["sql"] for q in queries.captured_queries)
    assert without_form_nonces(text_of(again)) == without_form_nonces(text_of(first))
    assert views(invoice) == 1


def without_form_nonces(body: str) -> str:
    return re.sub(r'name="nonce" value="[^"]+"', 'name="nonce" value=""', body)


# --- links for emails -----------------------------------------------------------------


def test_hosted_url_is_absolute_on_the_site_url(settings, invoice):
    settings.SITE_URL = "https://billing.example.com"
    assert hosted_url(invoice) == f"https://billing.example.com/i/{token_for(invoice)}/"


def test_hosted_url_uses_the_request_when_there_is_one(rf, invoice):
    request = rf.get("/", HTTP_HOST="127.0.0.1:8000")
    assert hosted_url(invoice, request) == f"http://127.0.0.1:8000/i/{token_for(invoice)}/"


def test_hosted_url_is_empty_without_a_live_link(invoice):
    hosted_link_revoke(invoice, now=NOW, actor=STAFF)
    assert hosted_url(invoice) == "" and hosted_url(make_draft()) == ""


def test_a_head_request_is_not_a_visit(client, invoice):
    assert client.head(page_url(invoice)).status_code == 200
    assert views(invoice) == 0


def test_tokens_never_reach_the_logs(client, invoice, frozen):
    import logging

    from invoices.hosted.logs import RedactInvoiceTokens

    frozen.move_to(EXPIRED_DAY)
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    handler.addFilter(RedactInvoiceTokens())
    logging.getLogger("django.request").addHandler(handler)
    try:
        client.get(page_url(invoice))  # 410, logged as a warning by Django
    finally:
        logging.getLogger("django.request").removeHandler(handler)
    messages = [record.getMessage() for record in records]
    assert messages and all(token_for(invoice) not in message for message in messages)
    assert "/i/<token>/" in messages[0]
