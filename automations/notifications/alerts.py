"""Overdue alerts to the collections team: an open invoice whose remaining amount is at
least the threshold set for its currency, `overdue_alert_days` past its due date. One
alert per invoice, ever (its outbox key)."""

from datetime import datetime

from django.db import transaction

from invoices.models import Invoice

from .models import NotificationSchedule, NotificationSettings
from .outbox import outbox_message, outbox_write
from .reminders import local_date

BATCH_SIZE = 500


def due_alerts(now: datetime, test_clock=None):
    rows = NotificationSchedule.objects.filter(overdue_alert_at__lte=now)
    if test_clock is None:
        return rows.filter(invoice__customer__test_clock__isnull=True)
    return rows.filter(test_clock=test_clock)


def alert_applies(invoice: Invoice, thresholds: dict) -> bool:
    threshold = thresholds.get(invoice.currency)
    return (
        invoice.status == Invoice.Status.OPEN
        and threshold is not None
        and invoice.amount_remaining >= threshold
    )


def days_overdue(invoice: Invoice, now: datetime) -> int:
    tz = invoice.customer.timezone
    due = invoice.due_date or local_date(invoice.finalized_at or now, tz)
    return (local_date(now, tz) - due).days


def alerts_sweep(*, now: datetime, test_clock=None, batch_size: int = BATCH_SIZE) -> dict:
    """Queue the alerts due at `now`. Counts: queued, below threshold (or no recipients)."""
    counts = {"queued": 0, "not_alerted": 0}
    if not NotificationSchedule.objects.filter(overdue_alert_at__lte=now).exists():
        return counts  # the usual case: one index probe
    settings = NotificationSettings.load()
    recipients = settings.alert_recipient_list()
    while True:
        with transaction.atomic():
            schedules = list(
                due_alerts(now, test_clock)
                .select_related("invoice__customer")
                .select_for_update(skip_locked=True, of=("self",))
                .order_by("overdue_alert_at")[:batch_size]
            )
            messages = []
            for schedule in schedules:
                invoice = schedule.invoice
                if recipients and alert_applies(invoice, settings.overdue_alert_thresholds):
                    messages.append(
                        alert_message(invoice, recipients, now, settings.staff_locale)
                    )
                    counts["queued"] += 1
                else:
                    counts["not_alerted"] += 1
            NotificationSchedule.objects.filter(
                pk__in=[s.pk for s in schedules]
            ).update(overdue_alert_at=None)
            outbox_write(messages)
        if len(schedules) < batch_size:
            return counts


def alert_message(invoice: Invoice, recipients: list[str], now: datetime, locale: str):
    return outbox_message(
        f"overdue_alert:{invoice.pk}",
        kind="overdue_alert",
        now=now,
        customer_id=invoice.customer_id,
        invoice_id=invoice.pk,
        to=recipients,
        locale=locale,
        context={"days_overdue": days_overdue(invoice, now)},
    )
