"""Which events cause which emails: the event-log subscriber.

It runs inside the transaction that wrote the events (invoices.events.subscribe), so
an email is queued if and only if its cause commits. It is set-based (the bulk doors
hand it thousands of events) and returns at once when no event concerns it."""

from django.contrib.auth import get_user_model

from invoices.models import Event, Invoice

from .models import NotificationSchedule, NotificationSettings
from .outbox import outbox_message, outbox_write
from .reminders import schedule_build

CLOSING = {"invoice.paid", "invoice.voided", "invoice.marked_uncollectible"}
# The customer paying on the invoice page sees the outcome there: no email about it.
ON_THE_PAGE = "customer"


def payment_failed_message(event: Event):
    data = event.data
    if data.get("source") == ON_THE_PAGE:
        return None
    kind = "payment_failed_hard" if data.get("hard_decline") else "payment_failed"
    return _message(
        event, f"payment_failed:{data.get('attempt') or event.pk}", kind,
        context={name: data.get(name) for name in (
            "amount", "decline_code", "failure_message", "next_payment_attempt",
        )},
    )


def collection_paused_message(event: Event):
    """A new invoice not charged because its payment method hard-declined before: the
    customer is asked for a new one (as after the decline itself)."""
    data = event.data
    if data.get("reason") != "hard_decline":
        return None
    return _message(
        event, f"collection_paused:{event.invoice_id}:{data.get('payment_method')}",
        "payment_failed_hard",
        context={"amount": data.get("amount"), "decline_code": data.get("decline_code"),
                 "failure_message": data.get("failure_message"),
                 "next_payment_attempt": None},
    )


def action_required_message(event: Event):
    data = event.data
    if data.get("source") == ON_THE_PAGE:
        return None
    return _message(
        event, f"payment_action_required:{data.get('attempt') or event.pk}",
        "payment_action_required",
        context={"action_url": data.get("action_url", ""), "amount": data.get("amount")},
    )


def receipt_message(event: Event):
    payment = event.data.get("payment")
    if payment is None:
        return None
    return _message(
        event, f"receipt:{payment}", "receipt", context={"payment": payment},
        attachments=[{"kind": "receipt", "id": payment}],
    )


def credit_note_message(event: Event):
    return _message(
        event, f"credit_note:{event.credit_note_id}", "credit_note",
        context={"credit_note": event.credit_note_id},
        attachments=[{"kind": "credit_note", "id": event.credit_note_id}],
    )


def invoice_link_message(event: Event):
    return _message(event, f"invoice_link:{event.invoice_id}:{event.pk}", "invoice_link")


def superuser_addresses() -> list[str]:
    """Money no one may book blindly: without alert recipients, the superusers."""
    users = get_user_model().objects.filter(is_superuser=True, is_active=True).exclude(email="")
    return sorted(users.values_list("email", flat=True))


def payment_held_message(event: Event):
    """Staff are told at once: the invoice is charged by nothing until they decide."""
    settings = NotificationSettings.load()
    recipients = settings.alert_recipient_list() or superuser_addresses()
    if not recipients:
        return None
    return outbox_message(
        f"payment_held:{event.data.get('attempt') or event.pk}", kind="payment_held",
        now=event.created_at, customer_id=event.customer_id, invoice_id=event.invoice_id,
        to=recipients, locale=settings.staff_locale,
        context={"amount": event.data.get("amount"), "reason": event.data.get("reason", "")},
    )


def _message(event: Event, key: str, kind: str, *, context=None, attachments=()):
    return outbox_message(
        key, kind=kind, now=event.created_at, customer_id=event.customer_id,
        invoice_id=event.invoice_id, context=context, attachments=attachments,
    )


ONE_EMAIL_EACH = {
    "invoice.payment_failed": payment_failed_message,
    "invoice.payment_action_required": action_required_message,
    "invoice.collection_paused": collection_paused_message,
    "invoice.payment_succeeded": receipt_message,
    "credit_note.created": credit_note_message,
    "invoice.hosted_link_sent": invoice_link_message,
    "invoice.payment_held_for_review": payment_held_message,
}
HANDLED = {"invoice.finalized", *CLOSING, *ONE_EMAIL_EACH}


def on_events(events: list[Event]) -> None:
    relevant = [event for event in events if event.type in HANDLED]
    if not relevant:
        return
    messages = []
    finalized = [event for event in relevant if event.type == "invoice.finalized"]
    if finalized:
        messages += invoices_finalized(finalized)
    closed = [event.invoice_id for event in relevant if event.type in CLOSING]
    if closed:
        NotificationSchedule.objects.filter(invoice_id__in=closed).delete()
    for event in relevant:
        build = ONE_EMAIL_EACH.get(event.type)
        message = build(event) if build is not None and event.invoice_id else None
        if message is not None:
            messages.append(message)
    outbox_write(messages, clocks=_clocks_known(relevant))


def _clocks_known(events: list[Event]) -> dict:
    """The test clocks of the events' customers that came loaded with their invoice (the
    sweeps load them): customer id -> test clock id."""
    known = {}
    for event in events:
        invoice = _carried(event)
        if invoice is not None and invoice.customer_id == event.customer_id:
            known[event.customer_id] = invoice.customer.test_clock_id
    return known


def _carried(event: Event) -> Invoice | None:
    """The invoice the event came loaded with, its customer loaded too (the sweeps' doors
    write them just before): None when either would have to be read."""
    invoice = event.invoice if Event.invoice.is_cached(event) else None
    if invoice is not None and Invoice.customer.is_cached(invoice):
        return invoice
    return None


def invoices_finalized(events: list[Event]) -> list:
    """Schedule reminders and alerts for the newly open invoices; email the
    'send invoice' ones when the setting says so."""
    settings = NotificationSettings.load()
    when = {event.invoice_id: event.created_at for event in events}
    # The invoices as the events carry them, with their customer (the finalizing door
    # wrote them just before): not read again. The others (an event with ids only) are.
    carried = {invoice.pk: invoice for invoice in map(_carried, events) if invoice is not None}
    invoices = [invoice for invoice in carried.values() if invoice.status == Invoice.Status.OPEN]
    unknown = [pk for pk in when if pk not in carried]
    if unknown:
        invoices += Invoice.objects.filter(pk__in=unknown, status=Invoice.Status.OPEN
                                           ).select_related("customer")
    invoices.sort(key=lambda invoice: (invoice.created_at, invoice.pk), reverse=True)  # as read
    schedules, messages = [], []
    for invoice in invoices:
        now = when[invoice.pk]
        schedules.append(schedule_build(invoice, settings, now))
        if settings.send_finalized_invoices and \
                invoice.collection_method == Invoice.CollectionMethod.SEND_INVOICE:
            messages.append(outbox_message(
                f"invoice_finalized:{invoice.pk}", kind="invoice_finalized", now=now,
                customer_id=invoice.customer_id, invoice_id=invoice.pk,
                attachments=[{"kind": "invoice", "id": invoice.pk}],
            ))
    NotificationSchedule.objects.bulk_create(schedules, ignore_conflicts=True)
    return messages
