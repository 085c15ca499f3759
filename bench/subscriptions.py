"""The renewal sweep over 1,000,000 subscriptions (issue 12's goals).

1. A tick with nothing due costs at most 20 ms: subscriptions_sweep (renewals, incomplete
   expiry, notices, pauses) timed many times one second before the first renewal, with
   EXPLAIN of its due-work SELECTs.
2. At least 2,000 renewal invoices per second when 100,000 subscriptions fall due at the
   same moment, in one process (bench.renewal_process, a fresh process), lines, billed
   periods and events included.
3. That process's peak RSS under 300 MB.

The subscriptions are built once in SQL (INSERT ... SELECT over generate_series) on the
bench data set's customers, active and monthly, their period ends spread over the 30
days after the "due moment" of the first 100,000. Times are relative to the moment the
set was built (kept in bench_subscriptions), so the set is reused as days pass. After
the run, the renewals are deleted and the 100,000 subscriptions put back as they were:
runs repeat.
"""

import json
import os
import subprocess
import sys
import time
from datetime import timedelta

from django.db import connection, transaction
from django.db.models import Count
from django.test.utils import CaptureQueriesContext

from bench.collection import cpu_text, plan_summary, query_latency_ms, table_of
from bench.report import median_p95
from customers.clock import system_now
from invoices.models import Event, Invoice, InvoiceLine
from subscriptions import renewals
from subscriptions.models import Price, Product, Subscription, SubscriptionInvoice

SUBSCRIPTIONS = 1_000_000
DUE_AT_ONCE = 100_000
GOAL_TICK_MS = 20
GOAL_PER_SECOND = 2000
GOAL_PEAK_MB = 300
VERSION = 1
CURRENCY_AMOUNTS = {"EUR": 2900, "GBP": 2500, "USD": 2900, "BRL": 14900, "JPY": 4000,
                    "KWD": 9000}
MARKER_SQL = """CREATE TABLE IF NOT EXISTS bench_subscriptions (
    version integer NOT NULL, subscriptions integer NOT NULL, due_at timestamptz NOT NULL,
    first_id bigint NOT NULL)"""
EXPLAINED = {"subscriptions_subscription"}

SUBSCRIPTIONS_SQL = """
WITH customers AS (
    SELECT id, currency, row_number() OVER (ORDER BY id) - 1 AS n
    FROM customers_customer WHERE invoice_prefix LIKE 'B%%' AND test_clock_id IS NULL
), counted AS (SELECT count(*) AS total FROM customers)
INSERT INTO subscriptions_subscription (
    customer_id, status, currency, collection_method, days_until_due,
    default_payment_method_id, billing_cycle_anchor, current_period_start,
    current_period_end, period_index, trial_start, trial_end, cancel_at_period_end,
    cancel_at, canceled_at, ended_at, cancellation_reason, cancellation_feedback,
    cancellation_comment, pause_collection, pause_resumes_at, notice_at,
    latest_invoice_id, metadata, created_at
)
SELECT
    c.id, 'active', c.currency,
    CASE WHEN i %% 10 = 0 THEN 'send_invoice' ELSE 'charge_automatically' END,
    CASE WHEN i %% 10 = 0 THEN 30 ELSE NULL END,
    NULL, e.period_end - interval '1 month', e.period_end - interval '1 month', e.period_end,
    1, NULL, NULL, false, NULL, NULL, NULL, '', '', '', '', NULL, NULL, NULL, '{}'::jsonb,
    e.period_end - interval '1 month'
FROM generate_series(1, %(count)s) AS i
CROSS JOIN counted
JOIN customers c ON c.n = i %% counted.total
CROSS JOIN LATERAL (SELECT CASE
    WHEN i <= %(due)s THEN %(due_at)s::timestamptz
    ELSE %(due_at)s::timestamptz + interval '1 day'
         + interval '29 days' * ((i - %(due)s)::float / %(count)s)
    END AS period_end) e
ORDER BY i
"""

ITEMS_SQL = """
INSERT INTO subscriptions_subscriptionitem (subscription_id, price_id, quantity, created_at)
SELECT s.id, p.id, 1 + s.id %% 3, s.created_at
FROM subscriptions_subscription s
JOIN subscriptions_price p ON p.currency = s.currency AND p.product_id = %(product)s
WHERE s.id >= %(first)s
"""


def marker():
    with connection.cursor() as cursor:
        cursor.execute(MARKER_SQL)
        cursor.execute(
            "SELECT due_at, first_id FROM bench_subscriptions WHERE version = %s", [VERSION]
        )
        return cursor.fetchone()


def build(say=print):
    """1,000,000 active monthly subscriptions on the bench customers, once."""
    started = time.perf_counter()
    due_at = (system_now() + timedelta(days=1)).replace(microsecond=0)
    now = system_now()
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL synchronous_commit = off")
        cursor.execute("SET LOCAL work_mem = '256MB'")
        product = Product.objects.create(name="Bench plan", created_at=now)
        for currency, amount in CURRENCY_AMOUNTS.items():
            Price.objects.create(product=product, currency=currency, unit_amount=amount,
                                 recurring_interval="month", created_at=now)
        cursor.execute("SELECT coalesce(max(id), 0) + 1 FROM subscriptions_subscription")
        first = cursor.fetchone()[0]
        cursor.execute(SUBSCRIPTIONS_SQL, {"count": SUBSCRIPTIONS, "due": DUE_AT_ONCE,
                                           "due_at": due_at})
        cursor.execute(ITEMS_SQL, {"product": product.pk, "first": first})
        cursor.execute(MARKER_SQL)
        cursor.execute(
            "INSERT INTO bench_subscriptions VALUES (%s, %s, %s, %s)",
            [VERSION, SUBSCRIPTIONS, due_at, first],
        )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM (ANALYZE) subscriptions_subscription, "
                       "subscriptions_subscriptionitem")
    say(f"  built {SUBSCRIPTIONS:,} subscriptions in {time.perf_counter() - started:.0f}s")


def run(summary, *, ticks: int = 50) -> None:
    found = marker()
    if found is None:
        print(f"\nsubscriptions: building {SUBSCRIPTIONS:,} subscriptions, once...")
        build()
        found = marker()
    due_at, first = found
    due_ids = (first, first + DUE_AT_ONCE - 1)
    cleanup(due_at, due_ids)  # an interrupted run's leftovers
    vacuum()
    counts = dict(Subscription.objects.values_list("status").annotate(n=Count("pk")))
    print(
        f"\nsubscriptions: {sum(counts.values()):,} subscriptions "
        f"({', '.join(f'{k} {v:,}' for k, v in sorted(counts.items()))}); "
        f"{DUE_AT_ONCE:,} due at {due_at:%Y-%m-%d %H:%M:%S} UTC; one simple ORM query takes "
        f"{query_latency_ms():.2f} ms, load average {os.getloadavg()[0]:.1f} on "
        f"{os.cpu_count()} CPUs"
    )
    ticks_measure(summary, due_at - timedelta(seconds=1), runs=ticks)
    try:
        result = renew_in_process(due_at)
        print(f"  renewal process: {json.dumps(result)}")
        ok = checks(due_at, due_ids, result)
    finally:
        cleanup(due_at, due_ids)
        vacuum()
    renewed = result["counts"].get("renewed", 0)
    rate = renewed / result["elapsed"]
    print(
        f"  renewals, {DUE_AT_ONCE:,} due at once: {result['elapsed']:.1f}s, {rate:,.0f} "
        f"invoices/s; {cpu_text(result, renewed)}; {result['queries'] / max(renewed, 1):.3f} "
        f"queries per renewal; peak RSS {result['rss_peak_mb']:.0f} MB (before: "
        f"{result['rss_before_mb']:.0f} MB){'' if ok else '; CHECKS FAILED'}"
    )
    summary.goal(
        rate >= GOAL_PER_SECOND and ok,
        f"subscriptions: {rate:,.0f} renewal invoices/s, {DUE_AT_ONCE:,} due at once, one "
        f"process (goal >= {GOAL_PER_SECOND:,}/s; {cpu_text(result, renewed)})",
    )
    summary.goal(
        result["rss_peak_mb"] < GOAL_PEAK_MB,
        f"subscriptions: peak RSS of the renewal process {result['rss_peak_mb']:.0f} MB "
        f"(goal < {GOAL_PEAK_MB} MB)",
    )


def ticks_measure(summary, now, *, runs: int) -> None:
    with CaptureQueriesContext(connection) as queries:
        counts = renewals.subscriptions_sweep(now=now)
    assert not any(counts.values()), counts
    samples = []
    cpu = time.process_time()
    for _ in range(runs):
        started = time.perf_counter()
        renewals.subscriptions_sweep(now=now)
        samples.append(time.perf_counter() - started)
    cpu = (time.process_time() - cpu) / runs
    median, p95 = median_p95(samples)
    statements = [q["sql"] for q in queries.captured_queries
                  if q["sql"] not in ("BEGIN", "COMMIT")]
    print(f"  subscriptions_sweep tick with nothing due ({runs} runs): median "
          f"{median * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms; {len(statements)} queries, "
          f"{cpu * 1000:.1f} ms of CPU here per tick")
    for sql in statements:
        if sql.startswith("SELECT") and table_of(sql) in EXPLAINED:
            print(f"      {plan_summary(sql)}")
    summary.goal(
        median * 1000 <= GOAL_TICK_MS,
        f"subscriptions: renewal sweep tick with nothing due over {SUBSCRIPTIONS:,} "
        f"subscriptions {median * 1000:.1f} ms median, p95 {p95 * 1000:.1f} ms "
        f"(goal <= {GOAL_TICK_MS} ms)",
    )


def renew_in_process(due_at) -> dict:
    output = subprocess.run(
        [sys.executable, "-m", "bench.renewal_process", due_at.isoformat()],
        check=True, capture_output=True, text=True, env=os.environ.copy(),
        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    )
    return json.loads(output.stdout.strip().splitlines()[-1])


def checks(due_at, due_ids, result) -> bool:
    created = Invoice.objects.filter(
        billing_reason="subscription_cycle", subscription_id__range=due_ids
    )
    invoices = created.count()
    lines = InvoiceLine.objects.filter(invoice__in=created).count()
    billed = SubscriptionInvoice.objects.filter(
        subscription__gte=due_ids[0], subscription__lte=due_ids[1]
    ).count()
    events = dict(
        Event.objects.filter(subscription_id__range=due_ids, created_at__gte=due_at)
        .values_list("type").annotate(n=Count("pk"))
    )
    renewed = Subscription.objects.filter(
        pk__range=due_ids, current_period_start=due_at
    ).count()
    print(f"    written: {invoices:,} invoices, {lines:,} lines, {billed:,} billed periods, "
          f"{renewed:,} subscriptions advanced; events "
          f"{', '.join(f'{k} {v:,}' for k, v in sorted(events.items()))}")
    return (
        result["counts"].get("renewed") == invoices == lines == billed == renewed == DUE_AT_ONCE
        and events.get("invoice.created") == DUE_AT_ONCE
        and events.get("customer.subscription.updated") == DUE_AT_ONCE
    )


def cleanup(due_at, due_ids) -> None:
    """Delete what a run wrote and put the 100,000 subscriptions back."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMPORARY TABLE bench_renewed ON COMMIT DROP AS SELECT id FROM "
            "invoices_invoice WHERE billing_reason = 'subscription_cycle' "
            "AND subscription_id BETWEEN %s AND %s", list(due_ids),
        )
        cursor.execute("UPDATE subscriptions_subscription SET current_period_start = "
                       "billing_cycle_anchor, current_period_end = %s, period_index = 1, "
                       "latest_invoice_id = NULL, notice_at = NULL WHERE id BETWEEN %s AND %s",
                       [due_at, *due_ids])
        cursor.execute("DELETE FROM invoices_event WHERE subscription_id BETWEEN %s AND %s",
                       list(due_ids))
        cursor.execute("DELETE FROM subscriptions_subscriptioninvoice WHERE invoice_id IN "
                       "(SELECT id FROM bench_renewed)")
        cursor.execute("DELETE FROM automations_outboxmessage WHERE invoice_id IN "
                       "(SELECT id FROM bench_renewed)")
        cursor.execute("DELETE FROM invoices_invoiceline WHERE invoice_id IN "
                       "(SELECT id FROM bench_renewed)")
        cursor.execute("DELETE FROM invoices_invoice WHERE id IN (SELECT id FROM bench_renewed)")


def vacuum() -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            "VACUUM (ANALYZE) subscriptions_subscription, subscriptions_subscriptioninvoice, "
            "invoices_invoice, invoices_invoiceline, invoices_event"
        )

