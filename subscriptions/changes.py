"""Changing a subscription's items (prices and quantities) mid-period, with Stripe's
prorations: a credit line for the unused time of the old items and a charge line for
the remaining time of the new ones, each with its period, on the next invoice
(create_prorations), on an invoice now (always_invoice) or nowhere (none); a preview
("upcoming invoice") before applying; another billing interval restarts the cycle now
with an invoice now."""

from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from django.db import transaction
from django.utils.translation import gettext as _

from customers.actors import Actor
from customers.errors import DomainError
from invoices.models import Invoice
from invoices.services import invoice_finalize

from . import periods
from .models import PendingItem, Price, Subscription, SubscriptionItem
from .notices import notice_days, upcoming_notice_at
from .proration import Proration, prorations_compute
from .services import (
    PRORATION_BEHAVIORS,
    _copy,
    _interval,
    _items_data,
    items_check,
    line_description,
    period_end_of,
    subscription_invoice_create,
    subscription_lock,
)
from .transitions import FINAL, S, subscription_transition

# --- changes and their prorations --------------------------------------------------------


class PreviewLine(NamedTuple):
    description: str
    amount: int  # minor units, before tax; negative: a proration credit
    start: datetime
    end: datetime
    proration: bool = False


@dataclass
class ChangePreview:
    """What a change would do ("upcoming invoice"): its proration lines (a credit for the
    unused time, a charge for the remaining time, each with its period), what is invoiced
    now, and the next invoice."""

    subscription: Subscription
    proration: Proration
    behavior: str
    invoice_now_lines: list[PreviewLine]
    next_invoice_lines: list[PreviewLine]
    next_invoice_at: datetime
    # Another billing interval: the billing cycle restarts now with an invoice now (Stripe).
    resets_cycle: bool = False
    new_period_end: datetime | None = None

    @property
    def invoice_now_amount(self) -> int:
        """Invoiced at once, before tax; negative: credited to the customer's balance."""
        return sum(line.amount for line in self.invoice_now_lines)

    @property
    def next_invoice_amount(self) -> int:
        """Before tax and before the customer's balance is applied."""
        return sum(line.amount for line in self.next_invoice_lines)

    @property
    def proration_lines(self) -> list[PreviewLine]:
        return [PreviewLine(line.description, -line.amount, line.start, line.end, True)
                for line in self.proration.credits] + [
                PreviewLine(line.description, line.amount, line.start, line.end, True)
                for line in self.proration.charges]


def _change_check(subscription, items, behavior) -> None:
    if behavior not in PRORATION_BEHAVIORS:
        raise DomainError(
            _("Unknown proration behavior %(b)s: create_prorations, always_invoice or none.")
            % {"b": behavior}
        )
    if subscription.status in FINAL:
        raise DomainError(
            _("This subscription is %(s)s: it cannot be changed.")
            % {"s": subscription.get_status_display().lower()}
        )
    current = {item.price_id for item in subscription.items.all()}
    items_check(subscription.customer, items, new=False)
    for price, _quantity in items:
        if price.pk not in current and not (price.active and price.product.active):
            raise DomainError(
                _("%(p)s is archived: it keeps its subscriptions but takes no new ones.")
                % {"p": price}
            )
    if subscription.status == S.PAUSED and _new_interval(subscription, items):
        raise DomainError(
            _("This subscription's collection is paused: resume it before moving it to "
              "another billing interval (that invoices at once).")
        )


def _new_interval(subscription, items) -> tuple[str, int] | None:
    """The items' interval when it is not the subscription's (None: the same)."""
    interval = (items[0][0].recurring_interval, items[0][0].recurring_interval_count)
    return interval if interval != _interval(subscription) else None


def _pending_lines(subscription) -> list[PreviewLine]:
    return [PreviewLine(item.description, item.amount, item.period_start, item.period_end, True)
            for item in subscription.pending_items.filter(invoice__isnull=True)]


def _period_lines(subscription, items, start, end) -> list[PreviewLine]:
    currency = subscription.currency
    return [PreviewLine(line_description(price, quantity, start, end),
                        price.amount_in(currency) * quantity, start, end)
            for price, quantity in items]


def subscription_preview_change(
    subscription: Subscription,
    *,
    items: list[tuple[Price, int]],
    now: datetime,
    proration_behavior: str = "create_prorations",
) -> ChangePreview:
    """The "upcoming invoice" of a change, without changing anything."""
    items = [(price, quantity) for price, quantity in items]
    _change_check(subscription, items, proration_behavior)
    old = [(item.price, item.quantity) for item in subscription.items.select_related("price")]
    trialing = subscription.status == S.TRIALING
    new_interval = _new_interval(subscription, items)
    interval = new_interval or _interval(subscription)
    if new_interval and not trialing:
        # Stripe: another interval restarts the billing cycle now and invoices at once:
        # the credit for the unused time of the old items (unless proration_behavior is
        # none), what was pending, and the new items' first full period.
        proration = (
            Proration([], []) if proration_behavior == "none"
            else Proration(prorations_compute(subscription, old, [], now=now).credits, [])
        )
        end = periods.period_end(now, *interval, 1)
        preview = ChangePreview(subscription, proration, proration_behavior, [], [], end,
                                resets_cycle=True, new_period_end=end)
        preview.invoice_now_lines = (
            preview.proration_lines + _pending_lines(subscription)
            + _period_lines(subscription, items, now, end)
        )
        preview.next_invoice_lines = _period_lines(
            subscription, items, end, periods.period_end(now, *interval, 2)
        )
        return preview
    proration = (
        Proration([], []) if trialing or proration_behavior == "none"
        else prorations_compute(subscription, old, items, now=now)
    )
    start = subscription.current_period_end
    end = period_end_of(subscription, subscription.period_index + 1, interval)
    preview = ChangePreview(subscription, proration, proration_behavior, [], [], start)
    if proration_behavior == "always_invoice":
        preview.invoice_now_lines = preview.proration_lines
    pending = _pending_lines(subscription)
    if proration_behavior == "create_prorations":
        pending += preview.proration_lines
    preview.next_invoice_lines = pending + _period_lines(subscription, items, start, end)
    return preview


def subscription_change(
    subscription: Subscription,
    *,
    items: list[tuple[Price, int]],
    now: datetime,
    actor: Actor,
    proration_behavior: str = "create_prorations",
) -> ChangePreview:
    """Replace the subscription's items (prices and quantities) now. Prorations, to the
    second, as Stripe: a credit line for the unused time of the old items and a charge
    line for the remaining time of the new ones, both on the next invoice
    (create_prorations), on an invoice now (always_invoice), or not at all (none). A
    negative invoice goes to the customer's balance when it is finalized. Another
    billing interval restarts the billing cycle now and invoices at once."""
    items = [(price, quantity) for price, quantity in items]
    with transaction.atomic():
        locked = subscription_lock(subscription)
        locked.customer = subscription.customer
        preview = subscription_preview_change(
            locked, items=items, now=now, proration_behavior=proration_behavior
        )
        old = [(item.price, item.quantity) for item in locked.items.select_related("price")]
        if sorted((p.pk, q) for p, q in old) == sorted((p.pk, q) for p, q in items):
            raise DomainError(_("Nothing changes: these are the subscription's current items."))
        _items_replace(locked, items, now)
        data = {"items": _items_data(items), "previous_attributes": {"items": _items_data(old)},
                "proration_behavior": proration_behavior}
        if preview.resets_cycle:
            _cycle_restart(locked, preview, items, now=now, actor=actor, data=data)
        else:
            if proration_behavior != "none":
                _prorations_apply(locked, preview, now=now, actor=actor)
            subscription_transition(locked, locked.status, now=now, actor=actor, data=data)
    _copy(locked, subscription)
    return preview


def _items_replace(subscription, items, now) -> None:
    wanted = {price.pk: quantity for price, quantity in items}
    current = {item.price_id: item for item in subscription.items.all()}
    subscription.items.exclude(price_id__in=list(wanted)).delete()
    for price, quantity in items:
        item = current.get(price.pk)
        if item is None:
            SubscriptionItem.objects.create(
                subscription=subscription, price=price, quantity=quantity, created_at=now
            )
        elif item.quantity != quantity:
            SubscriptionItem.objects.filter(pk=item.pk).update(quantity=quantity)


def _proration_rows(proration: Proration):
    """(line, signed amount) of the credits (negative) then the charges."""
    return [(line, -line.amount) for line in proration.credits] + [
        (line, line.amount) for line in proration.charges
    ]


def _prorations_apply(subscription, preview: ChangePreview, *, now, actor) -> None:
    rows = _proration_rows(preview.proration)
    if not rows:
        return
    if preview.behavior == "create_prorations":
        PendingItem.objects.bulk_create(
            PendingItem(subscription=subscription, description=line.description[:500],
                        amount=amount, price=line.price, period_start=line.start,
                        period_end=line.end, created_at=now)
            for line, amount in rows
        )
        return
    invoice = subscription_invoice_create(
        subscription, now=now, actor=actor, reason=Invoice.BillingReason.SUBSCRIPTION_UPDATE,
        lines=[(line.description, line.price, 1, amount, line.start, line.end, True)
               for line, amount in rows],
    )
    invoice_finalize(invoice, now=now, actor=actor)


def _cycle_restart(subscription, preview: ChangePreview, items, *, now, actor, data) -> None:
    """Another interval: the anchor moves to now, the period restarts, and one invoice
    now carries the credit for the unused time, the pending items and the new period."""
    pending = list(subscription.pending_items.filter(invoice__isnull=True).select_related(
        "price"))
    end = preview.new_period_end
    interval = (items[0][0].recurring_interval, items[0][0].recurring_interval_count)
    lines = [(line.description, line.price, 1, -line.amount, line.start, line.end, True)
             for line in preview.proration.credits]
    lines += [(item.description, item.price, 1, item.amount, item.period_start,
               item.period_end, True) for item in pending]
    currency = subscription.currency
    lines += [(line_description(price, quantity, now, end), price, quantity,
               price.amount_in(currency), now, end, False) for price, quantity in items]
    subscription_transition(
        subscription, subscription.status, now=now, actor=actor, data=data,
        fields={"billing_cycle_anchor": now, "current_period_start": now,
                "current_period_end": end, "period_index": 1,
                "notice_at": upcoming_notice_at(notice_days()(*interval), end, now)},
    )
    invoice = subscription_invoice_create(
        subscription, now=now, actor=actor, reason=Invoice.BillingReason.SUBSCRIPTION_UPDATE,
        lines=lines, period=(now, end),
    )
    PendingItem.objects.filter(pk__in=[item.pk for item in pending]).update(invoice=invoice)
    invoice_finalize(invoice, now=now, actor=actor)
