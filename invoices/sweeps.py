"""Due work found through indexed "next action at" columns, claimed with
SELECT ... FOR UPDATE SKIP LOCKED, in bounded batches."""

import logging
from datetime import datetime

from django.db import transaction
from django.db.models import Q

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
    finalized at the moment it was due, as the real sweep would have done.

    Each draft is claimed and finalized in its own short transaction: a transaction that
    kept several customers' rows (and the account-wide number sequence) locked while
    waiting for another sweep's would deadlock with it."""
    counts = {"finalized": 0, "failed": 0}
    after = None  # keyset: (automatically_finalizes_at, pk) of the last draft read
    while True:
        candidates = due_drafts(now, test_clock).order_by("automatically_finalizes_at", "pk")
        if after is not None:
            candidates = candidates.filter(
                Q(automatically_finalizes_at__gt=after[0])
                | Q(automatically_finalizes_at=after[0], pk__gt=after[1])
            )
        batch = list(candidates.values_list("automatically_finalizes_at", "pk")[:batch_size])
        for _due_at, pk in batch:
            outcome = _finalize_one(
                pk, now=now, test_clock=test_clock, at_scheduled_time=at_scheduled_time
            )
            if outcome is not None:
                counts[outcome] += 1
        if len(batch) < batch_size:
            return counts
        after = batch[-1]


def _finalize_one(pk: int, *, now: datetime, test_clock, at_scheduled_time: bool) -> str | None:
    """Claim one due draft and finalize it; None when another worker has it or it is no
    longer due (finalized, edited or deleted meanwhile)."""
    with transaction.atomic():
        invoice = (
            due_drafts(now, test_clock)
            .select_for_update(skip_locked=True, of=("self",))
            .filter(pk=pk)
            .first()
        )
        if invoice is None:
            return None
        moment = invoice.automatically_finalizes_at if at_scheduled_time else now
        try:
            with transaction.atomic():
                invoice_finalize(invoice, now=moment, actor=AUTO)
            return "finalized"
        except DomainError as error:
            Invoice.objects.filter(pk=invoice.pk).update(automatically_finalizes_at=None)
            event_record(
                "invoice.finalization_failed", now=moment, actor=AUTO, invoice=invoice,
                data={"error": error.message and str(error.message)},
            )
            log.info("draft %s not finalized: %s", invoice.pk, error)
            return "failed"
