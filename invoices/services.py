"""Invoice domain functions: drafts, finalization, payments recorded by staff, void,
uncollectible, deletion and revision. Interfaces (admin, tasks, commands) call these."""

import zoneinfo
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from customers.actors import Actor
from customers.errors import DomainError
from customers.ledger import balance_transaction_create
from customers.models import BalanceTransaction, Customer
from customers.money import MAX_AMOUNT, format_money, is_int

from . import totals as totals_module
from .events import event_record
from .hosted import token_fields
from .models import MAX_LINES, MAX_QUANTITY, Invoice, InvoiceLine, InvoicingSettings, Payment
from .numbering import number_take
from .transitions import DELETED, S, check_transition, invoice_transition

FROZEN_EDITABLE = {"description", "metadata"}  # what may change once finalized


def local_date(moment: datetime, tz_name: str) -> date:
    return moment.astimezone(zoneinfo.ZoneInfo(tz_name)).date()


def day_end(day: date, tz_name: str) -> datetime:
    """The first moment after `day` in the time zone: when an invoice due that day is
    past due for its customer."""
    next_day = day + timedelta(days=1)
    return datetime(next_day.year, next_day.month, next_day.day, tzinfo=zoneinfo.ZoneInfo(tz_name))


def invoice_lock(invoice: Invoice) -> Invoice:
    return Invoice.objects.select_for_update().select_related("customer").get(pk=invoice.pk)


# --- drafts -------------------------------------------------------------------------


def invoice_create(
    *,
    customer: Customer,
    now: datetime,
    actor: Actor,
    collection_method: str = Invoice.CollectionMethod.SEND_INVOICE,
    due_date: date | None = None,
    days_until_due: int | None = None,
    auto_advance: bool = True,
    description: str = "",
    metadata: dict | None = None,
    discount_percent: Decimal = Decimal(0),
    discount_amount: int = 0,
    subscription_id: int | None = None,
    billing_reason: str = Invoice.BillingReason.MANUAL,
    default_payment_method=None,
) -> Invoice:
    """`default_payment_method`: charged instead of the customer's default (one of the
    customer's own)."""
    invoice = draft_build(
        customer=customer, now=now, collection_method=collection_method, due_date=due_date,
        days_until_due=days_until_due, auto_advance=auto_advance, description=description,
        metadata=metadata, discount_percent=discount_percent, discount_amount=discount_amount,
        subscription_id=subscription_id, billing_reason=billing_reason,
        default_payment_method=default_payment_method,
    )
    # Nested (a clock in a simulation), no savepoint: no caller goes on after an error.
    with transaction.atomic(savepoint=False):
        invoice.save()
        event_record("invoice.created", now=now, actor=actor, invoice=invoice)
    return invoice


def draft_build(
    *, customer: Customer, now: datetime, collection_method: str, due_date=None,
    days_until_due=None, auto_advance=True, description="", metadata=None,
    discount_percent=Decimal(0), discount_amount=0, subscription_id=None,
    billing_reason=Invoice.BillingReason.MANUAL, default_payment_method=None, settings=None,
) -> Invoice:
    """The unsaved draft invoice_create writes, checked (and invoices.bulk's)."""
    if collection_method not in Invoice.CollectionMethod.values:
        raise DomainError(_("Unknown collection method %(m)s.") % {"m": collection_method})
    if default_payment_method is not None and default_payment_method.customer_id != customer.pk:
        raise DomainError(_("This payment method belongs to another customer."))
    settings = settings or InvoicingSettings.load()
    invoice = Invoice(
        customer=customer,
        test_clock_id=customer.test_clock_id,
        currency=customer.currency,
        collection_method=collection_method,
        due_date=due_date,
        days_until_due=days_until_due,
        auto_advance=auto_advance,
        description=description,
        metadata=metadata or {},
        discount_percent=discount_percent,
        discount_amount=discount_amount,
        subscription_id=subscription_id,
        billing_reason=billing_reason,
        default_payment_method=default_payment_method,
        created_at=now,
        automatically_finalizes_at=(
            now + timedelta(hours=settings.auto_finalize_delay_hours) if auto_advance else None
        ),
    )
    # The customer's own clock: nothing to check (it would cost a query per invoice).
    _full_clean(invoice, exclude=["customer", "default_payment_method", "test_clock"])
    return invoice


def _full_clean(obj, exclude=None) -> None:
    try:
        obj.full_clean(exclude=exclude, validate_unique=False, validate_constraints=False)
    except ValidationError as error:
        raise DomainError("; ".join(error.messages)) from None


def line_validate(
    *, quantity, unit_amount, discount_amount=0, tax_rates=(), period_start=None,
    period_end=None, proration=False, discount_percent=Decimal(0),
) -> None:
    """The rules a line must follow, for the admin forms and the domain alike. Only a
    proration line may be negative (a credit for unused time), without a discount."""
    for value in (quantity, unit_amount, discount_amount):
        if not isinstance(value, int) or isinstance(value, bool):
            raise DomainError(_("Quantities and amounts are whole numbers."))
    if not 1 <= quantity <= MAX_QUANTITY:
        raise DomainError(
            _("Quantity must be between 1 and %(max)s.") % {"max": f"{MAX_QUANTITY:,}"}
        )
    if discount_amount < 0 or (unit_amount < 0 and not proration):
        raise DomainError(_("Amounts cannot be negative; use a credit note to give money back."))
    if unit_amount < 0 and (discount_amount or discount_percent):
        raise DomainError(_("A proration credit takes no discount of its own."))
    if abs(quantity * unit_amount) > MAX_AMOUNT:
        raise DomainError(_("This line's amount is too large."))
    kinds = {rate.inclusive for rate in tax_rates}
    if len(kinds) > 1:
        raise DomainError(_("A line's tax rates must be all inclusive or all exclusive."))
    if period_start and period_end and period_end < period_start:
        raise DomainError(_("The period ends before it starts."))


def invoice_line_add(
    invoice: Invoice,
    *,
    description: str,
    unit_amount: int,
    quantity: int = 1,
    tax_rates=(),
    discount_percent: Decimal = Decimal(0),
    discount_amount: int = 0,
    period_start: date | None = None,
    period_end: date | None = None,
    proration: bool = False,
) -> InvoiceLine:
    line_validate(
        quantity=quantity,
        unit_amount=unit_amount,
        discount_amount=discount_amount,
        tax_rates=tax_rates,
        period_start=period_start,
        period_end=period_end,
        proration=proration,
        discount_percent=discount_percent,
    )
    with transaction.atomic():
        locked = invoice_lock(invoice)
        if locked.status != S.DRAFT:
            raise DomainError(_("Only drafts can be edited; use a credit note or revise."))
        count = locked.lines.count()
        if count >= MAX_LINES:
            raise DomainError(_("An invoice has at most %(max)d lines.") % {"max": MAX_LINES})
        line = InvoiceLine(
            invoice=locked,
            position=count,
            description=description,
            quantity=quantity,
            unit_amount=unit_amount,
            discount_percent=discount_percent,
            discount_amount=discount_amount,
            period_start=period_start,
            period_end=period_end,
            proration=proration,
        )
        _full_clean(line, exclude=["invoice"])
        line.save()
        if tax_rates:  # a new line has none: nothing to replace (set() would read first)
            line.tax_rates.add(*tax_rates)
        invoice_recalculate(locked)
    invoice.refresh_from_db()
    return line


def draft_line_build(invoice: Invoice, *, position: int, description: str, unit_amount: int,
                     quantity: int = 1) -> InvoiceLine:
    """An unsaved line without tax rates or discounts, checked as invoice_line_add checks
    one (invoices.bulk's drafts)."""
    line_validate(quantity=quantity, unit_amount=unit_amount)
    line = InvoiceLine(invoice=invoice, position=position, description=description,
                       quantity=quantity, unit_amount=unit_amount)
    _full_clean(line, exclude=["invoice"])
    return line


LINE_TOTALS = ["amount", "discount_total", "amount_excluding_tax", "tax_amount"]


def invoice_recalculate(invoice: Invoice) -> Invoice:
    """Recompute a draft's lines and totals from its lines (the one place totals are set).
    Call it with the draft locked (invoice_lock) and fresh from the database."""
    if invoice.status != S.DRAFT:
        raise DomainError(_("The totals of a finalized invoice are frozen."))
    lines = list(invoice.lines.prefetch_related("tax_rates").order_by("position", "id"))
    result = totals_compute(invoice, lines)
    changed_lines = line_totals_apply(lines, result)
    if changed_lines:  # finalizing an up-to-date draft rewrites nothing (bulk_update is costly)
        InvoiceLine.objects.bulk_update(changed_lines, LINE_TOTALS)
    fields = totals_fields(result)
    # `invoice` is the caller's locked, fresh row, so unchanged totals need no write.
    changed = {name: value for name, value in fields.items() if getattr(invoice, name) != value}
    if changed:
        Invoice.objects.filter(pk=invoice.pk, status=S.DRAFT).update(**changed)
    for name, value in changed.items():
        setattr(invoice, name, value)
    return invoice


def totals_compute(invoice: Invoice, lines: list[InvoiceLine]) -> totals_module.Totals:
    """The totals of a draft from its lines (loaded with their tax rates), refusing what
    cannot be invoiced. Reads and writes nothing: the one-row and bulk paths share it."""
    if len(lines) > MAX_LINES:
        raise DomainError(_("An invoice has at most %(max)d lines.") % {"max": MAX_LINES})
    inputs = [
        totals_module.LineInput(
            quantity=line.quantity,
            unit_amount=line.unit_amount,
            discount_percent=line.discount_percent,
            discount_amount=line.discount_amount,
            rates=tuple(
                totals_module.Rate(r.pk, r.percentage, r.inclusive, r.display_name, r.category)
                for r in line.tax_rates.all()
            ),
        )
        for line in lines
    ]
    try:
        result = totals_module.compute(inputs, invoice.discount_percent, invoice.discount_amount)
    except totals_module.MixedTaxError:
        raise DomainError(_("A line's tax rates must be all inclusive or all exclusive.")) from None
    if abs(result.total) > MAX_AMOUNT:
        raise DomainError(_("This invoice's total is too large."))
    return result


def line_totals_apply(lines: list[InvoiceLine], result: totals_module.Totals) -> list[InvoiceLine]:
    """Set the computed amounts on the lines; returns the lines that changed (to write)."""
    changed_lines = []
    for line, computed in zip(lines, result.lines, strict=True):
        values = {name: getattr(computed, name) for name in LINE_TOTALS}
        if any(getattr(line, name) != value for name, value in values.items()):
            changed_lines.append(line)
            for name, value in values.items():
                setattr(line, name, value)
    return changed_lines


def totals_fields(result: totals_module.Totals) -> dict:
    return {
        "subtotal": result.subtotal,
        "total_discount_amount": result.total_discount_amount,
        "total_excluding_tax": result.total_excluding_tax,
        "tax": result.tax,
        "total": result.total,
        "tax_breakdown": result.tax_breakdown,
        # A draft's total may be negative (proration credits): nothing is due.
        "amount_due": max(result.total, 0),
        "amount_remaining": max(result.total, 0),
    }


def invoice_update(invoice: Invoice, *, now: datetime, actor: Actor, **changes) -> Invoice:
    """Edit an invoice: anything on a draft; only memo and metadata once finalized."""
    editable = {
        "collection_method", "due_date", "days_until_due", "auto_advance", "description",
        "footer", "metadata", "discount_percent", "discount_amount",
    }
    unknown = set(changes) - editable
    if unknown:
        fields = ", ".join(sorted(unknown))
        raise DomainError(_("These fields cannot be edited: %(f)s.") % {"f": fields})
    with transaction.atomic():
        locked = invoice_lock(invoice)
        changed = {k: v for k, v in changes.items() if getattr(locked, k) != v}
        if locked.status != S.DRAFT and set(changed) - FROZEN_EDITABLE:
            raise DomainError(
                _("A finalized invoice is frozen except its memo and metadata; "
                  "use a credit note or revise it.")
            )
        if not changed:
            return locked
        for name, value in changed.items():
            setattr(locked, name, value)
        if "auto_advance" in changed and locked.status == S.DRAFT:
            delay = InvoicingSettings.load().auto_finalize_delay_hours
            scheduled = max(now, locked.created_at + timedelta(hours=delay))
            locked.automatically_finalizes_at = scheduled if locked.auto_advance else None
            changed["automatically_finalizes_at"] = locked.automatically_finalizes_at
        _full_clean(locked, exclude=["customer"])
        Invoice.objects.filter(pk=locked.pk).update(**changed)
        if locked.status == S.DRAFT:
            invoice_recalculate(locked)
        event_record(
            "invoice.updated", now=now, actor=actor, invoice=locked,
            data={"fields": sorted(changed)},
        )
    return locked


# --- finalization -------------------------------------------------------------------


@dataclass
class Finalization:
    """What finalizing one draft writes, decided before anything is written."""

    fields: dict  # written on the invoice with the transition to open (all but the number)
    changed_lines: list[InvoiceLine]  # lines whose computed amounts must be written
    balance_applied: int  # minor units to append to the customer's ledger (0: nothing)


def finalization_prepare(
    invoice: Invoice,
    *,
    customer: Customer,
    lines: list[InvoiceLine],
    now: datetime,
    settings: InvoicingSettings,
) -> Finalization:
    """The rules of finalization for one draft: refuses it (DomainError) or says what to
    write. No queries: invoice_finalize and the sweep's bulk path (invoices.bulk) both
    use it, so the rules live in one place. `lines` come with their tax rates loaded."""
    check_transition(invoice.status, S.OPEN)
    if not lines:
        raise DomainError(_("Add at least one line before finalizing."))
    if customer.currency != invoice.currency:
        raise DomainError(
            _("The customer now bills in %(c)s but this invoice is in %(i)s; revise it.")
            % {"c": customer.currency, "i": invoice.currency}
        )
    today = local_date(now, customer.timezone)
    due_date = invoice.due_date
    if invoice.collection_method == Invoice.CollectionMethod.SEND_INVOICE and due_date is None:
        days = invoice.days_until_due
        if days is None:
            days = settings.default_days_until_due
        due_date = today + timedelta(days=days)
    if due_date is not None and due_date < today:
        raise DomainError(_("The due date %(d)s is in the past.") % {"d": due_date})
    result = totals_compute(invoice, lines)
    balance = customer.balance
    # Credit (a negative balance) lowers what is due, never below zero; a debt is added
    # to it. What is left negative (credit beyond the total, or a negative total from
    # proration credits, as Stripe) is the customer's balance afterwards.
    owed = result.total + balance
    amount_due = max(owed, 0)
    applied = min(owed, 0) - balance
    # Charged at finalization: the collection sweep takes it at once (DESIGN.md section 4).
    charge_now = (
        invoice.collection_method == Invoice.CollectionMethod.CHARGE_AUTOMATICALLY
        and invoice.auto_advance
        and amount_due > 0
    )
    fields = {
        **totals_fields(result),
        "starting_balance": balance,
        "ending_balance": balance + applied,
        "amount_due": amount_due,
        "amount_remaining": amount_due,
        "due_date": due_date,
        "customer_details": customer.billing_details(),
        "automatically_finalizes_at": None,
        "past_due_at": day_end(due_date, customer.timezone) if due_date else None,
        "next_payment_attempt": now if charge_now else None,
        **token_fields(),
    }
    return Finalization(fields, line_totals_apply(lines, result), applied)


def invoice_finalize(
    invoice: Invoice,
    *,
    now: datetime,
    actor: Actor,
    settings: InvoicingSettings | None = None,
) -> Invoice:
    """Number, snapshot, apply the customer balance, freeze, and open the invoice.
    `settings`: pass them when finalizing many (loaded once rather than per invoice)."""
    settings = settings or InvoicingSettings.load()
    with transaction.atomic():
        locked = invoice_lock(invoice)
        customer = locked.customer  # locked with the invoice (select_related + FOR UPDATE)
        lines = list(locked.lines.prefetch_related("tax_rates").order_by("position", "id"))
        prepared = finalization_prepare(
            locked, customer=customer, lines=lines, now=now, settings=settings
        )
        if prepared.changed_lines:
            InvoiceLine.objects.bulk_update(prepared.changed_lines, LINE_TOTALS)
        if prepared.balance_applied:
            balance_transaction_create(
                customer=customer,
                amount=prepared.balance_applied,
                type=BalanceTransaction.Type.APPLIED_TO_INVOICE,
                now=now,
                actor=actor,
                reference=f"invoice:{locked.pk}",
            )
        fields = {**prepared.fields, "number": number_take(customer, settings)}
        invoice_transition(locked, S.OPEN, now=now, actor=actor, fields=fields)
        if locked.amount_remaining == 0:
            invoice_transition(locked, S.PAID, now=now, actor=actor, data={"reason": "nothing_due"})
    _fresh_copy(locked, invoice)
    return invoice


def _fresh_copy(fresh: Invoice, invoice: Invoice) -> None:
    """What invoice.refresh_from_db() would load, without the query: `fresh` is the row
    as locked and then written by this transaction."""
    for field in Invoice._meta.concrete_fields:
        setattr(invoice, field.attname, getattr(fresh, field.attname))
        if field.is_relation and field.is_cached(invoice):
            field.delete_cached_value(invoice)
    invoice.customer = fresh.customer
    invoice._prefetched_objects_cache = {}


# --- after finalization -------------------------------------------------------------


def invoice_void(invoice: Invoice, *, now: datetime, actor: Actor) -> Invoice:
    with transaction.atomic():
        locked = invoice_lock(invoice)
        check_transition(locked.status, S.VOID)
        if locked.amount_paid:
            raise DomainError(
                _("Invoice %(n)s has payments recorded; issue a credit note instead of voiding.")
                % {"n": locked.number}
            )
        if locked.credit_notes.filter(status="issued").exists():
            raise DomainError(_("Void the invoice's credit notes first."))
        returned = locked.starting_balance - (locked.ending_balance or 0)
        if returned:
            balance_transaction_create(
                customer=locked.customer,
                amount=returned,
                type=BalanceTransaction.Type.UNAPPLIED_FROM_INVOICE,
                now=now,
                actor=actor,
                reference=locked.number,
            )
        invoice_transition(locked, S.VOID, now=now, actor=actor)
    invoice.refresh_from_db()
    return invoice


def invoice_mark_uncollectible(invoice: Invoice, *, now: datetime, actor: Actor) -> Invoice:
    with transaction.atomic():
        locked = invoice_lock(invoice)
        invoice_transition(locked, S.UNCOLLECTIBLE, now=now, actor=actor)
    invoice.refresh_from_db()
    return invoice


def invoice_record_payment(
    invoice: Invoice,
    *,
    amount: int,
    method: str,
    now: datetime,
    actor: Actor,
    received_at: datetime | None = None,
    reference: str = "",
    credit_excess: bool = False,
) -> Payment:
    """Money received outside the system (bank transfer, cheque...). Partial is normal."""
    if not is_int(amount) or amount <= 0:
        raise DomainError(_("A payment is a positive amount."))
    if amount > MAX_AMOUNT:
        raise DomainError(_("This amount is too large."))
    if method not in Payment.Method.values:
        raise DomainError(_("Unknown payment method %(m)s.") % {"m": method})
    received_at = received_at or now
    if received_at > now:
        raise DomainError(_("A payment cannot be received in the future."))
    with transaction.atomic():
        locked = invoice_lock(invoice)
        if locked.status not in (S.OPEN, S.UNCOLLECTIBLE):
            raise DomainError(
                _("Payments are recorded on open or uncollectible invoices; %(n)s is %(s)s.")
                % {"n": locked, "s": locked.get_status_display().lower()}
            )
        excess = amount - locked.amount_remaining
        if excess > 0 and not credit_excess:
            raise DomainError(
                _("This payment is more than the %(due)s remaining. Record the remaining amount, "
                  "or credit the excess to the customer's balance.")
                % {"due": format_money(locked.amount_remaining, locked.currency)}
            )
        payment = Payment.objects.create(
            invoice=locked,
            amount=amount,
            currency=locked.currency,
            method=method,
            reference=reference,
            received_at=received_at,
            recorded_by=str(actor),
            created_at=now,
        )
        applied = min(amount, locked.amount_remaining)
        invoice_apply_payment(locked, applied, now=now, actor=actor, data={
            "payment": payment.pk, "amount": amount, "method": method,
        })
        if excess > 0:
            balance_transaction_create(
                customer=locked.customer,
                amount=-excess,
                type=BalanceTransaction.Type.INVOICE_OVERPAID,
                now=now,
                actor=actor,
                reference=locked.number,
            )
    invoice.refresh_from_db()
    return payment


def invoice_apply_payment(invoice: Invoice, amount: int, *, now, actor, data: dict) -> Invoice:
    """Count `amount` as paid on a locked invoice; paid when nothing remains."""
    invoice.amount_paid += amount
    invoice.amount_remaining -= amount
    Invoice.objects.filter(pk=invoice.pk).update(
        amount_paid=invoice.amount_paid, amount_remaining=invoice.amount_remaining
    )
    event_record("invoice.payment_succeeded", now=now, actor=actor, invoice=invoice, data=data)
    if invoice.amount_remaining == 0:
        invoice_transition(invoice, S.PAID, now=now, actor=actor)
    return invoice


def invoice_delete(invoice: Invoice, *, now: datetime, actor: Actor) -> None:
    """Delete a draft. Finalized invoices are never deleted: void them."""
    with transaction.atomic():
        locked = invoice_lock(invoice)
        check_transition(locked.status, DELETED)
        event_record(
            "invoice.deleted", now=now, actor=actor, customer=locked.customer,
            data={"invoice_id": locked.pk, "total": locked.total, "currency": locked.currency},
        )
        locked.delete()


def invoice_revise(invoice: Invoice, *, now: datetime, actor: Actor) -> Invoice:
    """Void a finalized invoice and return an editable draft copy of it."""
    with transaction.atomic():
        locked = invoice_lock(invoice)
        invoice_void(locked, now=now, actor=actor)
        copy = Invoice.objects.create(
            customer=locked.customer,
            test_clock_id=locked.customer.test_clock_id,
            currency=locked.customer.currency,
            collection_method=locked.collection_method,
            days_until_due=locked.days_until_due,
            due_date=None if locked.days_until_due is not None else locked.due_date,
            auto_advance=True,
            automatically_finalizes_at=None,  # staff finalize the revision when ready
            description=locked.description,
            footer=locked.footer,
            metadata=locked.metadata,
            discount_percent=locked.discount_percent,
            discount_amount=locked.discount_amount,
            from_invoice=locked,
            created_at=now,
        )
        for line in locked.lines.prefetch_related("tax_rates"):
            rates = list(line.tax_rates.all())
            line.pk = None
            line.invoice = copy
            line.save()
            line.tax_rates.set(rates)
        invoice_recalculate(copy)
        event_record(
            "invoice.created", now=now, actor=actor, invoice=copy,
            data={"revision_of": locked.number},
        )
        event_record(
            "invoice.revised", now=now, actor=actor, invoice=locked, data={"revision": copy.pk}
        )
    invoice.refresh_from_db()
    return copy
