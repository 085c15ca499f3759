"""Credit notes: lower what is due (pre-payment) or give back what was paid
(post-payment: refund, customer balance credit, or outside the system)."""

from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction

from django.db import transaction
from django.db.models import Sum
from django.utils.translation import gettext as _

from customers.actors import Actor
from customers.errors import DomainError
from customers.ledger import balance_transaction_create
from customers.models import BalanceTransaction
from customers.money import MAX_AMOUNT, format_money, round_minor

from .events import event_record
from .models import CreditNote, CreditNoteLine, Invoice
from .services import invoice_lock
from .transitions import S, invoice_transition


@dataclass(frozen=True)
class CreditLine:
    amount: int  # tax-inclusive, minor units
    description: str = ""
    invoice_line_id: int | None = None


def creditable_amount(invoice: Invoice) -> int:
    """What can still be credited on this invoice (nothing on a negative one: its
    amount already went to the customer's balance)."""
    return max(
        invoice.total
        - invoice.pre_payment_credit_notes_amount
        - invoice.post_payment_credit_notes_amount,
        0,
    )


def credit_note_split(invoice: Invoice, amount: int) -> tuple[int, int]:
    """(pre-payment part, post-payment part): what is still due is credited first."""
    pre = min(amount, invoice.amount_remaining) if invoice.status == S.OPEN else 0
    return pre, amount - pre


def credit_note_create(
    invoice: Invoice,
    *,
    lines: list[CreditLine],
    now: datetime,
    actor: Actor,
    reason: str = "",
    memo: str = "",
    refund_amount: int = 0,
    credit_amount: int = 0,
    out_of_band_amount: int = 0,
    currency: str | None = None,
) -> CreditNote:
    if reason and reason not in CreditNote.Reason.values:
        raise DomainError(_("Unknown credit note reason %(r)s.") % {"r": reason})
    if not lines:
        raise DomainError(_("A credit note needs at least one line."))
    for value in [line.amount for line in lines] + [
        refund_amount,
        credit_amount,
        out_of_band_amount,
    ]:
        if not isinstance(value, int) or isinstance(value, bool):
            raise DomainError(_("Amounts are whole numbers of minor units."))
    if any(line.amount <= 0 or line.amount > MAX_AMOUNT for line in lines):
        raise DomainError(_("Each credit note line is a positive amount."))
    if min(refund_amount, credit_amount, out_of_band_amount) < 0:
        raise DomainError(_("Refund, credit and out-of-band amounts cannot be negative."))
    with transaction.atomic():
        locked = invoice_lock(invoice)
        if locked.status not in (S.OPEN, S.PAID):
            raise DomainError(
                _("Credit notes are issued on open or paid invoices; %(n)s is %(s)s.")
                % {"n": locked, "s": locked.get_status_display().lower()}
            )
        if currency is not None and currency != locked.currency:
            raise DomainError(
                _("The invoice is in %(i)s; a credit note on it cannot be in %(c)s.")
                % {"i": locked.currency, "c": currency}
            )
        amount = sum(line.amount for line in lines)
        available = creditable_amount(locked)
        if amount > available:
            raise DomainError(
                _("At most %(max)s can still be credited on %(n)s.")
                % {"max": format_money(available, locked.currency), "n": locked.number}
            )
        line_taxes = _line_taxes(locked, lines)
        pre, post = credit_note_split(locked, amount)
        if refund_amount + credit_amount + out_of_band_amount != post:
            raise DomainError(
                _(
                    "%(post)s of this credit note gives back money already paid: split it between "
                    "refund, customer balance credit and outside the system so that the parts add "
                    "up to exactly that (they add up to %(given)s)."
                )
                % {
                    "post": format_money(post, locked.currency),
                    "given": format_money(
                        refund_amount + credit_amount + out_of_band_amount, locked.currency
                    ),
                }
            )
        sequence = locked.credit_notes.count() + 1
        note = CreditNote.objects.create(
            invoice=locked,
            number=f"{locked.number}-CN-{sequence:02d}",
            type=(
                CreditNote.Type.PRE_PAYMENT
                if not post
                else CreditNote.Type.POST_PAYMENT
                if not pre
                else CreditNote.Type.MIXED
            ),
            reason=reason,
            memo=memo,
            currency=locked.currency,
            amount=amount,
            tax=sum(line_taxes),
            pre_payment_amount=pre,
            post_payment_amount=post,
            refund_amount=refund_amount,
            credit_amount=credit_amount,
            out_of_band_amount=out_of_band_amount,
            created_at=now,
        )
        CreditNoteLine.objects.bulk_create(
            [
                CreditNoteLine(
                    credit_note=note,
                    invoice_line_id=line.invoice_line_id,
                    description=line.description or _("Credit"),
                    amount=line.amount,
                    tax=tax,
                )
                for line, tax in zip(lines, line_taxes, strict=True)
            ]
        )
        _apply(locked, pre=pre, post=post)
        if credit_amount:
            balance_transaction_create(
                customer=locked.customer,
                amount=-credit_amount,
                type=BalanceTransaction.Type.CREDIT_NOTE,
                now=now,
                actor=actor,
                reference=note.number,
            )
        event_record(
            "credit_note.created",
            now=now,
            actor=actor,
            invoice=locked,
            credit_note=note,
            data={
                "number": note.number,
                "amount": amount,
                "pre_payment": pre,
                "post_payment": post,
            },
        )
        if locked.status == S.OPEN and locked.amount_remaining == 0:
            invoice_transition(locked, S.PAID, now=now, actor=actor, data={"reason": "credited"})
    invoice.refresh_from_db()
    return note


def _line_taxes(invoice: Invoice, lines: list[CreditLine]) -> list[int]:
    """Tax part of each credit line, in proportion to what it credits; checks line caps."""
    invoice_lines = {line.pk: line for line in invoice.lines.all()}
    already = dict(
        CreditNoteLine.objects.filter(
            credit_note__invoice=invoice,
            credit_note__status=CreditNote.Status.ISSUED,
            invoice_line__isnull=False,
        )
        .values_list("invoice_line")
        .annotate(total=Sum("amount"))
    )
    requested: dict[int, int] = {}
    taxes = []
    for line in lines:
        if line.invoice_line_id is None:
            ratio = Fraction(invoice.tax, invoice.total) if invoice.total else Fraction(0)
            taxes.append(round_minor(line.amount * ratio))
            continue
        source = invoice_lines.get(line.invoice_line_id)
        if source is None:
            raise DomainError(_("That line is not on invoice %(n)s.") % {"n": invoice.number})
        line_total = source.amount_excluding_tax + source.tax_amount
        requested[source.pk] = requested.get(source.pk, 0) + line.amount
        if already.get(source.pk, 0) + requested[source.pk] > line_total:
            raise DomainError(
                _("At most %(max)s can still be credited on the line “%(d)s”.")
                % {
                    "max": format_money(line_total - already.get(source.pk, 0), invoice.currency),
                    "d": source.description,
                }
            )
        taxes.append(round_minor(Fraction(line.amount * source.tax_amount, line_total or 1)))
    return taxes


def _apply(invoice: Invoice, *, pre: int, post: int) -> None:
    invoice.pre_payment_credit_notes_amount += pre
    invoice.post_payment_credit_notes_amount += post
    invoice.amount_due -= pre
    invoice.amount_remaining -= pre
    Invoice.objects.filter(pk=invoice.pk).update(
        pre_payment_credit_notes_amount=invoice.pre_payment_credit_notes_amount,
        post_payment_credit_notes_amount=invoice.post_payment_credit_notes_amount,
        amount_due=invoice.amount_due,
        amount_remaining=invoice.amount_remaining,
    )


def credit_note_void(note: CreditNote, *, now: datetime, actor: Actor) -> CreditNote:
    """Cancel a credit note while its invoice is still open; money refunded stays refunded."""
    with transaction.atomic():
        locked_invoice = invoice_lock(note.invoice)
        locked = CreditNote.objects.select_for_update().get(pk=note.pk)
        if locked.status != CreditNote.Status.ISSUED:
            raise DomainError(_("Credit note %(n)s is already void.") % {"n": locked.number})
        if locked_invoice.status != S.OPEN:
            raise DomainError(
                _("Credit notes can be voided only while their invoice is open; %(n)s is %(s)s.")
                % {"n": locked_invoice.number, "s": locked_invoice.get_status_display().lower()}
            )
        if locked.refund_amount:
            raise DomainError(
                _("A credit note with a refund cannot be voided: the money was sent.")
            )
        changed = CreditNote.objects.filter(pk=locked.pk, status=CreditNote.Status.ISSUED).update(
            status=CreditNote.Status.VOID, voided_at=now
        )
        if changed != 1:
            raise DomainError(_("Credit note %(n)s was changed meanwhile.") % {"n": locked.number})
        _apply(locked_invoice, pre=-locked.pre_payment_amount, post=-locked.post_payment_amount)
        if locked.credit_amount:
            balance_transaction_create(
                customer=locked_invoice.customer,
                amount=locked.credit_amount,
                type=BalanceTransaction.Type.CREDIT_NOTE,
                now=now,
                actor=actor,
                reference=locked.number,
                description=_("Credit note voided"),
            )
        event_record(
            "credit_note.voided",
            now=now,
            actor=actor,
            invoice=locked_invoice,
            credit_note=locked,
            data={"number": locked.number, "amount": locked.amount},
        )
    note.refresh_from_db()
    note.invoice.refresh_from_db()
    return note
