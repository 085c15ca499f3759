"""Payments held for review: a gateway answer that did not match its request (another
amount or currency, another charge's id or metadata) is never booked (collection._held).
The invoice is charged by nothing until a person, having looked at the gateway, decides:

- `held_payment_book`: the money was taken as asked: the attempt's amount is booked as
  a payment (what exceeds the amount due goes to the customer's balance, as any late
  payment does);
- `held_payment_release`: nothing usable was taken: the attempt is closed as failed and
  the invoice goes back to collection (charged again at once when it is charged
  automatically).

Either way the attempt leaves `held` through a compare-and-set on its status, and the
invoice's timeline records the decision and who took it."""

from datetime import datetime

from django.db import transaction
from django.utils.translation import gettext as _

from customers.actors import Actor
from customers.errors import DomainError

from .collection import _Batch, _plans_apply, _succeeded, _write
from .events import event_record
from .gateways.base import ChargeResult
from .models import Invoice, PaymentAttempt
from .services import invoice_lock
from .transitions import S

A = PaymentAttempt.Status
# Where a held attempt may go, and only from there.
REVIEW_OUTCOMES = {A.HELD: {A.SUCCEEDED, A.FAILED}}


def held_attempt(invoice: Invoice) -> PaymentAttempt:
    attempt = invoice.payment_attempts.filter(status=A.HELD).first()
    if attempt is None:
        raise DomainError(_("Invoice %(n)s has no payment held for review.") % {"n": invoice})
    return attempt


def _attempt_claim(attempt: PaymentAttempt, target: str) -> None:
    """The held attempt's one door: allowed, and still held (compare-and-set)."""
    if target not in REVIEW_OUTCOMES.get(attempt.status, set()):
        raise DomainError(_("This payment is no longer held for review."))
    changed = PaymentAttempt.objects.filter(pk=attempt.pk, status=A.HELD).update(status=target)
    if changed != 1:
        raise DomainError(_("This payment was decided by someone else meanwhile; reload."))


def held_payment_book(invoice: Invoice, *, now: datetime, actor: Actor) -> PaymentAttempt:
    """Staff checked the gateway: the amount asked was received. Book it."""
    with transaction.atomic():
        locked = invoice_lock(invoice)
        attempt = PaymentAttempt.objects.select_for_update(of=("self",)).select_related(
            "payment_method").get(pk=held_attempt(locked).pk)
        _attempt_claim(attempt, A.SUCCEEDED)
        attempt.invoice = locked
        reason = attempt.failure_message
        attempt.failure_message = ""
        batch = _Batch(actor=actor, invoices={locked.pk: locked})
        batch.attempts.append(attempt)
        reference = attempt.gateway_reference or f"review-{attempt.pk}"
        _succeeded(batch, attempt, ChargeResult(
            status="succeeded", gateway_reference=reference, amount_received=attempt.amount,
        ), now)
        if locked.payment_hold == "gateway_review":
            locked.payment_hold = ""
            batch.invoice_fields.add("payment_hold")
        _plans_apply(batch)
        _write(batch)
        event_record("invoice.payment_review_resolved", now=now, actor=actor, invoice=locked,
                     data={"attempt": attempt.pk, "decision": "booked",
                           "amount": attempt.amount, "reason": reason})
    invoice.refresh_from_db()
    return attempt


def held_payment_release(invoice: Invoice, *, now: datetime, actor: Actor) -> PaymentAttempt:
    """Staff checked the gateway: nothing usable was taken. The attempt fails and the
    invoice goes back to collection."""
    with transaction.atomic():
        locked = invoice_lock(invoice)
        attempt = held_attempt(locked)
        _attempt_claim(attempt, A.FAILED)
        PaymentAttempt.objects.filter(pk=attempt.pk).update(decline_code="held_released")
        fields = {"payment_hold": ""}
        automatic = (
            locked.status == S.OPEN and locked.auto_advance and locked.amount_remaining > 0
            and locked.collection_method == Invoice.CollectionMethod.CHARGE_AUTOMATICALLY
        )
        if automatic:
            fields.update(next_payment_attempt=now, next_payment_attempt_reason=_(
                "Released after review: charged again now."))
        Invoice.objects.filter(pk=locked.pk).update(**fields)
        event_record("invoice.payment_review_resolved", now=now, actor=actor, invoice=locked,
                     data={"attempt": attempt.pk, "decision": "released",
                           "reason": attempt.failure_message})
    invoice.refresh_from_db()
    attempt.refresh_from_db()
    return attempt
