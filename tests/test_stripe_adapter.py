"""The Stripe adapter against recorded Stripe responses (tests/fixtures/stripe)."""

import json
import urllib.parse
from datetime import UTC, datetime
from pathlib import Path

import pytest

from invoices.gateways import ChargeRequest, GatewayError
from invoices.gateways.stripe import API_VERSION, StripeGateway

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "stripe"
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def recorded(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


class Replay:
    """A transport that answers with one recorded response and remembers the request."""

    def __init__(self, status: int = 200, body: bytes = b"{}", error: Exception | None = None):
        self.status, self.body, self.error = status, body, error
        self.requests = []

    def __call__(self, method, url, headers, body, timeout):
        self.requests.append(
            {"method": method, "url": url, "headers": headers, "body": body, "timeout": timeout}
        )
        if self.error is not None:
            raise self.error
        return self.status, self.body

    @property
    def last(self) -> dict:
        return self.requests[-1]

    def form(self) -> dict:
        return dict(urllib.parse.parse_qsl(self.last["body"].decode()))


def gateway(transport, **options) -> StripeGateway:
    return StripeGateway(api_key="sk_test_123", transport=transport, **options)


def charge_request(**fields) -> ChargeRequest:
    values = {
        "idempotency_key": "attempt-41-1",
        "amount": 12000,
        "currency": "EUR",
        "payment_method": "pm_1PxQl9Lk8dE4fA1bVisa4242",
        "customer_reference": "cus_QpL4mN8xY2zA9b",
        "description": "Invoice CUS0001-0001",
        "metadata": {"invoice_number": "CUS0001-0001"},
        **fields,
    }
    return ChargeRequest(**values)


def charge_with(fixture: str, status: int = 200):
    return gateway(Replay(status, recorded(fixture))).charge(charge_request(), now=NOW)


# --- the request sent ---------------------------------------------------------------------


def test_a_charge_creates_and_confirms_an_off_session_payment_intent():
    transport = Replay(200, recorded("payment_intent_succeeded.json"))

    gateway(transport).charge(charge_request(), now=NOW)

    sent = transport.last
    assert sent["method"] == "POST"
    assert sent["url"] == "https://api.stripe.com/v1/payment_intents"
    assert sent["headers"]["Idempotency-Key"] == "attempt-41-1"
    assert sent["headers"]["Authorization"] == "Bearer sk_test_123"
    assert sent["headers"]["Stripe-Version"] == API_VERSION
    assert sent["headers"]["Content-Type"] == "application/x-www-form-urlencoded"
    assert transport.form() == {
        "amount": "12000",
        "currency": "eur",
        "payment_method": "pm_1PxQl9Lk8dE4fA1bVisa4242",
        "customer": "cus_QpL4mN8xY2zA9b",
        "description": "Invoice CUS0001-0001",
        "confirm": "true",
        "off_session": "true",
        "metadata[idempotency_key]": "attempt-41-1",
        "metadata[invoice_number]": "CUS0001-0001",
        "automatic_payment_methods[enabled]": "true",
        "automatic_payment_methods[allow_redirects]": "never",
    }


def test_a_return_url_allows_redirects_for_authentication():
    transport = Replay(200, recorded("payment_intent_requires_action.json"))

    gateway(transport, return_url="https://billing.example.com/pay/return").charge(
        charge_request(), now=NOW
    )

    form = transport.form()
    assert form["return_url"] == "https://billing.example.com/pay/return"
    assert "automatic_payment_methods[allow_redirects]" not in form


def test_metadata_cannot_overwrite_the_idempotency_key():
    transport = Replay(200, recorded("payment_intent_succeeded.json"))

    gateway(transport).charge(charge_request(metadata={"idempotency_key": "other"}), now=NOW)

    assert transport.form()["metadata[idempotency_key]"] == "attempt-41-1"


# --- mapping each recorded answer -----------------------------------------------------------


def test_succeeded():
    result = charge_with("payment_intent_succeeded.json")

    assert result.status == "succeeded"
    assert result.gateway_reference == "pi_3PxQm2Lk8dE4fA1b0Zr7cS2e"
    assert result.amount_received == 12000
    assert "client_secret" not in json.dumps(result.raw)


def test_processing():
    result = charge_with("payment_intent_processing.json")

    assert result.status == "processing"
    assert result.gateway_reference == "pi_3PxQn4Lk8dE4fA1b1SepaPrc"
    assert result.amount_received == 0


def test_requires_action_carries_the_authentication_url():
    result = charge_with("payment_intent_requires_action.json")

    assert result.status == "requires_action"
    assert result.action_url.startswith("https://hooks.stripe.com/3d_secure_2/hosted")
    assert "client_secret" not in result.raw


@pytest.mark.parametrize(
    "fixture, reference, decline_code, hard, advice",
    [
        ("card_declined_insufficient_funds.json", "pi_3PxQp2Lk8dE4fA1b3NoFund",
         "insufficient_funds", False, "retry"),
        ("card_declined_stolen_card.json", "pi_3PxQq3Lk8dE4fA1b4Stolen",
         "stolen_card", True, "update_payment_method"),
        ("expired_card.json", "pi_3PxQr4Lk8dE4fA1b5Expird",
         "expired_card", True, "update_payment_method"),
        ("authentication_required.json", "pi_3PxQs5Lk8dE4fA1b6AuthRq",
         "authentication_required", True, "update_payment_method"),
    ],
)
def test_card_errors_are_failed_charges(fixture, reference, decline_code, hard, advice):
    result = charge_with(fixture, status=402)

    assert result.status == "failed"
    assert result.gateway_reference == reference
    assert result.decline_code == decline_code
    assert result.hard_decline is hard
    assert result.advice == advice
    assert result.amount_received == 0
    assert result.failure_message
    assert "client_secret" not in json.dumps(result.raw)


def test_a_soft_decline_stripe_says_not_to_retry_is_not_retried():
    body = json.loads(recorded("card_declined_insufficient_funds.json"))
    body["error"]["advice_code"] = "do_not_try_again"

    result = gateway(Replay(402, json.dumps(body).encode())).charge(charge_request(), now=NOW)

    assert (result.hard_decline, result.advice) == (False, "do_not_retry")


def test_an_answer_says_what_was_charged_for_the_caller_to_check():
    result = charge_with("payment_intent_succeeded.json")

    assert (result.amount, result.currency) == (12000, "EUR")
    assert result.metadata["idempotency_key"] == "attempt-41-1"


def test_a_declined_intent_whose_last_payment_error_is_a_string_is_a_generic_decline():
    intent = json.loads(recorded("card_declined_insufficient_funds.json"))["error"][
        "payment_intent"]
    intent["last_payment_error"] = "card declined"

    result = gateway(Replay(200, json.dumps(intent).encode())).charge(charge_request(), now=NOW)

    assert (result.status, result.decline_code, result.advice) == (
        "failed", "generic_decline", "retry")


def test_an_advice_code_that_is_a_list_is_no_advice():
    body = json.loads(recorded("card_declined_insufficient_funds.json"))
    body["error"]["advice_code"] = ["do_not_try_again"]

    result = gateway(Replay(402, json.dumps(body).encode())).charge(charge_request(), now=NOW)

    assert (result.decline_code, result.advice) == ("insufficient_funds", "retry")


@pytest.mark.parametrize("change, message", [
    ({"currency": 978}, "'currency'"),
    ({"amount": "12000"}, "'amount'"),
    ({"metadata": ["attempt-41-1"]}, "'metadata'"),
])
def test_malformed_reported_fields_are_gateway_errors(change, message):
    intent = {**json.loads(recorded("payment_intent_succeeded.json")), **change}

    with pytest.raises(GatewayError, match=message):
        gateway(Replay(200, json.dumps(intent).encode())).charge(charge_request(), now=NOW)


def test_a_decline_code_we_have_no_words_for_keeps_stripes_customer_message():
    body = json.loads(recorded("card_declined_insufficient_funds.json"))
    body["error"]["decline_code"] = "card_velocity_exceeded"
    body["error"]["message"] = "Your card has exceeded its velocity limit."

    result = gateway(Replay(402, json.dumps(body).encode())).charge(charge_request(), now=NOW)

    assert result.decline_code == "card_velocity_exceeded"
    assert result.failure_message == "Your card has exceeded its velocity limit."


@pytest.mark.parametrize(
    "fixture, status, message",
    [
        ("rate_limit.json", 429, "HTTP 429"),
        ("api_error.json", 500, "HTTP 500 \\(api_error\\)"),
        ("api_error.json", 503, "HTTP 503"),
        ("malformed.json", 200, "not JSON"),
    ],
)
def test_unusable_answers_are_gateway_errors(fixture, status, message):
    with pytest.raises(GatewayError, match=message):
        charge_with(fixture, status=status)


def test_an_html_error_page_from_a_proxy_is_a_gateway_error():
    transport = Replay(502, b"<html><body><h1>502 Bad Gateway</h1></body></html>")

    with pytest.raises(GatewayError, match="not JSON"):
        gateway(transport).charge(charge_request(), now=NOW)


def test_an_invalid_request_is_a_gateway_error_naming_stripes_reason():
    body = {"error": {"type": "invalid_request_error", "code": "resource_missing",
                      "message": "No such PaymentMethod: 'pm_gone'"}}

    with pytest.raises(GatewayError, match="No such PaymentMethod"):
        gateway(Replay(400, json.dumps(body).encode())).charge(charge_request(), now=NOW)


@pytest.mark.parametrize("error", [TimeoutError("timed out"), ConnectionRefusedError("refused")])
def test_timeouts_and_network_errors_are_gateway_errors(error):
    with pytest.raises(GatewayError, match="Could not reach Stripe"):
        gateway(Replay(error=error)).charge(charge_request(), now=NOW)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"status": "requires_capture"}, "Unexpected PaymentIntent status"),
        ({"status": "teleported"}, "Unexpected PaymentIntent status"),
        ({"amount_received": -5}, "negative"),
        ({"amount_received": 120.0}, "amount_received"),
        ({"amount_received": None}, "amount_received"),
        ({"id": None}, "'id'"),
        ({"object": "charge"}, "not a PaymentIntent"),
    ],
)
def test_a_malformed_payment_intent_is_a_gateway_error(change, message):
    intent = {**json.loads(recorded("payment_intent_succeeded.json")), **change}

    with pytest.raises(GatewayError, match=message):
        gateway(Replay(200, json.dumps(intent).encode())).charge(charge_request(), now=NOW)


def test_a_succeeded_intent_that_received_nothing_is_a_gateway_error():
    intent = {**json.loads(recorded("payment_intent_succeeded.json")), "amount_received": 0}

    with pytest.raises(GatewayError, match="received an amount"):
        gateway(Replay(200, json.dumps(intent).encode())).charge(charge_request(), now=NOW)


# --- retrieve and refresh ----------------------------------------------------------------------


def test_retrieve_searches_by_the_idempotency_key_in_metadata():
    transport = Replay(200, recorded("search_found.json"))

    result = gateway(transport).retrieve("attempt-41-1")

    assert result.status == "succeeded"
    assert result.gateway_reference == "pi_3PxQm2Lk8dE4fA1b0Zr7cS2e"
    url = urllib.parse.urlsplit(transport.last["url"])
    assert transport.last["method"] == "GET"
    assert transport.last["body"] is None
    assert url.path == "/v1/payment_intents/search"
    assert urllib.parse.parse_qs(url.query) == {
        "query": ["metadata['idempotency_key']:'attempt-41-1'"]
    }


def test_retrieve_of_a_charge_stripe_never_saw_is_none():
    assert gateway(Replay(200, recorded("search_empty.json"))).retrieve("attempt-41-2") is None


def test_retrieve_of_a_declined_charge_is_its_decline():
    declined = json.loads(recorded("card_declined_insufficient_funds.json"))["error"]
    search = {"object": "search_result", "data": [declined["payment_intent"]], "has_more": False}

    result = gateway(Replay(200, json.dumps(search).encode())).retrieve("attempt-41-1")

    assert (result.status, result.decline_code) == ("failed", "insufficient_funds")


def test_retrieve_refuses_a_key_that_could_escape_the_search_query():
    with pytest.raises(ValueError):
        gateway(Replay()).retrieve("x' OR status:'succeeded")


def test_retrieve_of_an_unreachable_stripe_is_a_gateway_error():
    with pytest.raises(GatewayError):
        gateway(Replay(error=TimeoutError("timed out"))).retrieve("attempt-41-1")


def test_refresh_reads_the_payment_intent():
    transport = Replay(200, recorded("payment_intent_succeeded.json"))

    result = gateway(transport).refresh("pi_3PxQm2Lk8dE4fA1b0Zr7cS2e", now=NOW)

    assert result.status == "succeeded"
    assert transport.last["method"] == "GET"
    assert transport.last["url"] == (
        "https://api.stripe.com/v1/payment_intents/pi_3PxQm2Lk8dE4fA1b0Zr7cS2e"
    )


def test_refresh_of_a_missing_intent_is_a_gateway_error():
    body = {"error": {"type": "invalid_request_error", "code": "resource_missing",
                      "message": "No such payment_intent: 'pi_123'"}}

    with pytest.raises(GatewayError, match="HTTP 404"):
        gateway(Replay(404, json.dumps(body).encode())).refresh("pi_123", now=NOW)


def test_refresh_refuses_something_that_is_not_a_payment_intent_id():
    with pytest.raises(ValueError):
        gateway(Replay()).refresh("../../v1/charges", now=NOW)


def test_every_fixture_is_used():
    source = Path(__file__).read_text()
    for path in FIXTURES.glob("*.json"):
        assert f'"{path.name}"' in source, path.name
