"""The invoice page under load: gunicorn (2 sync workers) on loopback against the bench
database, one open invoice of five taxed lines, requests from `wrk` when it is installed
(Debian package wrk), else from a Python load generator (threads, keep-alive).

Goal: at least 300 requests per second with a p99 latency under 50 ms, and at least
0.5x the requests per second of a trivial view under the same gunicorn. Every request
is a visit of one client: the first records its `invoice.hosted_page_viewed` event, the
others are the same visitor within the hour and record nothing (invoices.hosted.page);
the events are removed afterwards so the data set stays the same from run to run.

The load generator, the workers and PostgreSQL share the machine's cores, so besides
requests per second the bench prints the CPU time each request cost the gunicorn
processes, the PostgreSQL backends serving them and the load generator (read from
/proc and getrusage): a figure that still means something when other work loads the
machine and distorts the wall-clock ones.

Every request but the first shows the invoice in the same state, so the workers serve
the page they rendered once for it (invoices.hosted.rendered). The bench also prints,
measured in its own process, what a first visit of a state costs (the page rendered)
against a visit of a kept page.
"""

import http.client
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

from django.db import connection

from customers.actors import Actor
from customers.clock import system_now
from customers.models import Customer
from customers.services import customer_create
from invoices.hosted import token_for
from invoices.hosted.links import hosted_link_rotate
from invoices.models import Event, Invoice, TaxRate
from invoices.services import invoice_create, invoice_finalize, invoice_line_add

GOAL_PER_SECOND = 300
GOAL_P99_MS = 50
GOAL_RATIO = 0.5  # of a trivial view's requests per second, under the same gunicorn
TRIVIAL_PATH = "/healthz"
WORKERS = 2
CONNECTIONS = 8
PREFIX = "HOSTEDBENCH"
ACTOR = Actor.system("bench")
ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Load:
    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    errors: int
    tool: str
    client_cpu: float | None = None  # seconds of CPU the load generator used

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    @property
    def text(self) -> str:
        return (
            f"{self.per_second:.0f} req/s, p50 {self.p50_ms:.1f} ms, p99 {self.p99_ms:.1f} ms, "
            f"{self.requests:,} requests in {self.seconds:.0f} s, {self.errors} errors "
            f"({self.tool})"
        )


def run(summary, *, seconds: int = 15) -> None:
    invoice = bench_invoice()
    path = f"/i/{token_for(invoice)}/"
    port = free_port()
    application = f"hosted-bench-{port}"  # names the workers' PostgreSQL connections
    print(
        f"\nhosted invoice page: gunicorn, {WORKERS} sync workers on 127.0.0.1:{port}, "
        f"{CONNECTIONS} connections, {seconds} s; invoice {invoice.number} "
        f"({invoice.lines.count()} lines); load average {os.getloadavg()[0]:.1f}"
    )
    server = gunicorn_start(port, application)
    try:
        wait_until_serving(server, port, path)
        drive(port, path, seconds=3)  # warm-up: connections, templates, catalogues
        drive(port, TRIVIAL_PATH, seconds=1)
        before = page_views(invoice)
        processes = server_processes(server, application)
        cpu_before = cpu_seconds(processes)
        load = drive(port, path, seconds=seconds)
        cpu_after = cpu_seconds(processes)
        recorded = page_views(invoice) - before
        # The same gunicorn, just after: a trivial view (no database), for the ratio.
        trivial_before = cpu_seconds(processes)
        trivial = drive(port, TRIVIAL_PATH, seconds=seconds)
        trivial_after = cpu_seconds(processes)
    finally:
        gunicorn_stop(server)
    Event.objects.filter(invoice=invoice, type="invoice.hosted_page_viewed").delete()
    print(f"  {load.text}\n  visits recorded as events: {recorded:,}")
    print(f"  {cpu_text(processes, cpu_before, cpu_after, load)}")
    print(f"  trivial view {TRIVIAL_PATH} under the same gunicorn: {trivial.text}")
    print(f"  {cpu_text(processes, trivial_before, trivial_after, trivial)}")
    ratio = load.per_second / trivial.per_second
    print(f"  hosted page / trivial view: {ratio:.2f}x the requests per second, p99 "
          f"{load.p99_ms / max(trivial.p99_ms, 0.001):.1f}x; load average "
          f"{os.getloadavg()[0]:.1f}")
    print(f"  {in_process_text(invoice, path)}")
    ok = load.errors == 0 and load.per_second >= GOAL_PER_SECOND and load.p99_ms < GOAL_P99_MS
    summary.goal(
        ok,
        f"hosted invoice page: {load.per_second:.0f} req/s, p99 {load.p99_ms:.1f} ms "
        f"(goal >= {GOAL_PER_SECOND} req/s, p99 < {GOAL_P99_MS} ms)",
    )
    summary.goal(
        load.errors == 0 and ratio >= GOAL_RATIO,
        f"hosted invoice page against a trivial view, same gunicorn, one run: {ratio:.2f}x "
        f"the requests per second (goal >= {GOAL_RATIO}x)",
    )


def bench_invoice() -> Invoice:
    """The bench customer's open invoice, created once; its link is re-issued every run
    so that it is live whatever the date."""
    now = system_now()
    customer = Customer.objects.filter(invoice_prefix=PREFIX).first()
    if customer is None:
        customer = customer_create(
            name="Hosted Page Bench SAS", email="bench@example.com", invoice_prefix=PREFIX,
            address_line1="1 rue de la Paix", city="Paris", postal_code="75002", country="FR",
        )
    invoice = customer.invoices.filter(status=Invoice.Status.OPEN).first()
    if invoice is None:
        rate = TaxRate.objects.create(display_name="VAT (hosted bench)", percentage=20)
        invoice = invoice_create(customer=customer, now=now, actor=ACTOR)
        for n in range(5):
            invoice_line_add(
                invoice, description=f"Service {n + 1}", quantity=n + 1, unit_amount=12_50,
                tax_rates=[rate], period_start=now.date(),
                period_end=(now + timedelta(days=30)).date(),
            )
        invoice = invoice_finalize(invoice, now=now, actor=ACTOR)
    return hosted_link_rotate(invoice, now=now, actor=ACTOR, reason="bench")


def page_views(invoice: Invoice) -> int:
    return Event.objects.filter(invoice=invoice, type="invoice.hosted_page_viewed").count()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def gunicorn_start(port: int, application: str) -> subprocess.Popen:
    database_url = os.environ["DATABASE_URL"]
    separator = "&" if "?" in database_url else "?"
    env = {
        **os.environ,
        "DATABASE_URL": f"{database_url}{separator}application_name={application}",
        "ALLOWED_HOSTS": "127.0.0.1",
        "DEBUG": "false",
        "LOG_LEVEL": "WARNING",
    }
    command = [
        sys.executable, "-m", "gunicorn", "billing_site.wsgi", "--workers", str(WORKERS),
        "--bind", f"127.0.0.1:{port}", "--log-level", "warning",
    ]
    return subprocess.Popen(command, cwd=ROOT, env=env, start_new_session=True)


def gunicorn_stop(server: subprocess.Popen) -> None:
    server.send_signal(signal.SIGTERM)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        server.kill()
        server.wait()


# --- CPU time of the processes serving the page ----------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def server_processes(server: subprocess.Popen, application: str) -> dict[str, list[int]]:
    """The gunicorn master and workers, and the PostgreSQL backends of the workers'
    connections (named by `application`), by pid."""
    children = Path(f"/proc/{server.pid}/task/{server.pid}/children").read_text().split()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = %s", [application]
        )
        backends = [pid for (pid,) in cursor.fetchall()]
    return {"gunicorn": [server.pid, *map(int, children)], "postgres": backends}


def cpu_seconds(processes: dict[str, list[int]]) -> dict[str, float]:
    """User + system CPU seconds used so far, summed per group of processes."""
    return {group: sum(process_cpu(pid) for pid in pids) for group, pids in processes.items()}


def process_cpu(pid: int) -> float:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # gone (a worker restarted): its time is lost, the text says so
        return 0.0
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def cpu_text(processes, before: dict, after: dict, load: Load) -> str:
    per_request = {
        group: (after[group] - before[group]) * 1000 / max(load.requests, 1) for group in after
    }
    if load.client_cpu is not None:
        per_request[load.tool] = load.client_cpu * 1000 / max(load.requests, 1)
    parts = ", ".join(f"{group} {ms:.2f} ms" for group, ms in per_request.items())
    workers = len(processes["gunicorn"]) - 1
    return (
        f"CPU per request: {sum(per_request.values()):.2f} ms ({parts}; {workers} workers, "
        f"{len(processes['postgres'])} database connections)"
    )


def in_process_text(invoice: Invoice, path: str, visits: int = 200) -> str:
    """CPU per visit in this process (test client, database included): the page rendered
    (no kept page: a first visit of a state) against the page kept."""
    from django.test import Client

    from invoices.hosted.rendered import rendered_pages

    client = Client()

    def cpu_ms(*, kept: bool) -> float:
        started = time.process_time()
        for _ in range(visits):
            if not kept:
                rendered_pages.clear()
            assert client.get(path).status_code == 200
        return (time.process_time() - started) * 1000 / visits

    client.get(path)  # warm
    rendered, kept = cpu_ms(kept=False), cpu_ms(kept=True)
    Event.objects.filter(invoice=invoice, type="invoice.hosted_page_viewed").delete()
    return (
        f"in this process (test client; PostgreSQL's CPU not counted), CPU per visit: page "
        f"rendered (a first visit of a state) {rendered:.2f} ms, page kept {kept:.2f} ms"
    )


def wait_until_serving(server, port: int, path: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"gunicorn exited with status {server.returncode}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", path)
            status = connection.getresponse().status
            connection.close()
        except OSError:
            status = None
        if status == 200:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"gunicorn did not serve the page in {timeout} s (last: {status})")
        time.sleep(0.2)


def drive(port: int, path: str, *, seconds: int) -> Load:
    if shutil.which("wrk"):
        return wrk(port, path, seconds=seconds)
    return python_load(port, path, seconds=seconds)


# --- wrk --------------------------------------------------------------------------------

WRK_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def wrk(port: int, path: str, *, seconds: int) -> Load:
    children_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    output = subprocess.run(
        ["wrk", "-t", "2", "-c", str(CONNECTIONS), "-d", f"{seconds}s", "--latency",
         f"http://127.0.0.1:{port}{path}"],
        capture_output=True, text=True, check=True, timeout=seconds + 60,
    ).stdout
    # wrk is the only child process waited for meanwhile (gunicorn runs on).
    children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    client_cpu = (children_after.ru_utime - children_before.ru_utime) + (
        children_after.ru_stime - children_before.ru_stime
    )
    requests = int(re.search(r"(\d+) requests in", output)[1])
    elapsed = float(re.search(r"requests in ([\d.]+)s", output)[1])
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: (.*)", output)
    if socket_errors:
        print(f"  wrk socket errors (sync workers close each connection): {socket_errors[1]}")
    return Load(
        requests=requests, seconds=elapsed, p50_ms=wrk_percentile(output, "50%"),
        p99_ms=wrk_percentile(output, "99%"), errors=int(errors[1]) if errors else 0, tool="wrk",
        client_cpu=client_cpu,
    )


def wrk_percentile(output: str, label: str) -> float:
    pattern = rf"^\s+{re.escape(label)}\s+([\d.]+)(us|ms|s|m)\s*$"
    value, unit = re.search(pattern, output, re.M).groups()
    return float(value) * WRK_UNITS_MS[unit]


# --- the Python load generator, when wrk is not installed ------------------------------


def python_load(port: int, path: str, *, seconds: int) -> Load:
    """CONNECTIONS threads, each sending requests one after the other on a keep-alive
    connection (reopened when the server closes it), for `seconds`."""
    latencies: list[list[float]] = [[] for _ in range(CONNECTIONS)]
    errors = [0] * CONNECTIONS
    stop_at = time.monotonic() + seconds

    def client(n: int) -> None:
        connection = None
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            try:
                connection = connection or http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                connection.request("GET", path)
                response = connection.getresponse()
                response.read()
                if response.status != 200:
                    errors[n] += 1
                if response.will_close:
                    connection.close()
                    connection = None
            except OSError:
                errors[n] += 1
                connection = None
                continue
            latencies[n].append((time.perf_counter() - started) * 1000)

    started, cpu_started = time.monotonic(), time.process_time()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(CONNECTIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    samples = sorted(sample for per_thread in latencies for sample in per_thread)
    return Load(
        requests=len(samples), seconds=elapsed, p50_ms=statistics.median(samples),
        p99_ms=samples[min(len(samples) - 1, round(0.99 * (len(samples) - 1)))],
        errors=sum(errors), tool="Python load generator",
        client_cpu=time.process_time() - cpu_started,
    )
