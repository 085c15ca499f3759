"""Collecting payments: payment attempts that never charge twice.

One path for every charge, whether the collection sweep makes it, a customer pays on
the hosted page or staff retry from the admin, in three steps:

1. *open*: lock the invoices, check them, write the attempt rows (`pending`, with their
   idempotency keys) and take the invoices off the due list; COMMIT.
2. call the gateway, outside any transaction;
3. *complete*: in one transaction, record every outcome set-based: payments, invoice
   amounts, retry plans, holds, transitions (through the one door) and events.

A crash between 2 and 3 leaves `pending` attempts whose `check_at` passes: the
reconciliation sweep asks the gateway what happened (`retrieve`) and, if the charge never
reached it, sends it again with the *same* idempotency key, which the gateway answers
with the first charge or makes once. Never a second charge.

When to retry is not decided here: a `CollectionPolicy` is (automations registers Smart
Retries and the billing settings; without it, an invoice is charged once, never retried).
"""

import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import OuterRef, Q, QuerySet, Subquery
from django.utils.translation import gettext as _

from customers.actors import Actor
from customers.clock_due import Due, due_first, floored, in_one_transaction
from customers.errors import DomainError
from customers.ledger import balance_transaction_create
from customers.models import BalanceTransaction, Customer, PaymentMethod
from customers.money import format_money

from .bulkwrite import rows_insert, rows_update
from .credit_notes import CreditLine, credit_note_create
from .events import event_build, event_record, events_save
from .gateways.base import (
    ChargeRequest,
    ChargeResult,
    Gateway,
    GatewayError,
    answer_mismatch,
    gateway_load,
    refresh_many_safely,
)
from .models import Invoice, Payment, PaymentAttempt
from .transitions import S, transition_in_memory

A = PaymentAttempt.Status
AUTOMATIC = Actor.system("automatic collection")
IN_FLIGHT = (A.PENDING, A.PROCESSING)
# An invoice with one of these is not charged again (the database says so too).
BLOCKING = (*IN_FLIGHT, A.HELD)
# A pending attempt whose gateway call has not been recorded by then is reconciled.
# Far longer than any gateway call may take (the Stripe adapter times out at 30 s).
STALE_AFTER = timedelta(minutes=10)
RECHECK_AFTER = timedelta(minutes=5)  # after the gateway failed to answer
GIVE_UP_AFTER = timedelta(days=1)  # unknown for this long: failed, retried per policy
PROCESSING_CHECK_EVERY = timedelta(hours=1)
ATTEMPT_FIELDS = [
    "status", "gateway_reference", "amount_received", "decline_code", "failure_message",
    "advice", "hard_decline", "action_url", "completed_at", "duration_ms", "check_at",
    "payment", "card_funding",
]
PAYMENT_METHOD_FOR = {PaymentMethod.Type.CARD: Payment.Method.CARD,
                      PaymentMethod.Type.SEPA_DEBIT: Payment.Method.SEPA_DEBIT}


# --- the policy: what automations decides --------------------------------------------


@dataclass(frozen=True)
class RetryPlan:
    at: datetime | None  # None: no more automatic retries
    reason: str = ""  # one line, shown in the admin
    uncollectible: bool = False  # the budget is spent and the policy says so
    chance: float | None = None  # the policy's estimate that the retry succeeds
    log_odds: float | None = None  # its model's log-odds before recalibration
    moved: bool | None = None  # whether Smart Retries moved it from the fixed schedule's time


@dataclass(frozen=True)
class Failure:
    """A soft decline of an automatic attempt, to plan the next retry of."""

    invoice: Invoice
    attempt: PaymentAttempt
    customer: Customer
    at: datetime


@dataclass(frozen=True)
class Outcome:
    """A finished automatic retry: what Smart Retries learn from."""

    attempt: PaymentAttempt
    customer: Customer
    succeeded: bool
    first_failed_at: datetime | None


class CollectionPolicy:
    """The default: charge once, never retry, reconcile nothing, learn nothing."""

    enabled = True

    def plan(self, failures: list[Failure]) -> dict[int, RetryPlan]:
        """A plan per failure, keyed by attempt pk; called once per batch."""
        return {f.attempt.pk: RetryPlan(None, _("No retry policy.")) for f in failures}

    def tolerance(self, currency: str) -> int:
        """A partial payment leaving at most this much unpaid closes the invoice."""
        return 0

    def observe(self, outcomes: list[Outcome]) -> None:
        """Called with the batch's finished retries, in its transaction."""

    def retry_now_on_new_method(self) -> bool:
        """Whether a new payment method brings scheduled soft-decline retries forward."""
        return False


_policy: list[CollectionPolicy] = [CollectionPolicy()]


def policy_register(policy: CollectionPolicy) -> None:
    _policy[0] = policy


def policy() -> CollectionPolicy:
    return _policy[0]


# --- payment methods -----------------------------------------------------------------


def payment_method_add(
    customer: Customer,
    *,
    type: str,
    gateway_reference: str = "",
    brand: str = "",
    last4: str = "",
    exp_month: int | None = None,
    exp_year: int | None = None,
    now: datetime,
    actor: Actor,
    make_default: bool = True,
) -> PaymentMethod:
    """Attach a payment method. Invoices held for a hard decline, an authentication or a
    missing payment method are collected again at once."""
    _payment_method_check(type, gateway_reference, last4, exp_month, exp_year, now)
    given = customer
    with transaction.atomic():
        customer = Customer.objects.select_for_update().get(pk=customer.pk)
        method = PaymentMethod.objects.create(
            customer=customer, type=type, gateway_reference=gateway_reference, brand=brand,
            last4=last4, exp_month=exp_month, exp_year=exp_year, created_at=now,
        )
        if make_default or customer.default_payment_method_id is None:
            Customer.objects.filter(pk=customer.pk).update(default_payment_method=method)
            customer.default_payment_method = given.default_payment_method = method
        resumed = _collection_resume(customer, now=now) if method.chargeable else []
        event_record(
            "payment_method.attached", now=now, actor=actor, customer=customer,
            data={"payment_method": method.pk, "type": type, "label": str(method),
                  "default": customer.default_payment_method_id == method.pk,
                  "resumed_invoices": resumed},
        )
    return method


def _payment_method_check(type, gateway_reference, last4, exp_month, exp_year, now) -> None:
    if type not in PaymentMethod.Type.values:
        raise DomainError(_("Unknown payment method type %(t)s.") % {"t": type})
    if type in PaymentMethod.CHARGEABLE and not gateway_reference:
        raise DomainError(_("A card or a SEPA mandate needs the gateway's reference."))
    if last4 and not (len(last4) == 4 and last4.isdigit()):
        raise DomainError(_("The last 4 digits must be 4 digits."))
    if (exp_month is None) != (exp_year is None):
        raise DomainError(_("Give both the expiry month and year, or neither."))
    if exp_month is not None:
        if not (1 <= exp_month <= 12 and 2000 <= exp_year <= 2100):
            raise DomainError(_("The expiry date is not a valid month and year."))
        if (exp_year, exp_month) < (now.year, now.month):
            raise DomainError(_("This card has expired."))


def payment_method_detach(method: PaymentMethod, *, now: datetime, actor: Actor) -> PaymentMethod:
    with transaction.atomic():
        customer = Customer.objects.select_for_update().get(pk=method.customer_id)
        PaymentMethod.objects.filter(pk=method.pk).update(status=PaymentMethod.Status.DETACHED)
        method.status = PaymentMethod.Status.DETACHED
        if customer.default_payment_method_id == method.pk:
            Customer.objects.filter(pk=customer.pk).update(default_payment_method=None)
        event_record(
            "payment_method.detached", now=now, actor=actor, customer=customer,
            data={"payment_method": method.pk, "label": str(method)},
        )
    return method


def _collection_resume(customer: Customer, *, now: datetime) -> list[int]:
    """Open invoices waiting on the customer's payment method become due now."""
    waiting = Q(payment_hold__in=["hard_decline", "requires_action", "no_payment_method"])
    if policy().retry_now_on_new_method():
        waiting |= Q(payment_hold="", next_payment_attempt__gt=now)
    invoices = Invoice.objects.filter(
        waiting,
        customer=customer,
        status=S.OPEN,
        auto_advance=True,
        collection_method=Invoice.CollectionMethod.CHARGE_AUTOMATICALLY,
        amount_remaining__gt=0,
    ).exclude(payment_attempts__status__in=IN_FLIGHT)
    ids = list(invoices.values_list("pk", flat=True))
    # An invoice's own method that hard-declined gives way to the one just added (the
    # customer's default from now on).
    Invoice.objects.filter(pk__in=ids, default_payment_method__unusable_code__gt="").update(
        default_payment_method=None
    )
    Invoice.objects.filter(pk__in=ids).update(
        payment_hold="",
        next_payment_attempt=now,
        next_payment_attempt_reason=_("A new payment method was added: retrying now."),
        next_payment_attempt_chance=None,
        next_payment_attempt_log_odds=None,
        next_payment_attempt_moved=None,
    )
    return ids


# --- one charge: the hosted page, staff ------------------------------------------------


def invoice_charge(
    invoice: Invoice,
    *,
    now: datetime,
    actor: Actor,
    source: str,
    idempotency_key: str | None = None,
    payment_method: PaymentMethod | None = None,
    gateway_token: str | None = None,
    card_brand: str = "",
    card_last4: str = "",
    gateway: Gateway | None = None,
) -> PaymentAttempt:
    """Charge what remains due on one invoice, once. The same `idempotency_key` again
    returns the first attempt and charges nothing. Without a method or token, the
    customer's default payment method is charged."""
    if source not in PaymentAttempt.Source.values:
        raise DomainError(_("Unknown payment source %(s)s.") % {"s": source})
    key = idempotency_key or f"{source}-{invoice.pk}-{uuid.uuid4().hex}"
    existing = _attempt_for_key(key, invoice)
    if existing is not None:
        return existing
    try:
        with transaction.atomic():
            locked = Invoice.objects.select_for_update().select_related("customer").get(
                pk=invoice.pk
            )
            _payable_check(locked)
            token, label, method = _charge_target(
                locked, payment_method, gateway_token, card_brand, card_last4
            )
            attempt = _attempt_build(locked, key=key, source=source, token=token, label=label,
                                     method=method, at=now)
            # Staff and customers try besides the schedule: a decline of theirs leaves
            # the planned automatic retries as they are.
            attempt.save()
    except IntegrityError:
        existing = _attempt_for_key(key, invoice)  # a double click that lost the race
        if existing is not None:
            return existing
        raise DomainError(_("A payment for this invoice is already in progress.")) from None
    attempts_send([attempt], gateway=gateway, actor=actor)
    attempt.refresh_from_db()
    return attempt


def _attempt_for_key(key: str, invoice: Invoice) -> PaymentAttempt | None:
    existing = PaymentAttempt.objects.filter(idempotency_key=key).first()
    if existing is not None and existing.invoice_id != invoice.pk:
        raise DomainError(_("This payment request belongs to another invoice."))
    return existing


def _payable_check(invoice: Invoice) -> None:
    if invoice.status not in (S.OPEN, S.UNCOLLECTIBLE) or invoice.amount_remaining <= 0:
        raise DomainError(
            _("Invoice %(n)s is %(s)s: there is nothing to collect.")
            % {"n": invoice, "s": invoice.get_status_display().lower()}
        )
    blocking = set(invoice.payment_attempts.filter(status__in=BLOCKING).values_list(
        "status", flat=True))
    if A.HELD in blocking:
        raise DomainError(_("A payment for this invoice is being checked by our team; it "
                            "cannot be paid again until then."))
    if blocking:
        raise DomainError(_("A payment for this invoice is already in progress."))


def method_for(invoice: Invoice) -> PaymentMethod | None:
    """What collecting `invoice` charges: its own default payment method (a subscription's,
    as Stripe) while it is attached to the customer, else the customer's default. A
    hard-declined one is still chosen (and not charged: the invoice waits for a new one)."""
    own = invoice.default_payment_method if invoice.default_payment_method_id else None
    if (own is not None and own.status == PaymentMethod.Status.ACTIVE
            and own.customer_id == invoice.customer_id):
        return own
    return invoice.customer.default_payment_method


def _charge_target(invoice, method, token, brand, last4) -> tuple[str, str, PaymentMethod | None]:
    customer = invoice.customer
    if token:
        label = " ".join(part for part in (brand, f"•••• {last4}" if last4 else "") if part)
        return token, label or _("card"), None
    method = method or method_for(invoice)
    if method is None:
        raise DomainError(_("%(c)s has no payment method to charge.") % {"c": customer})
    if method.customer_id != customer.pk:
        raise DomainError(_("This payment method belongs to another customer."))
    if not method.chargeable:
        raise DomainError(
            _("%(m)s cannot be charged automatically.") % {"m": method}
        )
    if method.unusable_code:
        raise DomainError(_unusable_text(method))
    if method.type == PaymentMethod.Type.SEPA_DEBIT and invoice.currency != "EUR":
        raise DomainError(_("SEPA Direct Debit only collects euros; this invoice is in %(c)s.")
                          % {"c": invoice.currency})
    return method.gateway_reference, str(method), method


def _attempt_build(invoice, *, key, source, token, label, method, at) -> PaymentAttempt:
    return PaymentAttempt(
        invoice=invoice,
        customer=invoice.customer,
        test_clock_id=invoice.customer.test_clock_id,
        payment_method=method,
        gateway_token=token,
        method_label=label[:60],
        source=source,
        amount=invoice.amount_remaining,
        currency=invoice.currency,
        idempotency_key=key,
        status=A.PENDING,
        retry_of_decline_code=invoice.last_decline_code if source == "automatic" else "",
        predicted_chance=invoice.next_payment_attempt_chance if source == "automatic" else None,
        predicted_log_odds=(invoice.next_payment_attempt_log_odds
                            if source == "automatic" else None),
        planner_moved=invoice.next_payment_attempt_moved if source == "automatic" else None,
        created_at=at,
        check_at=at + STALE_AFTER,
    )


def _invoice_taken(invoice: Invoice) -> None:
    """An automatic attempt is under way: the invoice leaves the due list and counts it
    (attempt_count counts the retry schedule's attempts, as Stripe's does)."""
    invoice.next_payment_attempt = None
    invoice.attempt_count += 1


# --- many charges: the collection sweep ------------------------------------------------


def due_for_collection(now: datetime, test_clock=None) -> QuerySet:
    due = Invoice.objects.filter(status=S.OPEN, next_payment_attempt__lte=now)
    if test_clock is None:
        return due.filter(customer__test_clock__isnull=True)
    return floored(due.filter(test_clock=test_clock), "next_payment_attempt", test_clock)


@dataclass
class Counts:
    attempted: int = 0
    succeeded: int = 0
    failed: int = 0
    processing: int = 0
    requires_action: int = 0
    unknown: int = 0  # the gateway did not answer: reconciled later
    held: int = 0  # no payment method to charge
    extra: dict = field(default_factory=dict)

    def add(self, other: "Counts") -> None:
        for name in ("attempted", "succeeded", "failed", "processing", "requires_action",
                     "unknown", "held"):
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict:
        return {name: getattr(self, name) for name in (
            "attempted", "succeeded", "failed", "processing", "requires_action", "unknown",
            "held")}


def collect_due(
    *,
    now: datetime,
    test_clock=None,
    batch_size: int = 500,
    at_scheduled_time: bool = False,
    gateway: Gateway | None = None,
) -> Counts:
    """Attempt every invoice whose next payment attempt is due, in bounded batches. With
    `at_scheduled_time` (test clocks) each is attempted at its scheduled moment.

    A batch costs three commits whatever its size (attempts, charges, outcomes): 500 a
    batch made 15-20% more attempts a second than 200 (bench), for 5 MB more memory.
    A batch's gateway calls must end within STALE_AFTER, which 500 calls of a few
    hundred milliseconds each do."""
    gateway = gateway or gateway_load()
    counts = Counts()
    if not policy().enabled:
        return counts
    # Within one transaction (a clock in a simulation: clock_due.one_transaction), the
    # claim's locks are held until the gateway's answers are recorded: they need not be
    # taken and read again.
    nested = in_one_transaction()
    after = None
    while True:
        candidates = due_for_collection(now, test_clock).order_by("next_payment_attempt", "pk")
        if after is not None:
            candidates = candidates.filter(
                Q(next_payment_attempt__gt=after[0])
                | Q(next_payment_attempt=after[0], pk__gt=after[1])
            )
        if nested:
            # No transaction to begin and commit: the claim is the read (a round trip
            # at each clock stop fewer). Alone, a tick that finds nothing costs one read.
            attempts, held, claimed, last = _open_due(
                candidates, batch_size, now=now, test_clock=test_clock,
                at_scheduled_time=at_scheduled_time, nested=True,
            )
            counts.held += held
            counts.add(attempts_send(attempts, gateway=gateway, actor=AUTOMATIC, claimed=True))
            if claimed < batch_size:
                return counts
            after = last
            continue
        batch = list(candidates.values_list("next_payment_attempt", "pk")[:batch_size])
        if batch:
            attempts, held = attempts_open_due(
                [pk for _at, pk in batch], now=now, test_clock=test_clock,
                at_scheduled_time=at_scheduled_time,
            )
            counts.held += held
            counts.add(attempts_send(attempts, gateway=gateway, actor=AUTOMATIC))
        if len(batch) < batch_size:
            return counts
        after = batch[-1]


def attempts_open_due(
    ids: list[int], *, now: datetime, test_clock=None, at_scheduled_time: bool = False
) -> tuple[list[PaymentAttempt], int]:
    """Claim the due invoices among `ids` (SKIP LOCKED: another worker's are its own) and
    commit their pending attempts. Returns the attempts and how many were put on hold."""
    attempts, held, _claimed, _last = _open_due(
        due_for_collection(now, test_clock).filter(pk__in=ids).order_by("pk"), None,
        now=now, test_clock=test_clock, at_scheduled_time=at_scheduled_time,
    )
    return attempts, held


def _open_due(
    rows: QuerySet, limit: int | None, *, now: datetime, test_clock, at_scheduled_time: bool,
    nested: bool = False,
) -> tuple[list[PaymentAttempt], int, int, tuple | None]:
    """attempts_open_due for the first `limit` of `rows` (all: None), in their order.
    Returns the attempts, how many were put on hold, how many invoices were claimed and
    the (next_payment_attempt, pk) of the last one in `rows`' order.

    `nested` (within one transaction: collect_due): the status of each invoice's attempt
    in flight or held is read in the claim (a round trip a batch fewer). Otherwise it is
    read once the invoices are locked: a customer paying on the hosted page may have
    committed one between the claim's snapshot and its lock."""
    # Nested (a clock in a simulation), no savepoint: no caller goes on after an error.
    with transaction.atomic(savepoint=False):
        claim = rows.select_for_update(skip_locked=True, of=("self",)).select_related(
            "customer", "customer__default_payment_method", "default_payment_method")
        if nested:
            # The status of the invoice's attempt in flight or held, if any (one at most:
            # attempt_one_in_flight).
            claim = claim.annotate(blocking=Subquery(
                PaymentAttempt.objects.filter(invoice=OuterRef("pk"), status__in=BLOCKING)
                .values("status")[:1]
            ))
        invoices = list(claim if limit is None else claim[:limit])
        last = (invoices[-1].next_payment_attempt, invoices[-1].pk) if invoices else None
        invoices.sort(key=lambda invoice: invoice.pk)  # attempted in id order
        if nested:
            busy = {invoice.pk: invoice.blocking for invoice in invoices if invoice.blocking}
        else:
            busy = dict(
                PaymentAttempt.objects.filter(
                    invoice__in=invoices, status__in=BLOCKING
                ).values_list("invoice_id", "status")
            )
        attempts, held, waiting, events = [], [], [], []
        for invoice in invoices:
            at = invoice.next_payment_attempt if at_scheduled_time else now
            if busy.get(invoice.pk) == A.HELD:
                # Held for review: charged again only once staff decide (invoices.review).
                invoice.next_payment_attempt = None
                waiting.append(invoice)
                continue
            if invoice.pk in busy:
                # The customer is paying right now: look again once that has settled.
                invoice.next_payment_attempt = at + PROCESSING_CHECK_EVERY
                waiting.append(invoice)
                continue
            method = method_for(invoice)
            if method is None or not method.chargeable or method.expired(at.date()):
                _hold(invoice, "no_payment_method", at, events)
                held.append(invoice)
                continue
            if method.unusable_code:
                # Hard-declined before (on this invoice or another): never charged
                # again; the customer is asked for a new payment method.
                _hold(invoice, "hard_decline", at, events, method=method)
                held.append(invoice)
                continue
            attempts.append(_attempt_build(
                invoice, key=f"auto-{invoice.pk}-{uuid.uuid4().hex[:20]}",
                source=PaymentAttempt.Source.AUTOMATIC, token=method.gateway_reference,
                label=str(method), method=method, at=at,
            ))
            _invoice_taken(invoice)
        rows_insert(PaymentAttempt, attempts)
        taken = [attempt.invoice for attempt in attempts]
        rows_update(Invoice, taken, ["next_payment_attempt", "attempt_count"])
        rows_update(Invoice, waiting, ["next_payment_attempt"])
        rows_update(Invoice, held, ["next_payment_attempt", "payment_hold", "last_payment_error",
                                    "past_due_at", "next_payment_attempt_reason"])
        events_save(events)
    return attempts, len(held), len(invoices), last


def _hold(invoice: Invoice, hold: str, at: datetime, events: list, method=None) -> None:
    invoice.next_payment_attempt = None
    invoice.payment_hold = hold
    invoice.past_due_at = min(filter(None, [invoice.past_due_at, at]))
    data = {"reason": hold}
    if method is None:
        invoice.last_payment_error = _("No payment method to charge.")
        invoice.next_payment_attempt_reason = _(
            "Waiting for the customer to add a payment method.")
    else:
        invoice.last_payment_error = _unusable_text(method)
        invoice.next_payment_attempt_reason = _(
            "Waiting for the customer to add a new payment method (%(m)s hard-declined).") % {
            "m": method}
        data |= {"payment_method": method.pk, "decline_code": method.unusable_code,
                 "amount": invoice.amount_remaining,
                 "failure_message": invoice.last_payment_error}
    events.append(event_build(
        "invoice.collection_paused", now=at, actor=AUTOMATIC, invoice=invoice, data=data,
    ))


def _unusable_text(method: PaymentMethod) -> str:
    return _("%(m)s was declined (%(code)s) on %(date)s: it is never charged again unless "
             "the customer or staff re-enable it.") % {
        "m": method, "code": method.unusable_code,
        "date": method.unusable_at.date().isoformat() if method.unusable_at else "?"}


# --- the gateway, then the record -------------------------------------------------------


def attempts_send(
    attempts: list[PaymentAttempt], *, gateway: Gateway | None, actor: Actor,
    claimed: bool = False,
) -> Counts:
    """Call the gateway for committed pending attempts, then record the outcomes. Call
    it outside any transaction: the attempts must be committed before the gateway is.

    `claimed` (attempts_open_due within a transaction: a clock in a simulation): the
    attempts and their invoices are still locked by this transaction, as they were
    written (attempts_complete's `claimed`)."""
    if not attempts:
        return Counts()
    gateway = gateway or gateway_load()
    items = [(charge_request(attempt), attempt.created_at) for attempt in attempts]
    started = time.perf_counter()
    outcomes = gateway.charge_many(items)
    elapsed_ms = int((time.perf_counter() - started) * 1000 / len(attempts))
    counts = attempts_complete(
        [(attempt, outcome, attempt.created_at, elapsed_ms)
         for attempt, outcome in zip(attempts, outcomes, strict=True)],
        actor=actor, claimed=claimed, invoices_claimed=claimed,
    )
    counts.attempted += len(attempts)
    return counts


def charge_request(attempt: PaymentAttempt) -> ChargeRequest:
    return ChargeRequest(
        idempotency_key=attempt.idempotency_key,
        amount=attempt.amount,
        currency=attempt.currency,
        payment_method=attempt.gateway_token,
        customer_reference=f"cus_{attempt.customer_id}",
        description=f"Invoice {attempt.invoice_id}",
        # The customer's time zone: gateways and banks that care about local time.
        metadata={"invoice": attempt.invoice_id, "attempt": attempt.pk,
                  "customer_timezone": attempt.customer.timezone},
        off_session=attempt.source == PaymentAttempt.Source.AUTOMATIC,
    )


@dataclass
class _Batch:
    """What one completion writes, gathered before anything is written."""

    actor: Actor
    counts: Counts = field(default_factory=Counts)
    attempts: list = field(default_factory=list)
    invoices: dict = field(default_factory=dict)  # pk -> locked Invoice
    invoice_fields: set = field(default_factory=set)
    payments: list = field(default_factory=list)  # (attempt, Payment)
    events: list = field(default_factory=list)
    failures: list = field(default_factory=list)  # Failure
    outcomes: list = field(default_factory=list)  # Outcome
    overpaid: list = field(default_factory=list)  # (invoice, amount, at)
    unusable: list = field(default_factory=list)  # (payment method pk, code, at)
    tolerances: dict = field(default_factory=dict)  # currency -> policy tolerance

    def tolerance(self, currency: str) -> int:
        if currency not in self.tolerances:
            self.tolerances[currency] = policy().tolerance(currency)
        return self.tolerances[currency]
    reconcile: list = field(default_factory=list)  # (invoice, at)


def attempts_complete(
    items: list[tuple[PaymentAttempt, "ChargeResult | GatewayError", datetime, int | None]],
    *,
    actor: Actor,
    claimed: bool = False,
    invoices_claimed: bool = False,
) -> Counts:
    """Record gateway outcomes for pending or processing attempts, in one transaction.
    An attempt someone else has meanwhile recorded is left as it is.

    `claimed`: the attempts of `items` were locked in this same, still open transaction
    (a clock's sweep within a simulation's) and are the rows as they stand, with their
    payment method: no one else can have recorded them, and they are not read again.
    `invoices_claimed`: their invoices (attempt.invoice) likewise, with their customer."""
    batch = _Batch(actor=actor)
    # Nested (a clock in a simulation), no savepoint: no caller goes on after an error.
    with transaction.atomic(savepoint=False):
        if invoices_claimed:
            batch.invoices = {attempt.invoice_id: attempt.invoice for attempt, *_rest in items}
        else:
            invoice_ids = sorted({attempt.invoice_id for attempt, *_rest in items})
            batch.invoices = Invoice.objects.select_for_update(of=("self",)).select_related(
                "customer"
            ).in_bulk(invoice_ids)
        if claimed:
            current = {attempt.pk: attempt for attempt, *_rest in items}
        else:
            # With its payment method: a payment records the method's type (one query
            # per success otherwise).
            current = PaymentAttempt.objects.select_for_update(of=("self",)).select_related(
                "payment_method"
            ).in_bulk([attempt.pk for attempt, *_rest in items])
        for attempt, outcome, at, elapsed_ms in items:
            fresh = current.get(attempt.pk)
            if fresh is None or fresh.status not in IN_FLIGHT:
                continue
            fresh.invoice = batch.invoices[fresh.invoice_id]
            if elapsed_ms is not None and fresh.status == A.PENDING:
                fresh.duration_ms = elapsed_ms
            _outcome_apply(batch, fresh, outcome, at)
        _plans_apply(batch)
        _write(batch)
    return batch.counts


def _outcome_apply(batch: _Batch, attempt: PaymentAttempt, outcome, at: datetime) -> None:
    batch.attempts.append(attempt)
    if isinstance(outcome, GatewayError):
        if at - attempt.created_at < GIVE_UP_AFTER:
            attempt.failure_message = str(outcome)[:300]
            attempt.check_at = at + RECHECK_AFTER
            batch.counts.unknown += 1
            return
        outcome = ChargeResult.declined("gateway_error", message=_(
            "The payment provider did not answer; the payment was not taken."))
    mismatch = answer_mismatch(
        outcome, amount=attempt.amount, currency=attempt.currency,
        metadata={"idempotency_key": attempt.idempotency_key, "invoice": attempt.invoice_id,
                  "attempt": attempt.pk},
        reference=attempt.gateway_reference if attempt.status == A.PROCESSING else "",
    )
    if mismatch:
        _held(batch, attempt, outcome, mismatch, at)
        return
    attempt.gateway_reference = outcome.gateway_reference or attempt.gateway_reference
    attempt.card_funding = outcome.funding or attempt.card_funding
    if outcome.status == "succeeded":
        _succeeded(batch, attempt, outcome, at)
    elif outcome.status == "processing":
        _processing(batch, attempt, at)
    elif outcome.status == "requires_action":
        _requires_action(batch, attempt, outcome, at)
    else:
        _failed(batch, attempt, outcome, at)


def _finished(attempt: PaymentAttempt, status: str, at: datetime) -> None:
    attempt.status = status
    attempt.completed_at = at
    attempt.check_at = None


def _learn(batch: _Batch, attempt: PaymentAttempt, succeeded: bool) -> None:
    if attempt.source == PaymentAttempt.Source.AUTOMATIC and attempt.retry_of_decline_code:
        invoice = attempt.invoice
        batch.outcomes.append(Outcome(attempt, invoice.customer, succeeded, invoice.past_due_at))


def _succeeded(batch: _Batch, attempt: PaymentAttempt, result: ChargeResult, at) -> None:
    invoice = attempt.invoice
    _finished(attempt, A.SUCCEEDED, at)
    attempt.amount_received = result.amount_received
    method = attempt.payment_method
    payment = Payment(
        invoice=invoice,
        amount=result.amount_received,
        currency=attempt.currency,
        method=PAYMENT_METHOD_FOR.get(getattr(method, "type", None), Payment.Method.CARD),
        reference=attempt.gateway_reference[:100],
        received_at=at,
        recorded_by=str(batch.actor)[:150],
        created_at=at,
    )
    batch.payments.append((attempt, payment))
    batch.counts.succeeded += 1
    _learn(batch, attempt, True)
    payable = invoice.status in (S.OPEN, S.UNCOLLECTIBLE)
    applied = min(result.amount_received, invoice.amount_remaining) if payable else 0
    if result.amount_received - applied:
        # Money taken after the invoice was settled another way (a reconciled charge
        # that arrived late): it is the customer's, as credit.
        batch.overpaid.append((invoice, result.amount_received - applied, at))
    if not applied:
        return
    invoice.amount_paid += applied
    invoice.amount_remaining -= applied
    invoice.payment_hold = ""
    batch.invoice_fields |= {"amount_paid", "amount_remaining", "payment_hold"}
    batch.events.append(event_build(
        "invoice.payment_succeeded", now=at, actor=batch.actor, invoice=invoice,
        data={"attempt": attempt.pk, "amount": applied, "method": payment.method,
              "source": attempt.source, "payment": None},
    ))
    if invoice.amount_remaining == 0:
        batch.invoice_fields |= set(
            transition_in_memory(invoice, S.PAID, at, batch.actor, batch.events)
        )
    elif invoice.amount_remaining <= batch.tolerance(invoice.currency):
        batch.reconcile.append((invoice, at))
    elif attempt.source == PaymentAttempt.Source.AUTOMATIC:
        # Part of it paid: the rest is retried as the policy says.
        attempt.decline_code = "partial_payment"
        invoice.last_decline_code = "partial_payment"
        batch.failures.append(Failure(invoice, attempt, invoice.customer, at))


def _held(batch: _Batch, attempt: PaymentAttempt, result: ChargeResult, reason: str, at):
    """An answer that does not match its request is never booked: the attempt is held,
    the invoice is charged by nothing until staff decide, and the event tells them."""
    _finished(attempt, A.HELD, at)
    attempt.failure_message = reason[:300]
    if not attempt.gateway_reference:
        attempt.gateway_reference = result.gateway_reference[:255]
    invoice = attempt.invoice
    invoice.payment_hold = "gateway_review"
    invoice.next_payment_attempt = None
    invoice.next_payment_attempt_reason = _(
        "A payment is held for review: the gateway's answer did not match the charge."
    )
    batch.invoice_fields |= {"payment_hold", "next_payment_attempt",
                             "next_payment_attempt_reason"}
    batch.counts.extra["held_for_review"] = batch.counts.extra.get("held_for_review", 0) + 1
    batch.events.append(event_build(
        "invoice.payment_held_for_review", now=at, actor=batch.actor, invoice=invoice,
        data={"attempt": attempt.pk, "reason": reason, "source": attempt.source,
              "amount": attempt.amount, "currency": attempt.currency,
              "reported": {"status": result.status, "id": result.gateway_reference,
                           "amount": result.amount, "amount_received": result.amount_received,
                           "currency": result.currency, "metadata": result.metadata}},
    ))


def _processing(batch: _Batch, attempt: PaymentAttempt, at) -> None:
    first = attempt.status == A.PENDING
    attempt.status = A.PROCESSING
    attempt.check_at = at + PROCESSING_CHECK_EVERY
    batch.counts.processing += 1
    if first:
        batch.events.append(event_build(
            "invoice.payment_processing", now=at, actor=batch.actor, invoice=attempt.invoice,
            data={"attempt": attempt.pk, "amount": attempt.amount, "source": attempt.source},
        ))


def _requires_action(batch: _Batch, attempt: PaymentAttempt, result: ChargeResult, at) -> None:
    _finished(attempt, A.REQUIRES_ACTION, at)
    attempt.action_url = result.action_url[:500]
    invoice = attempt.invoice
    batch.counts.requires_action += 1
    if attempt.source == PaymentAttempt.Source.AUTOMATIC and invoice.status == S.OPEN:
        invoice.payment_hold = "requires_action"
        invoice.last_payment_error = _("The bank asks the customer to authenticate this payment.")
        invoice.next_payment_attempt_reason = _("Waiting for the customer to authenticate.")
        invoice.past_due_at = min(filter(None, [invoice.past_due_at, at]))
        batch.invoice_fields |= {"payment_hold", "last_payment_error", "past_due_at",
                                 "next_payment_attempt_reason"}
    batch.events.append(event_build(
        "invoice.payment_action_required", now=at, actor=batch.actor, invoice=invoice,
        data={"attempt": attempt.pk, "action_url": attempt.action_url, "source": attempt.source},
    ))


def _failed(batch: _Batch, attempt: PaymentAttempt, result: ChargeResult, at) -> None:
    _finished(attempt, A.FAILED, at)
    attempt.decline_code = result.decline_code[:64]
    attempt.failure_message = result.failure_message[:300]
    attempt.advice = result.advice
    attempt.hard_decline = result.hard_decline
    batch.counts.failed += 1
    _learn(batch, attempt, False)
    if attempt.hard_decline and attempt.payment_method_id:
        batch.unusable.append((attempt.payment_method_id, attempt.decline_code, at))
    invoice = attempt.invoice
    automatic = attempt.source == PaymentAttempt.Source.AUTOMATIC
    if not automatic or invoice.status != S.OPEN:
        # A customer's or staff's try: the schedule of automatic retries is unchanged.
        batch.events.append(_failed_event(batch, attempt, invoice, at))
        return
    invoice.last_payment_error = attempt.failure_message
    invoice.last_decline_code = attempt.decline_code
    invoice.past_due_at = min(filter(None, [invoice.past_due_at, at]))
    batch.invoice_fields |= {"last_payment_error", "last_decline_code", "past_due_at",
                             "next_payment_attempt", "next_payment_attempt_reason",
                             "next_payment_attempt_chance", "next_payment_attempt_log_odds",
                             "next_payment_attempt_moved", "payment_hold"}
    if attempt.hard_decline:
        invoice.payment_hold = "hard_decline"
        invoice.next_payment_attempt = None
        invoice.next_payment_attempt_chance = None
        invoice.next_payment_attempt_log_odds = invoice.next_payment_attempt_moved = None
        invoice.next_payment_attempt_reason = _(
            "Hard decline (%(code)s): never retried on this payment method; retried as soon "
            "as the customer adds a new one."
        ) % {"code": attempt.decline_code}
        batch.events.append(_failed_event(batch, attempt, invoice, at))
    else:
        batch.failures.append(Failure(invoice, attempt, invoice.customer, at))


def _failed_event(batch: _Batch, attempt: PaymentAttempt, invoice: Invoice, at):
    next_at = invoice.next_payment_attempt if attempt.source == "automatic" else None
    return event_build(
        "invoice.payment_failed", now=at, actor=batch.actor, invoice=invoice,
        data={
            "attempt": attempt.pk,
            "amount": attempt.amount,
            "decline_code": attempt.decline_code,
            "failure_message": attempt.failure_message,
            "hard_decline": attempt.hard_decline,
            "source": attempt.source,
            "next_payment_attempt": next_at.isoformat() if next_at else None,
        },
    )


def retry_plan_fields(plan: RetryPlan) -> dict:
    """The invoice's fields that hold a planned retry: when, why, the chance stated (per
    mille) and what the attempt keeps of the plan (log-odds, moved); none but the reason
    when no retry is planned."""
    planned = plan.at is not None
    return {
        "next_payment_attempt": plan.at,
        "next_payment_attempt_reason": plan.reason[:300],
        "next_payment_attempt_chance": (
            max(0, min(1000, round(plan.chance * 1000)))
            if planned and plan.chance is not None else None),
        "next_payment_attempt_log_odds": plan.log_odds if planned else None,
        "next_payment_attempt_moved": plan.moved if planned else None,
    }


def _plans_apply(batch: _Batch) -> None:
    """Ask the policy, once for the batch, when to retry each soft failure."""
    if not batch.failures:
        return
    plans = policy().plan(batch.failures)
    batch.invoice_fields |= {"next_payment_attempt", "next_payment_attempt_reason",
                             "next_payment_attempt_chance", "next_payment_attempt_log_odds",
                             "next_payment_attempt_moved", "payment_hold"}
    for failure in batch.failures:
        invoice, attempt, at = failure.invoice, failure.attempt, failure.at
        plan = plans.get(attempt.pk) or RetryPlan(None, _("No retry planned."))
        for name, value in retry_plan_fields(plan).items():
            setattr(invoice, name, value)
        invoice.payment_hold = ""
        if attempt.status == A.FAILED:
            batch.events.append(_failed_event(batch, attempt, invoice, at))
        if plan.at is None and plan.uncollectible and invoice.status == S.OPEN:
            batch.invoice_fields |= set(transition_in_memory(
                invoice, S.UNCOLLECTIBLE, at, batch.actor, batch.events,
                data={"reason": "retries_exhausted"},
            ))


def _write(batch: _Batch) -> None:
    if batch.payments:
        rows_insert(Payment, [payment for _attempt, payment in batch.payments])
        for attempt, payment in batch.payments:
            attempt.payment = payment
    payment_of = {attempt.pk: payment.pk for attempt, payment in batch.payments}
    for event in batch.events:  # the payment ids exist now
        if event.type == "invoice.payment_succeeded":
            event.data["payment"] = payment_of[event.data["attempt"]]
    rows_update(PaymentAttempt, batch.attempts, ATTEMPT_FIELDS)
    touched = [batch.invoices[pk] for pk in sorted({a.invoice_id for a in batch.attempts})]
    if batch.invoice_fields and touched:
        rows_update(Invoice, touched, sorted(batch.invoice_fields))
    events_save(batch.events)
    if batch.unusable:
        _methods_disable(batch)
    if batch.outcomes:
        policy().observe(batch.outcomes)
    for invoice, amount, at in batch.overpaid:
        balance_transaction_create(
            customer=invoice.customer, amount=-amount,
            type=BalanceTransaction.Type.INVOICE_OVERPAID, now=at, actor=batch.actor,
            reference=invoice.number or "",
        )
    for invoice, at in batch.reconcile:
        _partial_reconcile(invoice, at, batch.actor)


def _methods_disable(batch: _Batch) -> None:
    """Hard-declined payment methods become unusable (code and date kept), with an
    event each: no invoice charges them again."""
    events = []
    for method_id, code, at in batch.unusable:
        method = PaymentMethod.objects.select_related("customer").filter(
            pk=method_id, unusable_code="").first()
        if method is None:
            continue
        PaymentMethod.objects.filter(pk=method_id, unusable_code="").update(
            unusable_code=code, unusable_at=at)
        events.append(event_build(
            "payment_method.disabled", now=at, actor=batch.actor, customer=method.customer,
            data={"payment_method": method_id, "label": str(method), "decline_code": code},
        ))
    events_save(events)


def payment_method_reenable(method: PaymentMethod, *, now: datetime, actor: Actor
                            ) -> PaymentMethod:
    """The customer or staff say a hard-declined payment method may be charged again
    (the bank cleared it): it is usable again and held invoices are collected at once."""
    with transaction.atomic():
        customer = Customer.objects.select_for_update().get(pk=method.customer_id)
        method = PaymentMethod.objects.get(pk=method.pk)
        if not method.unusable_code:
            raise DomainError(_("%(m)s is not marked unusable.") % {"m": method})
        if not method.chargeable:
            raise DomainError(_("%(m)s cannot be charged automatically.") % {"m": method})
        code = method.unusable_code
        PaymentMethod.objects.filter(pk=method.pk).update(unusable_code="", unusable_at=None)
        method.unusable_code, method.unusable_at = "", None
        resumed = []
        if customer.default_payment_method_id == method.pk:
            resumed = _collection_resume(customer, now=now)
        event_record(
            "payment_method.reenabled", now=now, actor=actor, customer=customer,
            data={"payment_method": method.pk, "label": str(method), "decline_code": code,
                  "resumed_invoices": resumed},
        )
    return method


def _partial_reconcile(invoice: Invoice, at: datetime, actor: Actor) -> None:
    """A payment left a remainder within the tolerance: a credit note closes it."""
    remaining = invoice.amount_remaining
    credit_note_create(
        invoice,
        lines=[CreditLine(amount=remaining, description=_("Partial payment reconciled"))],
        now=at,
        actor=actor,
        reason="order_change",
        memo=_("%(amount)s left unpaid, within the reconciliation threshold.")
        % {"amount": format_money(remaining, invoice.currency)},
    )


# --- processing and stale attempts ----------------------------------------------------


def attempts_due_check(now: datetime, test_clock=None) -> QuerySet:
    due = PaymentAttempt.objects.filter(status__in=IN_FLIGHT, check_at__lte=now)
    if test_clock is None:
        return due.filter(customer__test_clock__isnull=True)
    return floored(due.filter(test_clock=test_clock), "check_at", test_clock)


def attempts_check_due(
    *, now: datetime, test_clock=None, batch_size: int = 200, at_scheduled_time: bool = False,
    gateway: Gateway | None = None,
) -> Counts:
    """Settle processing attempts (gateway.refresh) and reconcile pending ones whose
    worker never recorded them (gateway.retrieve, else the same charge again with the
    same idempotency key). Claimed SKIP LOCKED, one batch at a time."""
    gateway = gateway or gateway_load()
    counts = Counts()
    # Most ticks find nothing: one indexed read then, no transaction (two round trips
    # fewer, a third of the collection tick). Within one transaction (a clock in a
    # simulation: clock_due.one_transaction) the claim costs no transaction of its own and
    # finds the work itself: the read first would be a round trip more at every tick that
    # has some.
    nested = in_one_transaction()
    while nested or attempts_due_check(now, test_clock).exists():
        # Nested (a clock in a simulation), no savepoint: no caller goes on after an error.
        with transaction.atomic(savepoint=False):
            claim = attempts_due_check(now, test_clock).select_related(
                "customer", "payment_method")
            if nested:
                # Their invoices locked and read in the same claim (a round trip a stop
                # fewer: nearly every stop of a simulation checks a processing payment).
                claim = claim.select_related("invoice").select_for_update(
                    skip_locked=True, of=("self", "invoice"))
            else:
                claim = claim.select_for_update(skip_locked=True, of=("self",))
            attempts = list(claim.order_by("check_at", "pk")[:batch_size])
            if not attempts:
                break
            for attempt in attempts if nested else ():
                attempt.invoice.customer = attempt.customer  # the invoice's own
            if not nested:
                # Claimed: pushed past the next tick so a second sweep leaves them alone.
                # (Nested, they stay locked until their outcomes are recorded, which sets
                # check_at on every one.)
                PaymentAttempt.objects.filter(pk__in=[a.pk for a in attempts]).update(
                    check_at=now + RECHECK_AFTER
                )
        moments = [attempt.check_at if at_scheduled_time else now for attempt in attempts]
        # The processing ones in one call (a simulation checks them every hour).
        settling = [(attempt.gateway_reference, at)
                    for attempt, at in zip(attempts, moments, strict=True)
                    if attempt.status == A.PROCESSING]
        refreshed = iter(refresh_many_safely(gateway, settling) if settling else [])
        items = []
        for attempt, at in zip(attempts, moments, strict=True):
            outcome = (next(refreshed) if attempt.status == A.PROCESSING
                       else _attempt_ask(gateway, attempt, at))
            items.append((attempt, outcome, at, None))
        counts.add(attempts_complete(items, actor=AUTOMATIC, claimed=nested,
                                     invoices_claimed=nested))
        if len(attempts) < batch_size:
            break
    return counts


def _attempt_ask(gateway: Gateway, attempt: PaymentAttempt, at: datetime):
    """A pending attempt's outcome (the processing ones: gateway.refresh_many)."""
    try:
        known = gateway.retrieve(attempt.idempotency_key)
        if known is not None:
            return known
        return gateway.charge(charge_request(attempt), now=at)
    except GatewayError as error:
        return error
    except Exception as error:  # noqa: BLE001 - an unknown outcome, checked again later
        return GatewayError(f"{type(error).__name__}: {error}")


def next_due_parts(test_clock) -> list[Due]:
    """The earliest collection work of a test clock's customers (for clock advance): the
    first entry of the clock's own partial indexes (the rows carry the clock). With
    automatic collection off, invoices' planned attempts are not work (collect_due makes
    none): only the payments already in flight are checked."""
    in_flight = Due(
        lambda: PaymentAttempt.objects.filter(status__in=IN_FLIGHT, test_clock=test_clock),
        "check_at", key=f"collection.attempts:{test_clock.pk}", floored=True,
    )
    if not policy().enabled:
        return [in_flight]
    return [
        Due(lambda: Invoice.objects.filter(status=S.OPEN, test_clock=test_clock),
            "next_payment_attempt", key=f"collection.invoices:{test_clock.pk}", floored=True),
        in_flight,
    ]


def next_due_at(test_clock) -> datetime | None:
    return due_first(next_due_parts(test_clock))

