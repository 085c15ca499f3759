"""Invoice totals, computed in one place from plain values.

Order of operations, per line: gross = quantity x unit amount; line discounts (percent,
then amount, never below zero); the invoice's percent discount; the invoice's amount
discount, split over lines in proportion to what is left (exactly, largest remainder).
Taxes follow EN 16931: exclusive tax is computed once per rate on the sum of the net
amounts of the lines carrying it, then shared back over those lines; inclusive tax is
taken out of each line's net amount. All rounding goes through money.round_minor.
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
        # Without a discount nothing is taken off (and no Fraction is made: a renewal
        # batch totals thousands of undiscounted invoices).
        off = (percent_of(gross, line.discount_percent) if line.discount_percent else 0) + (
            line.discount_amount
        )
        after_line.append(gross - min(gross, off))
    if not percent:
        after_percent = after_line
    else:
        after_percent = [net - percent_of(net, percent) for net in after_line]
    amount = min(amount, sum(after_percent))
    if not amount:
        return list(after_percent)
    shares = allocate(amount, after_percent)
    return [net - share for net, share in zip(after_percent, shares, strict=True)]


def compute(lines: list[LineInput], discount_percent=Decimal(0), discount_amount=0) -> Totals:
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
            for i, share in zip(g["members"], allocate(g["tax"], g["weights"]), strict=True):
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
