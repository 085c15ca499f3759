"""Subscription domain functions: products and prices, creating, canceling, pausing,
resuming, reactivating and changing subscriptions. Interfaces (admin, tasks, commands,
automations) call these; each refuses bad input with a DomainError and changes nothing.
"""

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils.translation import gettext as _

from customers.actors import Actor
from customers.errors import DomainError
from customers.ledger import balance_transaction_create
from customers.models import BalanceTransaction, Customer, PaymentMethod
from customers.money import MAX_AMOUNT, is_int
from invoices.events import events_save
from invoices.models import MAX_QUANTITY, Invoice
from invoices.services import invoice_create, invoice_finalize, invoice_line_add

from . import periods
from .models import (
    Price,
    PriceCurrencyOption,
    Product,
    Subscription,
    SubscriptionInvoice,
    SubscriptionItem,
)
from .notices import notice_days, upcoming_notice_at
from .proration import prorations_compute
from .transitions import FINAL, S, change_event, subscription_transition

TRIAL_WILL_END_BEFORE = timedelta(days=3)  # Stripe's customer.subscription.trial_will_end
INCOMPLETE_EXPIRES_AFTER = timedelta(hours=23)
MAX_ITEMS = 20
PRORATION_BEHAVIORS = ("create_prorations", "always_invoice", "none")


# --- products and prices --------------------------------------------------------------


def _full_clean(obj, exclude=None) -> None:
    try:
        obj.full_clean(exclude=exclude, validate_unique=False, validate_constraints=False)
    except ValidationError as error:
        raise DomainError("; ".join(error.messages)) from None


def product_create(
    *, name: str, now: datetime, actor: Actor, description: str = "", metadata=None
) -> Product:
    product = Product(name=name, description=description, metadata=metadata or {},
                      created_at=now)
    _full_clean(product)
    product.save()
    return product


def price_create(
    *,
    product: Product,
    currency: str,
    unit_amount: int,
    now: datetime,
    actor: Actor,
    interval: str = "month",
    interval_count: int = 1,
    type: str = Price.Type.RECURRING,
    tax_behavior: str = Price.TaxBehavior.EXCLUSIVE,
    nickname: str = "",
    tax_rates: Iterable = (),
    currency_options: dict[str, int] | None = None,
) -> Price:
    """`currency_options`: {currency: unit amount} besides the price's own (Stripe's
    currency_options)."""
    if type not in Price.Type.values:
        raise DomainError(_("Unknown price type %(t)s.") % {"t": type})
    if not is_int(unit_amount) or unit_amount < 0 or unit_amount > MAX_AMOUNT:
        raise DomainError(_("A price is a whole, non-negative amount of minor units."))
    if type == Price.Type.RECURRING:
        periods.interval_check(interval, interval_count)
    else:
        interval, interval_count = "", 1
    rates = list(tax_rates)
    inclusive = tax_behavior == Price.TaxBehavior.INCLUSIVE
    if any(rate.inclusive != inclusive for rate in rates):
        raise DomainError(_("The price's tax rates must match its tax behavior."))
    price = Price(
        product=product, currency=(currency or "").upper(), unit_amount=unit_amount, type=type,
        recurring_interval=interval, recurring_interval_count=interval_count,
        tax_behavior=tax_behavior, nickname=nickname, created_at=now,
    )
    _full_clean(price, exclude=["product"])
    options = currency_options_check(price, currency_options or {})
    with transaction.atomic():
        price.save()
        price.tax_rates.set(rates)
        for option in options:
            option.price = price
        PriceCurrencyOption.objects.bulk_create(options)
    return price


def currency_options_check(price: Price, options: dict) -> list[PriceCurrencyOption]:
    """The unsaved options of `price` ({currency: unit amount}), or a DomainError."""
    built, seen = [], set()
    for currency, amount in options.items():
        code = (currency or "").strip().upper() if isinstance(currency, str) else currency
        if not isinstance(code, str) or not code:
            raise DomainError(_("A currency option needs a currency code."))
        if code in seen:
            raise DomainError(_("%(c)s is given twice among the currency options.") % {"c": code})
        seen.add(code)
        if code == price.currency:
            raise DomainError(
                _("%(c)s is the price's own currency: its amount is the price's unit amount.")
                % {"c": code}
            )
        if not is_int(amount) or amount < 0 or amount > MAX_AMOUNT:
            raise DomainError(
                _("The amount in %(c)s must be a whole, non-negative amount of minor units.")
                % {"c": code}
            )
        option = PriceCurrencyOption(currency=code, unit_amount=amount)
        _full_clean(option, exclude=["price"])
        built.append(option)
    return built


def price_currency_options_set(
    price: Price, options: dict[str, int], *, now: datetime, actor: Actor
) -> Price:
    """Replace the price's currency options. A currency that subscriptions bill in stays
    (removing it would leave them without an amount)."""
    built = currency_options_check(price, options)
    with transaction.atomic():
        locked = Price.objects.select_for_update().get(pk=price.pk)
        removed = {o.currency for o in locked.currency_options.all()} - {o.currency for o in built}
        in_use = sorted(
            SubscriptionItem.objects.filter(price=locked, subscription__currency__in=removed)
            .exclude(subscription__status__in=FINAL)
            .values_list("subscription__currency", flat=True).distinct()
        )
        if in_use:
            raise DomainError(
                _("Subscriptions bill this price in %(c)s: its amount in it cannot be removed.")
                % {"c": ", ".join(in_use)}
            )
        PriceCurrencyOption.objects.filter(price=locked).delete()
        for option in built:
            option.price = locked
        PriceCurrencyOption.objects.bulk_create(built)
    if hasattr(price, "_prefetched_objects_cache"):
        price._prefetched_objects_cache.pop("currency_options", None)
    return price


def invoice_line_add_price(invoice: Invoice, *, price: Price, quantity: int = 1):
    """A line on a draft invoice from a price of the catalogue (a one-off price, or a
    recurring one billed once): its product's name, amount and tax rates."""
    unit_amount = price.amount_in(invoice.currency)
    if unit_amount is None:
        raise DomainError(
            _("%(p)s is in %(pc)s but this invoice is in %(ic)s.")
            % {"p": price, "pc": ", ".join(price.currencies()), "ic": invoice.currency}
        )
    if not (price.active and price.product.active):
        raise DomainError(
            _("%(p)s is archived: it keeps its subscriptions but takes no new ones.")
            % {"p": price}
        )
    return invoice_line_add(
        invoice, description=price.nickname or price.product.name, quantity=quantity,
        unit_amount=unit_amount, tax_rates=list(price.tax_rates.all()),
    )


# --- checks shared by create and change -------------------------------------------------


def items_check(customer: Customer, items: list[tuple[Price, int]], *, new: bool) -> None:
    """The rules every subscription's items follow. `new`: prices must be active."""
    if not items:
        raise DomainError(_("A subscription needs at least one price."))
    if len(items) > MAX_ITEMS:
        raise DomainError(_("A subscription has at most %(n)s items.") % {"n": MAX_ITEMS})
    seen = set()
    for price, quantity in items:
        if not is_int(quantity) or not 1 <= quantity <= MAX_QUANTITY:
            raise DomainError(
                _("Quantity must be a whole number between 1 and %(max)s (got %(q)s).")
                % {"max": f"{MAX_QUANTITY:,}", "q": quantity}
            )
        if price.type != Price.Type.RECURRING:
            raise DomainError(_("%(p)s is a one-off price, not a recurring one.") % {"p": price})
        periods.interval_check(price.recurring_interval, price.recurring_interval_count)
        if new and not (price.active and price.product.active):
            raise DomainError(
                _("%(p)s is archived: it keeps its subscriptions but takes no new ones.")
                % {"p": price}
            )
        if price.amount_in(customer.currency) is None:
            raise DomainError(
                _("%(p)s is in %(pc)s but %(c)s is billed in %(cc)s.")
                % {"p": price, "pc": ", ".join(price.currencies()), "c": customer,
                   "cc": customer.currency}
            )
        if price.pk in seen:
            raise DomainError(_("%(p)s appears twice; set its quantity instead.") % {"p": price})
        seen.add(price.pk)
    intervals = {(p.recurring_interval, p.recurring_interval_count) for p, _q in items}
    if len(intervals) > 1:
        raise DomainError(_("All the prices of a subscription bill on the same interval."))
    if sum(price.amount_in(customer.currency) * quantity for price, quantity in items) > (
        MAX_AMOUNT
    ):
        raise DomainError(_("This subscription's amount is too large."))


def subscription_lock(subscription: Subscription) -> Subscription:
    """Lock the subscription for a change, its customer first: the order a payment takes
    (invoice and customer, then the subscription), so that the two cannot deadlock (the
    renewal sweep never waits for either: see renewals._customers_claim)."""
    list(Customer.objects.select_for_update().filter(pk=subscription.customer_id)
         .values_list("pk", flat=True))
    return Subscription.objects.select_for_update().get(pk=subscription.pk)


def _not_final(subscription: Subscription, verb: str) -> None:
    if subscription.status in FINAL:
        raise DomainError(
            _("This subscription is %(s)s: it cannot be %(verb)s.")
            % {"s": subscription.get_status_display().lower(), "verb": verb}
        )


def _interval(subscription: Subscription) -> tuple[str, int]:
    price = subscription.items.select_related("price").first().price
    return price.recurring_interval, price.recurring_interval_count


def period_end_of(subscription: Subscription, n: int, interval=None) -> datetime:
    interval, count = interval or _interval(subscription)
    return periods.period_end(subscription.billing_cycle_anchor, interval, count, n)


# --- create -----------------------------------------------------------------------------


def subscription_create(
    *,
    customer: Customer,
    items: list[tuple[Price, int]],
    now: datetime,
    actor: Actor,
    collection_method: str = Invoice.CollectionMethod.CHARGE_AUTOMATICALLY,
    days_until_due: int | None = None,
    default_payment_method: PaymentMethod | None = None,
    trial_end: datetime | None = None,
    trial_period_days: int | None = None,
    metadata: dict | None = None,
) -> Subscription:
    """Subscribe `customer` to `items` (price, quantity). Without a trial the first
    invoice is created and finalized now; a charged subscription stays `incomplete`
    until it is paid (23 hours at most), a send-invoice one is active at once."""
    items = [(price, quantity) for price, quantity in items]
    items_check(customer, items, new=True)
    if collection_method not in Invoice.CollectionMethod.values:
        raise DomainError(_("Unknown collection method %(m)s.") % {"m": collection_method})
    if default_payment_method is not None and default_payment_method.customer_id != customer.pk:
        raise DomainError(_("This payment method belongs to another customer."))
    if trial_period_days is not None:
        if trial_end is not None:
            raise DomainError(_("Give a trial end or a number of trial days, not both."))
        if not is_int(trial_period_days) or not 1 <= trial_period_days <= 730:
            raise DomainError(_("A trial lasts 1 to 730 days."))
        trial_end = now + timedelta(days=trial_period_days)
    if trial_end is not None and trial_end <= now:
        raise DomainError(_("The trial end %(t)s is in the past.") % {"t": trial_end.isoformat()})
    interval = (items[0][0].recurring_interval, items[0][0].recurring_interval_count)
    anchor = trial_end or now
    subscription = Subscription(
        customer=customer, currency=customer.currency, collection_method=collection_method,
        days_until_due=days_until_due, default_payment_method=default_payment_method,
        billing_cycle_anchor=anchor, created_at=now, metadata=metadata or {},
    )
    if trial_end is not None:
        subscription.status = S.TRIALING
        subscription.trial_start, subscription.trial_end = now, trial_end
        subscription.current_period_start, subscription.current_period_end = now, trial_end
        subscription.period_index = 0
        notice = trial_end - TRIAL_WILL_END_BEFORE
        subscription.notice_at = notice if notice > now else None
    else:
        subscription.status = S.INCOMPLETE
        subscription.current_period_start = now
        subscription.current_period_end = periods.period_end(anchor, *interval, 1)
        subscription.period_index = 1
        subscription.notice_at = upcoming_notice_at(
            notice_days()(*interval), subscription.current_period_end, now
        )
    _full_clean(subscription, exclude=["customer", "default_payment_method", "latest_invoice"])
    with transaction.atomic():
        subscription.save()
        SubscriptionItem.objects.bulk_create(
            SubscriptionItem(subscription=subscription, price=price, quantity=quantity,
                             created_at=now)
            for price, quantity in items
        )
        events_save([change_event(
            subscription, "customer.subscription.created", {}, now=now, actor=actor,
            extra={"items": _items_data(items), **_period_data(subscription)},
        )])
        if trial_end is None:
            _first_invoice(subscription, items, now=now, actor=actor)
    return subscription


def _items_data(items) -> list[dict]:
    return [{"price": price.pk, "quantity": quantity} for price, quantity in items]


def _period_data(subscription: Subscription) -> dict:
    return {
        "current_period_start": subscription.current_period_start.isoformat(),
        "current_period_end": subscription.current_period_end.isoformat(),
        "trial_end": subscription.trial_end.isoformat() if subscription.trial_end else None,
    }


def line_description(
    price: Price, quantity: int, start: datetime, end: datetime, template: str | None = None
) -> str:
    """`template`: the translated text, when describing many lines (looked up once)."""
    return (template or _("%(q)s × %(name)s (%(start)s – %(end)s)")) % {
        "q": quantity, "name": price.nickname or price.product.name,
        "start": f"{start:%Y-%m-%d}", "end": f"{end:%Y-%m-%d}",
    }


def _first_invoice(subscription, items, *, now, actor) -> Invoice:
    start, end = subscription.current_period_start, subscription.current_period_end
    invoice = subscription_invoice_create(
        subscription, now=now, actor=actor, reason=Invoice.BillingReason.SUBSCRIPTION_CREATE,
        lines=[(line_description(price, quantity, start, end), price, quantity,
                price.amount_in(subscription.currency), start, end)
               for price, quantity in items],
        period=(start, end),
    )
    invoice_finalize(invoice, now=now, actor=actor)
    target = S.INCOMPLETE
    if invoice.status == Invoice.Status.PAID or (
        subscription.collection_method == Invoice.CollectionMethod.SEND_INVOICE
    ):
        target = S.ACTIVE
    if target != subscription.status:
        subscription_transition(subscription, target, now=now, actor=actor,
                                data={"invoice": invoice.pk})
    return invoice


def subscription_invoice_create(
    subscription: Subscription, *, now: datetime, actor: Actor, reason: str, lines: list,
    period: tuple[datetime, datetime] | None = None, auto_advance: bool = True,
) -> Invoice:
    """One invoice of the subscription (the one-row path), its lines being
    (description, price, quantity, unit_amount, start, end[, proration]). `period`: the
    billed period
    (recorded once, a unique constraint says so)."""
    invoice = invoice_create(
        customer=subscription.customer, now=now, actor=actor,
        collection_method=subscription.collection_method,
        days_until_due=subscription.days_until_due, auto_advance=auto_advance,
        subscription_id=subscription.pk, billing_reason=reason,
        default_payment_method=subscription.default_payment_method,
    )
    for description, price, quantity, unit_amount, start, end, *proration in lines:
        invoice_line_add(
            invoice, description=description, quantity=quantity, unit_amount=unit_amount,
            tax_rates=list(price.tax_rates.all()), period_start=start.date(),
            period_end=end.date(), proration=bool(proration and proration[0]),
        )
    start, end = period or (now, now)
    SubscriptionInvoice.objects.create(
        subscription=subscription, invoice=invoice, billing_reason=reason,
        period_start=start, period_end=end,
    )
    Subscription.objects.filter(pk=subscription.pk).update(latest_invoice=invoice)
    subscription.latest_invoice = invoice
    invoice.refresh_from_db()
    return invoice


# --- cancel, reactivate -------------------------------------------------------------------


def subscription_cancel(
    subscription: Subscription,
    *,
    now: datetime,
    actor: Actor,
    at_period_end: bool = False,
    prorate: bool = False,
    reason: str = "",
    feedback: str = "",
    comment: str = "",
) -> Subscription:
    """Cancel now, or at the end of the current period. `prorate` (now only): the unused
    time of the current period is credited to the customer's balance."""
    reason = reason or Subscription.CancellationReason.REQUESTED
    if reason not in Subscription.CancellationReason.values:
        raise DomainError(_("Unknown cancellation reason %(r)s.") % {"r": reason})
    if feedback and feedback not in Subscription.Feedback.values:
        raise DomainError(_("Unknown cancellation feedback %(f)s.") % {"f": feedback})
    if at_period_end and prorate:
        raise DomainError(_("Nothing to prorate when canceling at the end of the period."))
    details = {
        "cancellation_reason": reason, "cancellation_feedback": feedback,
        "cancellation_comment": comment[:2000], "canceled_at": now,
    }
    with transaction.atomic():
        locked = subscription_lock(subscription)
        if locked.status == S.CANCELED:
            raise DomainError(_("This subscription is already canceled."))
        _not_final(locked, _("canceled"))
        if at_period_end:
            if locked.cancel_at_period_end:
                raise DomainError(
                    _("This subscription is already set to cancel at the end of its period.")
                )
            subscription_transition(
                locked, locked.status, now=now, actor=actor,
                fields={**details, "cancel_at_period_end": True,
                        "cancel_at": locked.current_period_end},
            )
        else:
            if prorate and locked.status in (S.ACTIVE, S.PAST_DUE, S.UNPAID):
                _credit_unused_time(locked, now=now, actor=actor)
            subscription_transition(
                locked, S.CANCELED, now=now, actor=actor,
                fields={**details, "ended_at": now, "notice_at": None,
                        "cancel_at": locked.cancel_at or now},
            )
    _copy(locked, subscription)
    return subscription


def _credit_unused_time(subscription: Subscription, *, now, actor) -> int:
    items = [(item.price, item.quantity) for item in subscription.items.select_related("price")]
    credit = sum(
        line.amount for line in prorations_compute(subscription, items, [], now=now).credits
    )
    if credit:
        balance_transaction_create(
            customer=subscription.customer, amount=-credit,
            type=BalanceTransaction.Type.ADJUSTMENT, now=now, actor=actor,
            description=_("Unused time of subscription %(s)s") % {"s": subscription},
            reference=f"subscription:{subscription.pk}",
        )
    return credit


def subscription_reactivate(subscription: Subscription, *, now: datetime, actor: Actor):
    """Undo a cancellation set for the end of the period (before it happens)."""
    with transaction.atomic():
        locked = subscription_lock(subscription)
        _not_final(locked, _("reactivated"))
        if not locked.cancel_at_period_end and locked.cancel_at is None:
            raise DomainError(_("This subscription is not set to cancel: nothing to reactivate."))
        subscription_transition(
            locked, locked.status, now=now, actor=actor,
            fields={"cancel_at_period_end": False, "cancel_at": None, "canceled_at": None,
                    "cancellation_reason": "", "cancellation_feedback": "",
                    "cancellation_comment": ""},
        )
    _copy(locked, subscription)
    return subscription


# --- pause, resume, unpaid --------------------------------------------------------------


def subscription_pause_collection(
    subscription: Subscription,
    *,
    now: datetime,
    actor: Actor,
    behavior: str,
    resumes_at: datetime | None = None,
) -> Subscription:
    """Pause collection: renewals still come, as drafts kept aside (keep_as_draft),
    or finalized and at once marked uncollectible or voided."""
    if behavior not in Subscription.PauseBehavior.values:
        raise DomainError(
            _("Choose how invoices are handled while paused: keep_as_draft, "
              "mark_uncollectible or void.")
        )
    if resumes_at is not None and resumes_at <= now:
        raise DomainError(_("The resume date must be in the future."))
    with transaction.atomic():
        locked = subscription_lock(subscription)
        _not_final(locked, _("paused"))
        if locked.status == S.PAUSED:
            raise DomainError(_("This subscription is already paused."))
        if locked.status == S.INCOMPLETE:
            raise DomainError(_("An incomplete subscription cannot be paused: it is not paid yet."))
        subscription_transition(
            locked, S.PAUSED, now=now, actor=actor,
            fields={"pause_collection": behavior, "pause_resumes_at": resumes_at},
        )
    _copy(locked, subscription)
    return subscription


def subscription_resume(subscription: Subscription, *, now: datetime, actor: Actor):
    with transaction.atomic():
        locked = subscription_lock(subscription)
        _not_final(locked, _("resumed"))
        if locked.status != S.PAUSED:
            raise DomainError(_("Only a paused subscription can be resumed."))
        subscription_transition(
            locked, S.ACTIVE, now=now, actor=actor,
            fields={"pause_collection": "", "pause_resumes_at": None},
        )
    _copy(locked, subscription)
    return subscription


def subscription_mark_unpaid(subscription: Subscription, *, now: datetime, actor: Actor):
    """Past due for good: renewal invoices keep coming, as drafts that are not collected."""
    with transaction.atomic():
        locked = subscription_lock(subscription)
        _not_final(locked, _("marked unpaid"))
        if locked.status != S.PAST_DUE:
            raise DomainError(
                _("Only a past-due subscription can be marked unpaid (this one is %(s)s).")
                % {"s": locked.get_status_display().lower()}
            )
        subscription_transition(locked, S.UNPAID, now=now, actor=actor)
    _copy(locked, subscription)
    return subscription


def _copy(fresh: Subscription, subscription: Subscription) -> None:
    if fresh is subscription:
        return
    for field in Subscription._meta.concrete_fields:
        setattr(subscription, field.attname, getattr(fresh, field.attname))
        if field.is_relation and field.is_cached(subscription):
            field.delete_cached_value(subscription)
