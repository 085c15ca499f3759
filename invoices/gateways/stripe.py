"""The Stripe adapter: off-session PaymentIntents over plain HTTP (no SDK).

One charge is one POST /v1/payment_intents with confirm=true and off_session=true,
sent with the attempt's Idempotency-Key, which also goes into the intent's metadata
so that `retrieve` can find the intent later through the search API.

The HTTP transport is a small callable, `transport(method, url, headers, body, timeout)
-> (status_code, body_bytes)`, so tests replay recorded Stripe responses.
"""

import json
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import replace
from datetime import datetime

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from .base import (
    FAILURE_MESSAGES,
    FUNDINGS,
    IDEMPOTENCY_KEY_RE,
    ChargeRequest,
    ChargeResult,
    Gateway,
    GatewayError,
    failure_message_for,
    is_hard_decline,
)

API_BASE = "https://api.stripe.com"
# Pinned so that response shapes don't change under us when the account is upgraded.
API_VERSION = "2024-06-20"
TIMEOUT_SECONDS = 30
PAYMENT_INTENT_ID_RE = re.compile(r"^pi_[A-Za-z0-9]+$")

# Stripe's advice_code on issuer declines, in our words.
ADVICE_CODES = {
    "try_again_later": "retry",
    "do_not_try_again": "do_not_retry",
    "confirm_card_data": "update_payment_method",
}


def urllib_transport(method, url, headers, body, timeout):
    """The real transport: (status_code, body bytes); network failures raise GatewayError."""
    http_request = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(http_request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        raise GatewayError(f"Could not reach Stripe: {error}") from error


class StripeGateway(Gateway):
    def __init__(self, *, api_key=None, transport=None, return_url="", timeout=TIMEOUT_SECONDS):
        self.api_key = settings.STRIPE_SECRET_KEY if api_key is None else api_key
        if not self.api_key:
            raise ImproperlyConfigured("The Stripe gateway needs STRIPE_SECRET_KEY.")
        self.transport = transport or urllib_transport
        # Where Stripe sends a customer back after a redirect (3-D Secure). Without one,
        # redirect-based methods are refused, which off-session charges never need.
        self.return_url = return_url
        self.timeout = timeout

    def charge(self, request: ChargeRequest, *, now: datetime) -> ChargeResult:
        fields = payment_intent_fields(request, return_url=self.return_url)
        status, payload = self._call(
            "POST", "/v1/payment_intents", fields, idempotency_key=request.idempotency_key
        )
        if status == 402 and _error_of(payload).get("type") == "card_error":
            return card_error_result(payload)
        _raise_unless_ok(status, payload)
        return intent_result(payload)

    def retrieve(self, idempotency_key: str) -> ChargeResult | None:
        """The intent charged with this key, found through Stripe's search API.

        Search is eventually consistent (usually under a minute behind): None right after
        a crash means "not known yet", and charging again with the same key is still safe
        because Stripe replays a known Idempotency-Key instead of charging twice.
        """
        if not IDEMPOTENCY_KEY_RE.match(idempotency_key or ""):
            raise ValueError(f"Invalid idempotency key {idempotency_key!r}.")
        query = f"metadata['idempotency_key']:'{idempotency_key}'"
        status, payload = self._call("GET", "/v1/payment_intents/search", {"query": query})
        _raise_unless_ok(status, payload)
        intents = payload.get("data")
        if not isinstance(intents, list):
            raise GatewayError("Stripe's search answer has no data list.")
        if len(intents) > 1:
            raise GatewayError(f"Stripe holds {len(intents)} intents for one idempotency key.")
        return intent_result(intents[0]) if intents else None

    def refresh(self, gateway_reference: str, *, now: datetime) -> ChargeResult:
        if not PAYMENT_INTENT_ID_RE.match(gateway_reference or ""):
            raise ValueError(f"Not a PaymentIntent id: {gateway_reference!r}.")
        status, payload = self._call("GET", f"/v1/payment_intents/{gateway_reference}", {})
        _raise_unless_ok(status, payload)
        return intent_result(payload)

    def _call(self, method, path, fields, *, idempotency_key=""):
        headers = {
            "Authorization": f"Bearer {self.api_key}",
            "Stripe-Version": API_VERSION,
        }
        encoded = urllib.parse.urlencode(fields)
        url, body = f"{API_BASE}{path}", None
        if method == "POST":
            headers["Content-Type"] = "application/x-www-form-urlencoded"
            headers["Idempotency-Key"] = idempotency_key
            body = encoded.encode()
        elif encoded:
            url = f"{url}?{encoded}"
        try:
            status, raw_body = self.transport(method, url, headers, body, self.timeout)
        except GatewayError:
            raise
        except (TimeoutError, OSError) as error:
            raise GatewayError(f"Could not reach Stripe: {error}") from error
        return status, _parse_json(raw_body)


def payment_intent_fields(request: ChargeRequest, *, return_url: str = "") -> list:
    """The form fields that create and confirm one off-session PaymentIntent."""
    fields = [
        ("amount", str(request.amount)),
        ("currency", request.currency.lower()),
        ("payment_method", request.payment_method),
        ("confirm", "true"),
        ("off_session", "true" if request.off_session else "false"),
        ("metadata[idempotency_key]", request.idempotency_key),
    ]
    if request.customer_reference:
        fields.append(("customer", request.customer_reference))
    if request.description:
        fields.append(("description", request.description))
    for key, value in sorted(request.metadata.items()):
        if key != "idempotency_key":
            fields.append((f"metadata[{key}]", str(value)))
    if return_url:
        fields.append(("return_url", return_url))
    else:
        fields.append(("automatic_payment_methods[enabled]", "true"))
        fields.append(("automatic_payment_methods[allow_redirects]", "never"))
    return fields


def intent_result(intent) -> ChargeResult:
    """A PaymentIntent object, checked, as a ChargeResult."""
    if not isinstance(intent, dict) or intent.get("object") != "payment_intent":
        raise GatewayError("Stripe's answer is not a PaymentIntent.")
    reference = _required(intent, "id", str)
    status = _required(intent, "status", str)
    received = _required(intent, "amount_received", int)
    reported = _reported(intent)
    raw = _without_secrets(intent)
    if status in ("succeeded", "processing"):
        return ChargeResult(
            status=status, gateway_reference=reference, amount_received=received, raw=raw,
            funding=card_funding(intent), **reported,
        )
    if status == "requires_action":
        return ChargeResult(
            status=status, gateway_reference=reference, amount_received=received,
            action_url=_redirect_url(intent), raw=raw, **reported,
        )
    if status == "requires_payment_method":
        # The status says the charge failed; a last_payment_error that is not an object
        # (a string, a list) only loses the details: a generic decline.
        error = intent.get("last_payment_error")
        if not isinstance(error, dict):
            error = {}
        return _declined(error, reference=reference, raw=raw, reported=reported,
                        funding=card_funding(intent))
    if status == "canceled":
        return ChargeResult.declined(
            "payment_intent_canceled", gateway_reference=reference, raw=raw
        )
    raise GatewayError(f"Unexpected PaymentIntent status {status!r} for an off-session charge.")


def card_error_result(payload: dict) -> ChargeResult:
    """An HTTP 402 card_error (the card was declined) as a failed ChargeResult."""
    error = _error_of(payload)
    intent = error.get("payment_intent")
    reference = intent.get("id", "") if isinstance(intent, dict) else ""
    if not isinstance(reference, str):
        raise GatewayError("Stripe's card error carries a malformed PaymentIntent id.")
    reported = _reported(intent) if isinstance(intent, dict) else {}
    return _declined(error, reference=reference, raw=_without_secrets(payload), reported=reported,
                     funding=card_funding(error))


def card_funding(source: dict) -> str:
    """The card's funding (credit, debit, prepaid, unknown) where Stripe puts it: the
    charge's payment_method_details.card, or an expanded payment_method's card (on a
    PaymentIntent or a card error). Empty when Stripe did not say."""
    places = []
    charge = source.get("latest_charge")
    if isinstance(charge, dict):
        places.append((charge.get("payment_method_details") or {}).get("card"))
    error = source.get("last_payment_error")
    for holder in (source, error if isinstance(error, dict) else {}):
        method = holder.get("payment_method")
        if isinstance(method, dict):
            places.append(method.get("card"))
    for card in places:
        if isinstance(card, dict) and isinstance(card.get("funding"), str):
            return card["funding"] if card["funding"] in FUNDINGS else "unknown"
    return ""


def _declined(
    error: dict, *, reference: str, raw: dict, reported: dict, funding: str = ""
) -> ChargeResult:
    decline_code = error.get("decline_code") or error.get("code") or "generic_decline"
    if not isinstance(decline_code, str):
        raise GatewayError("Stripe's decline code is not a string.")
    # An advice_code that is not a string (a list...) is no advice: the decline code's.
    advice_code = error.get("advice_code")
    advice_code = advice_code if isinstance(advice_code, str) else None
    advice = "" if is_hard_decline(decline_code) else ADVICE_CODES.get(advice_code, "")
    message = failure_message_for(decline_code)
    if decline_code not in FAILURE_MESSAGES and isinstance(error.get("message"), str):
        message = error["message"]  # Stripe writes card error messages for customers
    result = ChargeResult.declined(
        decline_code, gateway_reference=reference, advice=advice, message=message, raw=raw,
        funding=funding,
    )
    return replace(result, **reported)


def _reported(intent: dict) -> dict:
    """What the intent says was charged, checked against the request by the caller
    (invoices.gateways.base.answer_mismatch)."""
    currency = _required(intent, "currency", str)
    metadata = intent.get("metadata")
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict):
        raise GatewayError("Stripe's PaymentIntent has a malformed 'metadata'.")
    return {"amount": _required(intent, "amount", int), "currency": currency.upper(),
            "metadata": metadata}


def _raise_unless_ok(status: int, payload: dict) -> None:
    if status == 200:
        return
    error = _error_of(payload)
    kind = error.get("type") or "unknown_error"
    message = error.get("message") or "no message"
    raise GatewayError(f"Stripe answered HTTP {status} ({kind}): {message}")


def _error_of(payload: dict) -> dict:
    error = payload.get("error")
    return error if isinstance(error, dict) else {}


def _parse_json(raw_body) -> dict:
    try:
        payload = json.loads(raw_body)
    except (TypeError, ValueError, UnicodeDecodeError):
        raise GatewayError("Stripe answered with a body that is not JSON.") from None
    if not isinstance(payload, dict):
        raise GatewayError("Stripe answered with JSON that is not an object.")
    return payload


def _required(intent: dict, name: str, kind: type):
    value = intent.get(name)
    # bool is an int subclass, and JSON floats are not amounts.
    if not isinstance(value, kind) or isinstance(value, bool):
        raise GatewayError(f"Stripe's PaymentIntent has a missing or malformed {name!r}.")
    if kind is int and value < 0:
        raise GatewayError(f"Stripe's PaymentIntent has a negative {name!r}.")
    return value


def _redirect_url(intent: dict) -> str:
    # Off-session 3-D Secure may come as use_stripe_sdk (no URL): the customer then
    # approves the payment from the hosted invoice page.
    next_action = intent.get("next_action")
    redirect = next_action.get("redirect_to_url") if isinstance(next_action, dict) else None
    url = redirect.get("url") if isinstance(redirect, dict) else None
    return url if isinstance(url, str) else ""


def _without_secrets(value):
    """The response as recorded on our side, minus client secrets."""
    if isinstance(value, dict):
        return {k: _without_secrets(v) for k, v in value.items() if k != "client_secret"}
    if isinstance(value, list):
        return [_without_secrets(v) for v in value]
    return value
