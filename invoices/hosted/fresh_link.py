"""A fresh invoice page link, asked for by whoever holds an expired one, and sent only
to the customer's own address."""

from datetime import datetime

from django.db import transaction

from customers.actors import Actor

from ..events import event_record
from ..models import Invoice
from .links import email_matches, hosted_link_rotate


def hosted_link_request(invoice: Invoice, *, email: str, now: datetime, actor: Actor) -> bool:
    """Issue and email a fresh link when `email` is the customer's own address; do
    nothing otherwise. Callers answer the same way in both cases, so that nobody learns
    which addresses are known. Returns whether a link was sent (for tests and logs)."""
    if not email_matches(email, invoice.customer.email):
        return False
    # The event queues the email (automations' outbox subscribes to it) in this same
    # transaction: no email for a link that was rolled back, retries when mail is down.
    with transaction.atomic():
        hosted_link_rotate(invoice, now=now, actor=actor, reason="customer_request")
        event_record("invoice.hosted_link_sent", now=now, actor=actor, invoice=invoice,
                     data={"to": "customer_email"})
    return True
