"""A retry policy started by an automation: it replaces the invoice's default policy
from its next retry. The retry already planned is planned again under the new policy
(replaced on the invoice's one `next_payment_attempt`: never a second retry)."""

from datetime import datetime

from django.db import transaction
from django.utils.translation import gettext as _

from customers.actors import Actor
from invoices.collection import Failure, retry_plan_fields
from invoices.events import event_record
from invoices.models import Invoice, PaymentAttempt

from ..models import RetryPolicy
from .models import InvoiceRetryPolicy


def invoice_policies(invoice_ids) -> dict[int, RetryPolicy]:
    """The policies automations started for these invoices (one query)."""
    rows = InvoiceRetryPolicy.objects.filter(invoice_id__in=invoice_ids).select_related("policy")
    return {row.invoice_id: row.policy for row in rows}


def invoice_retry_policy_start(
    invoice: Invoice, *, policy: RetryPolicy, automation_id: int | None, now: datetime,
    actor: Actor,
) -> str:
    from ..retries import _Context, plan_retry
    from ..retry_model import model_load

    with transaction.atomic():
        locked = Invoice.objects.select_for_update().select_related("customer").get(pk=invoice.pk)
        InvoiceRetryPolicy.objects.update_or_create(
            invoice=locked, defaults={"policy": policy, "automation_id": automation_id,
                                      "started_at": now},
        )
        replanned = None
        if locked.status == Invoice.Status.OPEN and locked.next_payment_attempt is not None:
            attempt = (PaymentAttempt.objects.filter(
                invoice=locked, source=PaymentAttempt.Source.AUTOMATIC,
                status=PaymentAttempt.Status.FAILED).order_by("-created_at", "-pk").first())
            if attempt is not None:
                at = attempt.completed_at or attempt.created_at
                failure = Failure(locked, attempt, locked.customer, at)
                smart = policy.mode == RetryPolicy.Mode.SMART
                plan = plan_retry(failure, policy,
                                  _Context([failure], model_load() if smart else None))
                replanned = plan.at
                # The chance and what the attempt keeps of the plan are the new plan's,
                # not the replaced one's.
                fields = retry_plan_fields(plan)
                Invoice.objects.filter(pk=locked.pk).update(**fields)
                for name, value in fields.items():
                    setattr(invoice, name, value)
        event_record(
            "invoice.retry_policy_started", now=now, actor=actor, invoice=locked,
            data={"policy": policy.name,
                  "next_payment_attempt": replanned.isoformat() if replanned else None},
        )
    if replanned is not None:
        return _('Retry policy "%(p)s" started; next retry %(at)s.') % {
            "p": policy.name, "at": replanned.strftime("%Y-%m-%d %H:%M")}
    return _('Retry policy "%(p)s" started.') % {"p": policy.name}
