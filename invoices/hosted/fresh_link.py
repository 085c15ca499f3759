"""A fresh invoice page link, asked for by whoever holds an expired one, and sent only
to the customer's own address."""

from datetime import datetime

from django.core.mail import send_mail
from django.db import transaction
from django.template.loader import render_to_string
from django.utils import translation

from customers.actors import Actor

from ..events import event_record
from ..models import Invoice, InvoicingSettings
from . import hosted_url
from .links import email_matches, hosted_link_rotate, link_expires_at
from .locale import language_for


def hosted_link_request(invoice: Invoice, *, email: str, now: datetime, actor: Actor) -> bool:
    """Issue and email a fresh link when `email` is the customer's own address; do
    nothing otherwise. Callers answer the same way in both cases, so that nobody learns
    which addresses are known. Returns whether a link was sent (for tests and logs)."""
    if not email_matches(email, invoice.customer.email):
        return False
    with transaction.atomic():
        hosted_link_rotate(invoice, now=now, actor=actor, reason="customer_request")
        fresh_link_email(invoice, now=now)
        event_record("invoice.hosted_link_sent", now=now, actor=actor, invoice=invoice,
                     data={"to": "customer_email"})
    return True


def fresh_link_email(invoice: Invoice, *, now: datetime) -> None:
    """Send the invoice's current link to its customer, in the customer's language, once
    the caller's transaction commits (no email for a link that was rolled back).

    INTEGRATION POINT (notify branch): when the outbox lands, replace the on_commit
    send_mail below with
        automations.notifications.outbox.notify(
            f"hosted-link-{invoice.pk}-{invoice.hosted_token_hash[:16]}",
            to=[invoice.customer.email], template="hosted/email/fresh_link",
            context=..., now=now)
    written in the same transaction (delivered by a worker, with retries). Until then the
    mail is sent from the web process, which also makes a matching address answer a
    little slower than another one.
    """
    customer = invoice.customer
    context = {
        "invoice": invoice,
        "customer_name": invoice.customer_details.get("name") or customer.name,
        "url": hosted_url(invoice),  # SITE_URL: never the request's Host header
        "expires_at": link_expires_at(invoice, InvoicingSettings.load()),
        "timezone": customer.timezone,
    }
    with translation.override(language_for(customer)):
        subject = render_to_string("hosted/email/fresh_link_subject.txt", context).strip()
        body = render_to_string("hosted/email/fresh_link.txt", context)
    recipient = customer.email
    # robust: a mail server that is down is logged, not shown to the customer as an error.
    transaction.on_commit(lambda: send_mail(subject, body, None, [recipient]), robust=True)
