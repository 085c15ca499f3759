"""`manage.py simulate`: a synthetic population collected on a test clock.

Customers in several time zones, each paying with a test card of the simulated gateway
drawn from CARD_MIX, get a monthly charge_automatically invoice. The clock advances hour
by hour; everything the system would do (finalize, charge, retry, settle, reconcile,
mark uncollectible) runs through the real sweeps. Customers also act as real ones do:
some add a new card days after a hard decline, some authenticate on the hosted page.

Every random draw comes from one seeded generator, in a fixed order, so a seed gives the
same population and the same customer behaviour whatever the retry mode: the modes
differ only in when the system retries. A run happens inside a transaction that is
rolled back (unless `keep`), and starts Smart Retries from their priors alone (what it
learns during the run is what a new installation would learn).
"""

import random
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import Count, Exists, OuterRef, Q, Sum

from customers.actors import Actor
from customers.models import Customer, TestClock
from customers.money import currency_exponent
from customers.services import customer_create
from customers.singletons import singletons_held
from invoices.bulk import DraftLine, drafts_create_bulk
from invoices.collection import invoice_charge, payment_method_add
from invoices.gateways.simulated import CARDS_BY_TOKEN
from invoices.models import Event, Invoice, PaymentAttempt

from . import retry_model, worlds
from .clocks import caught_up_check, clock_advance
from .models import BillingSettings, RetryPolicy, RetryStat
from .notifications.documents import attachments_omitted
from .notifications.models import NotificationSchedule, OutboxMessage
from .retries import retry_calibration
from .simulation_subscriptions import subscribers_make, subscriptions_report

# Share of customers paying with each test card (docs/gateways.md describes the cards).
CARD_MIX = [
    ("sim_4242", 58.0),  # succeeds
    ("sim_0812", 10.0),  # try_again_later, succeeds 08:00-10:59 customer time
    ("sim_0333", 6.0),  # insufficient_funds, recovers 3 days after the first decline
    ("sim_2537", 5.0),  # insufficient_funds, succeeds on paydays (days 1-5 and 25-31)
    ("sim_9995", 5.0),  # insufficient_funds, never recovers
    ("sim_0002", 3.0),  # generic_decline, never recovers
    ("sim_0119", 2.0),  # do_not_honor, never recovers
    ("sim_9979", 1.5),  # stolen_card: hard decline
    ("sim_0069", 1.5),  # expired_card: hard decline
    ("sim_2222", 3.0),  # processing, settles succeeded 2 days later
    ("sim_2230", 1.0),  # processing, settles failed 2 days later
    ("sim_3155", 2.0),  # requires the customer's action
    ("sim_4444", 2.0),  # succeeds (Mastercard)
]
TIMEZONES = [
    ("Europe/Paris", "fr"),
    ("America/New_York", "en"),
    ("America/Sao_Paulo", "pt-BR"),
    ("Europe/London", "en"),
    ("Asia/Tokyo", "en"),
    ("America/Los_Angeles", "en"),
    ("Australia/Sydney", "en"),
]
NEW_CARD_AFTER_HARD_DECLINE = 0.5  # share of customers who add a new card...
NEW_CARD_DELAY_HOURS = (24, 120)  # ...this long after the decline
AUTHENTICATES = 0.6  # share of customers who pay on the hosted page when asked...
AUTHENTICATE_DELAY_HOURS = (6, 72)  # ...this long after being asked
INVOICE_EVERY_DAYS = 30
CUSTOMER = Actor.system("simulated customer")
SIMULATION = Actor.system("simulation")


@dataclass
class SimCustomer:
    customer: Customer
    card: str
    first_invoice_at: datetime
    amount: int  # minor units, each invoice
    responds: bool  # adds a card after a hard decline / authenticates when asked
    delay: timedelta
    profile: "worlds.Profile | None" = None  # a world's customer (None: the card mix)


@dataclass
class Report:
    mode: str
    customers: int
    days: int
    seed: int
    currency: str
    world: str = "cards"
    invoices_by_status: dict = field(default_factory=dict)
    attempts: int = 0
    attempts_by_status: dict = field(default_factory=dict)
    billed: int = 0
    at_risk: int = 0  # total of invoices whose first automatic attempt did not succeed
    recovered: int = 0  # paid on those invoices
    emails_by_status: dict = field(default_factory=dict)
    subscriptions_by_status: dict = field(default_factory=dict)  # --subscriptions only
    seconds: float = 0.0  # the run's, the population's build aside
    hard_declined_charged_again: int = 0  # charges of a method after its hard decline
    calibration: dict = field(default_factory=dict)  # automations.retries.retry_calibration

    @property
    def recovery_rate(self) -> float:
        return self.recovered / self.at_risk if self.at_risk else 0.0


class Rollback(Exception):
    """Raised to undo a simulation that was not asked to be kept."""


@dataclass
class World:
    """What every mode starts from: the clock at its start and the population on it."""
    clock: TestClock
    population: list[SimCustomer]
    start: datetime
    seconds: float = 0.0  # to build it
    name: str = "cards"  # which world (automations.worlds)


def simulate(
    *, customers: int, days: int, seed: int, mode: str, start: datetime, currency: str = "EUR",
    keep: bool = False, on_step=None, attachments: bool = False, world: str = "cards",
) -> Report:
    """One mode; see simulate_modes."""
    return simulate_modes(
        customers=customers, days=days, seed=seed, modes=[mode], start=start,
        currency=currency, keep=keep, on_step=on_step, attachments=attachments, world=world,
    )[0]


def simulate_modes(
    *, customers: int, days: int, seed: int, modes: list[str], start: datetime,
    currency: str = "EUR", keep: bool = False, on_step=None, attachments: bool = False,
    on_world=None, on_report=None, subscriptions: float = 0.0, yearly: float = 0.2,
    world: str = "cards",
) -> list[Report]:
    """Build the population once, then run each mode from it: each run happens in a
    savepoint rolled back before the next, so every mode starts from the same rows.
    Everything is rolled back at the end unless `keep` (one mode only).

    Without `attachments`, the emails go out without their PDFs (each says which it
    left out in a header): rendering a receipt per payment would take most of the run."""
    if keep and len(modes) != 1:
        raise ValueError("keep applies to a single mode")
    worlds.world_check(world)
    reports = []
    try:
        with transaction.atomic(), (nullcontext() if attachments else attachments_omitted()):
            world = _world_make(customers=customers, seed=seed, start=start, currency=currency,
                                name=world)
            if subscriptions:
                world.subscribers = subscribers_make(
                    world, share=subscriptions, yearly=yearly, seed=seed, currency=currency,
                    exponent=currency_exponent(currency),
                )
            if on_world:
                on_world(world)
            for mode in modes:
                try:
                    with transaction.atomic():
                        began = time.perf_counter()
                        report = _run(world, days=days, seed=seed, mode=mode,
                                      currency=currency, on_step=on_step)
                        report.seconds = time.perf_counter() - began
                        reports.append(report)
                        if on_report:
                            on_report(report)
                        if not keep:
                            raise Rollback
                except Rollback:
                    pass
            if not keep:
                raise Rollback
    except Rollback:
        pass
    return reports


def _world_make(*, customers, seed, start, currency, name="cards") -> World:
    began = time.perf_counter()
    rng = random.Random(seed)
    clock = TestClock.objects.create(name=f"Simulation seed {seed}", frozen_time=start)
    population = [_customer_make(rng, n, clock, start, currency, seed, name)
                  for n in range(customers)]
    return World(clock, population, start, time.perf_counter() - began, name)


def _run(world: World, *, days, seed, mode, currency, on_step) -> Report:
    if world.name == "cards":
        return _run_in(world, days=days, seed=seed, mode=mode, currency=currency,
                       on_step=on_step)
    with worlds.world_active(world.name, [sim.profile for sim in world.population], seed):
        return _run_in(world, days=days, seed=seed, mode=mode, currency=currency,
                       on_step=on_step)


def _run_in(world: World, *, days, seed, mode, currency, on_step) -> Report:
    RetryStat.objects.all().delete()  # learn from this run only (rolled back with it)
    retry_model.model_forget()
    _settings_for(mode, seed)
    clock, population, start = world.clock, world.population, world.start
    # A previous mode's run was rolled back in the database, not in these objects.
    clock.refresh_from_db()
    fresh = Customer.objects.in_bulk([sim.customer.pk for sim in population])
    for sim in population:
        sim.customer = fresh[sim.customer.pk]
    index = {sim.customer.pk: n for n, sim in enumerate(population)}
    end = start + timedelta(days=days)
    invoices_due = sorted(
        ((moment, n) for n, sim in enumerate(population)
         if not getattr(sim, "subscribed", False)  # subscribers are billed by renewals
         for moment in _invoice_moments(sim.first_invoice_at, end)),
    )
    actions: dict[int, datetime] = {}  # customer index -> when it acts (one action each)
    acted: set[int] = set()
    # The settings rows are read once for the run, not at each invoice and clock stop
    # (customers.singletons: a save of one makes it read again).
    with singletons_held():
        _hours_run(world, population, index, invoices_due, actions, acted, end, on_step)
    report = _report(mode, len(population), days, seed, currency, clock)
    report.world = world.name
    return report


def _hours_run(world, population, index, invoices_due, actions, acted, end, on_step) -> None:
    clock, hour = world.clock, world.start
    next_invoice = 0
    analyzed: dict[str, int] = {}  # table -> its size in pages when last analyzed
    while hour < end:
        billed = []
        while next_invoice < len(invoices_due) and invoices_due[next_invoice][0] <= hour:
            billed.append(population[invoices_due[next_invoice][1]])
            next_invoice += 1
        if billed:
            _invoices_make(billed, hour)
        _customers_act(population, actions, acted, hour)
        if hour.hour == 0:
            # What the run wrote since the last advance falls due at the clock's time or
            # later (so each advance reads from there: caught_up): checked once a day.
            caught_up_check(clock)
        hour += timedelta(hours=1)
        # The run is one transaction, rolled back at its end: the sweeps' shorter path.
        done = clock_advance(clock, to=hour, caught_up=True, in_one_transaction=True)
        collected = done["collection"]
        if collected.get("failed") or collected.get("requires_action"):
            # Holds come only from declines and authentication requests.
            _actions_plan(population, index, actions, acted, clock)
        if hour.hour == 0:
            _statistics_refresh(analyzed)
        if on_step:
            on_step(hour)


STATISTICS_GROWTH = 1.25  # a table is analyzed again once it has grown by this factor


def _statistics_refresh(analyzed: dict[str, int]) -> None:
    """The run's rows are uncommitted: without fresh statistics PostgreSQL plans its
    queries for the empty tables it last analyzed, and each step gets slower.

    Checked once a simulated day, but a table is analyzed only when it has grown by
    STATISTICS_GROWTH since it last was (its size in pages, dead row versions included:
    `analyzed` holds them for the run). Between two analyses the planner scales the row
    counts it knows by the table's current size; what goes stale is only the shape of
    the values. Analyzing every table every day cost close to a second a day at 2,000
    customers, more as the tables grow; by growth, the analyses thin out as they get
    dearer."""
    if connection.vendor != "postgresql":
        return
    models = (Invoice, PaymentAttempt, Customer, Event, NotificationSchedule, OutboxMessage)
    tables = [model._meta.db_table for model in models]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name, pg_relation_size(to_regclass(name)) "
            "/ current_setting('block_size')::int FROM unnest(%s::text[]) AS name",
            [tables],
        )
        pages = dict(cursor.fetchall())
        grown = [table for table in tables
                 if table not in analyzed or pages[table] > analyzed[table] * STATISTICS_GROWTH]
        if grown:
            cursor.execute(f"ANALYZE {', '.join(grown)}")
            analyzed.update({table: pages[table] for table in grown})


def _settings_for(mode: str, seed: int) -> None:
    policy = RetryPolicy.objects.create(
        name=f"Simulation {mode} {seed}", mode=mode, max_retries=8, window_days=14,
        after_last_retry=RetryPolicy.AfterLastRetry.LEAVE_PAST_DUE,
    )
    settings = BillingSettings.load()
    settings.default_retry_policy = policy
    settings.automatic_collection = True
    settings.save()
    RetryPolicy.objects.exclude(pk=policy.pk).update(customer_segments=[])


def _customer_make(rng, n, clock, start, currency, seed, name="cards") -> SimCustomer:
    if name != "cards":
        return _world_customer_make(rng, n, clock, start, currency, seed, name)
    tokens, weights = zip(*CARD_MIX, strict=True)
    card = rng.choices(tokens, weights)[0]
    timezone, locale = rng.choice(TIMEZONES)
    first_at = start + timedelta(hours=rng.randrange(INVOICE_EVERY_DAYS * 24))
    major = rng.randint(20, 500)
    responds = rng.random()
    delay_hours = rng.randint(*NEW_CARD_DELAY_HOURS)
    customer = customer_create(
        name=f"Simulated customer {n + 1}",
        email=f"customer{n + 1}@simulation.example",
        currency=currency,
        timezone=timezone,
        preferred_locale=locale,
        invoice_prefix=f"S{seed % 1000:03d}{n + 1:06d}"[-12:],
        test_clock=clock,
    )
    token = CARDS_BY_TOKEN[card]
    payment_method_add(
        customer, type="card", gateway_reference=card, brand=token.brand, last4=token.last4,
        exp_month=12, exp_year=start.year + 3, now=start, actor=SIMULATION,
    )
    threshold = AUTHENTICATES if token.kind == "action" else NEW_CARD_AFTER_HARD_DECLINE
    if token.kind == "action":
        delay_hours = rng.randint(*AUTHENTICATE_DELAY_HOURS)
    return SimCustomer(
        customer=customer, card=card, first_invoice_at=first_at,
        amount=major * 10 ** currency_exponent(currency),
        responds=responds < threshold, delay=timedelta(hours=delay_hours),
    )


def _world_customer_make(rng, n, clock, start, currency, seed, name) -> SimCustomer:
    """A customer of one of automations.worlds' worlds, with a card of its own."""
    timezone, locale = rng.choice(TIMEZONES)
    first_at = start + timedelta(hours=rng.randrange(INVOICE_EVERY_DAYS * 24))
    major = rng.randint(20, 500)
    profile = worlds.profile_make(name, rng, n, timezone)
    customer = customer_create(
        name=f"Simulated customer {n + 1}", email=f"customer{n + 1}@simulation.example",
        currency=currency, timezone=timezone, preferred_locale=locale,
        invoice_prefix=f"S{seed % 1000:03d}{n + 1:06d}"[-12:], test_clock=clock,
    )
    payment_method_add(
        customer, type="card", gateway_reference=profile.token, brand="visa",
        last4=f"{n % 10000:04d}", exp_month=12, exp_year=start.year + 3, now=start,
        actor=SIMULATION,
    )
    return SimCustomer(
        customer=customer, card=profile.token, first_invoice_at=first_at,
        amount=major * 10 ** currency_exponent(currency), responds=profile.responds,
        delay=profile.delay, profile=profile,
    )


def _invoice_moments(first: datetime, end: datetime):
    moment = first
    while moment < end:
        yield moment
        moment += timedelta(days=INVOICE_EVERY_DAYS)


def _invoices_make(billed: list[SimCustomer], now: datetime) -> None:
    """The hour's invoices, in one go (as invoice_create and invoice_line_add would make
    them one by one, in the same order)."""
    drafts_create_bulk(
        [(sim.customer, [DraftLine("Subscription", sim.amount)]) for sim in billed],
        now=now, actor=SIMULATION,
        collection_method=Invoice.CollectionMethod.CHARGE_AUTOMATICALLY, auto_advance=True,
    )


def _actions_plan(population, index, actions, acted, clock) -> None:
    """Customers who respond act some time after being asked (a hard decline, an
    authentication request): decided by their draws, scheduled from what just happened."""
    for customer_id in set(waiting_for_customers(clock).values_list("customer_id", flat=True)):
        n = index[customer_id]
        sim = population[n]
        if sim.responds and n not in actions and n not in acted:
            actions[n] = clock.frozen_time + sim.delay


def waiting_for_customers(clock):
    """The clock's open invoices that wait for their customer to act (invoice_clock_held_idx
    reads them, without the entries of their earlier versions)."""
    return Invoice.objects.filter(
        test_clock=clock, status=Invoice.Status.OPEN,
        payment_hold__in=["hard_decline", "requires_action"],
    )


def _customers_act(population, actions, acted, now) -> None:
    for n, moment in list(actions.items()):
        if moment > now:
            continue
        del actions[n]
        acted.add(n)
        sim = population[n]
        if sim.profile is not None:  # a world's customer: a new card of their own
            payment_method_add(
                sim.customer, type="card", gateway_reference=f"{sim.card}_new", brand="visa",
                last4="4242", exp_month=12, exp_year=now.year + 3, now=now, actor=CUSTOMER,
            )
        elif CARDS_BY_TOKEN[sim.card].kind == "action":
            _authenticate(sim.customer, now)
        else:
            card = CARDS_BY_TOKEN["sim_4242"]
            payment_method_add(
                sim.customer, type="card", gateway_reference=card.token, brand=card.brand,
                last4=card.last4, exp_month=12, exp_year=now.year + 3, now=now, actor=CUSTOMER,
            )


def _authenticate(customer: Customer, now: datetime) -> None:
    """The customer pays the held invoices on the hosted page, authenticating there."""
    held = Invoice.objects.filter(
        customer=customer, status=Invoice.Status.OPEN, payment_hold="requires_action"
    )
    for invoice in held:
        invoice_charge(invoice, now=now, actor=CUSTOMER, source=PaymentAttempt.Source.CUSTOMER,
                       gateway_token="sim_4242", card_brand="visa", card_last4="4242")


def _report(mode, customers, days, seed, currency, clock) -> Report:
    invoices = Invoice.objects.filter(test_clock=clock).exclude(status="draft")
    attempts = PaymentAttempt.objects.filter(test_clock=clock, source="automatic")
    report = Report(mode=mode, customers=customers, days=days, seed=seed, currency=currency)
    report.invoices_by_status = dict(
        invoices.order_by().values_list("status").annotate(n=Count("pk"))
    )
    report.attempts = attempts.count()
    charged = PaymentAttempt.objects.filter(customer__test_clock=clock)
    report.hard_declined_charged_again = charged.filter(Exists(
        PaymentAttempt.objects.filter(payment_method=OuterRef("payment_method"),
                                      hard_decline=True, created_at__lt=OuterRef("created_at"))
    )).count()
    report.calibration = retry_calibration(test_clock=clock)
    report.attempts_by_status = dict(
        attempts.order_by().values_list("status").annotate(n=Count("pk"))
    )
    report.billed = invoices.aggregate(s=Sum("amount_due"))["s"] or 0
    # At risk: the first automatic attempt did not take the money (declined, held,
    # processing that failed, authentication asked).
    at_risk = invoices.filter(Q(attempt_count__gt=1) | ~Q(last_payment_error=""))
    totals = at_risk.aggregate(due=Sum("amount_due"), paid=Sum("amount_paid"))
    report.at_risk = totals["due"] or 0
    report.recovered = totals["paid"] or 0
    # Delivered through the configured email backend as the clock ran (the outbox is
    # part of the clock's work).
    report.emails_by_status = dict(
        OutboxMessage.objects.filter(test_clock=clock).order_by()
        .values_list("kind").annotate(n=Count("pk"))
    )
    report.subscriptions_by_status = subscriptions_report(clock)
    return report
