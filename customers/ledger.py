"""The customer balance ledger: append-only; the cached balance is its running sum."""

from datetime import datetime

from django.db import transaction
from django.utils.translation import gettext as _

from .actors import Actor
from .errors import DomainError
from .models import BalanceTransaction, Customer
from .money import MAX_AMOUNT


def balance_transaction_create(
    *,
    customer: Customer,
    amount: int,
    type: str,
    now: datetime,
    actor: Actor,
    currency: str | None = None,
    description: str = "",
    reference: str = "",
) -> BalanceTransaction:
    """Append one line to the ledger (negative `amount` is credit to the customer)."""
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise DomainError(_("A balance amount is a whole number of minor units."))
    if amount == 0:
        raise DomainError(_("A balance transaction needs a non-zero amount."))
    if abs(amount) > MAX_AMOUNT:
        raise DomainError(_("This amount is too large."))
    if type not in BalanceTransaction.Type.values:
        raise DomainError(_("Unknown balance transaction type %(type)s.") % {"type": type})
    with transaction.atomic():
        locked = (
            Customer.objects.select_for_update().only("balance", "currency").get(pk=customer.pk)
        )
        if currency is not None and currency != locked.currency:
            raise DomainError(
                _("The customer's balance is in %(balance)s, not %(given)s.")
                % {"balance": locked.currency, "given": currency}
            )
        new_balance = locked.balance + amount
        if abs(new_balance) > MAX_AMOUNT:
            raise DomainError(_("This amount is too large."))
        entry = BalanceTransaction.objects.create(
            customer_id=customer.pk,
            type=type,
            amount=amount,
            currency=locked.currency,
            ending_balance=new_balance,
            description=description[:300],
            reference=reference,
            actor=str(actor),
            created_at=now,
        )
        Customer.objects.filter(pk=customer.pk).update(balance=new_balance)
    customer.balance = new_balance
    return entry
