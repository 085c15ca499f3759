"""Due work found through indexed "next action at" columns, claimed with
SELECT ... FOR UPDATE SKIP LOCKED, in bounded batches."""

import logging
from datetime import datetime

from django.db import transaction

from customers.actors import Actor
from customers.errors import DomainError

from .events import event_record
from .models import Invoice
from .services import invoice_finalize

log = logging.getLogger(__name__)
AUTO = Actor.system("auto-finalization")


def due_drafts(now: datetime, test_clock=None):
    """Drafts whose automatic finalization is due, for the real clock or one test clock."""
    drafts = Invoice.objects.filter(
        status=Invoice.Status.DRAFT, auto_advance=True, automatically_finalizes_at__lte=now
    )
    if test_clock is None:
        return drafts.filter(customer__test_clock__isnull=True)
    return drafts.filter(customer__test_clock=test_clock)


def finalize_due_drafts(
    *, now: datetime, test_clock=None, batch_size: int = 200, at_scheduled_time: bool = False
) -> dict:
    """Finalize due drafts. A draft that cannot be finalized stops being retried and the
    reason goes on its timeline. With `at_scheduled_time` (test clocks), each draft is
    finalized at the moment it was due, as the real sweep would have done."""
    counts = {"finalized": 0, "failed": 0}
    while True:
        with transaction.atomic():
            batch = list(
                due_drafts(now, test_clock)
                .select_for_update(skip_locked=True, of=("self",))
                .order_by("automatically_finalizes_at")[:batch_size]
            )
            for invoice in batch:
                moment = invoice.automatically_finalizes_at if at_scheduled_time else now
                try:
                    with transaction.atomic():
                        invoice_finalize(invoice, now=moment, actor=AUTO)
                    counts["finalized"] += 1
                except DomainError as error:
                    counts["failed"] += 1
                    Invoice.objects.filter(pk=invoice.pk).update(automatically_finalizes_at=None)
                    event_record(
                        "invoice.finalization_failed", now=moment, actor=AUTO, invoice=invoice,
                        data={"error": error.message and str(error.message)},
                    )
                    log.info("draft %s not finalized: %s", invoice.pk, error)
        if len(batch) < batch_size:
            return counts
