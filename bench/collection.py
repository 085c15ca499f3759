"""Automatic collection on the 1,000,000-invoice data set: the issue's four speed goals.

1. A sweep tick with nothing due costs at most 20 ms, whatever the table size: the beat
   sweeps (collect_payments, mark_past_due_uncollectible, finalize_due_drafts) timed many
   times at a moment when nothing is due, with EXPLAIN of each due-work SELECT to show it
   reads an empty index range, not the table.
2. At least 500 payment attempts per second per worker process with the simulated
   gateway: collect_due over K due invoices, cards mostly succeeding, some declining
   (their retries planned by Smart Retries), some left processing.
3. At least 5,000 invoices per second moved to uncollectible, events included.
4. A sweep's peak memory under 300 MB: 2 and 3 each run in a fresh process
   (bench.sweep_process) that reports its peak RSS, wall time and CPU time.

The time line. The data set is built with collection backlog, as if the sweeps had never
run, so the ticks are timed at its *quiet moment*: one second before its earliest due
work of every kind. The bench's own work happens in the hour after it, on bench
customers of a test clock of their own (the real sweeps never see them): so neither the
bench rows nor the dead index entries they leave behind fall in the index ranges the
ticks read. All the rows made are deleted at the end, and leftovers of an interrupted
run at the start, then the tables VACUUMed (autovacuum may be off on a bench server):
runs repeat.
"""

import json
import os
import subprocess
import sys
import time
from datetime import timedelta

from django.db import connection
from django.db.models import Count, Min
from django.test.utils import CaptureQueriesContext

from automations import sweeps
from automations.models import BillingSettings, OutboxMessage
from bench.report import median_p95
from customers.clock import system_now
from customers.models import Customer, PaymentMethod, TestClock
from invoices.bulkwrite import rows_update
from invoices.collection import IN_FLIGHT
from invoices.documents.models import Document
from invoices.models import Event, Invoice, Payment, PaymentAttempt, SimulatedCharge
from invoices.sweeps import finalize_due_drafts

GOAL_TICK_MS = 20
GOAL_ATTEMPTS_PER_SECOND = 500
GOAL_UNCOLLECTIBLE_PER_SECOND = 5000
GOAL_PEAK_MB = 300
CLOCK_NAME = "bench collection"
WORK_AFTER = timedelta(hours=1)  # the bench's work: due within this after the quiet moment
INVOICES_PER_CUSTOMER = 5  # few: the card network cap (15 in 30 days) never binds here
# The default payment method of each bench customer, by share of customers: mostly
# successes, some soft declines (retried: Smart Retries plan them), some processing.
CARD_MIX = (("sim_4242", 85), ("sim_9995", 10), ("sim_2222", 5))
CURRENCIES = ("EUR", "USD", "GBP", "JPY")
TIMEZONES = ("Europe/Paris", "America/New_York", "Asia/Tokyo", "UTC")
UNCOLLECTIBLE_DAYS = 90
EXPLAINED = {"invoices_invoice", "invoices_paymentattempt"}  # the due-work queries
# What a run writes and deletes (subscribers included: receipts, emails).
WRITTEN = (Invoice, Event, PaymentAttempt, Payment, SimulatedCharge, Customer, PaymentMethod,
           OutboxMessage, Document)


def run(summary, *, attempts: int, uncollectible: int, ticks: int) -> None:
    leftovers_remove()
    vacuumed = tables_vacuum()
    saved_days = BillingSettings.load().uncollectible_after_days
    # On for the whole run, so that the uncollectible sweep's tick does its query.
    BillingSettings.objects.filter(pk=1).update(uncollectible_after_days=UNCOLLECTIBLE_DAYS)
    quiet = quiet_moment(UNCOLLECTIBLE_DAYS)
    clock = TestClock.objects.create(
        name=f"{CLOCK_NAME} {int(time.time())}", frozen_time=quiet + WORK_AFTER
    )
    print(
        f"\ncollection: {Invoice.objects.filter(status='open').count():,} open invoices; "
        f"quiet moment {quiet:%Y-%m-%d %H:%M:%S} UTC; machine: one simple ORM query takes "
        f"{query_latency_ms():.2f} ms, load average {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} CPUs; VACUUM of the tables a run writes: {vacuumed:.1f}s"
    )
    try:
        collect = collect_rate(clock, quiet, count=attempts)
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE invoices_paymentattempt")  # as autovacuum would
        ticks_measure(summary, quiet, runs=ticks)  # with the attempts just made in place
        moved = uncollectible_rate(clock, quiet, count=uncollectible)
    finally:
        BillingSettings.objects.filter(pk=1).update(uncollectible_after_days=saved_days)
        bench_remove(clock)
        tables_vacuum()
    summary.goal(
        collect["rate"] >= GOAL_ATTEMPTS_PER_SECOND and collect["ok"],
        f"collection: {collect['rate']:.0f} payment attempts/s in one process "
        f"(goal >= {GOAL_ATTEMPTS_PER_SECOND}/s; {cpu_text(collect, attempts)})",
    )
    summary.goal(
        moved["rate"] >= GOAL_UNCOLLECTIBLE_PER_SECOND and moved["ok"],
        f"collection: {moved['rate']:,.0f} invoices/s moved to uncollectible, events "
        f"included (goal >= {GOAL_UNCOLLECTIBLE_PER_SECOND:,}/s; "
        f"{cpu_text(moved, uncollectible)})",
    )
    peak = max(collect["rss_peak_mb"], moved["rss_peak_mb"])
    summary.goal(
        peak < GOAL_PEAK_MB,
        f"collection: peak RSS of a sweep process {peak:.0f} MB (collect_due over "
        f"{attempts:,}: {collect['rss_peak_mb']:.0f} MB, uncollectible over {uncollectible:,}: "
        f"{moved['rss_peak_mb']:.0f} MB; goal < {GOAL_PEAK_MB} MB)",
    )


# --- the moment and the machine -------------------------------------------------------


def quiet_moment(days: int):
    """One second before the data set's earliest due work of every kind: payment
    attempts, checks of attempts in flight, past-due invoices turning uncollectible after
    `days`, auto-finalization. Test clock customers' work does not count (it is theirs)."""
    real = {"customer__test_clock__isnull": True}
    firsts = [
        Invoice.objects.filter(status__in=["open", "uncollectible"], **real).aggregate(
            first=Min("next_payment_attempt")
        )["first"],
        PaymentAttempt.objects.filter(status__in=IN_FLIGHT, **real).aggregate(
            first=Min("check_at")
        )["first"],
        Invoice.objects.filter(status="draft", auto_advance=True, **real).aggregate(
            first=Min("automatically_finalizes_at")
        )["first"],
    ]
    past_due = Invoice.objects.filter(status="open", **real).aggregate(
        first=Min("past_due_at")
    )["first"]
    if past_due is not None:
        firsts.append(past_due + timedelta(days=days))
    moments = [moment for moment in firsts if moment is not None]
    return min(moments) - timedelta(seconds=1) if moments else system_now()


def tables_vacuum() -> float:
    """VACUUM (ANALYZE) what a run writes: what autovacuum does in production, and may
    not do here (it can be off on a bench server). Without it the dead rows of earlier
    runs stay in the index ranges the ticks read (50,000 of them made a tick 90 ms)."""
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE) " + ", ".join(m._meta.db_table for m in WRITTEN))
    return time.perf_counter() - started


def query_latency_ms() -> float:
    """The cost of one trivial ORM round trip here: the floor under every figure."""
    started = time.perf_counter()
    for _ in range(200):
        list(Customer.objects.filter(pk=0))
    return (time.perf_counter() - started) / 200 * 1000


def spread(count: int, start):
    """The n-th of `count` moments spread over the hour after `start` (due in order)."""
    step = WORK_AFTER / (count + 1)
    return lambda n: start + step * (n + 1)


# --- 1. ticks with nothing due --------------------------------------------------------


def tick_sweeps(now) -> dict:
    """The beat sweeps, as their tasks call them (the real clock)."""
    return {
        "collect_payments": lambda: sweeps.collect_payments(now=now),
        "mark_past_due_uncollectible": lambda: sweeps.mark_past_due_uncollectible(now=now),
        "finalize_due_drafts": lambda: finalize_due_drafts(now=now),
    }


def ticks_measure(summary, now, *, runs: int) -> None:
    print(f"  sweep ticks with nothing due ({runs} runs each, the real clock's sweeps):")
    for name, sweep in tick_sweeps(now).items():
        with CaptureQueriesContext(connection) as queries:
            counts = sweep()
        assert not any(counts.values()), (name, counts)  # nothing was due
        samples = []
        cpu = time.process_time()
        for _ in range(runs):
            started = time.perf_counter()
            sweep()
            samples.append(time.perf_counter() - started)
        cpu = (time.process_time() - cpu) / runs
        median, p95 = median_p95(samples)
        statements = [q["sql"] for q in queries.captured_queries
                      if q["sql"] not in ("BEGIN", "COMMIT")]
        print(
            f"    {name}: median {median * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms; "
            f"{len(statements)} queries, {cpu * 1000:.1f} ms of CPU here per tick"
        )
        for sql in statements:
            if sql.startswith("SELECT") and table_of(sql) in EXPLAINED:
                print(f"      {plan_summary(sql)}")
        summary.goal(
            median * 1000 <= GOAL_TICK_MS,
            f"collection: {name} tick with nothing due {median * 1000:.1f} ms median, "
            f"p95 {p95 * 1000:.1f} ms (goal <= {GOAL_TICK_MS} ms)",
        )


def table_of(sql: str) -> str:
    return sql.split(" FROM ", 1)[1].split()[0].strip('"')


def plan_summary(sql: str) -> str:
    """What EXPLAIN (ANALYZE, BUFFERS) says one SELECT read: its scans and pages."""
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql)
        plan = cursor.fetchone()[0][0]
    scans = []

    def walk(node):
        if "Scan" in node["Node Type"] and node.get("Actual Loops", 0):
            target = node.get("Index Name") or node.get("Relation Name")
            scans.append(f"{node['Node Type']} {target} ({node['Actual Rows']} rows)")
        for child in node.get("Plans", []):
            walk(child)

    walk(plan["Plan"])
    root = plan["Plan"]
    pages = root.get("Shared Hit Blocks", 0) + root.get("Shared Read Blocks", 0)
    return (
        f"{table_of(sql)}: {', '.join(scans)}; {pages} buffer reads, "
        f"{plan['Execution Time']:.2f} ms in the database"
    )


# --- 2. payment attempts per second ---------------------------------------------------


def collect_rate(clock, quiet, *, count: int) -> dict:
    customers = customers_create(clock, count=-(-count // INVOICES_PER_CUSTOMER), label="A")
    invoices = invoices_create(
        customers, count=count, now=quiet, next_payment_attempt=spread(count, quiet)
    )
    result = sweep_in_process("collect_due", clock)
    ids = [invoice.pk for invoice in invoices]
    attempts = PaymentAttempt.objects.filter(invoice_id__in=ids)
    charged_twice = attempts.values("invoice_id").annotate(n=Count("pk")).filter(n__gt=1)
    charges = SimulatedCharge.objects.filter(
        idempotency_key__in=attempts.values("idempotency_key")
    ).count()
    events = dict(
        Event.objects.filter(invoice_id__in=ids).values_list("type").annotate(n=Count("pk"))
    )
    counts = result["counts"]
    ok = (
        counts["attempted"] == count == attempts.count() == charges
        and not charged_twice.exists()
        and events.get("invoice.payment_succeeded", 0) == counts["succeeded"]
        and events.get("invoice.paid", 0) == counts["succeeded"]
        and events.get("invoice.payment_failed", 0) == counts["failed"]
        and events.get("invoice.payment_processing", 0) == counts["processing"]
    )
    rate = count / result["elapsed"]
    print(
        f"  collect_due, {count:,} due invoices of {len(customers):,} customers "
        f"(cards {', '.join(f'{card} {share}%' for card, share in CARD_MIX)}):\n"
        f"    {result['elapsed']:.1f}s, {rate:.0f} attempts/s; {cpu_text(result, count)}; "
        f"{result['queries'] / count:.2f} queries per attempt\n"
        f"    outcomes: {outcomes_text(counts)}; {charges:,} simulated charges (one per "
        f"attempt)\n"
        f"    events: {', '.join(f'{name} {n:,}' for name, n in sorted(events.items()))}\n"
        f"    peak RSS {result['rss_peak_mb']:.0f} MB (process before the sweep: "
        f"{result['rss_before_mb']:.0f} MB){'' if ok else '; CHECKS FAILED'}"
    )
    return {**result, "rate": rate, "ok": ok}


def outcomes_text(counts: dict) -> str:
    return ", ".join(f"{name} {n:,}" for name, n in counts.items() if n)


def cpu_text(result: dict, count: int) -> str:
    """The CPU the sweep used, in its process and in its PostgreSQL backend. One worker
    and its backend take turns, so `count` over their sum is about the rate the process
    would reach with no other load on the machine (network and fsync waits aside)."""
    if result["db_cpu"] is None:
        return f"CPU {result['cpu']:.2f}s here (the database's is not visible)"
    return (
        f"CPU {result['cpu']:.2f}s here + {result['db_cpu']:.2f}s in PostgreSQL: "
        f"{count / (result['cpu'] + result['db_cpu']):,.0f} per CPU-second"
    )


# --- 3. invoices per second to uncollectible ------------------------------------------


def uncollectible_rate(clock, quiet, *, count: int) -> dict:
    customers = customers_create(clock, count=-(-count // INVOICES_PER_CUSTOMER), label="U")
    invoices = invoices_create(
        customers, count=count, now=quiet,
        past_due_at=spread(count, quiet - timedelta(days=UNCOLLECTIBLE_DAYS)),
    )
    result = sweep_in_process("mark_past_due_uncollectible", clock)
    ids = [invoice.pk for invoice in invoices]
    moved = Invoice.objects.filter(pk__in=ids, status="uncollectible").count()
    events = Event.objects.filter(
        invoice_id__in=ids, type="invoice.marked_uncollectible", data__reason="past_due"
    ).count()
    ok = result["counts"]["uncollectible"] == moved == events == count
    rate = count / result["elapsed"]
    print(
        f"  mark_past_due_uncollectible, {count:,} invoices past due > "
        f"{UNCOLLECTIBLE_DAYS} days:\n"
        f"    {result['elapsed']:.2f}s, {rate:,.0f} invoices/s; {cpu_text(result, count)}; "
        f"{result['queries']} queries\n"
        f"    {moved:,} uncollectible, {events:,} invoice.marked_uncollectible events\n"
        f"    peak RSS {result['rss_peak_mb']:.0f} MB (process before the sweep: "
        f"{result['rss_before_mb']:.0f} MB){'' if ok else '; CHECKS FAILED'}"
    )
    return {**result, "rate": rate, "ok": ok}


# --- the sweep in a process of its own --------------------------------------------------


def sweep_in_process(name: str, clock) -> dict:
    """Run sweep `name` for the bench clock at its time, in a fresh process. The rows
    were just bulk-inserted: ANALYZE first, or the planner, believing the due range
    empty, may join the clock's customers row by row (seconds per batch)."""
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE invoices_invoice")
        cursor.execute("ANALYZE customers_customer")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run(
        [sys.executable, "-m", "bench.sweep_process", name, str(clock.pk),
         clock.frozen_time.isoformat()],
        cwd=root, capture_output=True, text=True, check=False,
        # The receipts' render tasks are queued after commit: to a broker that keeps
        # nothing once the process ends (the bench's documents are deleted anyway).
        env={**os.environ, "CELERY_BROKER_URL": "memory://"},
    )
    if done.returncode:
        raise RuntimeError(f"{name} failed in its process:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# --- bench rows ---------------------------------------------------------------------------


def customers_create(clock, *, count: int, label: str) -> list[Customer]:
    """Customers of the bench clock, each with a default card from CARD_MIX. Prefixes:
    Q, the label of the part, the clock, a counter (12 characters at most)."""
    made = clock.frozen_time
    customers = Customer.objects.bulk_create([
        Customer(
            name=f"Bench collection {label}{k}", email=f"bench{k}@example.com",
            invoice_prefix=f"Q{label}{clock.pk % 10**5:05d}{k:05d}",
            currency=CURRENCIES[k % len(CURRENCIES)], timezone=TIMEZONES[k % len(TIMEZONES)],
            test_clock=clock,
        )
        for k in range(count)
    ])
    cards = [card for card, share in CARD_MIX for _ in range(share)]
    methods = PaymentMethod.objects.bulk_create([
        PaymentMethod(
            customer=customer, type=PaymentMethod.Type.CARD, brand="visa",
            last4=cards[k % len(cards)][-4:], exp_month=12, exp_year=made.year + 5,
            gateway_reference=cards[k % len(cards)], created_at=made,
        )
        for k, customer in enumerate(customers)
    ])
    for customer, method in zip(customers, methods, strict=True):
        customer.default_payment_method = method
    rows_update(Customer, customers, ["default_payment_method"])
    return customers


def invoices_create(customers, *, count: int, now, next_payment_attempt=None, past_due_at=None):
    """Open, finalized, charge_automatically invoices, written in bulk (not measured)."""
    numbers = {}
    rows = []
    for n in range(count):
        customer = customers[n % len(customers)]
        numbers[customer.pk] = numbers.get(customer.pk, 0) + 1
        amount = 1000 + (n * 7919) % 100_000
        rows.append(Invoice(
            customer=customer, status="open", currency=customer.currency,
            number=f"{customer.invoice_prefix}-{numbers[customer.pk]:04d}",
            collection_method=Invoice.CollectionMethod.CHARGE_AUTOMATICALLY, auto_advance=True,
            subtotal=amount, total_excluding_tax=amount, total=amount, amount_due=amount,
            amount_remaining=amount, created_at=now - timedelta(hours=2),
            finalized_at=now - timedelta(hours=1), customer_details=customer.billing_details(),
            next_payment_attempt=next_payment_attempt(n) if next_payment_attempt else None,
            past_due_at=past_due_at(n) if past_due_at else None,
        ))
    return Invoice.objects.bulk_create(rows, batch_size=2000)


def leftovers_remove() -> None:
    """What an interrupted run left behind."""
    for clock in TestClock.objects.filter(name__startswith=CLOCK_NAME):
        bench_remove(clock)


def bench_remove(clock) -> None:
    customers = Customer.objects.filter(test_clock=clock)
    ids = list(customers.values_list("pk", flat=True))
    attempts = PaymentAttempt.objects.filter(customer_id__in=ids)
    SimulatedCharge.objects.filter(idempotency_key__in=attempts.values("idempotency_key")).delete()
    attempts.delete()
    Event.objects.filter(customer_id__in=ids).delete()
    OutboxMessage.objects.filter(customer_id__in=ids).delete()  # receipts, failed payments
    Payment.objects.filter(invoice__customer_id__in=ids).delete()
    Invoice.objects.filter(customer_id__in=ids).delete()
    customers.update(default_payment_method=None)
    PaymentMethod.objects.filter(customer_id__in=ids).delete()
    customers.delete()
    clock.delete()
