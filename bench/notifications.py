"""Notifications: draining the outbox to a local SMTP server (emails per second, one
connection per batch), and the reminder sweep when nothing is due over 1,000,000
scheduled invoices.

The outbox run queues reminder emails for open invoices of the data set (no PDF: the
PDFs are rendered and stored by the documents pipeline, and their cost is measured
there), drains them through Django's SMTP backend to an aiosmtpd server in this
process, and removes its rows and events afterwards.

The sweep run gives every invoice of the data set a schedule row (next reminder and
alert in the future: nothing due), once; the rows stay, in this table only."""

import os
import socket
import statistics
import subprocess
import sys
import time

from django.conf import settings
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext

from automations.models import NotificationSchedule, OutboxMessage
from automations.notifications.delivery import outbox_drain
from automations.notifications.outbox import outbox_message
from automations.notifications.reminders import reminders_sweep
from automations.notifications.sweeps import notifications_sweep
from customers.clock import system_now
from invoices.models import Event, Invoice

EMAILS_GOAL_PER_SECOND = 300
SWEEP_GOAL_MS = 20
SCHEDULED = 1_000_000


# The SMTP server runs in a process of its own, as a real one would: in this process its
# thread would compete with the drain for the interpreter. It counts what it accepted
# and prints the count when its standard input closes.
SMTP_SERVER = """
import sys
from aiosmtpd.controller import Controller

class Counter:
    received = 0
    async def handle_DATA(self, server, session, envelope):
        Counter.received += 1
        return "250 OK"

controller = Controller(Counter(), hostname="127.0.0.1", port=int(sys.argv[1]))
controller.start()
print("ready", flush=True)
sys.stdin.read()
controller.stop()
print(Counter.received, flush=True)
"""


def smtp_server_start(port: int) -> subprocess.Popen:
    server = subprocess.Popen(
        [sys.executable, "-c", SMTP_SERVER, str(port)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert server.stdout.readline().strip() == "ready"
    return server


def smtp_server_stop(server: subprocess.Popen) -> int:
    out, _err = server.communicate("", timeout=30)
    return int(out.strip() or 0)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def smtp_use(port: int) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False


def run_outbox(summary, *, emails: int) -> None:
    tag = f"bench-{int(time.time())}"
    now = system_now()
    invoices = list(
        Invoice.objects.filter(status="open", collection_method="send_invoice")
        .values_list("pk", "customer_id")[:emails]
    )
    rows = [
        outbox_message(f"{tag}:{i}", kind="reminder_due", now=now, customer_id=customer_id,
                       invoice_id=pk, context={"offset": 0})
        for i, (pk, customer_id) in enumerate(invoices)
    ]
    port = free_port()
    server = smtp_server_start(port)
    smtp_use(port)
    received = 0
    try:
        with transaction.atomic():
            OutboxMessage.objects.bulk_create(rows, batch_size=1000)
        started, cpu_started = time.perf_counter(), time.process_time()
        counts = outbox_drain(now=now)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
    finally:
        received = smtp_server_stop(server)
        OutboxMessage.objects.filter(key__startswith=tag).delete()
        Event.objects.filter(type__in=["email.sent", "email.failed"],
                             data__key__startswith=tag).delete()
    rate = counts["sent"] / elapsed if elapsed else 0
    print(
        f"\noutbox: {len(rows):,} reminder emails drained to a local SMTP server in "
        f"{elapsed:.2f}s: {rate:.0f} emails/s; server received {received:,}; {counts}\n"
        f"  this process's CPU: {cpu * 1000 / max(len(rows), 1):.2f} ms per email (a ceiling of "
        f"{len(rows) / cpu if cpu else 0:.0f}/s on an idle core); load average "
        f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
    )
    summary.goal(
        rate >= EMAILS_GOAL_PER_SECOND and counts["sent"] == len(rows) == received,
        f"outbox drain to local SMTP: {rate:.0f} emails/s (goal >= {EMAILS_GOAL_PER_SECOND}/s)",
    )


def schedules_ensure() -> int:
    """One schedule row per invoice of the data set, none due; built once."""
    existing = NotificationSchedule.objects.count()
    if existing >= SCHEDULED:
        return existing
    print(f"  scheduling {SCHEDULED:,} invoices (once)...")
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO automations_notificationschedule
                (invoice_id, next_reminder_at, last_reminder_offset, overdue_alert_at)
            SELECT id, now() + interval '1 day' + interval '60 days' * random(), NULL,
                   now() + interval '2 days' + interval '90 days' * random()
            FROM invoices_invoice
            ON CONFLICT (invoice_id) DO NOTHING
            """
        )
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE automations_notificationschedule")
    return NotificationSchedule.objects.count()


def run_sweep(summary, *, runs: int) -> None:
    scheduled = schedules_ensure()
    now = system_now()
    due = NotificationSchedule.objects.filter(next_reminder_at__lte=now).count()
    reminders_sweep(now=now)  # warm
    samples = []
    with CaptureQueriesContext(connection) as queries:
        reminders_sweep(now=now)
    for _run in range(runs):
        started = time.perf_counter()
        reminders_sweep(now=now)
        samples.append((time.perf_counter() - started) * 1000)
    whole = []
    for _run in range(runs):
        started = time.perf_counter()
        notifications_sweep(now=now)
        whole.append((time.perf_counter() - started) * 1000)
    median, worst = statistics.median(samples), max(samples)
    print(
        f"\nreminder sweep, nothing due ({due} due) over {scheduled:,} scheduled invoices: "
        f"median {median:.2f} ms, max {worst:.2f} ms over {runs} runs, "
        f"{len(queries.captured_queries)} queries; whole beat sweep (reminders, alerts, digest) "
        f"median {statistics.median(whole):.2f} ms"
    )
    summary.goal(
        median <= SWEEP_GOAL_MS,
        f"reminder sweep, nothing due, {scheduled:,} scheduled: median {median:.2f} ms "
        f"(goal <= {SWEEP_GOAL_MS} ms)",
    )
