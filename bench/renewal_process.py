"""The renewal sweep in a fresh process, for its time and its peak memory
(bench.subscriptions), as bench.sweep_process does for the collection sweeps.

    python -m bench.renewal_process NOW_ISO

Prints one JSON line: counts, wall time, queries, peak RSS before and after (MB), and
the CPU time used here and in the PostgreSQL backend.
"""

import json
import os
import sys
import time

from bench.run import django_setup
from bench.sweep_process import backend_cpu_seconds, own_cpu_seconds, peak_rss_mb


def main() -> None:
    django_setup(os.environ["DATABASE_URL"])
    from django.db import connection
    from django.utils.dateparse import parse_datetime

    from subscriptions.renewals import renewals_run

    now = parse_datetime(sys.argv[1])
    queries = [0]

    def count(execute, sql, params, many, context):
        queries[0] += 1
        return execute(sql, params, many, context)

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    before = peak_rss_mb()
    cpu, backend_cpu = own_cpu_seconds(), backend_cpu_seconds(backend)
    with connection.execute_wrapper(count):
        started = time.perf_counter()
        counts = renewals_run(now=now)
        elapsed = time.perf_counter() - started
    backend_after = backend_cpu_seconds(backend)
    print(json.dumps({
        "counts": counts, "elapsed": elapsed, "queries": queries[0],
        "rss_before_mb": before, "rss_peak_mb": peak_rss_mb(),
        "cpu": own_cpu_seconds() - cpu,
        "db_cpu": None if backend_after is None else backend_after - backend_cpu,
    }))


if __name__ == "__main__":
    main()
