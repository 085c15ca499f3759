"""The subscription sweeps that beat wakes and test clocks run: renewals (one invoice per
subscription and period), trials ending, incomplete subscriptions expiring, notices
(trial_will_end, invoice.upcoming) and pauses that end.

Renewals are due rows: the indexed `current_period_end`, claimed with SKIP LOCKED in
bounded batches. A batch is written set-based (the project's bulk paths: rows_insert,
rows_update, events_save), through the same door as one by one (transition_in_memory);
the unique constraint on (subscription, period start) makes a period billed once,
whatever runs twice or at the same time.
"""

import queue
import threading
from collections import Counter, defaultdict, namedtuple
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import Q, QuerySet
from django.db.models.base import ModelState
from django.utils import translation
from django.utils.translation import gettext as _

from customers.actors import Actor
from customers.clock_due import Due, due_first
from customers.errors import DomainError
from invoices import totals as totals_module
from invoices.bulkwrite import rows_insert, rows_update
from invoices.events import event_build, events_save
from invoices.lookups import among
from invoices.models import Event, Invoice, InvoiceLine, InvoicingSettings
from invoices.services import (
    invoice_finalize,
    invoice_mark_uncollectible,
    invoice_void,
    totals_fields,
)

from . import periods
from .models import PendingItem, Price, Subscription, SubscriptionInvoice, SubscriptionItem
from .notices import notice_days, upcoming_notice_at
from .services import INCOMPLETE_EXPIRES_AFTER, line_description, subscription_resume
from .transitions import RENEWING, S, subscription_transition, transition_in_memory

RENEWALS = Actor.system("subscription renewals")
INVOICE_OF_EVENT = Event._meta.get_field("invoice")
BATCH = 1000

def _for_clock(queryset: QuerySet, test_clock) -> QuerySet:
    if test_clock is None:
        return queryset.filter(customer__test_clock__isnull=True)
    return queryset.filter(customer__test_clock=test_clock)


def due_renewals(now: datetime, test_clock=None) -> QuerySet:
    return _for_clock(
        Subscription.objects.filter(status__in=RENEWING, current_period_end__lte=now), test_clock
    )


def anything_due(now: datetime, test_clock=None) -> bool:
    """Whether any of this module's work is due: one query over the four partial
    indexes, so that a tick with nothing due costs one round trip."""
    return _for_clock(Subscription.objects.filter(
        Q(status__in=RENEWING, current_period_end__lte=now)
        | Q(status=S.INCOMPLETE, created_at__lte=now - INCOMPLETE_EXPIRES_AFTER)
        | Q(notice_at__lte=now, status__in=RENEWING)
        | Q(status=S.PAUSED, pause_resumes_at__lte=now)
    ), test_clock).exists()


def subscriptions_sweep(*, now: datetime, test_clock=None, batch_size: int = BATCH) -> dict:
    if not anything_due(now, test_clock):
        return {}
    counts = Counter()
    counts.update(renewals_run(now=now, test_clock=test_clock, batch_size=batch_size))
    counts.update(incomplete_expire(now=now, test_clock=test_clock))
    counts.update(notices_send(now=now, test_clock=test_clock))
    counts.update(pauses_end(now=now, test_clock=test_clock))
    return dict(counts)


# --- renewals -------------------------------------------------------------------------


# Batches written at once, each by its own connection: one connection's batch is built
# in Python while the other's rows are written by PostgreSQL (measured: a renewal costs
# about as much CPU in the process as in the database, so one connection alone leaves
# each side idle half of the time).
WORKERS = 2


def renewals_run(*, now: datetime, test_clock=None, batch_size: int = BATCH,
                 workers: int = WORKERS) -> dict:
    """Renew every subscription whose period ended by `now`, in batches. The first batch
    is renewed here; when more are due, `workers` threads renew them, each in its own
    connection and transactions (not inside a caller's transaction, which other
    connections could not see, nor on SQLite)."""
    counts = Counter(renewed=0)
    settings = InvoicingSettings.load()

    def renew(ids):
        return renewals_bulk(ids, now=now, test_clock=test_clock, settings=settings)

    batches = _due_batches(now, test_clock, batch_size)
    first = next(batches, None)
    if first is None:
        return dict(counts)
    counts.update(renew(first))
    if len(first) < batch_size:  # nothing more was due
        return dict(counts)
    parallel = (
        workers > 1 and connection.vendor == "postgresql" and not connection.in_atomic_block
    )
    if not parallel:
        for ids in batches:
            counts.update(renew(ids))
        return dict(counts)
    counts.update(_in_threads(renew, batches, workers))
    return dict(counts)


def _due_batches(now: datetime, test_clock, batch_size: int):
    """The due subscriptions' ids, batch after batch (keyset pagination: a batch being
    renewed meanwhile does not move the next one)."""
    after = None
    while True:
        candidates = due_renewals(now, test_clock).order_by("current_period_end", "pk")
        if after is not None:
            candidates = candidates.filter(
                Q(current_period_end__gt=after[0]) | Q(current_period_end=after[0], pk__gt=after[1])
            )
        batch = list(candidates.values_list("current_period_end", "pk")[:batch_size])
        if batch:
            yield [pk for _end, pk in batch]
        if len(batch) < batch_size:
            return
        after = batch[-1]


def _in_threads(renew, batches, workers: int) -> Counter:
    """renew(ids) for each batch, in `workers` threads (each with its own connection,
    closed at its end, and the caller's language). The first error stops the run and is
    raised here; the batches already committed stay (each is whole on its own)."""
    language = translation.get_language()
    work: queue.Queue = queue.Queue(maxsize=workers)
    counts, failures, lock = Counter(), [], threading.Lock()

    def worker():
        try:
            with translation.override(language):
                while (ids := work.get()) is not None:
                    if failures:
                        continue  # drain: the run stops
                    try:
                        done = renew(ids)
                    except BaseException as error:  # raised again in the caller's thread
                        failures.append(error)
                        continue
                    with lock:
                        counts.update(done)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, name=f"renewals-{n}", daemon=True)
               for n in range(workers)]
    for thread in threads:
        thread.start()
    try:
        for ids in batches:
            if failures:
                break
            work.put(ids)
    finally:
        for _thread in threads:
            work.put(None)
        for thread in threads:
            thread.join()
    if failures:
        raise failures[0]
    return counts


def _like(template, **values):
    """A new unsaved instance with the template's field values, `values` replacing some.
    A renewal batch makes thousands of invoices, lines and events: Django's model
    __init__ (a default looked up per field, 60 fields for an invoice) cost several times
    what copying a prepared instance does (measured: 280 us against 7 us an invoice)."""
    model = type(template)
    obj = model.__new__(model)
    obj.__dict__ = {**template.__dict__, **values}
    obj._state = ModelState()
    return obj


class _Batch:
    def __init__(self, now: datetime, settings):
        # Templates of what each renewal writes (mutable values are given per row).
        self.invoice = Invoice(
            customer_id=0, currency="", billing_reason=Invoice.BillingReason.SUBSCRIPTION_CYCLE,
            created_at=now, auto_advance=True,
            automatically_finalizes_at=now + timedelta(hours=settings.auto_finalize_delay_hours),
        )
        self.line = InvoiceLine(description="", unit_amount=0)
        self.link = SubscriptionInvoice(
            billing_reason=Invoice.BillingReason.SUBSCRIPTION_CYCLE,
            period_start=now, period_end=now,
        )
        self.created = event_build("invoice.created", now=now, actor=RENEWALS)
        self.changed_event = event_build("customer.subscription.updated", now=now,
                                         actor=RENEWALS)
        self.events, self.invoices, self.lines, self.rates = [], [], [], []
        self.links, self.pending, self.changed, self.fields = [], [], [], set()
        self.after_pause: list[tuple[Invoice, str]] = []
        self.descriptions: dict = {}
        self.priced: dict = {}  # what _priced computed, per currency, period and items
        self.counts = Counter()


def renewals_bulk(ids: list[int], *, now: datetime, test_clock=None, settings=None) -> dict:
    """Renew the due subscriptions `ids` in one transaction (those another worker holds,
    or no longer due, are left)."""
    settings = settings or InvoicingSettings.load()
    batch = _Batch(now, settings)
    # Every subscription claimed is on this clock (or on none): their invoices carry it,
    # as invoice_create does, for the clock's sweeps to find them.
    batch.test_clock_id = test_clock.pk if test_clock is not None else None
    with transaction.atomic():
        subscriptions = _due_locked(ids, now, test_clock)
        subscriptions = _customers_claim(subscriptions)
        if not subscriptions:
            return {}
        items, prices, pending = _batch_load([s.pk for s in subscriptions])
        batch.notice_days = notice_days()
        batch.line_text = _("%(q)s × %(name)s (%(start)s – %(end)s)")
        for subscription in subscriptions:
            _renew(subscription, items[subscription.pk], prices, pending[subscription.pk],
                   now=now, settings=settings, batch=batch)
        _write(batch)
        for invoice, behavior in batch.after_pause:
            _paused_invoice(invoice, behavior, now)
    return dict(batch.counts)


# What a renewal reads and writes of a subscription (the rest of the row, its metadata,
# cancellation details, trial dates, is neither read nor changed here).
RENEWAL_FIELDS = (
    "id", "customer_id", "status", "currency", "collection_method", "days_until_due",
    "default_payment_method_id", "billing_cycle_anchor", "current_period_start",
    "current_period_end", "period_index", "cancel_at_period_end", "cancel_at", "ended_at",
    "pause_collection", "notice_at", "latest_invoice_id",
)


def _due_locked(ids: list[int], now: datetime, test_clock) -> list[Subscription]:
    """The subscriptions `ids` still due, locked (SKIP LOCKED), by primary key: instances
    holding RENEWAL_FIELDS only. Built from the rows' values, as _like builds invoices
    (measured: a full model instance cost 42 us a subscription, most of a renewal's read)."""
    rows = (
        due_renewals(now, test_clock).filter(among("pk", ids))
        .select_for_update(skip_locked=True, of=("self",)).order_by("pk")
        .values_list(*RENEWAL_FIELDS)
    )
    subscriptions = []
    for row in rows:
        subscription = Subscription.__new__(Subscription)
        subscription.__dict__ = dict(zip(RENEWAL_FIELDS, row, strict=True))
        subscription._state = ModelState()
        subscription._state.adding, subscription._state.db = False, rows.db
        subscriptions.append(subscription)
    return subscriptions


# Lock order. Whoever waits takes a customer before its subscriptions: a payment locks
# the invoice and its customer, then (invoice.paid) the subscription; staff operations
# lock the customer, then the subscription (services.subscription_lock). The sweep takes
# the subscriptions first, so it must never wait for a customer: it claims them with
# FOR SHARE SKIP LOCKED (sweeps share them; a payment or a staff operation holding one
# makes the sweep leave that customer's subscriptions to the next tick). Without it, a
# renewal invoice's foreign key waited for a customer whose payment waited for the
# subscription: a deadlock (tests/test_subscription_locks_pg.py).
# A paused subscription whose renewal is written off (mark_uncollectible, void) is
# finalized in the batch, which locks its customer FOR UPDATE: that customer is claimed
# FOR UPDATE SKIP LOCKED at once. Shared, two sweeps (or the sweep's threads) holding
# one customer each waited for the other to upgrade: a deadlock.
CUSTOMERS_CLAIM_SQL = (
    "SELECT id FROM customers_customer WHERE id = ANY(%s) ORDER BY id FOR {mode} SKIP LOCKED"
)


def _written_off(subscription) -> bool:
    return (subscription.status == S.PAUSED
            and subscription.pause_collection != Subscription.PauseBehavior.KEEP_AS_DRAFT)


def _customers_claim(subscriptions: list) -> list:
    """The subscriptions whose customer this transaction could claim (see above)."""
    if not subscriptions or connection.vendor != "postgresql":  # SQLite locks the database
        return subscriptions
    exclusive = sorted({s.customer_id for s in subscriptions if _written_off(s)})
    shared = sorted({s.customer_id for s in subscriptions} - set(exclusive))
    claimed = set()
    with connection.cursor() as cursor:
        for mode, ids in (("UPDATE", exclusive), ("SHARE", shared)):
            if ids:
                cursor.execute(CUSTOMERS_CLAIM_SQL.format(mode=mode), [ids])
                claimed |= {row[0] for row in cursor.fetchall()}
    return [s for s in subscriptions if s.customer_id in claimed]


# What a renewal reads of an item (a model instance with deferred fields cost about
# 10 us an item).
_Item = namedtuple("_Item", ["subscription_id", "price_id", "quantity"])


def _batch_load(ids: list[int]):
    items = defaultdict(list)
    price_ids = set()
    for item in map(_Item._make, SubscriptionItem.objects.filter(
        among("subscription_id", ids)
    ).order_by("subscription_id", "id").values_list(*_Item._fields)):
        items[item.subscription_id].append(item)
        price_ids.add(item.price_id)
    prices = {
        price.pk: price for price in
        Price.objects.filter(pk__in=price_ids).select_related("product")
        .prefetch_related("tax_rates", "currency_options")
    }
    pending = defaultdict(list)
    pending_items = PendingItem.objects.filter(among("subscription_id", ids), invoice__isnull=True)
    for item in pending_items:
        pending[item.subscription_id].append(item)
        if item.price_id not in prices:
            prices[item.price_id] = (
                Price.objects.select_related("product")
                .prefetch_related("tax_rates", "currency_options")
                .get(pk=item.price_id)
            )
    for price in prices.values():
        # Read once per price, not per line: a many-to-many manager is built at each
        # price.tax_rates access (about 100 us), and so were the totals' rates.
        price.batch_rates = list(price.tax_rates.all())
        price.batch_totals_rates = tuple(
            totals_module.Rate(r.pk, r.percentage, r.inclusive, r.display_name, r.category)
            for r in price.batch_rates
        )
    return items, prices, pending


def _renew(subscription, items, prices, pending, *, now, settings, batch: _Batch) -> None:
    end_of_period = subscription.current_period_end
    if subscription.cancel_at_period_end or (
        subscription.cancel_at is not None and subscription.cancel_at <= end_of_period
    ):
        batch.fields |= set(transition_in_memory(
            subscription, S.CANCELED, at=now, actor=RENEWALS, events=batch.events,
            fields={"ended_at": end_of_period, "notice_at": None},
        ))
        batch.changed.append(subscription)
        batch.counts["canceled"] += 1
        return
    if not items:  # a subscription always has items; refuse to bill nothing
        return
    first = prices[items[0].price_id]
    interval = (first.recurring_interval, first.recurring_interval_count)
    index = subscription.period_index + 1
    start = end_of_period
    end = periods.period_end(subscription.billing_cycle_anchor, *interval, index)
    target = S.ACTIVE if subscription.status == S.TRIALING else subscription.status
    fields = {
        "current_period_start": start, "current_period_end": end, "period_index": index,
        "notice_at": upcoming_notice_at(batch.notice_days(*interval), end, now),
    }
    invoice = _invoice_build(subscription, items, prices, pending, start, end, now, settings,
                             batch)
    batch.fields |= set(transition_in_memory(
        subscription, target, at=now, actor=RENEWALS, events=batch.events, fields=fields,
        template=batch.changed_event,
    ))
    batch.fields.add("latest_invoice")
    batch.changed.append(subscription)
    batch.links.append(_like(batch.link, subscription_id=subscription.pk, period_start=start,
                             period_end=end, _invoice=invoice))
    batch.counts["renewed"] += 1


def _invoice_build(subscription, items, prices, pending, start, end, now, settings, batch):
    paused = subscription.status == S.PAUSED
    # Unpaid: drafts that are not collected; paused: drafts kept aside, or finalized and
    # at once written off (mark_uncollectible, void) after the batch is written.
    auto_advance = subscription.status != S.UNPAID and not paused
    invoice = _like(
        batch.invoice, customer_id=subscription.customer_id, currency=subscription.currency,
        collection_method=subscription.collection_method,
        days_until_due=subscription.days_until_due, auto_advance=auto_advance,
        automatically_finalizes_at=(
            batch.invoice.automatically_finalizes_at if auto_advance else None
        ),
        subscription_id=subscription.pk, metadata={}, customer_details={},
        test_clock_id=batch.test_clock_id,
        default_payment_method_id=subscription.default_payment_method_id,
    )
    if pending:
        priced = _priced(subscription.currency, items, prices, pending, start, end, batch)
    else:
        # Without pending items, an invoice is priced from (currency, period, items) only:
        # the renewals of a batch that share them share the computation.
        key = (subscription.currency, start, end,
               tuple((item.price_id, item.quantity) for item in items))
        priced = batch.priced.get(key)
        if priced is None:
            priced = batch.priced[key] = _priced(subscription.currency, items, prices, (),
                                                 start, end, batch)
    totals, line_values, rates = priced
    invoice.__dict__.update(totals)
    invoice.tax_breakdown = [dict(entry) for entry in totals["tax_breakdown"]]
    lines = [_like(batch.line, _invoice=invoice, **values) for values in line_values]
    for item in pending:
        item.invoice = invoice
        batch.pending.append(item)
    batch.invoices.append(invoice)
    batch.lines.extend(lines)
    batch.rates.extend(zip(lines, rates, strict=True))
    if paused and subscription.pause_collection != Subscription.PauseBehavior.KEEP_AS_DRAFT:
        batch.after_pause.append((invoice, subscription.pause_collection))
    subscription.renewal_invoice = invoice
    return invoice


def _priced(currency, items, prices, pending, start, end, batch):
    """An invoice's totals fields, its lines' values (what varies from batch.line) and
    their tax rates: the items for the period, then the pending items (prorations)."""
    line_values, inputs, rates = [], [], []
    start_day, end_day = start.date(), end.date()
    for item in items:
        price = prices[item.price_id]
        key = (price.pk, item.quantity, start_day, end_day)
        description = batch.descriptions.get(key)
        if description is None:  # many renewals of a batch read the same
            description = batch.descriptions[key] = line_description(
                price, item.quantity, start, end, batch.line_text)
        unit_amount = price.amount_in(currency)
        line_values.append({
            "position": len(line_values), "description": description,
            "quantity": item.quantity, "unit_amount": unit_amount,
            "period_start": start_day, "period_end": end_day,
        })
        rates.append(price.batch_rates)
        inputs.append(totals_module.LineInput(
            quantity=item.quantity, unit_amount=unit_amount, rates=price.batch_totals_rates,
        ))
    for item in pending:
        price = prices[item.price_id]
        line_values.append({
            "position": len(line_values), "description": item.description, "quantity": 1,
            "unit_amount": item.amount, "period_start": item.period_start.date(),
            "period_end": item.period_end.date(), "proration": True,
        })
        rates.append(price.batch_rates)
        inputs.append(totals_module.LineInput(
            quantity=1, unit_amount=item.amount, rates=price.batch_totals_rates,
        ))
    result = totals_module.compute(inputs)
    for values, computed in zip(line_values, result.lines, strict=True):
        values.update(
            amount=computed.amount, discount_total=computed.discount_total,
            amount_excluding_tax=computed.amount_excluding_tax, tax_amount=computed.tax_amount,
        )
    return totals_fields(result), line_values, rates


def _write(batch: _Batch) -> None:
    rows_insert(Invoice, batch.invoices)
    for line in batch.lines:  # (set in __dict__: no related instance is cached on them)
        line.__dict__["invoice_id"] = line._invoice.pk
    rows_insert(InvoiceLine, batch.lines)
    through = InvoiceLine.tax_rates.through
    rows_insert(through, [
        through(invoiceline_id=line.pk, taxrate_id=rate.pk)
        for line, rates in batch.rates for rate in rates
    ])
    for link in batch.links:
        link.__dict__["invoice_id"] = link._invoice.pk
    rows_insert(SubscriptionInvoice, batch.links)
    for item in batch.pending:
        item.invoice_id = item.invoice.pk
    rows_update(PendingItem, batch.pending, ["invoice"])
    for subscription in batch.changed:
        invoice = getattr(subscription, "renewal_invoice", None)
        if invoice is not None:
            subscription.__dict__["latest_invoice_id"] = invoice.pk
    rows_update(Subscription, batch.changed, sorted(batch.fields))
    created = []
    for invoice in batch.invoices:
        event = _like(batch.created, customer_id=invoice.customer_id, invoice_id=invoice.pk,
                      subscription_id=invoice.subscription_id,
                      data={"billing_reason": invoice.billing_reason})
        INVOICE_OF_EVENT.set_cached_value(event, invoice)  # as event_build(invoice=) does
        created.append(event)
    events_save(created + batch.events)


def _paused_invoice(invoice: Invoice, behavior: str, now: datetime) -> None:
    """Collection paused with mark_uncollectible or void: finalized, then written off."""
    invoice_finalize(invoice, now=now, actor=RENEWALS)
    if invoice.status != Invoice.Status.OPEN:
        return
    if behavior == Subscription.PauseBehavior.VOID:
        invoice_void(invoice, now=now, actor=RENEWALS)
    else:
        invoice_mark_uncollectible(invoice, now=now, actor=RENEWALS)


# --- incomplete subscriptions, notices, pauses -------------------------------------------


def incomplete_expire(*, now: datetime, test_clock=None) -> dict:
    """A first invoice unpaid 23 hours after the subscription was created: the
    subscription expires (incomplete_expired) and its invoice is voided, as Stripe."""
    due = _for_clock(
        Subscription.objects.filter(
            status=S.INCOMPLETE, created_at__lte=now - INCOMPLETE_EXPIRES_AFTER
        ), test_clock,
    ).order_by("created_at", "pk")
    expired = 0
    for subscription in due.iterator():
        with transaction.atomic():
            locked = (
                Subscription.objects.select_for_update(skip_locked=True)
                .filter(pk=subscription.pk, status=S.INCOMPLETE).first()
            )
            if locked is None:
                continue
            invoice = locked.latest_invoice
            if invoice is not None and invoice.status == Invoice.Status.OPEN:
                try:
                    invoice_void(invoice, now=now, actor=RENEWALS)
                except DomainError:
                    pass  # a partly paid first invoice stays open for staff
            subscription_transition(
                locked, S.INCOMPLETE_EXPIRED, now=now, actor=RENEWALS,
                fields={"ended_at": now, "notice_at": None},
            )
            expired += 1
    return {"incomplete_expired": expired}


def notices_send(*, now: datetime, test_clock=None) -> dict:
    """customer.subscription.trial_will_end (3 days before a trial ends) and
    invoice.upcoming (days before a renewal), once each."""
    due = list(_for_clock(
        Subscription.objects.filter(notice_at__lte=now, status__in=RENEWING), test_clock
    ).order_by("notice_at", "pk")[:BATCH])
    if not due:
        return {}
    events = []
    with transaction.atomic():
        sent = set(
            Subscription.objects.select_for_update(skip_locked=True)
            .filter(pk__in=[s.pk for s in due], notice_at__lte=now)
            .values_list("pk", flat=True)
        )
        for subscription in due:
            if subscription.pk not in sent:
                continue
            trial = subscription.status == S.TRIALING
            type = "customer.subscription.trial_will_end" if trial else "invoice.upcoming"
            event = event_build(
                type, now=subscription.notice_at, actor=RENEWALS,
                subscription_id=subscription.pk,
                data={
                    "status": subscription.status,
                    "trial_end": subscription.trial_end.isoformat() if trial else None,
                    "next_payment_at": subscription.current_period_end.isoformat(),
                    "billing_reason": "subscription_cycle",
                },
            )
            event.customer_id = subscription.customer_id
            events.append(event)
        Subscription.objects.filter(pk__in=sent).update(notice_at=None)
        events_save(events)
    return {"notices": len(events)}


def pauses_end(*, now: datetime, test_clock=None) -> dict:
    due = _for_clock(
        Subscription.objects.filter(status=S.PAUSED, pause_resumes_at__lte=now), test_clock
    )
    resumed = 0
    for subscription in due.select_related("customer")[:BATCH]:
        try:
            subscription_resume(subscription, now=now, actor=RENEWALS)
        except DomainError:
            continue
        resumed += 1
    return {"resumed": resumed}


def next_due_parts(test_clock) -> list[Due]:
    """Where the first moment anything of this module falls due for the clock's customers
    is (customers.clock_due)."""
    def mine(*statuses):
        return lambda: Subscription.objects.filter(customer__test_clock=test_clock,
                                                   status__in=statuses)

    key = f"renewals:{test_clock.pk}"
    return [
        Due(mine(*RENEWING), "current_period_end", key=key),
        Due(mine(*RENEWING), "notice_at", key=key),
        Due(mine(S.PAUSED), "pause_resumes_at", key=key),
        Due(mine(S.INCOMPLETE), "created_at", after=INCOMPLETE_EXPIRES_AFTER, key=key),
    ]


def next_due_at(test_clock) -> datetime | None:
    """The first moment anything of this module falls due for the clock's customers."""
    return due_first(next_due_parts(test_clock))



