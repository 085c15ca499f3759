"""A rehearsal in minutes: `simulate` with 5,000 customers over 60 days, one retry mode.

Goal: the mode runs in at most 5 minutes (the population's build aside, printed beside
it). Printed with the CPU time of the simulation's process and of its PostgreSQL backend
(read from /proc when the database runs on this machine) and the load average: on a
shared machine the wall time depends on the load, the CPU time much less. The figures
(recovered, attempts) are printed too, so that a run can be compared with an earlier one
for the same seed: speed work must leave them unchanged.

Runs in a process of its own on the simulation's database (the bench database's name
plus "_simulate", as the smart_retries part), emails to a dummy backend, without PDFs.

    python -m bench.rehearsal DATABASE_URL CUSTOMERS DAYS SEED MODE   # one JSON line
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

GOAL_MINUTES = 5.0
ROOT = Path(__file__).resolve().parent.parent


def run(summary, *, customers: int, days: int, seed: int = 1, mode: str = "smart") -> None:
    from bench.smart_retries import START, simulate_database_url
    from customers.money import format_money

    url, name = simulate_database_url()
    print(f"\nrehearsal: simulate --customers {customers} --days {days} --seed {seed} "
          f"--retry-mode {mode} --no-compare, from {START:%Y-%m-%d %H:%M} UTC, in database "
          f"{name}")
    done = subprocess.run(
        [sys.executable, "-m", "bench.rehearsal", url, str(customers), str(days), str(seed),
         mode],
        cwd=ROOT, stdout=subprocess.PIPE, text=True, check=True,
        env={**os.environ, "DATABASE_URL": url, "EMAIL_URL": "dummymail://"},
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    minutes = result["seconds"] / 60
    backend = result["backend_cpu"]
    print(
        f"  population built in {result['population_s']:.0f} s; the {mode} mode ran in "
        f"{minutes:.1f} min wall, CPU {result['cpu']:.1f} s in its process"
        + (f" + {backend:.1f} s in its PostgreSQL backend" if backend is not None else "")
        + f"; load average {result['load_before']:.1f} before, {result['load_after']:.1f} after"
    )
    print(f"  of the wall time, {result['model_s']:.1f} s under the retry model's model_load "
          f"(automations.retry_model: fits and refits)")
    money = lambda amount: format_money(amount, "EUR")  # noqa: E731
    print(f"  figures: {result['attempts']:,} automatic attempts, at risk "
          f"{money(result['at_risk'])}, recovered {money(result['recovered'])}, invoices "
          f"{result['invoices_by_status']}")
    summary.goal(
        minutes <= GOAL_MINUTES,
        f"rehearsal: {customers:,} customers x {days} days, {mode} retries, in "
        f"{minutes:.1f} min (goal <= {GOAL_MINUTES:.0f} min a mode; load "
        f"{result['load_after']:.1f})",
    )


def main() -> None:
    url, customers, days, seed, mode = sys.argv[1], *map(int, sys.argv[2:5]), sys.argv[5]
    from bench.run import django_setup

    django_setup(url)
    from django.core.management import call_command
    from django.db import connection

    from automations import retry_model
    from automations.simulation import simulate_modes
    from bench.smart_retries import START
    from bench.sweep_process import backend_cpu_seconds

    # The retry model's (re)fits, timed apart: the rest of the run is the clock's work.
    model_seconds = [0.0]
    model_load = retry_model.model_load

    def model_load_timed(*args, **kwargs):
        began = time.perf_counter()
        try:
            return model_load(*args, **kwargs)
        finally:
            model_seconds[0] += time.perf_counter() - began

    retry_model.model_load = model_load_timed

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    marks = {}

    def world_built(world):
        marks.update(population_s=world.seconds, cpu=time.process_time(),
                     backend=backend_cpu_seconds(backend), load=os.getloadavg()[0])

    [report] = simulate_modes(
        customers=customers, days=days, seed=seed, modes=[mode], start=START,
        on_world=world_built,
        on_report=lambda report: marks.update(cpu_end=time.process_time(),
                                              backend_end=backend_cpu_seconds(backend)),
    )
    backend_cpu = (marks["backend_end"] - marks["backend"]
                   if marks["backend"] is not None and marks["backend_end"] is not None
                   else None)
    print(json.dumps({
        "seconds": report.seconds, "population_s": marks["population_s"],
        "cpu": marks["cpu_end"] - marks["cpu"], "backend_cpu": backend_cpu,
        "model_s": model_seconds[0],
        "load_before": marks["load"], "load_after": os.getloadavg()[0],
        "attempts": report.attempts, "at_risk": report.at_risk,
        "recovered": report.recovered, "invoices_by_status": report.invoices_by_status,
    }), flush=True)


if __name__ == "__main__":
    main()
