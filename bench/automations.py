"""Automations: matching events against 50 enabled automations (events per second), the
run sweep with 1,000,000 waiting runs and nothing due (ms per tick), and 50,000 waits
ending at once (due steps per second).

Needs no data set: it makes its own customers, open invoices and automations (named
"bench: ..."), and keeps its 1,000,000 waiting runs between runs (made once, by one
INSERT ... SELECT). What a part writes (events, runs that ran) is removed or put back
afterwards."""

import os
import statistics
import time
from datetime import timedelta

from django.db import connection, transaction

from automations.engine.matching import on_events
from automations.engine.models import Automation, AutomationRun, AutomationStep
from automations.engine.runs import runs_sweep
from automations.engine.services import automation_publish, automation_set_enabled
from customers.actors import Actor
from customers.clock import system_now
from customers.models import Customer
from invoices.bulkwrite import rows_insert
from invoices.events import event_build
from invoices.models import Event, Invoice

MATCH_GOAL_PER_SECOND = 2000
TICK_GOAL_MS = 20
DUE_GOAL_PER_SECOND = 1000
AUTOMATIONS = 50
EVENTS = 20_000
EVENT_BATCH = 500
WAITING = 1_000_000
ENDING = 50_000
INVOICES = 2000
BENCH = Actor.system("bench")


def cpu_now() -> tuple[float, float]:
    """(this process's CPU, its PostgreSQL backend's CPU) in seconds."""
    from bench.changelist import backend_cpu_seconds

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    return time.process_time(), backend_cpu_seconds(pid)


def cpu_text(before, count: int) -> str:
    here, backend = (after - earlier for after, earlier in zip(cpu_now(), before, strict=True))
    return (f"CPU {here:.2f} s here + {backend:.2f} s in PostgreSQL: "
            f"{count / max(here + backend, 1e-9):,.0f} per CPU-second")


def load() -> str:
    return f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"


def invoices_ensure(now) -> list[int]:
    customer, _created = Customer.objects.get_or_create(
        invoice_prefix="BENCHAUTO", defaults={"name": "bench: automations", "currency": "USD"})
    ids = list(Invoice.objects.filter(customer=customer).values_list("pk", flat=True))
    if len(ids) >= INVOICES:
        return ids
    rows = [Invoice(customer=customer, status="open", currency="USD", created_at=now,
                    number=f"BENCHAUTO-{n:05d}", total=1000 * (n % 120),
                    amount_due=1000 * (n % 120), amount_remaining=1000 * (n % 120),
                    attempt_count=1 + n % 4, past_due_at=now, finalized_at=now)
            for n in range(len(ids), INVOICES)]
    with transaction.atomic():
        rows_insert(Invoice, rows)
    return list(Invoice.objects.filter(customer=customer).values_list("pk", flat=True))


def automation_ensure(name, trigger, steps, conditions, now, enabled=True) -> Automation:
    automation = Automation.objects.filter(name=name).first()
    if automation is None:
        automation = Automation.objects.create(name=name, trigger=trigger, conditions=conditions,
                                               created_at=now)
        AutomationStep.objects.bulk_create(
            AutomationStep(automation=automation, position=i, kind=k, params=p)
            for i, (k, p) in enumerate(steps, start=1))
        automation_publish(automation, now=now)
    automation_set_enabled(automation, enabled=enabled, now=now)
    return automation


def automations_ensure(now) -> list[Automation]:
    """50 enabled automations over the invoice triggers; those on payment failures have
    conditions (amounts in USD or EUR, attempt counts, decline codes) so that matching
    evaluates them and a few match."""
    triggers = ["payment_failed", "invoice_finalized", "invoice_paid", "payment_action_required",
                "invoice_uncollectible"]
    made = []
    for n in range(AUTOMATIONS):
        conditions = {"all": [
            {"field": "invoice.total", "op": "gte", "value": 1000 * (n * 3 % 120),
             "currency": "USD" if n % 2 else "EUR"},
            {"any": [{"field": "invoice.attempt_count", "op": "gte", "value": n % 4},
                     {"field": "payment.decline_code", "op": "in",
                      "value": ["insufficient_funds", "expired_card"]}]},
        ]} if triggers[n % len(triggers)] == "payment_failed" else {}
        made.append(automation_ensure(
            f"bench: matching {n:02d}", triggers[n % len(triggers)],
            [("wait", {"days": 1}), ("add_note", {"text": "bench"})], conditions, now))
    return made


def run_matching(summary, now) -> None:
    invoice_ids = invoices_ensure(now)
    automations = automations_ensure(now)
    try:
        events = []
        with transaction.atomic():
            built = [event_build("invoice.payment_failed", now=now, actor=BENCH,
                                 data={"decline_code": "insufficient_funds" if n % 3 else
                                       "generic_decline", "source": "automatic"})
                     for n in range(EVENTS)]
            for n, event in enumerate(built):
                event.invoice_id = invoice_ids[n % len(invoice_ids)]
                event.customer_id = None
            events = rows_insert(Event, built)  # written without the subscribers
        AutomationRun.objects.filter(automation__in=automations).delete()
        vacuum()  # the runs of the last run (and of the sweep part) out of the indexes
        timings = []
        cpu_started = cpu_now()
        for start in range(0, len(events), EVENT_BATCH):
            batch = events[start:start + EVENT_BATCH]
            with transaction.atomic():
                started = time.perf_counter()
                on_events(batch)
                timings.append(time.perf_counter() - started)
        cpu = cpu_text(cpu_started, len(events))
        started_runs = AutomationRun.objects.filter(automation__in=automations).count()
        rate = len(events) / sum(timings)
        summary.goal(rate >= MATCH_GOAL_PER_SECOND,
                     f"automations: matching {rate:,.0f} events/s against {AUTOMATIONS} "
                     f"enabled automations (goal >= {MATCH_GOAL_PER_SECOND:,})")
        print(f"automations: matched {len(events):,} payment failures in batches of "
              f"{EVENT_BATCH} ({started_runs:,} runs started, once per automation and "
              f"invoice); {statistics.median(timings) * 1000:.0f} ms a batch; {cpu}; {load()}")
    finally:
        Event.objects.filter(actor_label="bench", type="invoice.payment_failed").delete()
        AutomationRun.objects.filter(automation__in=automations).delete()
        Automation.objects.filter(pk__in=[a.pk for a in automations]).update(enabled=False)


def waiting_ensure(now) -> Automation:
    automation = automation_ensure("bench: waiting", "invoice_finalized",
                                   [("wait", {"days": 30}), ("add_note", {"text": "waited"})],
                                   {}, now, enabled=False)
    have = AutomationRun.objects.filter(automation=automation).count()
    if have < WAITING:
        table = AutomationRun._meta.db_table
        print(f"automations: writing {WAITING - have:,} waiting runs, once...")
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {table} (automation_id, version_id, key, status, step, resume_at,"
                " waiting_for, depth, reason, created_at, updated_at)"
                " SELECT %s, %s, 'bench:' || n, 'waiting', 1,"
                " %s + (n || ' seconds')::interval, 'wait 30 days', 0, '', %s, %s"
                " FROM generate_series(%s, %s) AS n",
                [automation.pk, automation.live_version_id, now + timedelta(days=400), now, now,
                 have + 1, WAITING])
            cursor.execute(f"ANALYZE {table}")
    return automation


def vacuum() -> None:
    """What autovacuum does after a burst of finished runs: their entries leave the
    waiting runs' index, which the idle tick's probe would otherwise step over."""
    with connection.cursor() as cursor:
        cursor.execute(f"VACUUM (ANALYZE) {AutomationRun._meta.db_table}")


def run_sweep(summary, now, ticks: int) -> None:
    automation = waiting_ensure(now)
    vacuum()
    timings = []
    for _tick in range(ticks):
        started = time.perf_counter()
        runs_sweep(now=now)
        timings.append((time.perf_counter() - started) * 1000)
    median = statistics.median(timings)
    p95 = sorted(timings)[round(0.95 * (len(timings) - 1))]
    waiting = AutomationRun.objects.filter(automation=automation, status="waiting").count()
    summary.goal(p95 <= TICK_GOAL_MS,
                 f"automations: run sweep with {waiting:,} waiting runs, nothing due: median "
                 f"{median:.2f} ms, p95 {p95:.2f} ms a tick (goal <= {TICK_GOAL_MS} ms)")

    invoice_ids = invoices_ensure(now)
    ids = list(AutomationRun.objects.filter(automation=automation).order_by("pk")
               .values_list("pk", flat=True)[:ENDING])
    table = AutomationRun._meta.db_table
    with connection.cursor() as cursor:
        # The waits end now; each run is about one of the bench invoices.
        cursor.execute(
            f"UPDATE {table} SET resume_at = %s, invoice_id = (%s::bigint[])[1 + id %% %s]"
            " WHERE id = ANY(%s)", [now - timedelta(minutes=1), invoice_ids, len(invoice_ids),
                                    ids])
    try:
        cpu_started = cpu_now()
        started = time.perf_counter()
        counts = runs_sweep(now=now)
        elapsed = time.perf_counter() - started
        cpu = cpu_text(cpu_started, counts.get("steps", 0))
        rate = counts.get("steps", 0) / elapsed
        summary.goal(rate >= DUE_GOAL_PER_SECOND,
                     f"automations: {ENDING:,} waits ending at once: {rate:,.0f} due steps/s "
                     f"(goal >= {DUE_GOAL_PER_SECOND:,})")
        print(f"automations: {counts} in {elapsed:.1f} s; {cpu}; {load()}")
    finally:
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET status = 'waiting', step = 1, reason = '',"
                " waiting_for = 'wait 30 days', invoice_id = NULL,"
                " resume_at = %s + (id || ' seconds')::interval WHERE id = ANY(%s)",
                [now + timedelta(days=400), ids])
        Event.objects.filter(type__startswith="automation.", invoice__in=invoice_ids).delete()
        vacuum()


def run(summary, *, ticks: int) -> None:
    now = system_now()
    run_matching(summary, now)
    run_sweep(summary, now, ticks)
