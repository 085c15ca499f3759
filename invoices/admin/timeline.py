"""Timelines in plain words, in the staff member's language: one sentence per event
("Credit note DEMOGLOBEX-0001-CN-01 for $500.00"), with the raw event one click away.

Higher apps describe their own events with `describes` (automations describes the
emails it sends): this module never imports them.
"""

import json
from collections.abc import Callable
from datetime import datetime

from django.utils import timezone
from django.utils.formats import date_format
from django.utils.translation import gettext as _

from customers.money import is_int

from ..models import Event
from .common import money

DESCRIBERS: dict[str, Callable[[Event, str], str]] = {}


def describes(*types: str):
    """Register the sentence of these event types: fn(event, currency) -> str."""
    def register(fn):
        for event_type in types:
            DESCRIBERS[event_type] = fn
        return fn
    return register


def event_sentence(event: Event, currency: str = "") -> str:
    describe = DESCRIBERS.get(event.type)
    if describe is None:
        return event.type
    return describe(event, currency or (event.data or {}).get("currency", ""))


def event_raw(event: Event) -> str:
    return f"{event.type}\n" + json.dumps(event.data or {}, indent=2, ensure_ascii=False,
                                           sort_keys=True, default=str)


def timeline_rows(events, currency: str = "") -> list[dict]:
    return [
        {
            "at": event.created_at,
            "sentence": event_sentence(
                event, currency or (event.invoice.currency if event.invoice_id else "")
            ),
            "actor": event.actor_label or event.get_actor_kind_display(),
            "raw": event_raw(event),
            "event": event,
        }
        for event in events
    ]


def amount(event: Event, currency: str, key: str = "amount") -> str:
    value = (event.data or {}).get(key)
    return money(value, currency) if is_int(value) and currency else ""


def moment(iso: str | None) -> str:
    if not iso:
        return ""
    try:
        at = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    return date_format(timezone.localtime(at), "DATETIME_FORMAT")


def simple(text_of: Callable[[], str]):
    return lambda event, currency: text_of()


describes("invoice.paid")(simple(lambda: _("Invoice paid in full")))
describes("invoice.voided")(simple(lambda: _("Invoice voided")))
describes("invoice.marked_uncollectible")(simple(lambda: _("Invoice marked uncollectible")))
describes("invoice.overdue")(simple(lambda: _("Invoice became overdue")))
describes("invoice.will_be_due")(simple(lambda: _("Invoice will soon be due")))
describes("invoice.hosted_page_viewed")(
    simple(lambda: _("The customer opened the invoice page")))
describes("invoice.hosted_link_rotated")(
    simple(lambda: _("New invoice page link issued; links sent before no longer work")))
describes("invoice.hosted_link_revoked")(simple(lambda: _("Invoice page link revoked")))
describes("invoice.hosted_link_sent")(
    simple(lambda: _("A fresh invoice page link was emailed to the customer")))
describes("invoice.revised")(simple(lambda: _("Voided and copied to a new draft")))


describes("payment_method.disabled")(
    simple(lambda: _("Payment method unusable after a hard decline")))
describes("payment_method.reenabled")(simple(lambda: _("Payment method re-enabled")))


@describes("invoice.payment_held_for_review")
def _held(event, currency):
    data = event.data or {}
    return _("Payment of %(amount)s held for review: %(reason)s") % {
        "amount": amount(event, data.get("currency") or currency) or "—",
        "reason": data.get("reason", "")}


@describes("invoice.payment_review_resolved")
def _review_resolved(event, currency):
    if (event.data or {}).get("decision") == "booked":
        return _("Staff booked the held payment of %(amount)s") % {
            "amount": amount(event, currency) or "—"}
    return _("Staff released the held payment: the invoice is collected again")


@describes("invoice.created")
def _created(event, currency):
    revision_of = (event.data or {}).get("revision_of")
    if revision_of:
        return _("Draft created as a revision of %(number)s") % {"number": revision_of}
    return _("Draft created")


@describes("invoice.updated")
def _updated(event, currency):
    fields = (event.data or {}).get("fields") or []
    return _("Invoice updated: %(fields)s") % {"fields": ", ".join(fields)} if fields else _(
        "Invoice updated")


@describes("invoice.finalized")
def _finalized(event, currency):
    number = event.invoice.number if event.invoice_id else ""
    return _("Finalized as %(number)s") % {"number": number} if number else _("Finalized")


@describes("invoice.finalization_failed")
def _finalization_failed(event, currency):
    return _("Automatic finalization failed: %(error)s") % {
        "error": (event.data or {}).get("error", "")}


@describes("invoice.deleted")
def _deleted(event, currency):
    return _("Draft deleted (%(total)s)") % {"total": amount(event, currency, "total")}


@describes("invoice.payment_succeeded")
def _payment(event, currency):
    method = (event.data or {}).get("method", "")
    text = _("Payment of %(amount)s received") % {"amount": amount(event, currency)}
    return f"{text} ({method.replace('_', ' ')})" if method else text


@describes("invoice.payment_failed")
def _payment_failed(event, currency):
    data = event.data or {}
    reason = data.get("failure_message") or data.get("decline_code") or ""
    text = _("Payment of %(amount)s declined: %(reason)s") % {
        "amount": amount(event, currency), "reason": reason}
    if data.get("next_payment_attempt"):
        text += " " + _("(next attempt %(at)s)") % {"at": moment(data["next_payment_attempt"])}
    elif data.get("hard_decline"):
        text += " " + _("(not retried: the customer must give a new payment method)")
    return text


@describes("invoice.payment_processing")
def _processing(event, currency):
    return _("Payment of %(amount)s processing at the bank") % {"amount": amount(event, currency)}


@describes("invoice.payment_action_required")
def _action_required(event, currency):
    return _("The payment needs the customer's action (authentication)")


@describes("invoice.collection_paused")
def _paused(event, currency):
    return _("Collection paused: the customer has no payment method")


@describes("credit_note.created")
def _credit_note(event, currency):
    return _("Credit note %(number)s for %(amount)s") % {
        "number": (event.data or {}).get("number", ""), "amount": amount(event, currency)}


@describes("credit_note.voided")
def _credit_note_voided(event, currency):
    return _("Credit note %(number)s voided (%(amount)s)") % {
        "number": (event.data or {}).get("number", ""), "amount": amount(event, currency)}


@describes("payment_method.attached")
def _method_attached(event, currency):
    return _("Payment method %(label)s added") % {"label": (event.data or {}).get("label", "")}


@describes("payment_method.detached")
def _method_detached(event, currency):
    return _("Payment method %(label)s removed") % {"label": (event.data or {}).get("label", "")}
