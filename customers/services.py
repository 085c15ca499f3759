"""Customers, their invoice prefixes and test clocks."""

import re
import secrets
from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from .errors import DomainError
from .models import PREFIX_PATTERN, Customer, InvoicePrefix, TestClock


def prefix_suggest(name: str) -> str:
    """A free prefix derived from the name: ACME, then ACME01, ACME02..."""
    letters = re.sub(r"[^A-Z0-9]", "", name.upper())[:8] or "CUS"
    base = (letters + "XXX")[: max(3, len(letters))]
    taken = set(
        InvoicePrefix.objects.filter(prefix__startswith=base).values_list("prefix", flat=True)
    )
    if base not in taken:
        return base
    for n in range(1, 100):
        candidate = f"{base}{n:02d}"
        if candidate not in taken:
            return candidate
    return f"{base[:4]}{secrets.token_hex(4).upper()}"


def prefix_check_available(prefix: str, *, customer: Customer | None = None) -> None:
    if not PREFIX_PATTERN.match(prefix or ""):
        raise DomainError(_("Use 3 to 12 uppercase letters or digits, e.g. ACME or ACME01."))
    owner = (
        InvoicePrefix.objects.filter(prefix=prefix).values_list("customer_id", flat=True).first()
    )
    if owner is not None and (customer is None or owner != customer.pk):
        raise DomainError(
            _("The prefix %(prefix)s has already been used and cannot be used again.")
            % {"prefix": prefix}
        )


def prefix_reserve(customer: Customer) -> None:
    """Record the customer's current prefix as taken for ever (idempotent)."""
    try:
        with transaction.atomic():
            InvoicePrefix.objects.get_or_create(
                prefix=customer.invoice_prefix, defaults={"customer": customer}
            )
    except IntegrityError:
        raise DomainError(
            _("The prefix %(prefix)s has already been used and cannot be used again.")
            % {"prefix": customer.invoice_prefix}
        ) from None
    if InvoicePrefix.objects.get(prefix=customer.invoice_prefix).customer_id != customer.pk:
        raise DomainError(
            _("The prefix %(prefix)s has already been used and cannot be used again.")
            % {"prefix": customer.invoice_prefix}
        )


def customer_create(*, name: str, invoice_prefix: str = "", **fields) -> Customer:
    with transaction.atomic():
        prefix = invoice_prefix or prefix_suggest(name)
        prefix_check_available(prefix)
        customer = Customer(name=name, invoice_prefix=prefix, **fields)
        customer.full_clean()
        try:
            with transaction.atomic():
                customer.save()
        except IntegrityError:
            raise DomainError(
                _("The prefix %(prefix)s has already been used and cannot be used again.")
                % {"prefix": prefix}
            ) from None
        prefix_reserve(customer)
    return customer


def test_clock_advance(clock: TestClock, *, to: datetime) -> TestClock:
    """Move the clock forward. The work this makes due is run by the caller's sweeps."""
    # One conditional UPDATE (it locks the row): a clock stops thousands of times in a
    # simulation, and a transaction with a locked read costs three more round trips.
    if not TestClock.objects.filter(pk=clock.pk, frozen_time__lt=to).update(frozen_time=to):
        current = TestClock.objects.get(pk=clock.pk).frozen_time
        raise DomainError(
            _("A test clock only moves forward: choose a time after %(time)s.")
            % {"time": current.isoformat()}
        )
    clock.frozen_time = to
    return clock


test_clock_advance.__test__ = False
