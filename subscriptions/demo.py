"""Demo subscriptions for `seed_demo` (registered in SubscriptionsConfig.ready: invoices'
command runs what higher apps add). Products with monthly and yearly prices in several
currencies, and a subscription in every status staff meet: trialing, active, past due,
unpaid, paused, canceled, set to cancel at the end of its period, yearly subscribers,
with their invoices, all made through the domain functions at moments before now."""

from datetime import timedelta

from customers.actors import Actor
from invoices.collection import collect_due, payment_method_add
from invoices.models import Payment
from invoices.services import invoice_finalize, invoice_record_payment

from .models import Subscription
from .renewals import renewals_bulk
from .services import (
    price_create,
    product_create,
    subscription_cancel,
    subscription_create,
    subscription_mark_unpaid,
    subscription_pause_collection,
)

ACTOR = Actor.system("demo data")
MONTHLY = {"EUR": 49_00, "USD": 59_00, "GBP": 45_00, "JPY": 7_500, "BRL": 249_00,
           "KWD": 15_500}
YEARLY = {"EUR": 490_00, "USD": 590_00, "GBP": 450_00, "KWD": 155_000}
SEAT_OPTIONS = {"USD": 10_00, "GBP": 8_00}  # the seat price's other currencies


def demo_subscriptions_load(*, now, customers: dict) -> str:
    platform = product_create(name="Billing Cloud", now=now, actor=ACTOR,
                              description="The hosted platform")
    seats = product_create(name="Extra seats", now=now, actor=ACTOR)
    monthly = {currency: price_create(product=platform, currency=currency, unit_amount=amount,
                                      interval="month", nickname=f"Cloud monthly {currency}",
                                      now=now, actor=ACTOR)
               for currency, amount in MONTHLY.items()}
    yearly = {currency: price_create(product=platform, currency=currency, unit_amount=amount,
                                     interval="year", nickname=f"Cloud yearly {currency}",
                                     now=now, actor=ACTOR)
              for currency, amount in YEARLY.items()}
    # One price in several currencies (Stripe's currency_options): a customer billed in
    # dollars or pounds subscribes to the same seat price at its amount in that currency.
    seat = price_create(product=seats, currency="EUR", unit_amount=9_00, interval="month",
                        nickname="Seat monthly", now=now, actor=ACTOR,
                        currency_options=SEAT_OPTIONS)
    legacy = price_create(product=platform, currency="EUR", unit_amount=39_00,
                          interval="month", nickname="Cloud monthly EUR (2024)", now=now,
                          actor=ACTOR)
    # On the test clock: staff advance it to watch renewals happen.
    rehearsal = customers["rehearsal"]
    _paid(rehearsal, [(legacy, 1)], at=rehearsal.test_clock.frozen_time - timedelta(days=25))
    legacy.active = False  # archived since: keeps its subscriptions, takes no new ones
    legacy.save(update_fields=["active"])
    ago = lambda **delta: now - timedelta(**delta)  # noqa: E731

    # Active, monthly, two items, paid by bank transfer.
    acme = _paid(customers["acme"], [(monthly["EUR"], 1), (seat, 5)], at=ago(days=20))
    # Trialing: 14 days, started 4 days ago.
    subscription_create(customer=customers["globex"], items=[(monthly["USD"], 3)],
                        now=ago(days=4), actor=ACTOR, trial_period_days=14,
                        collection_method="send_invoice", days_until_due=14)
    # Past due: its renewal's card payment failed 5 days ago. Its seats are billed in
    # pounds: the seat price's currency option.
    initech = _renewal_declined(customers["initech"], [(monthly["GBP"], 1), (seat, 2)],
                                at=ago(days=36))
    # Unpaid: the same, after the last retry (invoices keep coming as drafts).
    padaria = _renewal_declined(customers["padaria"], [(monthly["BRL"], 1)], at=ago(days=40))
    subscription_mark_unpaid(padaria, now=ago(days=2), actor=ACTOR)
    # Paused (collection paused, invoices kept as drafts), resumes in a month.
    tanaka = _paid(customers["tanaka"], [(monthly["JPY"], 2)], at=ago(days=50))
    subscription_pause_collection(tanaka, now=ago(days=10), actor=ACTOR,
                                  behavior="keep_as_draft", resumes_at=now + timedelta(days=30))
    # Canceled: a yearly subscriber who left, with the reason and feedback.
    safat = _paid(customers["safat"], [(yearly["KWD"], 1)], at=ago(days=200))
    subscription_cancel(safat, now=ago(days=12), actor=ACTOR, reason="cancellation_requested",
                        feedback="too_expensive", comment="Moving to a local provider.")
    # Yearly, set to cancel at the end of its period.
    muller = _paid(customers["muller"], [(yearly["EUR"], 1)], at=ago(days=100))
    subscription_cancel(muller, now=ago(days=3), actor=ACTOR, at_period_end=True,
                        feedback="unused")
    demo = Subscription.objects.filter(customer__in=list(customers.values()))
    statuses = ", ".join(f"{status} {demo.filter(status=status).count()}"
                         for status in Subscription.Status.values if demo.filter(status=status))
    ending = demo.filter(cancel_at_period_end=True).count()
    return (f"Subscriptions: {demo.count()} ({statuses}; {ending} set to cancel at period "
            f"end), monthly and yearly, e.g. {acme} and {initech}.")


def _paid(customer, items, *, at) -> Subscription:
    subscription = subscription_create(customer=customer, items=items, now=at, actor=ACTOR,
                                       collection_method="send_invoice", days_until_due=14)
    invoice = subscription.latest_invoice
    invoice_record_payment(invoice, amount=invoice.amount_remaining,
                           method=Payment.Method.BANK_TRANSFER, now=at + timedelta(days=2),
                           actor=ACTOR)
    subscription.refresh_from_db()
    return subscription


def _renewal_declined(customer, items, *, at) -> Subscription:
    """Active for a month, then its renewal charged to a card short of funds."""
    payment_method_add(customer, type="card", gateway_reference="sim_9995", brand="visa",
                       last4="9995", exp_month=12, exp_year=at.year + 2, now=at, actor=ACTOR)
    subscription = subscription_create(customer=customer, items=items, now=at, actor=ACTOR)
    first = subscription.latest_invoice
    invoice_record_payment(first, amount=first.amount_remaining,
                           method=Payment.Method.BANK_TRANSFER, now=at, actor=ACTOR)
    subscription.refresh_from_db()
    end = subscription.current_period_end
    renewals_bulk([subscription.pk], now=end)
    subscription.refresh_from_db()
    renewal = subscription.latest_invoice
    invoice_finalize(renewal, now=end + timedelta(hours=1), actor=ACTOR)
    collect_due(now=end + timedelta(hours=1))
    subscription.refresh_from_db()
    return subscription
