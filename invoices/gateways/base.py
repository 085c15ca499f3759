"""The payment gateway interface: one charge in, one checked result out.

A gateway is a class with three methods (see `Gateway`). The project ships two: the
simulated gateway (the embedded default, with documented test cards) and a Stripe
adapter. A business plugs in its own provider by subclassing `Gateway` and naming the
class in the PAYMENT_GATEWAY setting. docs/gateways.md is the reference.

Amounts are ints of the currency's minor unit, as everywhere in this project.
"""

import abc
import re
from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _

from customers.money import MAX_AMOUNT, is_int, known_currencies

STATUSES = frozenset({"succeeded", "processing", "requires_action", "failed"})
ADVICES = frozenset({"retry", "do_not_retry", "update_payment_method", ""})

# Declines that retrying the same payment method cannot fix (DESIGN.md section 4):
# never retried; retries resume once the customer adds a new payment method.
# expired_card is here too: the card will never work again.
FUNDINGS = frozenset({"", "credit", "debit", "prepaid", "unknown"})
HARD_DECLINE_CODES = frozenset({
    "incorrect_number",
    "lost_card",
    "pickup_card",
    "stolen_card",
    "revocation_of_authorization",
    "revocation_of_all_authorizations",
    "authentication_required",
    "highest_risk_level",
    "fraudulent",
    "expired_card",
})

# Plain words for the customer. Stolen, lost and fraud-flagged cards get the generic
# wording on purpose: the customer is told what to do, not what the issuer suspects.
_USE_ANOTHER_METHOD = "Your card was declined. Please use a different payment method."
FAILURE_MESSAGES = {
    "insufficient_funds": "Your card has insufficient funds.",
    "generic_decline": "Your card was declined.",
    "card_declined": "Your card was declined.",
    "do_not_honor": "Your card was declined.",
    "processing_error": "An error occurred while processing your card.",
    "try_again_later": "Your bank could not approve the payment right now.",
    "expired_card": "Your card has expired. Please add a new payment method.",
    "incorrect_number": "Your card number is incorrect. Please add a new payment method.",
    "authentication_required": (
        "Your bank asks you to approve this payment. Please pay from the invoice page."
    ),
    "lost_card": _USE_ANOTHER_METHOD,
    "stolen_card": _USE_ANOTHER_METHOD,
    "pickup_card": _USE_ANOTHER_METHOD,
    "fraudulent": _USE_ANOTHER_METHOD,
    "highest_risk_level": _USE_ANOTHER_METHOD,
    "revocation_of_authorization": _USE_ANOTHER_METHOD,
    "revocation_of_all_authorizations": _USE_ANOTHER_METHOD,
}
DEFAULT_FAILURE_MESSAGE = "Your payment could not be completed."

# Idempotency keys travel in HTTP headers and search queries: keep them plain.
IDEMPOTENCY_KEY_RE = re.compile(r"^[A-Za-z0-9_.:-]{1,255}$")


class GatewayError(Exception):
    """The gateway could not give a usable answer: timeout, network error, 5xx, rate limit,
    malformed or unknown response. Callers record a failed, retryable attempt (and
    reconcile with `retrieve` later, since the charge may have happened)."""


def is_hard_decline(decline_code: str) -> bool:
    return decline_code in HARD_DECLINE_CODES


def failure_message_for(decline_code: str) -> str:
    return FAILURE_MESSAGES.get(decline_code, DEFAULT_FAILURE_MESSAGE)


def advice_for(decline_code: str) -> str:
    return "update_payment_method" if is_hard_decline(decline_code) else "retry"


@dataclass(frozen=True)
class ChargeRequest:
    """One charge of `amount` minor units of `currency` on `payment_method` (the gateway's
    own reference for it: a Stripe pm_ id, a simulated card token). Invalid values are
    programming errors of the caller: ValueError, before any gateway is called."""

    idempotency_key: str
    amount: int
    currency: str
    payment_method: str
    customer_reference: str = ""
    description: str = ""
    metadata: dict = field(default_factory=dict)
    off_session: bool = True

    def __post_init__(self):
        if not isinstance(self.idempotency_key, str) or not IDEMPOTENCY_KEY_RE.match(
            self.idempotency_key
        ):
            raise ValueError(
                "idempotency_key must be 1 to 255 letters, digits or _ . : - "
                f"(got {self.idempotency_key!r})."
            )
        if not is_int(self.amount):
            raise ValueError(f"amount must be an int of minor units (got {self.amount!r}).")
        if not 0 < self.amount <= MAX_AMOUNT:
            raise ValueError(f"amount must be between 1 and {MAX_AMOUNT} (got {self.amount}).")
        if self.currency not in known_currencies():
            raise ValueError(
                f"currency must be an uppercase ISO 4217 code (got {self.currency!r})."
            )
        if not isinstance(self.payment_method, str) or not self.payment_method:
            raise ValueError("payment_method is required.")
        if not isinstance(self.metadata, dict):
            raise ValueError("metadata must be a dict.")


@dataclass(frozen=True)
class ChargeResult:
    """What the gateway says about one charge. Checked on construction: a gateway that
    answers nonsense raises GatewayError here, so callers only ever see sane results.

    status: "succeeded" | "processing" (settled later through `refresh`) |
    "requires_action" (the customer must authenticate; `action_url` when known) | "failed".
    For failures: `decline_code` (the gateway's), `failure_message` (plain words for a
    customer), `advice` and `hard_decline` (never retry the same payment method).
    `funding`: the card's funding as the gateway reports it (credit, debit, prepaid,
    unknown; empty when it did not say), which Smart Retries learn from.
    """

    status: str
    gateway_reference: str = ""
    amount_received: int = 0
    decline_code: str = ""
    failure_message: str = ""
    advice: str = ""
    hard_decline: bool = False
    action_url: str = ""
    raw: dict = field(default_factory=dict)
    # What the gateway says the charge was, when it says it (None/"": not reported),
    # checked against the request by `answer_mismatch` before anything is booked.
    amount: int | None = None
    currency: str = ""  # ISO 4217, uppercase
    metadata: dict = field(default_factory=dict)
    funding: str = ""

    def __post_init__(self):
        if self.funding not in FUNDINGS:
            raise GatewayError(f"Unknown card funding {self.funding!r} from the gateway.")
        if self.status not in STATUSES:
            raise GatewayError(f"Unknown charge status {self.status!r} from the gateway.")
        if not is_int(self.amount_received) or self.amount_received < 0:
            raise GatewayError(
                f"amount_received must be a non-negative int (got {self.amount_received!r})."
            )
        if self.advice not in ADVICES:
            raise GatewayError(f"Unknown advice {self.advice!r} from the gateway.")
        for name in ("gateway_reference", "decline_code", "failure_message", "action_url"):
            if not isinstance(getattr(self, name), str):
                raise GatewayError(f"{name} must be a string.")
        if self.amount is not None and (not is_int(self.amount) or self.amount < 0):
            raise GatewayError(f"amount must be a non-negative int (got {self.amount!r}).")
        if not isinstance(self.currency, str):
            raise GatewayError("currency must be a string.")
        if not isinstance(self.metadata, dict):
            raise GatewayError("metadata must be a dict.")
        if self.status != "failed" and not self.gateway_reference:
            raise GatewayError(f"A {self.status} charge must have a gateway reference.")
        if self.status == "failed" and not self.decline_code:
            raise GatewayError("A failed charge must have a decline code.")
        if self.status == "succeeded" and self.amount_received == 0:
            raise GatewayError("A succeeded charge must have received an amount.")

    @classmethod
    def declined(cls, decline_code: str, *, gateway_reference: str = "", advice: str = "",
                 message: str = "", raw: dict | None = None, funding: str = ""
                 ) -> "ChargeResult":
        """A failed charge, with message, advice and hard/soft taken from the decline code
        unless the gateway gave its own advice."""
        return cls(
            status="failed",
            gateway_reference=gateway_reference,
            decline_code=decline_code,
            failure_message=message or failure_message_for(decline_code),
            advice=advice or advice_for(decline_code),
            hard_decline=is_hard_decline(decline_code),
            raw=raw or {},
            funding=funding,
        )

    @property
    def is_final(self) -> bool:
        return self.status in ("succeeded", "failed")


def answer_mismatch(
    result: ChargeResult, *, amount: int, currency: str, metadata: dict, reference: str = ""
) -> str:
    """Why `result` is not the answer to the charge of `amount` minor units of `currency`
    whose request carried `metadata` (the idempotency key, the invoice and attempt ids),
    or about the gateway's charge `reference` when it is known; "" when it is.

    A gateway that reports a field is held to it: another amount or currency, more
    received than asked, another charge's id or another attempt's metadata is never
    booked (the attempt is held for a person to decide)."""
    if result.currency and result.currency.upper() != currency:
        return _("The gateway reports a charge in %(theirs)s; it was asked for %(ours)s.") % {
            "theirs": result.currency, "ours": currency}
    if result.amount is not None and result.amount != amount:
        return _("The gateway reports a charge of %(theirs)s minor units; it was asked for "
                 "%(ours)s.") % {"theirs": result.amount, "ours": amount}
    if result.amount_received > amount:
        return _("The gateway reports %(theirs)s minor units received; it was asked for "
                 "%(ours)s.") % {"theirs": result.amount_received, "ours": amount}
    if (result.status == "succeeded" and result.amount is not None
            and result.amount_received != result.amount):
        return _("The gateway reports a succeeded charge of %(amount)s minor units that "
                 "received %(received)s.") % {"amount": result.amount,
                                              "received": result.amount_received}
    if reference and result.gateway_reference and result.gateway_reference != reference:
        return _("The gateway answers about charge %(theirs)s; it was asked about %(ours)s.") % {
            "theirs": result.gateway_reference, "ours": reference}
    for key, expected in metadata.items():
        if key in result.metadata and str(result.metadata[key]) != str(expected):
            return _("The gateway's answer carries %(key)s=%(theirs)s; this attempt's is "
                     "%(ours)s.") % {"key": key, "theirs": result.metadata[key],
                                     "ours": expected}
    return ""


class Gateway(abc.ABC):
    """The interface every payment gateway implements.

    Gateways must be idempotent on `request.idempotency_key`: charging twice with the
    same key returns the first charge's result and never charges twice.
    """

    @abc.abstractmethod
    def charge(self, request: ChargeRequest, *, now: datetime) -> ChargeResult:
        """Charge once. Raises GatewayError when the outcome is unknown."""

    def charge_many(
        self, items: list[tuple[ChargeRequest, datetime]]
    ) -> list["ChargeResult | GatewayError"]:
        """Charge several requests, each at its own time: one outcome per item, in order,
        either its ChargeResult or the GatewayError that left it unknown. Gateways with a
        batch API override this; the default charges one by one."""
        return [charge_safely(self, request, now) for request, now in items]

    @abc.abstractmethod
    def retrieve(self, idempotency_key: str) -> ChargeResult | None:
        """What the gateway knows about the charge made with this key, or None if it knows
        of none. Used to reconcile after a crash between the gateway call and the
        database write."""

    @abc.abstractmethod
    def refresh(self, gateway_reference: str, *, now: datetime) -> ChargeResult:
        """The current state of a charge, to settle one left `processing`."""

    def refresh_many(
        self, items: list[tuple[str, datetime]]
    ) -> list["ChargeResult | GatewayError"]:
        """refresh() for several charges, each at its own time: one outcome per item, in
        order, either its ChargeResult or the GatewayError that left it unknown. Gateways
        with a batch API override this; the default refreshes one by one."""
        return [refresh_safely(self, reference, now) for reference, now in items]


def charge_safely(gateway: Gateway, request: ChargeRequest, now: datetime):
    """gateway.charge, with any failure to answer turned into a GatewayError: a gateway
    that raises something else (a bug, a library's own error) leaves the outcome just as
    unknown, and the attempt is reconciled like a timeout."""
    try:
        return gateway.charge(request, now=now)
    except GatewayError as error:
        return error
    except Exception as error:  # noqa: BLE001 - any gateway failure is an unknown outcome
        return GatewayError(f"{type(error).__name__}: {error}")


def refresh_safely(gateway: Gateway, reference: str, now: datetime):
    """gateway.refresh, any failure to answer turned into a GatewayError (as charge_safely)."""
    try:
        return gateway.refresh(reference, now=now)
    except GatewayError as error:
        return error
    except Exception as error:  # noqa: BLE001 - any gateway failure is an unknown outcome
        return GatewayError(f"{type(error).__name__}: {error}")


def refresh_many_safely(gateway: Gateway, items: list[tuple[str, datetime]]) -> list:
    """gateway.refresh_many, held to its contract: one outcome per item, a ChargeResult or
    a GatewayError. A batch call that fails, or answers for another number of charges,
    leaves every one of them unknown (checked again later), never half-read."""
    try:
        outcomes = list(gateway.refresh_many(items))
    except Exception as error:  # noqa: BLE001 - any gateway failure is an unknown outcome
        return [GatewayError(f"{type(error).__name__}: {error}")] * len(items)
    if len(outcomes) != len(items) or not all(
        isinstance(outcome, ChargeResult | GatewayError) for outcome in outcomes
    ):
        error = GatewayError(f"refresh_many answered {len(outcomes)} outcomes for "
                             f"{len(items)} charges, or something else than outcomes.")
        return [error] * len(items)
    return outcomes


def gateway_load(path: str | None = None) -> Gateway:
    """The gateway named by PAYMENT_GATEWAY (a dotted path to a Gateway subclass)."""
    path = path or settings.PAYMENT_GATEWAY
    try:
        gateway_class = import_string(path)
    except ImportError as error:
        raise ImproperlyConfigured(
            f"PAYMENT_GATEWAY={path!r} cannot be imported: {error}"
        ) from error
    if not (isinstance(gateway_class, type) and issubclass(gateway_class, Gateway)):
        raise ImproperlyConfigured(
            f"PAYMENT_GATEWAY={path!r} is not a subclass of invoices.gateways.base.Gateway."
        )
    try:
        return gateway_class()
    except TypeError as error:
        raise ImproperlyConfigured(
            f"PAYMENT_GATEWAY={path!r} cannot be created: {error}"
        ) from error
