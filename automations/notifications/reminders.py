"""Payment reminders for unpaid 'send invoice' invoices, at offsets (days) around the
due date, and the per-invoice schedule that the reminder and alert sweeps read.

A reminder for offset d goes out at REMINDER_HOUR, in the customer's time zone, on the
due date plus d days. At most one per offset per invoice (its outbox key); none on the
day the invoice was sent; none while a payment of the invoice is processing; none while
the customer's reminders are paused; none once the invoice is paid, void or
uncollectible (its schedule row is removed then). A sweep that finds several offsets
passed (after downtime) sends only the latest and skips the older ones."""

import zoneinfo
from datetime import date, datetime, time, timedelta

from django.db import transaction

from invoices.models import Invoice, PaymentAttempt

from .kinds import REMINDER_KINDS
from .models import CustomerNotificationPreference, NotificationSchedule, NotificationSettings
from .outbox import outbox_message, outbox_write

REMINDER_HOUR = 9
BATCH_SIZE = 500
S = Invoice.Status
SEND_INVOICE = Invoice.CollectionMethod.SEND_INVOICE


def local_moment(day: date, tz_name: str, hour: int = REMINDER_HOUR) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=zoneinfo.ZoneInfo(tz_name))


def local_date(moment: datetime, tz_name: str) -> date:
    return moment.astimezone(zoneinfo.ZoneInfo(tz_name)).date()


def reminder_moment(due_date: date, offset: int, tz_name: str) -> datetime:
    return local_moment(due_date + timedelta(days=offset), tz_name)


def reminder_kind(offset: int) -> str:
    return REMINDER_KINDS[0 if offset < 0 else 1 if offset == 0 else 2]


def gets_reminders(invoice: Invoice) -> bool:
    return (
        invoice.collection_method == SEND_INVOICE
        and invoice.due_date is not None
        and invoice.auto_advance
    )


def first_reminder_at(invoice: Invoice, offsets: list[int], sent_at: datetime):
    """The first reminder's moment: the first offset falling after the day it was sent."""
    if not gets_reminders(invoice):
        return None
    tz = invoice.customer.timezone
    sent_on = local_date(sent_at, tz)
    for offset in sorted(offsets):
        if invoice.due_date + timedelta(days=offset) > sent_on:
            return reminder_moment(invoice.due_date, offset, tz)
    return None


def overdue_alert_at(invoice: Invoice, days: int, finalized_at: datetime) -> datetime:
    """When the invoice will be `days` overdue. Without a due date (charged
    automatically), it was due when it was finalized."""
    tz = invoice.customer.timezone
    due = invoice.due_date or local_date(finalized_at, tz)
    return local_moment(due + timedelta(days=days), tz)


def schedule_build(invoice: Invoice, settings: NotificationSettings, now: datetime):
    return NotificationSchedule(
        invoice_id=invoice.pk,
        test_clock_id=invoice.customer.test_clock_id,
        next_reminder_at=first_reminder_at(invoice, settings.reminder_offsets, now),
        overdue_alert_at=overdue_alert_at(invoice, settings.overdue_alert_days, now),
    )


def invoices_with_payment_processing(invoice_ids: list[int]) -> set[int]:
    """Invoices with a payment attempt still processing (e.g. a bank debit in flight)."""
    if not invoice_ids:
        return set()
    return set(
        PaymentAttempt.objects.filter(
            invoice_id__in=invoice_ids, status=PaymentAttempt.Status.PROCESSING
        ).values_list("invoice_id", flat=True)
    )


# --- the sweep ----------------------------------------------------------------------


def due_schedules(now: datetime, test_clock=None):
    rows = NotificationSchedule.objects.filter(next_reminder_at__lte=now)
    if test_clock is None:
        return rows.filter(invoice__customer__test_clock__isnull=True)
    return rows.filter(test_clock=test_clock)


def reminder_step(schedule, offsets: list[int], now: datetime):
    """(offset to remind now or None, next moment or None) for a due schedule row."""
    invoice = schedule.invoice
    tz = invoice.customer.timezone
    after = schedule.last_reminder_offset
    pending = [o for o in sorted(offsets) if after is None or o > after]
    passed = [o for o in pending if reminder_moment(invoice.due_date, o, tz) <= now]
    later = [o for o in pending if o not in passed]
    current = passed[-1] if passed else None
    following = reminder_moment(invoice.due_date, later[0], tz) if later else None
    return current, following


def reminders_sweep(*, now: datetime, test_clock=None, batch_size: int = BATCH_SIZE) -> dict:
    """Queue the reminders due at `now`. Counts: queued, skipped (paused, processing)."""
    counts = {"queued": 0, "paused": 0, "processing": 0}
    # The usual case, every minute: nothing due. One index probe, nothing else loaded.
    if not NotificationSchedule.objects.filter(next_reminder_at__lte=now).exists():
        return counts
    offsets = NotificationSettings.load().reminder_offsets
    while True:
        handled = _reminder_batch(now, test_clock, offsets, batch_size, counts)
        if handled < batch_size:
            return counts


def _reminder_batch(now, test_clock, offsets, batch_size, counts) -> int:
    with transaction.atomic():
        schedules = list(
            due_schedules(now, test_clock)
            .select_related("invoice__customer")
            .select_for_update(skip_locked=True, of=("self",))
            .order_by("next_reminder_at")[:batch_size]
        )
        if not schedules:
            return 0
        customers = {s.invoice.customer_id for s in schedules}
        paused = set(
            CustomerNotificationPreference.objects.filter(
                customer_id__in=customers, reminders_paused=True
            ).values_list("customer_id", flat=True)
        )
        processing = invoices_with_payment_processing([s.invoice_id for s in schedules])
        messages = []
        for schedule in schedules:
            offset, following = reminder_step(schedule, offsets, now)
            invoice = schedule.invoice
            schedule.next_reminder_at = following if invoice.status == S.OPEN else None
            if offset is None or invoice.status != S.OPEN:
                continue
            schedule.last_reminder_offset = offset
            if invoice.customer_id in paused:
                counts["paused"] += 1
            elif invoice.pk in processing:
                counts["processing"] += 1
            else:
                messages.append(reminder_message(invoice, offset, now))
                counts["queued"] += 1
        NotificationSchedule.objects.bulk_update(
            schedules, ["next_reminder_at", "last_reminder_offset"]
        )
        outbox_write(messages)
    return len(schedules)


def reminder_message(invoice: Invoice, offset: int, now: datetime):
    return outbox_message(
        f"reminder:{invoice.pk}:{offset}",
        kind=reminder_kind(offset),
        now=now,
        customer_id=invoice.customer_id,
        invoice_id=invoice.pk,
        context={"offset": offset},
    )


# --- settings changed ---------------------------------------------------------------


def schedules_rebuild(*, now: datetime, batch_size: int = 2000) -> int:
    """Recompute every open invoice's next reminder and alert after the offsets or the
    alert delay changed. Reminders already sent stay sent (their keys), and offsets
    already passed are not caught up. Returns the number of schedules rewritten."""
    settings = NotificationSettings.load()
    rewritten, after = 0, 0
    while True:
        with transaction.atomic():
            invoices = list(
                Invoice.objects.filter(status=S.OPEN, pk__gt=after)
                .select_related("customer")
                .order_by("pk")[:batch_size]
            )
            if not invoices:
                return rewritten
            _schedules_rewrite(invoices, settings, now)
        rewritten += len(invoices)
        after = invoices[-1].pk


def _schedules_rewrite(invoices: list[Invoice], settings, now: datetime) -> None:
    ids = [invoice.pk for invoice in invoices]
    existing = dict(
        NotificationSchedule.objects.filter(invoice_id__in=ids)
        .values_list("invoice_id", "last_reminder_offset")
    )
    fresh = []
    for invoice in invoices:
        schedule = schedule_build(invoice, settings, invoice.finalized_at or now)
        schedule.last_reminder_offset = existing.get(invoice.pk)
        schedule.invoice = invoice
        if gets_reminders(invoice):
            current, following = reminder_step(schedule, settings.reminder_offsets, now)
            schedule.next_reminder_at = following
            if current is not None:
                schedule.last_reminder_offset = current
        if schedule.overdue_alert_at is not None and schedule.overdue_alert_at <= now:
            schedule.overdue_alert_at = now  # due now; the alert sweep decides
        fresh.append(schedule)
    NotificationSchedule.objects.filter(invoice_id__in=ids).delete()
    NotificationSchedule.objects.bulk_create(fresh)
