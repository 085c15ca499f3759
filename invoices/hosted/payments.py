"""Paying from the invoice page, and saving a card for the next invoices: through the
one idempotent path of collection (invoices.collection), never around it.

The idempotency key comes from the nonce rendered in the pay form, so a double click,
a reload or a resubmitted form returns the first attempt and never charges twice.
"""

from datetime import datetime
from functools import cache

from django.conf import settings
from django.utils.module_loading import import_string
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from customers.actors import Actor
from customers.models import Customer, PaymentMethod

from ..collection import invoice_charge, payment_method_add
from ..gateways.base import DEFAULT_FAILURE_MESSAGE
from ..gateways.simulated import SimulatedCard, SimulatedGateway
from ..models import Invoice, PaymentAttempt
from .forms import NONCE_RE

# The gateways' failure messages (gateways.base.FAILURE_MESSAGES), listed here so that
# they are translated: the page shows them in the reader's language.
DECLINE_MESSAGES = (
    gettext_noop("Your card has insufficient funds."),
    gettext_noop("Your card was declined."),
    gettext_noop("An error occurred while processing your card."),
    gettext_noop("Your bank could not approve the payment right now."),
    gettext_noop("Your card has expired. Please add a new payment method."),
    gettext_noop("Your card number is incorrect. Please add a new payment method."),
    gettext_noop("Your bank asks you to approve this payment. Please pay from the invoice page."),
    gettext_noop("Your card was declined. Please use a different payment method."),
    gettext_noop("Your payment could not be completed."),
)


def card_entry_available() -> bool:
    """Cards are typed on this page only for the simulated gateway: a real gateway takes
    card numbers in its own fields, so that they never reach this server."""
    return _is_simulated(settings.PAYMENT_GATEWAY)


@cache
def _is_simulated(gateway: str) -> bool:
    return issubclass(import_string(gateway), SimulatedGateway)


def payment_key(invoice: Invoice, nonce: str) -> str:
    return f"hosted-{invoice.pk}-{nonce}"


def attempt_for_nonce(invoice: Invoice, nonce: str) -> PaymentAttempt | None:
    """The attempt a pay form already made (a second click, a reload), if any."""
    if not NONCE_RE.match(nonce):
        return None
    return invoice.payment_attempts.filter(idempotency_key=payment_key(invoice, nonce)).first()


def hosted_pay(
    invoice: Invoice, *, nonce: str, now: datetime, actor: Actor, card: SimulatedCard | None
) -> PaymentAttempt:
    """Pay what remains due with the card typed on the page, or, without one, with the
    customer's default payment method. Raises DomainError when it cannot be paid."""
    target = {}
    if card is not None:
        target = {"gateway_token": card.token, "card_brand": card.brand.capitalize(),
                  "card_last4": card.last4}
    return invoice_charge(
        invoice, now=now, actor=actor, source=PaymentAttempt.Source.CUSTOMER,
        idempotency_key=payment_key(invoice, nonce), **target,
    )


def hosted_card_save(
    customer: Customer, *, card: SimulatedCard, expiry: tuple[int, int], now: datetime,
    actor: Actor,
) -> PaymentMethod:
    """Make this card the customer's default payment method (collection of invoices held
    for a hard decline resumes). The same card saved again, by a double click, is the
    same payment method."""
    current = customer.default_payment_method
    if current is not None and current.usable and current.gateway_reference == card.token:
        return current
    month, year = expiry
    return payment_method_add(
        customer, type=PaymentMethod.Type.CARD, gateway_reference=card.token,
        brand=card.brand.capitalize(), last4=card.last4, exp_month=month, exp_year=year,
        now=now, actor=actor, make_default=True,
    )


def decline_text(failure_message: str) -> str:
    """Why a payment failed (an attempt's failure message), in plain words and in the
    reader's language."""
    return _(failure_message or DEFAULT_FAILURE_MESSAGE)
