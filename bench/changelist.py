"""The invoice changelist over the 1,000,000-invoice data set, rendered through
django.test.Client as a logged-in superuser: median and p95 of N runs, and the number of
queries, for filters, searches, page sizes and pages."""

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db import connection, reset_queries
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from invoices.models import Invoice

from .report import median_p95, timed

GOAL_MS = 150
GOAL_QUERIES = 10
PAGE_SIZES = [20, 100]
PAGES = [1, 50]


def cases() -> list[tuple[str, dict]]:
    """(label, query parameters): the filters and searches staff use."""
    busy = (
        Invoice.objects.filter(customer__invoice_prefix="B00002")
        .values_list("customer__name", flat=True).first()
    )
    return [
        ("default", {}),
        ("status=open", {"status__exact": "open"}),
        ("currency=JPY", {"currency": "JPY"}),
        ("past due", {"past_due": "yes"}),
        ("segment=enterprise", {"segment": "enterprise"}),
        ("send_invoice", {"collection_method__exact": "send_invoice"}),
        ("open+EUR+send_invoice", {
            "status__exact": "open", "currency": "EUR", "collection_method__exact": "send_invoice",
        }),
        ("search number prefix", {"q": "B00002-0"}),
        ("search exact number", {"q": "B00002-0042"}),
        ("search customer name", {"q": busy or "Acme"}),
        ("search common word", {"q": "globex"}),
        ("search email", {"q": "billing17@example.com"}),
    ]


def superuser_client() -> Client:
    user, _created = get_user_model().objects.get_or_create(
        username="bench-admin", defaults={"is_staff": True, "is_superuser": True}
    )
    client = Client()
    client.force_login(user)
    return client


def measure(client, url, params, runs) -> dict:
    response = client.get(url, params)
    if response.status_code != 200:
        return {"status": response.status_code}
    rows = response.content.count(b'name="_selected_action"')  # one checkbox per row
    reset_queries()  # each request clears the log at its start (request_started)
    with CaptureQueriesContext(connection) as capture:
        client.get(url, params)
    queries = list(capture.captured_queries)  # read now: the next request clears the log
    samples = [timed(lambda: client.get(url, params)) * 1000 for _ in range(runs)]
    median, p95 = median_p95(samples)
    return {"status": 200, "rows": rows, "median": median, "p95": p95,
            "queries": len(queries), "sql": [(q["time"], q["sql"]) for q in queries]}


def run(summary, *, runs: int) -> None:
    if Invoice not in admin.site._registry:
        print("\nchangelist: no ModelAdmin registered for Invoice yet; skipped")
        summary.goal(False, "invoice changelist: not measured (no admin registered)")
        return
    model_admin = admin.site._registry[Invoice]
    url = reverse("admin:invoices_invoice_changelist")
    client = superuser_client()
    original = model_admin.list_per_page
    print(
        f"\ninvoice changelist, {runs} runs each "
        f"(goal: <= {GOAL_MS} ms, <= {GOAL_QUERIES} queries)"
    )
    print(f"  {'case':<24} {'size':>4} {'page':>4} {'rows':>4} {'median':>8} {'p95':>8} "
          f"{'queries':>7}  verdict")
    worst = {"p95": 0.0, "queries": 0, "failed": 0, "rows": 0}
    slow = []
    try:
        for size in PAGE_SIZES:
            model_admin.list_per_page = size
            for page in PAGES:
                for label, params in cases():
                    query = {**params, **({"p": page} if page > 1 else {})}
                    result = measure(client, url, query, runs)
                    report_row(label, size, page, result, worst, slow)
    finally:
        model_admin.list_per_page = original
    ok = worst["failed"] == 0
    summary.goal(
        ok,
        f"invoice changelist: worst p95 {worst['p95']:.0f} ms, most queries {worst['queries']} "
        f"over {worst['rows']} pages (goal <= {GOAL_MS} ms, <= {GOAL_QUERIES} queries)",
    )
    for label, result in slow[:3]:
        print(f"\n  slowest SQL of {label}:")
        for seconds, sql in result["sql"]:
            print(f"    {float(seconds) * 1000:7.1f} ms  {sql[:400]}")


def report_row(label, size, page, result, worst, slow) -> None:
    if result["status"] != 200:
        # the admin sends an out-of-range page back to the first one (?e=1)
        print(f"  {label:<24} {size:>4} {page:>4}  HTTP {result['status']} (fewer pages)")
        return
    ok = result["p95"] <= GOAL_MS and result["queries"] <= GOAL_QUERIES
    worst["rows"] += 1
    worst["p95"] = max(worst["p95"], result["p95"])
    worst["queries"] = max(worst["queries"], result["queries"])
    worst["failed"] += not ok
    if not ok:
        slow.append((f"{label} size {size} page {page}", result))
    print(
        f"  {label:<24} {size:>4} {page:>4} {result['rows']:>4} {result['median']:>6.0f}ms "
        f"{result['p95']:>6.0f}ms {result['queries']:>7}  {'PASS' if ok else 'FAIL'}"
    )
