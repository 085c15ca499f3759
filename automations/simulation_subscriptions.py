"""Subscribers for `manage.py simulate --subscriptions SHARE`: a share of the simulated
population subscribes (monthly, or yearly for `yearly` of them) instead of receiving
one-off monthly invoices, so that a simulation rehearses renewals, their collection and
what the billing settings do to a subscription after its last failed retry.

Kept apart from simulation.py (which only asks for it): draws come from a generator of
their own, so the rest of the population is the same with or without subscribers."""

import random
from collections import Counter

from django.db.models import Count

from customers.actors import Actor
from subscriptions.models import Subscription
from subscriptions.services import price_create, product_create, subscription_create

SIMULATION = Actor.system("simulation")
MONTHLY_MAJOR, YEARLY_MAJOR = 49, 490


def subscribers_make(world, *, share: float, yearly: float, seed: int, currency: str,
                     exponent: int) -> Counter:
    """Subscribe a share of `world.population` at the world's start; the chosen
    SimCustomers get `subscribed = True` (the simulation then makes them no invoices)."""
    if share <= 0:
        return Counter()
    rng = random.Random(seed * 7919 + 17)
    product = product_create(name="Simulated plan", now=world.start, actor=SIMULATION)
    prices = {
        interval: price_create(product=product, currency=currency, interval=interval,
                               unit_amount=major * 10 ** exponent, now=world.start,
                               actor=SIMULATION)
        for interval, major in (("month", MONTHLY_MAJOR), ("year", YEARLY_MAJOR))
    }
    made = Counter()
    for sim in world.population:
        if rng.random() >= share:
            continue
        interval = "year" if rng.random() < yearly else "month"
        subscription_create(customer=sim.customer, items=[(prices[interval], 1)],
                            now=world.start, actor=SIMULATION)
        sim.subscribed = True
        made[interval] += 1
    return made


def subscriptions_report(clock) -> dict:
    return dict(
        Subscription.objects.filter(customer__test_clock=clock).order_by()
        .values_list("status").annotate(n=Count("pk"))
    )
