"""The page is rendered once per state and kept (invoices.hosted.rendered): a visit of a
kept page still gets its own nonces and CSRF token, and any change of what the page
shows, through a door or straight in the database, shows at once."""

import re
from datetime import UTC, datetime

import pytest
from django.db import transaction
from django.test import Client

from customers.models import PaymentMethod
from invoices.documents.models import Branding
from invoices.hosted.rendered import PageStore, SlottedPage, slot
from invoices.models import Invoice, PaymentAttempt
from invoices.services import invoice_record_payment, invoice_update

from ..factories import NOW, STAFF, add_card, make_customer, make_open
from .conftest import page_url

pytestmark = pytest.mark.usefixtures("frozen")

FORM_NONCE = re.compile(r'name="nonce" value="([^"]+)"')
CSRF_INPUT = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
STYLE_NONCE = re.compile(r'<style nonce="([^"]+)">')


@pytest.fixture
def invoice():
    return make_open(make_customer(name="Acme SARL"), lines=((2, 4500), (1, 1000)))


def body(client, invoice, **query) -> str:
    response = client.get(page_url(invoice, **query))
    assert response.status_code == 200
    return response.content.decode()


def test_each_visit_of_a_kept_page_gets_its_own_nonces(client, invoice):
    first, second = client.get(page_url(invoice)), client.get(page_url(invoice))

    styles = [STYLE_NONCE.search(r.content.decode())[1] for r in (first, second)]
    assert styles[0] != styles[1]
    for response, nonce in zip((first, second), styles, strict=True):
        assert f"'nonce-{nonce}'" in response["Content-Security-Policy"]
    forms = [FORM_NONCE.findall(r.content.decode()) for r in (first, second)]
    assert len(forms[1]) == 1 and forms[0] != forms[1]


def test_the_csrf_token_of_a_kept_page_is_accepted(invoice):
    Client().get(page_url(invoice))  # the page is kept from here on
    browser = Client(enforce_csrf_checks=True)
    page = browser.get(page_url(invoice)).content.decode()
    data = {
        "csrfmiddlewaretoken": CSRF_INPUT.search(page)[1], "nonce": FORM_NONCE.findall(page)[-1],
        "amount": invoice.amount_remaining, "number": "4242424242424242", "expiry": "12/30",
        "cvc": "123",
    }
    response = browser.post(page_url(invoice, "pay"), data, HTTP_SEC_FETCH_SITE="same-origin")

    assert response.status_code == 302
    assert PaymentAttempt.objects.get(invoice=invoice).status == "succeeded"


def test_a_page_without_forms_sets_no_csrf_cookie(client, invoice):
    assert "csrftoken" in client.get(page_url(invoice)).cookies
    invoice_record_payment(invoice, amount=10000, method="cheque", now=NOW, actor=STAFF)
    for _ in range(2):
        response = Client().get(page_url(invoice))
        assert 'class="badge paid">Paid<' in response.content.decode()
        assert "csrftoken" not in response.cookies


def test_a_payment_shows_at_once(client, invoice):
    assert 'id="amount-due">€100.00<' in body(client, invoice)
    invoice_record_payment(invoice, amount=2500, method="cheque", now=NOW, actor=STAFF)
    page = body(client, invoice)
    assert 'id="amount-due">€75.00<' in page and "Cheque" in page


def test_a_memo_edited_after_finalization_shows_at_once(client, invoice):
    body(client, invoice)
    invoice_update(invoice, now=NOW, actor=STAFF, description="Thanks for your order")
    assert "Thanks for your order" in body(client, invoice)


def test_a_change_made_straight_in_the_database_shows_at_once(client, invoice):
    """The kept page's key is the rows themselves, not the events that usually come
    with their changes."""
    body(client, invoice)
    Branding.objects.filter(pk=Branding.load().pk).update(company_name="Renamed Seller SAS")
    assert "Renamed Seller SAS" in body(client, invoice)
    add_card(invoice.customer)
    attempt = PaymentAttempt.objects.create(
        invoice=invoice, customer=invoice.customer, gateway_token="sim_4242",
        method_label="Visa •••• 4242", source="customer", amount=10000, currency="EUR",
        idempotency_key="test-attempt", status="processing", created_at=NOW, check_at=NOW,
    )
    assert "A payment for this invoice is processing." in body(client, invoice)
    PaymentAttempt.objects.filter(pk=attempt.pk).update(
        status="failed", failure_message="Your card was declined."
    )
    page = body(client, invoice, attempt=attempt.pk)
    assert "did not go through" in page and "Your card was declined." in page
    Invoice.objects.filter(pk=invoice.pk).update(footer="Footer written by hand")
    assert "Footer written by hand" in body(client, invoice)


def test_a_card_saved_later_offers_to_pay_with_it(client, invoice):
    assert "Pay €100.00 with" not in body(client, invoice)
    add_card(invoice.customer)
    assert "Pay €100.00 with Visa" in body(client, invoice)


def test_the_clock_alone_makes_a_kept_page_past_due(client, invoice, frozen):
    assert 'class="badge open">Open<' in body(client, invoice)
    frozen.move_to(datetime(2026, 4, 10, 12, 0, tzinfo=UTC))  # due 2026-04-01
    assert 'class="badge past_due">Past due<' in body(client, invoice)


def test_the_clock_alone_expires_a_link_seen_before(client, invoice, frozen):
    assert client.get(page_url(invoice)).status_code == 200
    frozen.move_to(datetime(2026, 9, 1, 12, 0, tzinfo=UTC))  # months after the due date
    assert client.get(page_url(invoice)).status_code == 410


def test_each_language_is_its_own_page(client, invoice):
    assert "Amount due" in body(client, invoice)
    assert "Montant dû" in body(client, invoice, lang="fr")
    assert "Amount due" in body(client, invoice, lang="en")


def test_the_store_keeps_the_pages_last_used_within_its_bounds():
    store = PageStore(count=3, size=100)
    page = SlottedPage.cut("x" * 30)
    for key in (b"a", b"b", b"c"):
        store.put(key, page)
    store.get(b"a")  # used: kept rather than b
    store.put(b"d", page)
    assert [key for key in (b"a", b"b", b"c", b"d") if store.get(key)] == [b"a", b"c", b"d"]
    store.put(b"e", SlottedPage.cut("y" * 60))  # 150 characters: the oldest go
    assert [key for key in (b"a", b"c", b"d", b"e") if store.get(key)] == [b"d", b"e"]


def test_slots_are_filled_where_the_page_has_them():
    page = SlottedPage.cut(f"<p>{slot('csp')}</p><i>{slot('csrf')}</i><b>{slot('csrf')}</b>")
    asked = []

    def token():
        asked.append(1)
        return "T"

    filled = page.fill({"csp": lambda: "N", "csrf": token, "saved": pytest.fail,
                        "card": pytest.fail})
    assert filled == "<p>N</p><i>T</i><b>T</b>" and asked == [1]


def test_the_page_token_is_a_masked_form_of_the_cookie_secret(invoice):
    from django.middleware.csrf import _unmask_cipher_token

    browser = Client()
    first = browser.get(page_url(invoice))
    secret = first.cookies["csrftoken"].value
    tokens = [CSRF_INPUT.search(first.content.decode())[1]]
    tokens.append(CSRF_INPUT.search(body(browser, invoice))[1])  # with the cookie now

    assert len(secret) == 32 and tokens[0] != tokens[1]  # masked anew on every response
    assert [_unmask_cipher_token(token) for token in tokens] == [secret, secret]


def test_a_visit_counted_already_asks_the_cache_nothing(client, invoice, monkeypatch):
    from django.core.cache import caches

    client.get(page_url(invoice))
    asked = []
    monkeypatch.setattr(
        caches["default"], "add", lambda *args, **kwargs: asked.append(args) or True
    )
    client.get(page_url(invoice))
    assert asked == []
    client.get(page_url(invoice), HTTP_USER_AGENT="another browser")
    assert len(asked) == 1  # a new visitor is asked about


def test_the_page_reads_in_one_query_on_postgresql_on_any_connection(
    client, invoice, django_assert_max_num_queries
):
    from django.db import connection

    client.get(page_url(invoice))
    reads = 1 if connection.vendor == "postgresql" else 3  # link, payments, attempts
    with django_assert_max_num_queries(reads):
        assert client.get(page_url(invoice)).status_code == 200
    # A new database connection (CONN_MAX_AGE, a failed health check) has none of the
    # statements prepared on the former one: they are prepared again.
    if connection.vendor == "postgresql":
        from invoices.hosted.links import _prepared_on

        with connection.cursor() as cursor:
            cursor.execute("DEALLOCATE ALL")
        _prepared_on.discard(connection.connection)
    with django_assert_max_num_queries(reads + 1):
        assert 'class="badge open">Open<' in client.get(page_url(invoice)).content.decode()


def test_a_change_of_the_invoices_own_payment_method_shows_at_once(client, invoice):
    """The invoice's own payment method (a subscription's) is charged instead of the
    customer's default while it is usable: a change of its row alone shows too."""
    add_card(invoice.customer, token="sim_4242")  # the customer's default
    own = add_card(invoice.customer, token="sim_9995", make_default=False)
    Invoice.objects.filter(pk=invoice.pk).update(default_payment_method=own)
    assert "•••• 9995" in body(client, invoice)
    PaymentMethod.objects.filter(pk=own.pk).update(status=PaymentMethod.Status.DETACHED)
    page = body(client, invoice)
    assert "•••• 9995" not in page and "•••• 4242" in page


def test_a_row_changed_twice_in_one_transaction_shows_each_time(client, invoice):
    """The page's rows are known by their versions: a row written twice by the same
    transaction (as a test does) still gets a new version each time."""
    with transaction.atomic():
        for footer in ("First footer", "Second footer"):
            Invoice.objects.filter(pk=invoice.pk).update(footer=footer)
            assert footer in body(client, invoice)


def test_a_test_clock_moving_alone_makes_the_page_past_due():
    """The visits of one state share what was read, except a customer on a test clock:
    its clock moves without any row of the page changing."""
    from customers.models import TestClock
    from customers.services import test_clock_advance

    clock = TestClock.objects.create(name="rehearsal", frozen_time=NOW)
    invoice = make_open(make_customer(test_clock=clock))  # due 2026-04-01
    client = Client()
    for _ in range(2):
        assert 'class="badge open">Open<' in body(client, invoice)
    test_clock_advance(clock, to=datetime(2026, 4, 10, 12, 0, tzinfo=UTC))
    assert 'class="badge past_due">Past due<' in body(client, invoice)


def test_visits_leave_what_the_visits_of_their_state_share_unchanged(client, invoice):
    from django.db import connection

    from invoices.hosted import token_for
    from invoices.hosted.links import link_read

    if connection.vendor != "postgresql":
        pytest.skip("the versions of rows are PostgreSQL's")
    add_card(invoice.customer)
    body(client, invoice)
    shared = link_read(token_for(invoice), with_shown=True)
    instances = [shared.invoice, shared.invoice.customer, shared.settings, shared.branding,
                 shared.invoice.customer.default_payment_method]
    before = [(dict(vars(i)), set(i._state.fields_cache)) for i in instances]
    # A new visitor (a view recorded), another language (the page rendered), a reload.
    body(Client(HTTP_USER_AGENT="another browser"), invoice, lang="fr")
    body(client, invoice)
    assert link_read(token_for(invoice), with_shown=True) is shared
    assert [(dict(vars(i)), set(i._state.fields_cache)) for i in instances] == before
