"""Paying on the invoice page and saving a card: one idempotent path, clear declines,
nothing recorded twice, card numbers never kept."""

import re

import pytest
from django.test import Client

from invoices import collection
from invoices.gateways.models import SimulatedCharge
from invoices.models import Event, Invoice, Payment, PaymentAttempt

from ..factories import NOW, STAFF, add_card, make_charged, make_customer, make_open
from .conftest import page_url

pytestmark = pytest.mark.usefixtures("frozen")

SUCCEEDS, DECLINES = "4242 4242 4242 4242", "4000 0000 0000 9995"  # insufficient_funds
PROCESSING, ACTION, STOLEN = "4000000000002222", "4000002500003155", "4000000000009979"
NONCE_INPUT = re.compile(r'name="nonce" value="([^"]+)"')


@pytest.fixture
def invoice():
    return make_open(make_customer(name="Acme"), lines=((1, 10000),))


def nonces(client, invoice, **query) -> list[str]:
    """The nonces of the pay forms on the page, as a browser would get them."""
    return NONCE_INPUT.findall(client.get(page_url(invoice, **query)).content.decode())


def card_fields(number=SUCCEEDS, expiry="12/30", cvc="123") -> dict:
    return {"number": number, "expiry": expiry, "cvc": cvc}


def pay(client, invoice, *, nonce=None, amount=None, **card):
    data = {
        "nonce": nonce or nonces(client, invoice)[-1],
        "amount": invoice.amount_remaining if amount is None else amount,
        **card_fields(**card),
    }
    return client.post(page_url(invoice, "pay"), data)


def shown(client, response) -> str:
    assert response.status_code == 302, response.content.decode()[:2000]
    return client.get(response["Location"]).content.decode()


def nothing_recorded(invoice):
    assert not PaymentAttempt.objects.filter(invoice=invoice).exists()
    assert not SimulatedCharge.objects.exists()
    assert not Payment.objects.filter(invoice=invoice).exists()


# --- paying ---------------------------------------------------------------------------


def test_paying_with_a_card_pays_the_invoice(client, invoice):
    nonce = nonces(client, invoice)[-1]
    response = pay(client, invoice, nonce=nonce)

    attempt = PaymentAttempt.objects.get(invoice=invoice)
    assert response["Location"] == page_url(invoice) + f"?lang=en&attempt={attempt.pk}#payment"
    body = shown(client, response)
    assert "Thank you! Your payment of €100.00 was received." in body
    assert 'class="badge paid">Paid<' in body
    assert (attempt.source, attempt.idempotency_key) == ("customer", f"hosted-{invoice.pk}-{nonce}")
    assert (attempt.status, attempt.method_label) == ("succeeded", "Visa •••• 4242")
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_remaining) == ("paid", 0)
    assert 'name="number"' not in body  # nothing left to pay


def test_a_double_click_pays_once(client, invoice):
    nonce = nonces(client, invoice)[-1]
    first = pay(client, invoice, nonce=nonce)
    second = pay(client, invoice, nonce=nonce)

    assert first["Location"] == second["Location"]
    assert PaymentAttempt.objects.filter(invoice=invoice).count() == 1
    assert Payment.objects.filter(invoice=invoice).count() == 1
    assert SimulatedCharge.objects.count() == 1


def test_reloading_the_result_records_nothing_more(client, invoice):
    response = pay(client, invoice)
    for _ in range(3):
        client.get(response["Location"])
    assert PaymentAttempt.objects.count() == 1 and Payment.objects.count() == 1


def test_the_same_form_sent_back_with_another_card_returns_its_first_attempt(client, invoice):
    nonce = nonces(client, invoice)[-1]
    declined = pay(client, invoice, nonce=nonce, number=DECLINES)
    again = pay(client, invoice, nonce=nonce, number=SUCCEEDS)
    assert again["Location"] == declined["Location"]
    assert PaymentAttempt.objects.get().status == "failed"


def test_a_declined_card_is_explained_in_plain_words(client, invoice):
    body = shown(client, pay(client, invoice, number=DECLINES))

    assert "Your payment of €100.00 did not go through." in body
    assert "Your card has insufficient funds." in body
    assert "insufficient_funds" not in body  # the code is for staff
    invoice.refresh_from_db()
    assert (invoice.status, invoice.amount_remaining) == ("open", 10000)
    assert 'name="number"' in body  # they may try again, with a fresh form
    failed = Event.objects.get(invoice=invoice, type="invoice.payment_failed")
    assert failed.actor_kind == "customer"


def test_a_decline_is_explained_in_the_customers_language(client):
    invoice = make_open(make_customer(preferred_locale="fr"))
    body = shown(client, pay(client, invoice, number=DECLINES))
    assert "Votre carte n’a pas de fonds suffisants." in body


def test_the_next_try_after_a_decline_succeeds(client, invoice):
    pay(client, invoice, number=DECLINES)
    invoice.refresh_from_db()
    body = shown(client, pay(client, invoice, number=SUCCEEDS))
    assert "was received" in body
    assert PaymentAttempt.objects.filter(invoice=invoice).count() == 2


def test_a_payment_that_needs_the_bank_shows_what_to_do(client, invoice):
    body = shown(client, pay(client, invoice, number=ACTION))
    assert "Your bank asks you to approve this payment." in body
    assert "Please pay with another card." in body


def test_a_processing_payment_is_shown_and_not_paid_twice(client, invoice):
    body = shown(client, pay(client, invoice, number=PROCESSING))
    assert "Your payment of €100.00 is processing." in body
    assert 'id="pay-button"' not in body
    later = client.get(page_url(invoice)).content.decode()
    assert "A payment for this invoice is processing." in later

    forged = client.post(page_url(invoice, "pay"), {
        "nonce": "a-fresh-nonce-0123456789", "amount": 10000, **card_fields(),
    })
    assert forged.status_code == 409
    assert "already in progress" in forged.content.decode()
    assert PaymentAttempt.objects.filter(invoice=invoice).count() == 1


def test_a_paid_invoice_cannot_be_paid_again(client, invoice):
    stale_nonce = nonces(client, invoice)[-1]
    pay(client, invoice)
    response = client.post(page_url(invoice, "pay"), {
        "nonce": "another-nonce-0123456789", "amount": 10000, **card_fields(),
    })
    assert response.status_code == 409
    assert "This invoice has nothing left to pay." in response.content.decode()
    assert PaymentAttempt.objects.count() == 1 and Payment.objects.count() == 1
    assert pay(client, invoice, nonce=stale_nonce).status_code == 409


def test_a_void_invoice_cannot_be_paid(client, invoice):
    from invoices.services import invoice_void

    nonce = nonces(client, invoice)[-1]
    invoice_void(invoice, now=NOW, actor=STAFF)
    response = pay(client, invoice, nonce=nonce)
    assert response.status_code == 409
    nothing_recorded(invoice)


def test_an_uncollectible_invoice_can_be_paid(client, invoice):
    from invoices.services import invoice_mark_uncollectible

    invoice_mark_uncollectible(invoice, now=NOW, actor=STAFF)
    shown(client, pay(client, invoice))
    invoice.refresh_from_db()
    assert invoice.status == "paid"


# --- bad input ----------------------------------------------------------------------


@pytest.mark.parametrize("number,message", [
    ("", "This field is required."),
    ("abcd efgh ijkl mnop", "12 to 19 digits"),
    ("4242", "12 to 19 digits"),
    ("4242 4242 4242 4242 4242 4242", "12 to 19 digits"),
    ("٤٢٤٢٤٢٤٢٤٢٤٢٤٢٤٢", "12 to 19 digits"),  # digits, but not ASCII ones
    ("4111 1111 1111 1111", "not one of the test card numbers"),
])
def test_a_malformed_card_number_is_a_clear_message(client, invoice, number, message):
    response = pay(client, invoice, number=number)
    body = response.content.decode()
    assert response.status_code == 400
    assert message in body
    if number:
        # Never echoed back (the test cards listed on the page aside).
        assert number not in re.sub(r'<details class="test-cards">.*?</details>', "", body,
                                    flags=re.S)
    nothing_recorded(invoice)


def test_the_page_lists_test_cards_with_the_simulated_gateway(client, invoice):
    body = client.get(page_url(invoice)).content.decode()

    cards = body[body.index('class="test-cards"'):]
    assert "4242 4242 4242 4242</code> Succeeds" in cards
    assert "4000 0000 0000 9995</code> Declines: insufficient funds" in cards


@pytest.mark.parametrize("expiry,cvc,message", [
    ("13/30", "123", "MM/YY"),
    ("1/2", "123", "MM/YY"),
    ("02/26", "123", "This card has expired."),  # NOW is March 2026
    ("12/30", "12", "3 or 4 digit security code"),
    ("12/30", "12a", "3 or 4 digit security code"),
])
def test_a_bad_expiry_or_security_code_is_a_clear_message(client, invoice, expiry, cvc, message):
    response = pay(client, invoice, expiry=expiry, cvc=cvc)
    assert response.status_code == 400
    assert message in response.content.decode()
    nothing_recorded(invoice)


@pytest.mark.parametrize("amount,message", [
    ("", "The amount to pay is missing"),
    ("abc", "The amount to pay is not valid"),
    ("100.50", "The amount to pay is not valid"),
    ("1e4", "The amount to pay is not valid"),
    ("99999999999999999999999", "The amount due has changed"),
    ("-10000", "The amount due has changed"),
    ("9999", "The amount due has changed"),
])
def test_a_malformed_or_stale_amount_is_a_clear_message(client, invoice, amount, message):
    response = pay(client, invoice, amount=amount)
    assert response.status_code == 400
    assert message in response.content.decode()
    nothing_recorded(invoice)


@pytest.mark.parametrize("nonce", ["short", "has spaces in it 0123456789", "é" * 20, "x" * 65])
def test_a_malformed_nonce_is_refused(client, invoice, nonce):
    response = pay(client, invoice, nonce=nonce)
    assert response.status_code == 400
    assert "This form is out of date" in response.content.decode()
    nothing_recorded(invoice)


def test_the_amount_changed_since_the_page_was_loaded(client, invoice):
    from invoices.services import invoice_record_payment

    nonce = nonces(client, invoice)[-1]
    invoice_record_payment(invoice, amount=2500, method="cheque", now=NOW, actor=STAFF)
    response = pay(client, invoice, nonce=nonce, amount=10000)
    assert response.status_code == 400
    assert "The amount due has changed" in response.content.decode()
    assert not PaymentAttempt.objects.exists()


def test_paying_needs_the_csrf_token(invoice):
    strict = Client(enforce_csrf_checks=True)
    response = strict.post(page_url(invoice, "pay"), {
        "nonce": "a-fresh-nonce-0123456789", "amount": 10000, **card_fields(),
    })
    assert response.status_code == 403
    nothing_recorded(invoice)


def test_paying_with_an_unknown_token_is_the_not_found_page(client, invoice):
    response = client.post("/i/" + "A" * 43 + "/pay", {
        "nonce": "a-fresh-nonce-0123456789", "amount": 10000, **card_fields(),
    })
    assert response.status_code == 404
    nothing_recorded(invoice)


def test_paying_is_rate_limited(client, invoice):
    statuses = [
        pay(client, invoice, nonce=f"nonce-number-{n:012d}", number="4242").status_code
        for n in range(11)
    ]
    assert statuses == [400] * 10 + [429]


def test_the_card_number_is_kept_nowhere(
    client, invoice, caplog, django_capture_on_commit_callbacks
):
    digits = SUCCEEDS.replace(" ", "")
    with django_capture_on_commit_callbacks(execute=True):
        shown(client, pay(client, invoice))
        shown(client, client.post(page_url(invoice, "payment-method"), card_fields()))

    stored = [
        *PaymentAttempt.objects.values(), *SimulatedCharge.objects.values(),
        *Event.objects.values(), *Payment.objects.values(),
        *invoice.customer.payment_methods.values(),
    ]
    assert stored and all(digits not in str(row) and "12/30" not in str(row) for row in stored)
    assert digits not in caplog.text


# --- the gateway and the saved payment method -----------------------------------------


def test_with_a_real_gateway_cards_are_not_typed_here(client, invoice, settings):
    settings.PAYMENT_GATEWAY = "invoices.gateways.stripe.StripeGateway"
    body = client.get(page_url(invoice)).content.decode()
    assert 'name="number"' not in body
    assert "Online payment is not available" in body
    response = client.post(page_url(invoice, "pay"), {
        "nonce": "a-fresh-nonce-0123456789", "amount": 10000, **card_fields(),
    })
    assert response.status_code == 400
    nothing_recorded(invoice)


def test_the_saved_card_pays_in_one_click(client):
    invoice = make_charged("sim_4444")  # the customer's default: Mastercard •••• 4444
    body = client.get(page_url(invoice)).content.decode()
    assert "Pay €100.00 with Mastercard •••• 4444" in body
    nonce = NONCE_INPUT.findall(body)[0]

    response = client.post(page_url(invoice, "pay"),
                           {"with": "saved", "nonce": nonce, "amount": 10000})

    assert "was received" in shown(client, response)
    attempt = PaymentAttempt.objects.get(invoice=invoice)
    assert attempt.payment_method_id == invoice.customer.default_payment_method_id


def test_saving_a_card_makes_it_the_payment_method_and_resumes_collection(client):
    invoice = make_charged("sim_9979")  # stolen: a hard decline holds collection
    collection.collect_due(now=NOW)
    invoice.refresh_from_db()
    assert invoice.payment_hold == "hard_decline"

    response = client.post(page_url(invoice, "payment-method"), card_fields(SUCCEEDS))

    assert "Your card is saved." in shown(client, response)
    customer = invoice.customer
    customer.refresh_from_db()
    assert str(customer.default_payment_method) == "Visa •••• 4242"
    invoice.refresh_from_db()
    assert (invoice.payment_hold, invoice.next_payment_attempt) == ("", NOW)
    attached = Event.objects.filter(customer=customer, type="payment_method.attached")
    attached = attached.order_by("id").last()
    assert attached.actor_kind == "customer" and attached.data["resumed_invoices"] == [invoice.pk]


def test_saving_the_same_card_twice_keeps_one(client, invoice):
    for _ in range(2):
        client.post(page_url(invoice, "payment-method"), card_fields(SUCCEEDS))
    assert invoice.customer.payment_methods.count() == 1


def test_a_bad_card_is_not_saved(client, invoice):
    response = client.post(page_url(invoice, "payment-method"), card_fields("1234"))
    assert response.status_code == 400
    assert "12 to 19 digits" in response.content.decode()
    assert not invoice.customer.payment_methods.exists()


def test_saving_cards_is_rate_limited(client, invoice):
    statuses = [
        client.post(page_url(invoice, "payment-method"), card_fields("1")).status_code
        for _ in range(6)
    ]
    assert statuses == [400] * 5 + [429]


def test_the_page_lists_the_payment_attempts(client, invoice):
    pay(client, invoice, number=DECLINES)
    body = client.get(page_url(invoice)).content.decode()
    assert "Payment attempts" in body and "Declined" in body
    assert "Visa •••• 9995" in body


def test_an_attempt_of_another_invoice_is_never_shown(client, invoice):
    other = make_open()
    response = pay(client, other, number=DECLINES)
    attempt = PaymentAttempt.objects.get(invoice=other)
    body = client.get(page_url(invoice, attempt=attempt.pk)).content.decode()
    assert "did not go through" not in body
    assert response.status_code == 302


def test_the_default_method_of_the_customer_is_shown_only_when_chargeable(client):
    customer = make_customer()
    method = add_card(customer, "sim_4242")
    invoice = make_open(customer)
    from invoices.collection import payment_method_detach

    payment_method_detach(method, now=NOW, actor=STAFF)
    body = client.get(page_url(Invoice.objects.get(pk=invoice.pk))).content.decode()
    assert "with Visa" not in body


# --- CSRF under the no-referrer policy -------------------------------------------------


def csrf_client_and_data(invoice):
    browser = Client(enforce_csrf_checks=True)
    body = browser.get(page_url(invoice)).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', body)[1]
    data = {"csrfmiddlewaretoken": token, "nonce": NONCE_INPUT.findall(body)[-1],
            "amount": 10000, **card_fields()}
    return browser, data


def test_a_browser_posting_without_referrer_is_accepted_from_the_page_itself(invoice):
    # What browsers send under Referrer-Policy: no-referrer: Origin "null", no Referer.
    browser, data = csrf_client_and_data(invoice)
    response = browser.post(page_url(invoice, "pay"), data, HTTP_ORIGIN="null",
                            HTTP_SEC_FETCH_SITE="same-origin", secure=True)
    assert response.status_code == 302
    assert PaymentAttempt.objects.filter(invoice=invoice).count() == 1


@pytest.mark.parametrize("headers", [
    {"HTTP_ORIGIN": "null", "HTTP_SEC_FETCH_SITE": "cross-site"},
    {"HTTP_ORIGIN": "null"},
    {"HTTP_ORIGIN": "https://evil.example"},
    {"HTTP_SEC_FETCH_SITE": "cross-site"},
])
def test_posts_from_elsewhere_are_refused(invoice, headers):
    browser, data = csrf_client_and_data(invoice)
    response = browser.post(page_url(invoice, "pay"), data, secure=True, **headers)
    assert response.status_code == 403
    nothing_recorded(invoice)


def test_the_csrf_token_is_still_required_from_the_page_itself(invoice):
    browser, data = csrf_client_and_data(invoice)
    data["csrfmiddlewaretoken"] = "x" * 64
    response = browser.post(page_url(invoice, "pay"), data, HTTP_ORIGIN="null",
                            HTTP_SEC_FETCH_SITE="same-origin", secure=True)
    assert response.status_code == 403
    nothing_recorded(invoice)


def missing_once(real):
    """`real`, except that its first call finds nothing (the other request's row is not
    written yet)."""
    calls = []

    def lookup(*args):
        calls.append(args)
        return None if len(calls) == 1 else real(*args)

    return lookup


def test_the_second_click_of_a_race_answers_with_the_first_attempt(client, invoice, monkeypatch):
    # The second request of a double click looks for its nonce's attempt before the first
    # one has written it, then finds the payment in progress: it shows the first attempt.
    from invoices.hosted import views

    nonce = nonces(client, invoice)[-1]
    first = pay(client, invoice, nonce=nonce, number=PROCESSING)  # stays in progress
    for module, name in ((views, "attempt_for_nonce"), (collection, "_attempt_for_key")):
        monkeypatch.setattr(module, name, missing_once(getattr(module, name)))
    second = pay(client, invoice, nonce=nonce, number=PROCESSING)
    assert second.status_code == 302 and second["Location"] == first["Location"]
    assert PaymentAttempt.objects.filter(invoice=invoice).count() == 1
