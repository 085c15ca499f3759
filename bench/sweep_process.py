"""One sweep in a fresh process, for its time and its peak memory (bench.collection).

    python -m bench.sweep_process SWEEP TEST_CLOCK_ID NOW_ISO

A process of its own because peak RSS only ever grows: measured in the benchmark's
process it would include the data set's setup. Prints one JSON line: the
sweep's counts, its wall time, its queries, the process's peak RSS before and after the
sweep (MB), and the CPU time the sweep used here and in its PostgreSQL backend (read from
/proc when the database runs on this machine, else null). On a shared machine the wall
time depends on the load; the CPU time much less. With BENCH_PROFILE=FILE set, the
sweep runs under cProfile and its statistics go to FILE, "%s" in it replaced by the
sweep's name (the figures then include the profiler's own cost).
"""

import cProfile
import json
import os
import resource
import sys
import time

from bench.run import django_setup


def peak_rss_mb() -> float:
    """The process's peak RSS so far. VmHWM, not ru_maxrss: Linux carries ru_maxrss over
    from the parent through fork and exec, so it would report the benchmark's own peak."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def own_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def backend_cpu_seconds(pid: int) -> float | None:
    """User + system CPU of the PostgreSQL backend serving this process, if it runs here
    (a database elsewhere, or in a container, has its own process ids: None)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            name, fields = stat.read().split(" (", 1)[1].rsplit(")", 1)
    except (OSError, IndexError):
        return None
    if not name.startswith("postgres"):
        return None
    fields = fields.split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def sweep_run(name: str, clock_id: int, now) -> dict:
    from django.db import connection

    from automations import sweeps
    from customers.models import TestClock
    from invoices import collection

    clock = TestClock.objects.get(pk=clock_id)
    run = {
        "collect_due": lambda: collection.collect_due(now=now, test_clock=clock).as_dict(),
        "mark_past_due_uncollectible": lambda: sweeps.mark_past_due_uncollectible(
            now=now, test_clock=clock
        ),
    }[name]
    queries = [0]

    def count(execute, sql, params, many, context):
        queries[0] += 1
        return execute(sql, params, many, context)

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    before = peak_rss_mb()
    cpu, backend_cpu = own_cpu_seconds(), backend_cpu_seconds(backend)
    # A path, in which "%s" becomes the sweep's name: the sweep's cProfile statistics.
    profile_to = os.environ.get("BENCH_PROFILE", "").replace("%s", name)
    profiler = cProfile.Profile() if profile_to else None
    with connection.execute_wrapper(count):
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        counts = run()
        if profiler:
            profiler.disable()
        elapsed = time.perf_counter() - started
    if profiler:
        profiler.dump_stats(profile_to)
    backend_after = backend_cpu_seconds(backend)
    return {
        "counts": counts, "elapsed": elapsed, "queries": queries[0],
        "rss_before_mb": before, "rss_peak_mb": peak_rss_mb(),
        "cpu": own_cpu_seconds() - cpu,
        "db_cpu": None if backend_after is None else backend_after - backend_cpu,
    }


def main() -> None:
    name, clock_id, now = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    django_setup(os.environ["DATABASE_URL"])
    from django.utils.dateparse import parse_datetime

    print(json.dumps(sweep_run(name, clock_id, parse_datetime(now))))


if __name__ == "__main__":
    main()
