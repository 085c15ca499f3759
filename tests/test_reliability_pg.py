"""Automatic collection when things go wrong, with real processes on PostgreSQL: two
workers sweeping the same due invoices, a worker killed at each step of a payment, and
Redis lost in the middle of a real Celery worker's sweep.

Whatever happens, each due invoice is attempted once, each attempt is one charge at the
gateway (the simulated gateway's own ledger, SimulatedCharge), each success is one
payment, and the invoices' amounts agree with the money taken.

The data is committed (transactional tests) so that the child processes, connected to
the same test database, see it. SQLite cannot serve several processes' row locks.
"""

import contextlib
import shutil
import signal
import time
from collections import Counter, defaultdict
from datetime import timedelta

import pytest
from celery import Celery
from django.db import connection, transaction
from kombu.exceptions import OperationalError

from automations import sweeps
from automations.models import BillingSettings, RetryStat
from customers.clock import system_now
from invoices.gateways.models import SimulatedCharge
from invoices.models import Event, Invoice, InvoicingSettings, Payment, PaymentAttempt

from .factories import NOW, add_card, make_charged, make_customer
from .processes import (
    PATIENCE,
    CeleryWorker,
    RedisServer,
    file_wait,
    free_port,
    sweep_together,
)

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="needs PostgreSQL (several processes on one database, row locks): "
        "run with DATABASE_URL=postgres://...",
    ),
    pytest.mark.django_db(transaction=True),
]

S = Invoice.Status
SWEEP_AT = NOW + timedelta(minutes=1)
# Past every retry that Smart Retries plan within their 2-week window, and past the day
# a processing payment settles.
RETRY_TICK = NOW + timedelta(days=15)
# Each test card's attempts, by the end of the first tick (the first attempt) and by the
# end of RETRY_TICK: (attempt statuses, invoice status).
FIRST_TICK = {
    "sim_4242": (["succeeded"], S.PAID),
    "sim_9995": (["failed"], S.OPEN),  # insufficient funds: a retry is planned
    "sim_9979": (["failed"], S.OPEN),  # stolen card: held for a new payment method
    "sim_0333": (["failed"], S.OPEN),  # insufficient funds for its first 3 days
    "sim_2222": (["processing"], S.OPEN),
    "sim_3155": (["requires_action"], S.OPEN),  # held for the customer to authenticate
}
AFTER_RETRIES = {
    **FIRST_TICK,
    "sim_9995": (["failed", "failed"], S.OPEN),  # no retry left in the window: past due
    "sim_0333": (["failed", "succeeded"], S.PAID),
    "sim_2222": (["succeeded"], S.PAID),  # settled, not charged again
}


@pytest.fixture(autouse=True)
def _settings_rows():
    """The singletons exist before the workers start, rather than being raced for."""
    InvoicingSettings.load()
    BillingSettings.load()


def make_due(customers_per_card, invoices_each, now=NOW, cards=tuple(FIRST_TICK)):
    """Due charge_automatically invoices of customers paying with each card, of varied
    amounts, the cards interleaved (every batch of a sweep meets each of them). One
    transaction: one commit rather than hundreds. Returns {invoice pk: card token}."""
    due = {}
    with transaction.atomic():
        customers = []
        for token in cards:
            for _ in range(customers_per_card):
                customers.append((make_customer(), token))
                add_card(customers[-1][0], token, now=now)
        for n in range(invoices_each):
            for customer, token in customers:
                invoice = make_charged(token, now=now, customer=customer,
                                       lines=((1, 1000 + 137 * n),))
                due[invoice.pk] = token
    return due


def attempts_by_invoice(pks):
    grouped = defaultdict(list)
    for attempt in PaymentAttempt.objects.filter(invoice__in=pks).order_by("created_at", "pk"):
        grouped[attempt.invoice_id].append(attempt)
    return grouped


def per_invoice(event_type, pks):
    return Counter(
        Event.objects.filter(type=event_type, invoice__in=pks).values_list("invoice", flat=True)
    )


def assert_each_invoice_charged_once(cards, expected=FIRST_TICK):
    """Every invoice of `cards` ({pk: token}) has exactly the attempts `expected` of its
    card, each one charge at the gateway, and its amounts, payment and events tell the
    same story: one payment and one invoice.paid at most, never paid twice."""
    pks = list(cards)
    invoices = Invoice.objects.in_bulk(pks)
    attempts = attempts_by_invoice(pks)
    charges = SimulatedCharge.objects.in_bulk(field_name="idempotency_key")
    payments = Counter(Payment.objects.filter(invoice__in=pks).values_list("invoice", flat=True))
    wrong = []
    for pk, token in cards.items():
        invoice, made = invoices[pk], attempts[pk]
        statuses, invoice_status = expected[token]
        paid = invoice.total if invoice_status == S.PAID else 0
        seen = (
            [a.status for a in made], invoice.status, invoice.attempt_count,
            [(charges[a.idempotency_key].card_token, charges[a.idempotency_key].amount)
             if a.idempotency_key in charges else None for a in made],
            [a.amount for a in made], invoice.amount_paid, invoice.amount_remaining,
            payments[pk], sum(a.payment.amount for a in made if a.payment),
        )
        meant = (
            statuses, invoice_status, len(statuses), [(token, invoice.total)] * len(statuses),
            [invoice.total] * len(statuses), paid, invoice.total - paid,
            int(bool(paid)), paid,
        )
        if seen != meant:
            wrong.append((pk, token, seen, meant))
    assert wrong == []
    # One charge per attempt, and no charge without its attempt.
    keys = set(PaymentAttempt.objects.values_list("idempotency_key", flat=True))
    assert len(charges) == len(keys) and set(charges) == keys

    def tally(status):
        return {pk: n for pk, token in cards.items()
                if (n := expected[token][0].count(status))}

    assert per_invoice("invoice.paid", pks) == tally("succeeded")
    assert per_invoice("invoice.payment_succeeded", pks) == tally("succeeded")
    assert per_invoice("invoice.payment_failed", pks) == tally("failed")


def expected_counts(cards):
    """What the sweeps of the first tick report, all workers together."""
    tally = Counter(FIRST_TICK[token][0][0] for token in cards.values())
    return {"attempted": len(cards), "succeeded": tally["succeeded"], "failed": tally["failed"],
            "processing": tally["processing"], "requires_action": tally["requires_action"]}


def together(results):
    assert [status for status, _counts, _log in results] == [0] * len(results), results
    counts = Counter()
    for _status, worker_counts, _log in results:
        counts.update(worker_counts)
    return counts


# --- two workers, one set of due invoices ----------------------------------------------


def charging_together(log_path, results):
    """Each worker's share of the attempts, after checking that both charged, and that
    they did it in the same stretch of time: each one's batches began before the other's
    last batch ended (CHARGE_LOG), so their claims took turns in the same rows."""
    batches = defaultdict(list)
    for line in log_path.read_text().splitlines():
        pid, started, ended, count = line.split()
        batches[int(pid)].append((float(started), float(ended), int(count)))
    assert len(batches) == 2, f"only one worker charged: {dict(batches)}"
    first, second = ((min(b[0] for b in runs), max(b[1] for b in runs))
                     for runs in batches.values())
    assert first[0] < second[1] and second[0] < first[1], (
        f"the workers charged one after the other: {dict(batches)}"
    )
    shares = sorted(worker_counts["attempted"] for _s, worker_counts, _log in results)
    assert shares[0] > 0, shares
    return shares


def test_two_worker_processes_sweeping_the_same_due_invoices_attempt_each_once(tmp_path):
    # given 200 due invoices of 20 customers paying with five different test cards, and
    # workers claiming 20 at a time (10 batches: the two take turns in the same rows).
    # Not the stolen card: once it hard-declines, its customer's later invoices are held
    # and never charged (tests/test_hard_declines.py), so how many of them were charged
    # first depends on how the two workers' batches interleave.
    cards = make_due(customers_per_card=4, invoices_each=10,
                     cards=tuple(token for token in FIRST_TICK if token != "sim_9979"))
    log = tmp_path / "charges"
    env = dict(SWEEP_BATCH_SIZE="20", PAYMENT_GATEWAY="tests.crash_gateways.Timed",
               CHARGE_LOG=str(log))

    # when two worker processes, released together, each sweep three times
    results = sweep_together(SWEEP_AT, workers=2, rounds=3, **env)
    counts = together(results)

    # then both were charging at the same moment, each its own share of the invoices
    shares = charging_together(log, results)
    assert sum(shares) == len(cards)
    # and between them they made exactly one attempt per invoice
    assert {key: counts[key] for key in expected_counts(cards)} == expected_counts(cards)
    assert counts["unknown"] == 0
    assert_each_invoice_charged_once(cards)

    # when, two weeks later, two workers sweep again: the retries and the processing
    # payments are due together
    log.unlink()
    results = sweep_together(RETRY_TICK, workers=2, rounds=2, **env)
    counts = together(results)

    # then both retried at the same moment, each soft decline retried once, each
    # processing payment settled once
    charging_together(log, results)
    assert (counts["attempted"], counts["succeeded"], counts["failed"]) == (80, 80, 40)
    assert_each_invoice_charged_once(cards, AFTER_RETRIES)
    # and what Smart Retries learned counts each retry once (increments merged in SQL)
    learned = RetryStat.objects.get(decline_code="insufficient_funds", dimension="all")
    assert (learned.attempts, learned.successes) == (80, 40)


# --- a worker killed in the middle of a payment ------------------------------------------


@pytest.mark.parametrize("gateway, charged_by_the_dead_worker", [
    ("KilledBeforeCharge", False),
    ("KilledAfterCharge", True),
    ("KilledWhileRecording", True),
])
def test_a_worker_killed_mid_payment_is_reconciled_without_a_second_charge(
    gateway, charged_by_the_dead_worker
):
    # given 12 due invoices, two per test card
    cards = make_due(customers_per_card=1, invoices_each=2)

    # when the worker sweeping them is killed (SIGKILL) at that step of the payment
    [(status, counts, log)] = sweep_together(
        SWEEP_AT, workers=1, PAYMENT_GATEWAY=f"tests.crash_gateways.{gateway}"
    )
    assert (status, counts) == (-signal.SIGKILL, None), log

    # then the attempts it committed wait, pending; the gateway has charged them or not
    attempts = PaymentAttempt.objects.filter(invoice__in=list(cards))
    assert sorted(attempts.values_list("invoice", flat=True)) == sorted(cards)
    assert set(attempts.values_list("status", flat=True)) == {"pending"}
    assert SimulatedCharge.objects.count() == (len(cards) if charged_by_the_dead_worker else 0)
    invoices = Invoice.objects.filter(pk__in=list(cards))
    assert set(invoices.values_list("status", "amount_paid", "next_payment_attempt")) == {
        (S.OPEN, 0, None)
    }
    assert not Payment.objects.exists()
    assert not Event.objects.filter(type__startswith="invoice.pay").exists()

    # and a tick within the 10 minutes a slow worker may take leaves them alone
    early = sweeps.collect_payments(now=SWEEP_AT + timedelta(minutes=5))
    assert set(early.values()) == {0}
    assert set(attempts.values_list("status", flat=True)) == {"pending"}

    # when the next tick after that reconciles them with the gateway
    settled_at = SWEEP_AT + timedelta(minutes=11)
    reconciled = sweeps.collect_payments(now=settled_at)

    # then each invoice has its one attempt (no new one), recorded from its one charge
    first_tick = expected_counts(cards)
    assert {key: reconciled[key] for key in first_tick} == {**first_tick, "attempted": 0}
    assert_each_invoice_charged_once(cards)
    charged_at = {SWEEP_AT if charged_by_the_dead_worker else settled_at}
    assert set(SimulatedCharge.objects.values_list("created_at", flat=True)) == charged_at


# --- Redis lost under a real Celery worker ---------------------------------------------


@pytest.fixture
def redis_on_a_free_port(tmp_path):
    """Starts a private redis-server, always on the same port (a restart after an outage
    comes back where the workers expect it); all are stopped at the end."""
    if shutil.which("redis-server") is None:
        pytest.skip("needs the redis-server program (apt install redis-server)")
    port = free_port()
    started = []

    def start():
        started.append(RedisServer(port, tmp_path))
        return started[-1]

    yield start
    for server in started:
        server.stop()


def wake(broker_url):
    """What beat does every minute: enqueue the collection sweep."""
    app = Celery("reliability-probe", broker=broker_url, set_as_current=False)
    try:
        # A connection to this broker: Celery prefers a CELERY_BROKER_URL of the
        # environment to the app's `broker`, and the worker listens on this one only.
        with app.connection_for_write(broker_url) as connection:
            app.send_task("automations.collect_payments", retry=False, connection=connection)
    finally:
        app.close()


class SupervisedWorker:
    """A real Celery worker kept running as a process manager keeps it: one that exits
    is started again, and beat's next tick wakes the sweep. (When Redis vanishes under a
    worker acknowledging a task, kombu may end it with an "Unrecoverable error".)"""

    def __init__(self, broker_url, **env):
        self.broker_url, self.env = broker_url, env
        self.workers = [CeleryWorker(broker_url, **env)]

    def supervise(self):
        if self.workers[-1].process.poll() is not None:
            self.workers.append(CeleryWorker(self.broker_url, **self.env))
            with contextlib.suppress(OperationalError):  # so does beat's while Redis is down
                wake(self.broker_url)

    def log(self) -> str:
        return "\n".join(worker.stderr() for worker in self.workers)

    def stop(self):
        for worker in self.workers:
            worker.stop()

    def wait_for(self, condition, what):
        """Poll the database (autocommit: each query sees the latest commits) until the
        worker has done `what`."""
        deadline = time.monotonic() + PATIENCE
        while not condition():
            assert time.monotonic() < deadline, f"gave up waiting for {what}:\n{self.log()}"
            self.supervise()
            time.sleep(0.1)


def attempted(cards):
    return PaymentAttempt.objects.filter(invoice__in=list(cards)).exclude(status="pending")


def test_redis_lost_during_a_sweep_loses_no_work(tmp_path, redis_on_a_free_port):
    # given 36 due invoices, a private Redis as the broker and a real Celery worker whose
    # gateway holds it once the invoices are charged, before the outcomes are recorded
    due_at = system_now() - timedelta(minutes=1)
    first = make_due(customers_per_card=2, invoices_each=3, now=due_at)
    redis = redis_on_a_free_port()
    signals = tmp_path / "signals"
    signals.mkdir()
    worker = SupervisedWorker(redis.url, RELIABILITY_SIGNALS=str(signals),
                              PAYMENT_GATEWAY="tests.crash_gateways.HeldAfterFirstCharge")
    try:
        # when beat wakes the sweep, and Redis dies while the sweep is at the gateway
        wake(redis.url)
        file_wait(signals / "charged")
        redis.kill()

        # then the work is all in the database: the attempts committed pending, charged
        # once each at the gateway, not yet recorded
        attempts = PaymentAttempt.objects.filter(invoice__in=list(first))
        assert list(attempts.values_list("status", flat=True)) == ["pending"] * len(first)
        assert SimulatedCharge.objects.count() == len(first)

        # and a wake-up while Redis is down fails loudly: only that wake-up is lost
        with pytest.raises(OperationalError):
            wake(redis.url)

        # when more invoices fall due meanwhile, and the held worker goes on
        second = make_due(customers_per_card=1, invoices_each=3, now=system_now())
        (signals / "release").touch()

        # then the running sweep records its outcomes without Redis; the new invoices
        # stay due in the database, since nothing can wake a worker
        worker.wait_for(lambda: attempted(first).count() == len(first), "the first sweep")
        assert not PaymentAttempt.objects.filter(invoice__in=list(second)).exists()
        assert Invoice.objects.filter(pk__in=list(second), status=S.OPEN,
                                      next_payment_attempt__lte=system_now()).count() == 18

        # when Redis is back (empty: the unacknowledged message died with it) and beat
        # wakes the sweep again
        redis = redis_on_a_free_port()
        wake(redis.url)

        # then the invoices that fell due during the outage are collected too
        worker.wait_for(lambda: attempted(second).count() == len(second),
                        "the sweep after the outage")
    finally:
        worker.stop()

    # and every invoice was attempted once and charged once
    assert_each_invoice_charged_once({**first, **second})
