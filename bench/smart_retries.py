"""Smart Retries against the fixed schedule: `manage.py simulate` over worlds and seeds.

Goals, for every built-in world but `nosignal` (automations/worlds.py), at 2,000
customers over 60 days and for every seed: Smart Retries recover at least 15% more than
the fixed schedule with no more automatic attempts, charge no hard-declined payment
method again, and their stated chances are calibrated within 5 points in every decile
that holds at least CALIBRATION_MIN retries (fewer are noise: 50 retries at 30% have a
standard error of 6.5 points). In the `nosignal` world (no timing signal at all),
Smart Retries stay within NOSIGNAL_TOLERANCE of the fixed schedule with no more
attempts. Each (world, seed) builds its population once and runs both modes from it, in
transactions rolled back afterwards.

The engine was developed on seeds 1-3 (and before that 101-103); the bench reports seeds
11-13 (`--sim-first-seed` chooses). The simulation runs in a process of its own on a
database of its own (the bench database's name plus "_simulate", created and migrated
when missing). Emails go to a dummy backend, without PDFs. Slow: the longest part of the bench.

    python -m bench.smart_retries DATABASE_URL CUSTOMERS DAYS FIRST_SEED SEEDS WORLD,...
"""

import json
import os
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

GOAL_GAIN = 0.15
NOSIGNAL_TOLERANCE = 0.03
CALIBRATION_GAP = 0.05
CALIBRATION_MIN = 100
START = datetime(2026, 1, 5, tzinfo=UTC)  # simulate's default: the figures reproduce there
ROOT = Path(__file__).resolve().parent.parent
WORLDS = ("cards", "paycycles", "hours", "nosignal")


def simulate_database_url() -> tuple[str, str]:
    """The bench database's URL with "_simulate" after its name (user, password, host,
    port and options carried over as they were), created when missing; and its name."""
    from django.conf import settings

    from bench.run import database_prepare

    bench = settings.DATABASES["default"]["NAME"]
    head, _slash, tail = os.environ["DATABASE_URL"].partition(f"/{bench}")
    url = f"{head}/{bench}_simulate{tail}"
    return url, database_prepare(url, rebuild=False)


def run(summary, *, customers: int, days: int, seeds: int, first_seed: int = 11,
        worlds: tuple = WORLDS) -> None:
    url, name = simulate_database_url()
    last = first_seed + seeds - 1
    print(
        f"\nsmart retries: simulate --customers {customers} --days {days}, worlds "
        f"{', '.join(worlds)}, seeds {first_seed}-{last}, from {START:%Y-%m-%d %H:%M} UTC, "
        f"in database {name}; load average {os.getloadavg()[0]:.1f}"
    )
    began = time.perf_counter()
    done = subprocess.Popen(
        [sys.executable, "-m", "bench.smart_retries", url, str(customers), str(days),
         str(first_seed), str(seeds), ",".join(worlds)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "DATABASE_URL": url, "EMAIL_URL": "dummymail://"},
    )
    results = {}
    for line in done.stdout:
        result = json.loads(line)
        results.setdefault(result["world"], []).append(result)
        print(describe(result))
    if done.wait():
        raise RuntimeError(f"the simulation failed (exit status {done.returncode})")
    print(f"  {sum(map(len, results.values()))} runs in {time.perf_counter() - began:.0f} s "
          f"(load average now {os.getloadavg()[0]:.1f})")
    for world, runs in results.items():
        summary.goal(*goal(world, runs, customers, days))


def figures(result) -> dict:
    smart, fixed = result["smart"], result["fixed"]
    gain = smart["recovered"] / fixed["recovered"] - 1 if fixed["recovered"] else None
    calibrated = [row for row in smart["calibration"].get("deciles", [])
                  if row["n"] >= CALIBRATION_MIN]
    worst = max((abs(row["gap"]) for row in calibrated), default=None)
    return {"gain": gain, "fewer": smart["attempts"] <= fixed["attempts"],
            "hard": smart["hard_again"] + fixed["hard_again"], "worst_gap": worst}


def describe(result) -> str:
    smart, fixed, f = result["smart"], result["fixed"], figures(result)
    deciles = ", ".join(f"{row['range']} {row['observed']:.0%}/{row['n']}"
                        for row in smart["calibration"].get("deciles", []))
    gain = "n/a" if f["gain"] is None else f"{f['gain']:+.1%}"
    worst = "n/a" if f["worst_gap"] is None else f"{f['worst_gap'] * 100:.1f} points"
    return (
        f"  {result['world']} seed {result['seed']}: smart recovered {smart['rate']:.1%} of "
        f"the amount at risk with {smart['attempts']:,} automatic attempts, fixed "
        f"{fixed['rate']:.1%} with {fixed['attempts']:,}: {gain}; hard-declined methods "
        f"charged again {f['hard']}; calibration (chance decile: succeeded/retries) "
        f"{deciles}; worst gap (deciles of >= {CALIBRATION_MIN}) {worst}; Brier "
        f"{smart['calibration'].get('brier') or 0:.3f}; smart {smart['seconds']:.0f} s, "
        f"fixed {fixed['seconds']:.0f} s wall, {result['cpu_s']:.0f} s CPU"
    )


def goal(world, runs, customers, days) -> tuple[bool, str]:
    rows = [figures(r) for r in runs]
    gains = ", ".join("n/a" if f["gain"] is None else f"{f['gain']:+.1%}" for f in rows)
    seeds = ", ".join(str(r["seed"]) for r in runs)
    fewer = all(f["fewer"] for f in rows)
    hard = sum(f["hard"] for f in rows)
    if world == "nosignal":
        ok = fewer and hard == 0 and all(
            f["gain"] is not None and f["gain"] >= -NOSIGNAL_TOLERANCE for f in rows)
        return ok, (
            f"smart retries, {world} world ({customers:,} x {days} days, seeds {seeds}): "
            f"{gains} against fixed (goal >= -{NOSIGNAL_TOLERANCE:.0%}), no more attempts: "
            f"{'yes' if fewer else 'no'}, hard-declined charged again: {hard}"
        )
    calibrated = all(f["worst_gap"] is None or f["worst_gap"] <= CALIBRATION_GAP for f in rows)
    ok = fewer and hard == 0 and calibrated and all(
        f["gain"] is not None and f["gain"] >= GOAL_GAIN for f in rows)
    worst = max((f["worst_gap"] for f in rows if f["worst_gap"] is not None), default=None)
    return ok, (
        f"smart retries, {world} world ({customers:,} x {days} days, seeds {seeds}): {gains} "
        f"against fixed (goal >= +{GOAL_GAIN:.0%}), no more attempts: "
        f"{'yes' if fewer else 'no'}, hard-declined charged again: {hard}, worst calibration "
        f"gap {'n/a' if worst is None else f'{worst * 100:.1f}'} points (goal <= "
        f"{CALIBRATION_GAP * 100:.0f})"
    )


def main() -> None:
    url, customers, days, first_seed, seeds = sys.argv[1], *map(int, sys.argv[2:6])
    worlds = sys.argv[6].split(",")
    from bench.run import django_setup

    django_setup(url)
    from django.core.management import call_command

    from automations.simulation import simulate_modes

    call_command("migrate", verbosity=0)
    for world in worlds:
        for seed in range(first_seed, first_seed + seeds):
            cpu = resource.getrusage(resource.RUSAGE_SELF)
            reports = simulate_modes(
                customers=customers, days=days, seed=seed, modes=["smart", "fixed"],
                start=START, world=world,
            )
            after = resource.getrusage(resource.RUSAGE_SELF)
            figures = {
                report.mode: {
                    "recovered": report.recovered, "at_risk": report.at_risk,
                    "rate": report.recovery_rate, "attempts": report.attempts,
                    "seconds": report.seconds, "hard_again": report.hard_declined_charged_again,
                    "calibration": report.calibration,
                }
                for report in reports
            }
            cpu_s = (after.ru_utime + after.ru_stime) - (cpu.ru_utime + cpu.ru_stime)
            print(json.dumps({"world": world, "seed": seed, "cpu_s": cpu_s, **figures}),
                  flush=True)


if __name__ == "__main__":
    main()
