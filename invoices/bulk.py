"""Finalizing many drafts at once: the auto-finalization sweep's path (DESIGN.md section 5,
"the same door": a set-based UPDATE that also bulk-writes the same events). And making
many drafts at once (drafts_create_bulk: a simulation's invoices of one hour).

The rules are those of the one-row door (services.finalization_prepare decides, for each
draft, what to write); only the writing is set-based: one transaction per batch, a
constant number of queries to load, one block of numbers per sequence, one UPDATE for
the invoices and one INSERT for the events.

Locks are always taken in the same order, so two sweeps (or a sweep and staff finalizing
one invoice) never wait for each other in a circle: the drafts first (SKIP LOCKED: a
draft another worker holds is left to it), then their customers by id, then the number
sequences by key.
"""

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime

from django.db import transaction
from django.db.models import QuerySet, prefetch_related_objects
from django.utils.translation import gettext as _

from customers.actors import Actor
from customers.errors import DomainError
from customers.models import Customer
from customers.money import MAX_AMOUNT

from . import totals as totals_module
from .bulkwrite import rows_insert, rows_update
from .events import event_build, events_save
from .models import MAX_LINES, Invoice, InvoiceLine, InvoicingSettings
from .numbering import numbers_take_many, sequence_key
from .services import (
    LINE_TOTALS,
    Finalization,
    draft_build,
    draft_line_build,
    finalization_prepare,
    invoice_finalize,
    line_totals_apply,
    totals_fields,
)
from .transitions import S, transition_in_memory

FAILED = "invoice.finalization_failed"
PREFETCH_CHUNK = 5000  # lines per tax-rate query: stays under every backend's parameter cap


@dataclass(frozen=True)
class DraftLine:
    description: str
    unit_amount: int
    quantity: int = 1


def drafts_create_bulk(
    drafts: list[tuple[Customer, list[DraftLine]]], *, now: datetime, actor: Actor,
    collection_method: str = Invoice.CollectionMethod.SEND_INVOICE, auto_advance: bool = True,
) -> list[Invoice]:
    """Drafts with their lines (no tax rates, no discounts), the same rows and
    "invoice.created" events as invoice_create then invoice_line_add for each line would
    write, in the order given (ascending ids), and the same checks: in a constant number
    of queries rather than about ten a draft. Nothing is written if one is refused."""
    settings = InvoicingSettings.load()
    invoices, lines = [], []
    for customer, draft_lines in drafts:
        if len(draft_lines) > MAX_LINES:
            raise DomainError(_("An invoice has at most %(max)d lines.") % {"max": MAX_LINES})
        invoice = draft_build(customer=customer, now=now, collection_method=collection_method,
                              auto_advance=auto_advance, settings=settings)
        built = [draft_line_build(invoice, position=position, description=spec.description,
                                  unit_amount=spec.unit_amount, quantity=spec.quantity)
                 for position, spec in enumerate(draft_lines)]
        result = totals_module.compute(
            [totals_module.LineInput(quantity=line.quantity, unit_amount=line.unit_amount,
                                     rates=()) for line in built],
            invoice.discount_percent, invoice.discount_amount,
        )
        if abs(result.total) > MAX_AMOUNT:
            raise DomainError(_("This invoice's total is too large."))
        line_totals_apply(built, result)
        for name, value in totals_fields(result).items():
            setattr(invoice, name, value)
        invoices.append(invoice)
        lines.extend(built)
    # Nested (a clock in a simulation), no savepoint: no caller goes on after an error.
    with transaction.atomic(savepoint=False):
        rows_insert(Invoice, invoices)
        for line in lines:
            line.invoice_id = line.invoice.pk  # it has one now
        rows_insert(InvoiceLine, lines)
        events_save([event_build("invoice.created", now=now, actor=actor, invoice=invoice)
                     for invoice in invoices])
    return invoices


@dataclass
class BulkFinalization:
    finalized: list[int] = field(default_factory=list)  # invoice ids
    failed: dict[int, str] = field(default_factory=dict)  # invoice id -> reason shown to staff
    claimed: int = 0  # drafts claimed (finalized, failed or left to the one-row door)
    last: tuple | None = None  # with `first`: (automatically_finalizes_at, pk) of the last


def invoices_finalize_bulk(
    ids: Iterable[int] | None,
    *,
    now: datetime,
    actor: Actor,
    among: QuerySet | None = None,
    at_scheduled_time: bool = False,
    settings: InvoicingSettings | None = None,
    first: int | None = None,
) -> BulkFinalization:
    """Finalize the drafts `ids` in one transaction, as invoice_finalize would one by one.
    Or, `ids` None, the `first` drafts of `among` in its order (ordered by due time: the
    claim is then the read; `last` is the last one's due time and id).

    Drafts that another worker holds, or that are no longer in `among` (e.g. no longer
    due), are skipped: neither finalized nor failed. A draft that breaks a rule is not
    finalized: its reason goes on its timeline (invoice.finalization_failed) and it stops
    being finalized automatically. With `at_scheduled_time` (test clocks) each draft is
    finalized at its automatically_finalizes_at instead of `now`.
    """
    settings = settings or InvoicingSettings.load()
    result = BulkFinalization()

    def moment(draft: Invoice) -> datetime:
        scheduled = draft.automatically_finalizes_at if at_scheduled_time else None
        return scheduled or now

    # Nested (a clock in a simulation), no savepoint: no caller goes on after an error (a
    # refused draft is the one-row door's savepoint, _finalize_one, or no write at all).
    with transaction.atomic(savepoint=False):
        drafts = _drafts_claim(ids, among, first)
        result.claimed = len(drafts)
        if ids is None and drafts:
            result.last = (drafts[-1].automatically_finalizes_at, drafts[-1].pk)
            drafts.sort(key=lambda draft: draft.pk)
        if not drafts:
            return result
        customers = _customers_lock({draft.customer_id for draft in drafts})
        lines = _lines_load(drafts)
        # Numbers follow due time within each sequence, as the one-by-one sweep gave them.
        drafts.sort(key=lambda d: (moment(d), d.automatically_finalizes_at or moment(d), d.pk))
        ready: list[tuple[Invoice, Finalization]] = []  # numbered
        waiting: list[tuple[Invoice, Finalization]] = []  # prepared, not yet numbered
        for draft in drafts:
            draft.customer = customers[draft.customer_id]
            if draft.customer.balance:
                # Applying a balance writes the ledger row by row: the one-row door does
                # it. Drafts due before it that share its sequence are numbered first.
                key = sequence_key(draft.customer, settings)[0]
                if any(sequence_key(d.customer, settings)[0] == key for d, _p in waiting):
                    _numbers_assign(waiting, settings)
                    ready, waiting = ready + waiting, []
                _finalize_one(
                    draft, now=moment(draft), actor=actor, settings=settings, result=result
                )
                continue
            try:
                prepared = finalization_prepare(
                    draft, customer=draft.customer, lines=lines[draft.pk], now=moment(draft),
                    settings=settings,
                )
            except DomainError as error:
                result.failed[draft.pk] = str(error.message)
                continue
            waiting.append((draft, prepared))
        _numbers_assign(waiting, settings)
        ready += waiting
        _finalized_write(ready, moment=moment, actor=actor)
        result.finalized.extend(draft.pk for draft, _prepared in ready)
        _failures_record(
            [draft for draft in drafts if draft.pk in result.failed], result.failed,
            moment=moment, actor=actor,
        )
    return result


def _drafts_claim(ids: Iterable[int] | None, among: QuerySet | None, first: int | None = None
                  ) -> list[Invoice]:
    drafts = Invoice.objects.all() if among is None else among
    if ids is None:
        return list(drafts.filter(status=S.DRAFT)
                    .select_for_update(skip_locked=True, of=("self",))[:first])
    return list(
        drafts.filter(pk__in=list(ids), status=S.DRAFT)
        .select_for_update(skip_locked=True, of=("self",))
        .order_by("pk")
    )


def _customers_lock(ids: set[int]) -> dict[int, Customer]:
    """Lock the customers in id order (ORDER BY before FOR UPDATE: rows are locked as
    they come out sorted), the order every batch uses."""
    locked = Customer.objects.select_for_update().filter(pk__in=ids).order_by("pk")
    return {customer.pk: customer for customer in locked}


def _lines_load(drafts: list[Invoice]) -> dict[int, list[InvoiceLine]]:
    """All the drafts' lines with their tax rates, in two queries (more only past
    PREFETCH_CHUNK lines)."""
    lines = list(
        InvoiceLine.objects.filter(invoice_id__in=[draft.pk for draft in drafts]).order_by(
            "invoice_id", "position", "id"
        )
    )
    for start in range(0, len(lines), PREFETCH_CHUNK):
        prefetch_related_objects(lines[start : start + PREFETCH_CHUNK], "tax_rates")
    by_invoice = defaultdict(list)
    for line in lines:
        by_invoice[line.invoice_id].append(line)
    return by_invoice


def _finalize_one(draft: Invoice, *, now, actor, settings, result: BulkFinalization) -> None:
    try:
        with transaction.atomic():  # a refusal gives back what it took (its number)
            invoice_finalize(draft, now=now, actor=actor, settings=settings)
    except DomainError as error:
        result.failed[draft.pk] = str(error.message)
    else:
        result.finalized.append(draft.pk)


def _numbers_assign(ready: list[tuple[Invoice, Finalization]], settings) -> None:
    """One block of numbers per sequence, sequences locked in key order, all of them in
    a constant number of statements (numbers_take_many)."""
    by_key, prefixes = defaultdict(list), {}
    for draft, prepared in ready:
        key, prefixes[key] = sequence_key(draft.customer, settings)
        by_key[key].append((draft, prepared))
    numbers = numbers_take_many(
        {key: (prefixes[key], len(block)) for key, block in by_key.items()})
    for key, block in by_key.items():
        for (_draft, prepared), number in zip(block, numbers[key], strict=True):
            prepared.fields["number"] = number


def _finalized_write(ready: list[tuple[Invoice, Finalization]], *, moment, actor) -> None:
    """The transitions draft -> open (-> paid when nothing is due), set-based, with the
    events the one-row door writes."""
    events, lines, written = [], [], set()
    for draft, prepared in ready:
        at = moment(draft)
        updates = transition_in_memory(
            draft, S.OPEN, at, actor, events, fields=prepared.fields
        )
        written.update(updates)
        if draft.amount_remaining == 0:
            paid = transition_in_memory(
                draft, S.PAID, at, actor, events, data={"reason": "nothing_due"}
            )
            written.update(paid)
        lines.extend(prepared.changed_lines)
    if not ready:
        return
    # The rows are locked since the claim: no compare-and-set on the status is needed.
    rows_update(Invoice, [draft for draft, _prepared in ready], sorted(written))
    rows_update(InvoiceLine, lines, LINE_TOTALS)
    events_save(events)


def _failures_record(drafts: list[Invoice], reasons: dict[int, str], *, moment, actor) -> None:
    """Refused drafts stop being finalized automatically; the reason goes on the timeline."""
    if not drafts:
        return
    Invoice.objects.filter(pk__in=[draft.pk for draft in drafts]).update(
        automatically_finalizes_at=None
    )
    events_save(
        event_build(
            FAILED, now=moment(draft), actor=actor, invoice=draft,
            data={"error": reasons[draft.pk]},
        )
        for draft in drafts
    )
