"""Triggers: what starts a run. Most are event types of the event log; two are counted
in days (past due by N days, due in N days) and found by an indexed scan (scan.py).

A small registry: the subscription triggers register themselves the same way
(subscription.py), so nothing here knows about subscriptions."""

from collections.abc import Callable
from dataclasses import dataclass, field

from django.utils.translation import gettext_lazy as _

# What a trigger's subject carries, for conditions and steps.
INVOICE, CUSTOMER, PAYMENT, SUBSCRIPTION = "invoice", "customer", "payment", "subscription"
PAST_DUE, DUE_IN = "past_due", "due_in"
CUSTOMER_CREATED = "customer_created"


@dataclass(frozen=True)
class Trigger:
    key: str
    label: object  # lazy text: "a payment fails"
    event_types: tuple[str, ...] = ()
    carries: frozenset = field(default_factory=lambda: frozenset({INVOICE, CUSTOMER}))
    days: str = ""  # PAST_DUE or DUE_IN: counted in days, found by scan.py
    scanned: bool = False  # found by scan.py (no event announces it)
    # The run exits once its invoice is paid or voided (it was about collecting it).
    settles: bool = False
    applies: Callable | None = None  # applies(subject) -> bool, beyond the event type


TRIGGERS: dict[str, Trigger] = {}
_by_type: dict[str, list[Trigger]] = {}


def trigger_register(trigger: Trigger) -> Trigger:
    TRIGGERS[trigger.key] = trigger
    _by_type.clear()
    return trigger


def triggers_of_type(event_type: str) -> list[Trigger]:
    if not _by_type:
        for trigger in TRIGGERS.values():
            for type_ in trigger.event_types:
                _by_type.setdefault(type_, []).append(trigger)
    return _by_type.get(event_type, [])


def event_types() -> set[str]:
    return {type_ for trigger in TRIGGERS.values() for type_ in trigger.event_types}


def trigger_choices() -> list[tuple[str, str]]:
    return [(key, trigger.label) for key, trigger in TRIGGERS.items()]


FAILED = frozenset({INVOICE, CUSTOMER, PAYMENT})
for _trigger in [
    Trigger("invoice_finalized", _("an invoice is finalized"), ("invoice.finalized",)),
    Trigger("payment_failed", _("a payment fails"), ("invoice.payment_failed",), FAILED,
            settles=True),
    Trigger("payment_action_required", _("a payment requires the customer's action"),
            ("invoice.payment_action_required",), settles=True),
    Trigger("invoice_past_due", _("an invoice is past due by N days"), days=PAST_DUE,
            settles=True),
    Trigger("invoice_due_soon", _("an invoice is due in N days"), days=DUE_IN, settles=True),
    Trigger("invoice_paid", _("an invoice is paid"), ("invoice.paid",)),
    Trigger("invoice_uncollectible", _("an invoice is marked uncollectible"),
            ("invoice.marked_uncollectible",)),
    Trigger("credit_note_created", _("a credit note is created"), ("credit_note.created",)),
    # Customers are created below the event log (the customers app writes no events):
    # found by scan.py among customers created since the automation was enabled.
    Trigger(CUSTOMER_CREATED, _("a customer is created"), carries=frozenset({CUSTOMER}),
            scanned=True),
]:
    trigger_register(_trigger)
