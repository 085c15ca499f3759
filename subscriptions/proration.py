"""Prorations, to the second (Stripe's way): a change mid-period gives, per changed item,
a credit for the unused time of the old price and quantity and a charge for the
remaining time of the new ones, each a line with its period [at, period end)."""

from dataclasses import dataclass
from datetime import datetime
from fractions import Fraction

from django.utils.translation import gettext as _

from customers.money import round_minor

from .periods import proration_fraction


@dataclass(frozen=True)
class ProrationLine:
    description: str
    amount: int  # minor units, positive; a credit (a negative line) is given back
    price: object  # subscriptions.models.Price
    quantity: int
    start: datetime
    end: datetime


@dataclass(frozen=True)
class Proration:
    credits: list[ProrationLine]
    charges: list[ProrationLine]

    @property
    def credit_total(self) -> int:
        return sum(line.amount for line in self.credits)

    @property
    def charge_total(self) -> int:
        return sum(line.amount for line in self.charges)

    @property
    def net(self) -> int:
        """Owed by the customer (negative: owed to the customer)."""
        return self.charge_total - self.credit_total


def prorated(unit_amount: int, quantity: int, left: int, total: int) -> int:
    return round_minor(Fraction(unit_amount * quantity * left, total))


def prorations_compute(subscription, old: list, new: list, *, now: datetime) -> Proration:
    """Lines for going from `old` to `new` items ((price, quantity) lists) at `now`
    within the subscription's current period. Unchanged items give no line."""
    start, end = subscription.current_period_start, subscription.current_period_end
    currency = subscription.currency  # a price's amount in it (its own or an option)
    left, total = proration_fraction(start, end, now)
    before = {price.pk: (price, quantity) for price, quantity in old}
    after = {price.pk: (price, quantity) for price, quantity in new}
    credits, charges = [], []
    if left <= 0:
        return Proration(credits, charges)
    when = f"{now:%Y-%m-%d %H:%M:%S} UTC"
    for pk, (price, quantity) in before.items():
        if after.get(pk, (None, None))[1] == quantity:
            continue
        amount = prorated(price.amount_in(currency), quantity, left, total)
        if amount:
            credits.append(ProrationLine(
                _("Unused time on %(q)s × %(name)s after %(when)s")
                % {"q": quantity, "name": price.nickname or price.product.name, "when": when},
                amount, price, quantity, now, end,
            ))
    for pk, (price, quantity) in after.items():
        if before.get(pk, (None, None))[1] == quantity:
            continue
        amount = prorated(price.amount_in(currency), quantity, left, total)
        if amount:
            charges.append(ProrationLine(
                _("Remaining time on %(q)s × %(name)s after %(when)s")
                % {"q": quantity, "name": price.nickname or price.product.name, "when": when},
                amount, price, quantity, now, end,
            ))
    return Proration(credits, charges)
