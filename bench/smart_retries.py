"""Smart Retries against the fixed schedule: `manage.py simulate` over several seeds.

Goal: with 5,000 customers over 60 days, Smart Retries recover at least 15% more than
the fixed schedule with the same retry budget, for every seed. Each seed builds its
population once and runs both modes from it, in transactions rolled back afterwards.

The simulation runs in a process of its own on a database of its own (the bench
database's name plus "_simulate", created and migrated when missing): the goal is about
what retry timing recovers, and a million unrelated invoices would only slow it down.
Emails go to a dummy backend, without PDFs. Slow: the longest part of the bench.

    python -m bench.smart_retries DATABASE_URL CUSTOMERS DAYS SEEDS   # one JSON line per seed
"""

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

GOAL_GAIN = 0.15
START = datetime(2026, 1, 5, tzinfo=UTC)  # simulate's default: the figures reproduce there
ROOT = Path(__file__).resolve().parent.parent


def simulate_database_url() -> tuple[str, str]:
    """The bench database's URL with "_simulate" after its name (user, password, host,
    port and options carried over as they were), created when missing; and its name."""
    from django.conf import settings

    from bench.run import database_prepare

    bench = settings.DATABASES["default"]["NAME"]
    head, _slash, tail = os.environ["DATABASE_URL"].partition(f"/{bench}")
    url = f"{head}/{bench}_simulate{tail}"
    return url, database_prepare(url, rebuild=False)


def run(summary, *, customers: int, days: int, seeds: int) -> None:
    from customers.money import format_money

    url, name = simulate_database_url()
    print(
        f"\nsmart retries: simulate --customers {customers} --days {days}, seeds 1-{seeds}, "
        f"from {START:%Y-%m-%d %H:%M} UTC, in database {name}"
    )
    began = time.perf_counter()
    done = subprocess.Popen(
        [sys.executable, "-m", "bench.smart_retries", url, str(customers), str(days), str(seeds)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "DATABASE_URL": url, "EMAIL_URL": "dummymail://"},
    )
    gains, totals = [], {"smart": 0, "fixed": 0}
    for line in done.stdout:
        seed = json.loads(line)
        smart, fixed = seed["smart"], seed["fixed"]
        totals["smart"] += smart["recovered"]
        totals["fixed"] += fixed["recovered"]
        gain = smart["recovered"] / fixed["recovered"] - 1 if fixed["recovered"] else None
        gains.append(gain)
        money = lambda amount: format_money(amount, "EUR")  # noqa: E731
        print(
            f"  seed {seed['seed']}: smart recovered {money(smart['recovered'])} of "
            f"{money(smart['at_risk'])} at risk ({smart['rate']:.1%}, {smart['attempts']:,} "
            f"automatic attempts), fixed {money(fixed['recovered'])} ({fixed['rate']:.1%}, "
            f"{fixed['attempts']:,} attempts): {'n/a' if gain is None else f'{gain:+.1%}'}; "
            f"population {seed['population_s']:.0f} s, smart {smart['seconds']:.0f} s, "
            f"fixed {fixed['seconds']:.0f} s"
        )
    if done.wait():
        raise RuntimeError(f"the simulation failed (exit status {done.returncode})")
    overall = totals["smart"] / totals["fixed"] - 1 if totals["fixed"] else None
    per_seed = ", ".join("n/a" if g is None else f"{g:+.1%}" for g in gains)
    print(f"  {seeds} seeds in {time.perf_counter() - began:.0f} s")
    summary.goal(
        len(gains) == seeds and all(g is not None and g >= GOAL_GAIN for g in gains),
        f"smart retries: {customers:,} customers x {days} days over {seeds} seeds recover "
        f"{'n/a' if overall is None else f'{overall:+.1%}'} against the fixed schedule "
        f"(per seed {per_seed}; goal >= +{GOAL_GAIN:.0%} for every seed)",
    )


def main() -> None:
    url, customers, days, seeds = sys.argv[1], *map(int, sys.argv[2:5])
    from bench.run import django_setup

    django_setup(url)
    from django.core.management import call_command

    from automations.simulation import simulate_modes

    call_command("migrate", verbosity=0)
    for seed in range(1, seeds + 1):
        world = {}
        reports = simulate_modes(
            customers=customers, days=days, seed=seed, modes=["smart", "fixed"], start=START,
            on_world=lambda w, world=world: world.update(seconds=w.seconds),
        )
        figures = {
            report.mode: {
                "recovered": report.recovered, "at_risk": report.at_risk,
                "rate": report.recovery_rate, "attempts": report.attempts,
                "seconds": report.seconds,
            }
            for report in reports
        }
        print(json.dumps({"seed": seed, "population_s": world["seconds"], **figures}), flush=True)


if __name__ == "__main__":
    main()
