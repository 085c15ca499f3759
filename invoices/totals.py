"""Invoice totals, computed in one place from plain values.

Order of operations, per line: gross = quantity x unit amount; line discounts (percent,
then amount, never below zero); the invoice's percent discount; the invoice's amount
discount, split over lines in proportion to what is left (exactly, largest remainder).
A proration credit (a negative line, Stripe's "unused time") takes no line discount, is
discounted by the invoice's percent discount like the charges, and carries its taxes
(negative): the total of an invoice may be negative, and finalization then credits it
to the customer's balance (amount due 0). Taxes follow EN 16931: exclusive tax is
computed once per rate on the sum of the net amounts of the lines carrying it, then
shared back over those lines; inclusive tax is taken out of each line's net amount.
All rounding goes through money.round_minor.
"""

from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction

from customers.money import allocate, percent_of, round_minor


@dataclass(frozen=True)
class Rate:
    id: int
    percentage: Decimal
    inclusive: bool
    display_name: str = ""
    category: str = "S"


@dataclass(frozen=True)
class LineInput:
    quantity: int
    unit_amount: int
    rates: tuple[Rate, ...] = ()
    discount_percent: Decimal = Decimal(0)
    discount_amount: int = 0


@dataclass
class LineResult:
    amount: int  # gross: quantity x unit amount, as entered (inclusive tax included)
    discount_total: int
    amount_excluding_tax: int
    tax_amount: int


@dataclass
class Totals:
    lines: list[LineResult]
    subtotal: int
    total_discount_amount: int
    total_excluding_tax: int
    tax: int
    total: int
    tax_breakdown: list[dict] = field(default_factory=list)


class MixedTaxError(ValueError):
    """A line carries both inclusive and exclusive tax rates."""


def line_discounts(lines: list[LineInput], percent: Decimal, amount: int) -> list[int]:
    """Net amount of each line after line and invoice discounts."""
    after_line = []
    for line in lines:
        gross = line.quantity * line.unit_amount
        if gross < 0:  # a proration credit: it carries no line discount of its own
            after_line.append(gross)
            continue
        # Without a discount nothing is taken off (and no Fraction is made: a renewal
        # batch totals thousands of undiscounted invoices).
        off = (percent_of(gross, line.discount_percent) if line.discount_percent else 0) + (
            line.discount_amount
        )
        after_line.append(gross - min(gross, off))
    if not percent:
        after_percent = after_line
    else:  # a credit is discounted as the charges are (what was paid for was discounted)
        after_percent = [net - percent_of(net, percent) for net in after_line]
    # An amount discount is taken from the charges, and never takes the invoice below
    # zero (a discount is not a credit).
    amount = max(0, min(amount, sum(after_percent)))
    if not amount:
        return list(after_percent)
    shares = allocate(amount, [max(net, 0) for net in after_percent])
    return [net - share for net, share in zip(after_percent, shares, strict=True)]


def _undiscounted_untaxed(lines: list[LineInput]) -> Totals:
    """What compute gives when nothing is discounted or taxed (most renewals), without
    its general machinery: each line's net amount is its gross amount."""
    grosses = [line.quantity * line.unit_amount for line in lines]
    subtotal = sum(grosses)
    return Totals(
        lines=[LineResult(gross, 0, gross, 0) for gross in grosses], subtotal=subtotal,
        total_discount_amount=0, total_excluding_tax=subtotal, tax=0, total=subtotal,
    )


def tax_shares(group: dict) -> list[int]:
    """A rate's tax shared back over its lines: in proportion to their net amounts; with
    credits among charges (weights of both signs), each line's own tax, the rounding
    difference on the largest line."""
    weights = group["weights"]
    if min(weights) >= 0 or max(weights) <= 0:
        return allocate(group["tax"], weights)
    shares = [percent_of(weight, group["rate"].percentage) for weight in weights]
    largest = max(range(len(weights)), key=lambda i: abs(weights[i]))
    shares[largest] += group["tax"] - sum(shares)
    return shares


def compute(lines: list[LineInput], discount_percent=Decimal(0), discount_amount=0) -> Totals:
    if not discount_percent and not discount_amount and not any(
        line.rates or line.discount_amount or line.discount_percent for line in lines
    ):
        return _undiscounted_untaxed(lines)
    nets = line_discounts(lines, Decimal(discount_percent), discount_amount)
    excl = list(nets)
    line_tax = [0] * len(lines)
    groups: dict[int, dict] = {}

    def group(rate: Rate) -> dict:
        return groups.setdefault(
            rate.id, {"rate": rate, "taxable": 0, "tax": 0, "members": [], "weights": []}
        )

    for i, line in enumerate(lines):
        inclusive = [r for r in line.rates if r.inclusive]
        exclusive = [r for r in line.rates if not r.inclusive]
        if inclusive and exclusive:
            raise MixedTaxError("a line's tax rates must be all inclusive or all exclusive")
        if inclusive:
            combined = sum(Fraction(r.percentage) for r in inclusive)
            excl[i] = round_minor(Fraction(nets[i]) * 100 / (100 + combined))
            line_tax[i] = nets[i] - excl[i]
            shares = allocate(line_tax[i], [int(r.percentage * 10000) for r in inclusive])
            for rate, share in zip(inclusive, shares, strict=True):
                g = group(rate)
                g["taxable"] += excl[i]
                g["tax"] += share
        for rate in exclusive:
            g = group(rate)
            g["taxable"] += nets[i]
            g["members"].append(i)
            g["weights"].append(nets[i])

    for g in groups.values():
        if g["members"]:  # exclusive: once per rate, then shared back over its lines
            g["tax"] = percent_of(g["taxable"], g["rate"].percentage)
            for i, share in zip(g["members"], tax_shares(g), strict=True):
                line_tax[i] += share

    subtotal = sum(line.quantity * line.unit_amount for line in lines)
    exclusive_tax = sum(g["tax"] for g in groups.values() if not g["rate"].inclusive)
    total_discount = subtotal - sum(nets)
    return Totals(
        lines=[
            LineResult(
                amount=line.quantity * line.unit_amount,
                discount_total=line.quantity * line.unit_amount - nets[i],
                amount_excluding_tax=excl[i],
                tax_amount=line_tax[i],
            )
            for i, line in enumerate(lines)
        ],
        subtotal=subtotal,
        total_discount_amount=total_discount,
        total_excluding_tax=sum(excl),
        tax=sum(g["tax"] for g in groups.values()),
        total=subtotal - total_discount + exclusive_tax,
        tax_breakdown=[
            {
                "tax_rate": g["rate"].id,
                "display_name": g["rate"].display_name,
                "percentage": str(g["rate"].percentage),
                "inclusive": g["rate"].inclusive,
                "category": g["rate"].category,
                "taxable_amount": g["taxable"],
                "amount": g["tax"],
            }
            for g in sorted(groups.values(), key=lambda g: (g["rate"].percentage, g["rate"].id))
        ],
    )


# --- what the customer reads: from the subtotal down to the amount due ------------------
#
# The hosted page, the PDF, the emails and the admin all show these rows, built here
# from the invoice's stored amounts, so the four agree and the rows between Total and
# Amount due add up to the amount due:
#   total - balance applied (+ previous balance) - pre-payment credit notes
#         - amount paid (+ the overpayment credited to the balance) (- voided) = amount due

ROW_KINDS = ("subtotal", "discounts", "tax", "total", "balance_applied", "previous_balance",
             "credited_to_balance", "credit_notes", "amount_paid", "overpaid", "voided",
             "amount_due")
STRONG = {"total", "amount_due"}


@dataclass(frozen=True)
class SummaryRow:
    kind: str  # one of ROW_KINDS
    amount: int  # minor units, signed as the reader adds it (included taxes add nothing)
    tax: dict | None = None  # the tax_breakdown entry of a "tax" row

    @property
    def strong(self) -> bool:
        return self.kind in STRONG

    @property
    def shown_amount(self) -> int:
        """The amount printed: an included tax is shown, though it adds nothing."""
        return self.tax["amount"] if self.tax is not None else self.amount


def invoice_summary(invoice, *, received: int | None = None) -> list[SummaryRow]:
    """The rows of `invoice` from Subtotal to Amount due. `received`: the sum of its
    payments, when known (what exceeds amount_paid was credited to the customer's
    balance); without it, the payments are taken as amount_paid."""
    rows = [SummaryRow("subtotal", invoice.subtotal)]
    if invoice.total_discount_amount:
        rows.append(SummaryRow("discounts", -invoice.total_discount_amount))
    for entry in invoice.tax_breakdown:
        rows.append(SummaryRow("tax", 0 if entry.get("inclusive") else entry["amount"], entry))
    rows.append(SummaryRow("total", invoice.total))
    # The balance at finalization, as it changed what is due: a credit (negative balance)
    # lowers it, a debt is added to it, and a negative total (proration credits) goes to
    # the balance, leaving nothing due. None of it on drafts (ending_balance is unset).
    if invoice.ending_balance is not None:
        debt = max(invoice.starting_balance, 0)
        credited = max(-(invoice.total + debt), 0)
        applied = invoice.starting_balance - invoice.ending_balance - debt - credited
        if applied:
            rows.append(SummaryRow("balance_applied", applied))
        if debt:
            rows.append(SummaryRow("previous_balance", debt))
        if credited:
            rows.append(SummaryRow("credited_to_balance", credited))
    elif invoice.total < 0:  # a draft: what finalizing it would credit
        rows.append(SummaryRow("credited_to_balance", -invoice.total))
    if invoice.pre_payment_credit_notes_amount:
        rows.append(SummaryRow("credit_notes", -invoice.pre_payment_credit_notes_amount))
    received = invoice.amount_paid if received is None else max(received, invoice.amount_paid)
    if received:
        rows.append(SummaryRow("amount_paid", -received))
    if received > invoice.amount_paid:
        rows.append(SummaryRow("overpaid", received - invoice.amount_paid))
    due = invoice.amount_remaining
    if invoice.status == "void" and due:
        rows.append(SummaryRow("voided", -due))
        due = 0
    rows.append(SummaryRow("amount_due", due))
    return rows


def summary_amount_due(rows: list[SummaryRow]) -> int:
    return rows[-1].amount


def summary_settlement(rows: list[SummaryRow]) -> list[SummaryRow]:
    """The rows from Total to Amount due, which add up."""
    start = next(i for i, row in enumerate(rows) if row.kind == "total")
    return rows[start:]


@dataclass(frozen=True)
class ShownRow:
    """One row as a reader sees it, in the active language."""

    kind: str
    label: str
    amount: str
    strong: bool = False


def row_labels() -> dict:
    from django.utils.translation import gettext_lazy as _

    return {
        "subtotal": _("Subtotal"),
        "discounts": _("Discounts"),
        "total": _("Total"),
        "balance_applied": _("Credit applied from your balance"),
        "previous_balance": _("Previous balance"),
        "credited_to_balance": _("Credit added to your balance"),
        "credit_notes": _("Credit notes"),
        "amount_paid": _("Amount paid"),
        "overpaid": _("Overpayment credited to your balance"),
        "voided": _("Voided"),
        "amount_due": _("Amount due"),
    }


def tax_label(entry: dict, money, percent) -> str:
    from django.utils.translation import gettext as _

    values = {
        "name": entry.get("display_name", ""),
        "percentage": percent(entry["percentage"]),
        "base": money(entry["taxable_amount"]),
    }
    if entry.get("inclusive"):
        return _("%(name)s %(percentage)s%% (included)") % values
    return _("%(name)s %(percentage)s%% on %(base)s") % values


def summary_shown(rows: list[SummaryRow], *, money, percent) -> list[ShownRow]:
    """The rows in the active language. `money(minor units) -> text` and
    `percent("20.0000") -> "20"` format in the reader's locale."""
    labels = row_labels()
    return [
        ShownRow(
            row.kind,
            tax_label(row.tax, money, percent) if row.tax is not None else str(labels[row.kind]),
            money(row.shown_amount),
            row.strong,
        )
        for row in rows
    ]


def invoice_totals_shown(invoice, *, locale: str | None = None) -> list[ShownRow]:
    """The rows of a stored invoice, its payments summed, in `locale` (Babel; default:
    the active language)."""
    from babel.numbers import format_decimal
    from django.db.models import Sum
    from django.utils.translation import get_language, to_locale

    from customers.money import format_money

    locale = locale or to_locale(get_language() or "en")
    received = invoice.payments.aggregate(sum=Sum("amount"))["sum"] if invoice.pk else None
    return summary_shown(
        invoice_summary(invoice, received=received),
        money=lambda amount: format_money(amount, invoice.currency, locale),
        percent=lambda value: format_decimal(Decimal(value), locale=locale),
    )
