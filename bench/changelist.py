"""The invoice changelist over the 1,000,000-invoice data set, rendered through
django.test.Client as a logged-in superuser: for every filter and search staff have, page
sizes 20 and 100 (100 is also the most rows "Show all" lists), the first page and the
deepest full page the admin lets staff reach (the count stops at CAP): median and p95 wall
time of N runs, the CPU time of the median run (Django's process, and the PostgreSQL
backend that served it), and the number of queries. The customer list follows.

Wall times depend on what else runs on the machine: the load average is printed before
and after, and the CPU times say what the page itself cost."""

import os
import time

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import connection, reset_queries
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from customers.models import Customer
from invoices.models import Invoice
from invoices.pagination import CAP

from .report import median_p95

GOAL_MS = 150
GOAL_QUERIES = 10
PAGE_SIZES = [20, 100]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cases() -> list[tuple[str, dict]]:
    """(label, query parameters): each filter (a small and a large value where it has
    both), combinations, and searches by number, name and email, narrow and broad."""
    busy = (
        Invoice.objects.filter(customer__invoice_prefix="B00002")
        .values_list("customer__name", flat=True).first()
    )
    return [
        ("default", {}),
        ("status=draft", {"status__exact": "draft"}),
        ("status=open", {"status__exact": "open"}),
        ("status=uncollectible", {"status__exact": "uncollectible"}),
        ("charge_automatically", {"collection_method__exact": "charge_automatically"}),
        ("send_invoice", {"collection_method__exact": "send_invoice"}),
        ("currency=JPY", {"currency": "JPY"}),
        ("past due", {"past_due": "yes"}),
        ("segment=enterprise", {"segment": "enterprise"}),
        ("segment=nonprofit", {"segment": "nonprofit"}),
        ("open+EUR+send_invoice", {
            "status__exact": "open", "currency": "EUR", "collection_method__exact": "send_invoice",
        }),
        ("past due+segment=smb", {"past_due": "yes", "segment": "smb"}),
        ("search number prefix", {"q": "B00002-0"}),
        ("search exact number", {"q": "B00002-0042"}),
        ("search broad prefix", {"q": "B0000"}),
        ("search customer name", {"q": busy or "Acme"}),
        ("search common word", {"q": "globex"}),
        ("search every customer", {"q": "example.com"}),
        ("search email", {"q": "billing17@example.com"}),
        ("search no match", {"q": "zzzz"}),
        ("search+status=open", {"q": "globex", "status__exact": "open"}),
        ("search name+segment", {"q": "globex labs", "segment": "public"}),
        ("search word+segment", {"q": "labs", "segment": "public"}),
    ]


def customer_cases() -> list[tuple[str, dict]]:
    return [
        ("customers", {}),
        ("customers currency=EUR", {"currency__exact": "EUR"}),
        ("customers search", {"q": "globex"}),
    ]


def superuser_client() -> Client:
    user, _created = get_user_model().objects.get_or_create(
        username="bench-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    return client


def backend_cpu_seconds(pid: int) -> float:
    """User + system CPU of a PostgreSQL backend (same machine), from /proc."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def timed_request(client, url, params, backend_pid) -> tuple[float, float, float]:
    """(wall ms, Django CPU ms, PostgreSQL backend CPU ms) of one request."""
    backend_before = backend_cpu_seconds(backend_pid)
    cpu_before = time.process_time()
    started = time.perf_counter()
    client.get(url, params)
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_before
    backend = backend_cpu_seconds(backend_pid) - backend_before
    return wall * 1000, cpu * 1000, backend * 1000


def measure(client, url, params, runs) -> dict:
    response = client.get(url, params)
    if response.status_code != 200:
        return {"status": response.status_code}
    rows = response.content.count(b'name="_selected_action"')  # one checkbox per row
    reset_queries()  # each request clears the log at its start (request_started)
    with CaptureQueriesContext(connection) as capture:
        client.get(url, params)
    queries = list(capture.captured_queries)  # read now: the next request clears the log
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend_pid = cursor.fetchone()[0]
    samples = sorted(timed_request(client, url, params, backend_pid) for _ in range(runs))
    median, p95 = median_p95([wall for wall, _cpu, _backend in samples])
    _wall, cpu, backend = samples[len(samples) // 2]
    return {"status": 200, "rows": rows, "median": median, "p95": p95, "cpu": cpu,
            "backend": backend, "queries": len(queries),
            "sql": [(q["time"], q["sql"]) for q in queries]}


def result_count(model_admin, params) -> int:
    """Rows the changelist lists for these parameters, at most CAP + 1 (as it counts)."""
    request = RequestFactory().get("/", params)
    request.user = get_user_model().objects.get(username="bench-admin")
    changelist = model_admin.get_changelist_instance(request)
    return changelist.result_count


def run(summary, *, runs: int) -> None:
    if Invoice not in admin.site._registry:
        print("\nchangelist: no ModelAdmin registered for Invoice yet; skipped")
        summary.goal(False, "invoice changelist: not measured (no admin registered)")
        return
    client = superuser_client()
    print(f"\ninvoice and customer changelists, {runs} runs each (goal: <= {GOAL_MS} ms, "
          f"<= {GOAL_QUERIES} queries); load average before: {load_average()}")
    print("  page: 1 and the deepest full page reachable; cpu: CPU time of the median run, "
          "Django process + PostgreSQL backend (counted in 10 ms ticks)")
    print(f"  {'case':<24} {'size':>4} {'page':>4} {'rows':>4} {'median':>8} {'p95':>8} "
          f"{'cpu':>13} {'queries':>7}  verdict")
    slow = []
    for model, labelled in ((Invoice, cases()), (Customer, customer_cases())):
        worst = {"p95": 0.0, "queries": 0, "failed": 0, "rows": 0}
        model_admin = admin.site._registry[model]
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        original = model_admin.list_per_page
        try:
            for size in PAGE_SIZES:
                model_admin.list_per_page = size
                for label, params in labelled:
                    last = max(1, min(result_count(model_admin, params), CAP) // size)
                    for page in sorted({1, last}):
                        query = {**params, **({"p": page} if page > 1 else {})}
                        result = measure(client, url, query, runs)
                        report_row(label, size, page, result, worst, slow)
        finally:
            model_admin.list_per_page = original
        summary.goal(
            worst["failed"] == 0,
            f"{model._meta.verbose_name} changelist: worst p95 {worst['p95']:.0f} ms, most "
            f"queries {worst['queries']} over {worst['rows']} pages "
            f"(goal <= {GOAL_MS} ms, <= {GOAL_QUERIES} queries)",
        )
    dashboard_measure(client, summary, runs, slow)
    print(f"  load average after: {load_average()}")
    for label, result in slow[:3]:
        print(f"\n  slowest SQL of {label}:")
        for seconds, sql in result["sql"]:
            print(f"    {float(seconds) * 1000:7.1f} ms  {sql[:400]}")


def dashboard_measure(client, summary, runs, slow) -> None:
    """The admin index (the morning dashboard) over the same data set, same goal."""
    worst = {"p95": 0.0, "queries": 0, "failed": 0, "rows": 0}
    result = measure(client, reverse("admin:index"), {}, runs)
    report_row("dashboard (admin index)", 0, 1, result, worst, slow)
    summary.goal(
        worst["failed"] == 0,
        f"dashboard: p95 {worst['p95']:.0f} ms, {worst['queries']} queries "
        f"(goal <= {GOAL_MS} ms, <= {GOAL_QUERIES} queries)",
    )


def dashboard_run(summary, *, runs: int) -> None:
    print(f"\nthe dashboard alone, {runs} runs; load average before: {load_average()}")
    slow = []
    dashboard_measure(superuser_client(), summary, runs, slow)
    print(f"  load average after: {load_average()}")
    for _label, result in slow[:1]:
        for seconds, sql in result["sql"]:
            print(f"    {float(seconds) * 1000:7.1f} ms  {sql[:400]}")


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def report_row(label, size, page, result, worst, slow) -> None:
    if result["status"] != 200:
        print(f"  {label:<24} {size:>4} {page:>4}  HTTP {result['status']}")
        worst["failed"] += 1
        return
    ok = result["p95"] <= GOAL_MS and result["queries"] <= GOAL_QUERIES
    worst["rows"] += 1
    worst["p95"] = max(worst["p95"], result["p95"])
    worst["queries"] = max(worst["queries"], result["queries"])
    worst["failed"] += not ok
    if not ok:
        slow.append((f"{label} size {size} page {page}", result))
    cpu = f"{result['cpu']:.0f}+{result['backend']:.0f}ms"
    print(
        f"  {label:<24} {size:>4} {page:>4} {result['rows']:>4} {result['median']:>6.0f}ms "
        f"{result['p95']:>6.0f}ms {cpu:>13} {result['queries']:>7}  {'PASS' if ok else 'FAIL'}"
    )
