"""Due work found through indexed "next action at" columns, claimed with
SELECT ... FOR UPDATE SKIP LOCKED, in bounded batches."""

import logging
from datetime import datetime

from django.db.models import Q

from customers.actors import Actor
from customers.clock_due import floored, in_one_transaction

from .bulk import invoices_finalize_bulk
from .models import Invoice, InvoicingSettings

log = logging.getLogger(__name__)
AUTO = Actor.system("auto-finalization")


def due_drafts(now: datetime, test_clock=None):
    """Drafts whose automatic finalization is due, for the real clock or one test clock."""
    drafts = Invoice.objects.filter(
        status=Invoice.Status.DRAFT, auto_advance=True, automatically_finalizes_at__lte=now
    )
    if test_clock is None:
        return drafts.filter(customer__test_clock__isnull=True)
    return floored(drafts.filter(test_clock=test_clock), "automatically_finalizes_at", test_clock)


def finalize_due_drafts(
    *, now: datetime, test_clock=None, batch_size: int = 200, at_scheduled_time: bool = False
) -> dict:
    """Finalize due drafts. A draft that cannot be finalized stops being retried and the
    reason goes on its timeline. With `at_scheduled_time` (test clocks), each draft is
    finalized at the moment it was due, as the real sweep would have done.

    Each batch is finalized in one transaction by the bulk path (invoices.bulk), which
    takes its locks in one fixed order (drafts SKIP LOCKED, customers by id, sequences by
    key), so two sweeps running at once never deadlock and each draft is finalized once."""
    counts = {"finalized": 0, "failed": 0}
    settings = InvoicingSettings.load()  # once per sweep, not per invoice
    # Within one transaction (a clock in a simulation: clock_due.one_transaction), the
    # claim is the read: no transaction to begin and commit around it (a round trip at
    # each clock stop fewer).
    nested = in_one_transaction()
    after = None  # keyset: (automatically_finalizes_at, pk) of the last draft read
    while True:
        candidates = due_drafts(now, test_clock).order_by("automatically_finalizes_at", "pk")
        if after is not None:
            candidates = candidates.filter(
                Q(automatically_finalizes_at__gt=after[0])
                | Q(automatically_finalizes_at=after[0], pk__gt=after[1])
            )
        if nested:
            result = invoices_finalize_bulk(
                None, now=now, actor=AUTO, among=candidates, first=batch_size,
                at_scheduled_time=at_scheduled_time, settings=settings,
            )
            _counted(counts, result)
            if result.claimed < batch_size:
                return counts
            after = result.last
            continue
        batch = list(candidates.values_list("automatically_finalizes_at", "pk")[:batch_size])
        if batch:
            result = invoices_finalize_bulk(
                [pk for _due_at, pk in batch],
                now=now,
                actor=AUTO,
                among=due_drafts(now, test_clock),  # still due when claimed
                at_scheduled_time=at_scheduled_time,
                settings=settings,
            )
            _counted(counts, result)
        if len(batch) < batch_size:
            return counts
        after = batch[-1]


def _counted(counts: dict, result) -> None:
    counts["finalized"] += len(result.finalized)
    counts["failed"] += len(result.failed)
    for pk, reason in result.failed.items():
        log.info("draft %s not finalized: %s", pk, reason)
