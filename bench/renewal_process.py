"""The renewal sweep in a fresh process, for its time and its peak memory
(bench.subscriptions), as bench.sweep_process does for the collection sweeps.

    python -m bench.renewal_process NOW_ISO

Prints one JSON line: counts, wall time, queries, peak RSS before and after (MB), and
the CPU time used here and in the PostgreSQL backends (the renewal threads' connections
included: each one's CPU is read just before it closes).
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
    from django.db.backends.signals import connection_created
    from django.utils.dateparse import parse_datetime

    from subscriptions.renewals import renewals_run

    now = parse_datetime(sys.argv[1])
    queries = [0]
    threads_db_cpu = []

    def count(execute, sql, params, many, context):
        queries[0] += 1
        return execute(sql, params, many, context)

    def thread_connection(sender, connection, **kwargs):
        """A renewal thread's connection: count its queries, add its backend's CPU."""
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            pid = cursor.fetchone()[0]
        start = backend_cpu_seconds(pid)
        connection.execute_wrappers.append(count)
        close = connection.close

        def closing():
            end = backend_cpu_seconds(pid)
            threads_db_cpu.append(None if None in (start, end) else end - start)
            close()

        connection.close = closing

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    before = peak_rss_mb()
    cpu, backend_cpu = own_cpu_seconds(), backend_cpu_seconds(backend)
    connection_created.connect(thread_connection)
    with connection.execute_wrapper(count):
        started = time.perf_counter()
        counts = renewals_run(now=now)
        elapsed = time.perf_counter() - started
    backend_after = backend_cpu_seconds(backend)
    if backend_after is not None and None not in threads_db_cpu:
        backend_after += sum(threads_db_cpu)
    else:
        backend_after = None
    print(json.dumps({
        "counts": counts, "elapsed": elapsed, "queries": queries[0],
        "rss_before_mb": before, "rss_peak_mb": peak_rss_mb(),
        "cpu": own_cpu_seconds() - cpu,
        "db_cpu": None if backend_after is None else backend_after - backend_cpu,
        "connections": 1 + len(threads_db_cpu),
    }))


if __name__ == "__main__":
    main()
