"""manage.py simulate: the demo of the collection engine and the benchmark of Smart
Retries (automations.simulation). Prints a report, and the same population collected
with the other retry mode for comparison."""

from datetime import UTC

from django.core.management.base import BaseCommand, CommandError

from customers.money import format_money, known_currencies

from ...simulation import Report, simulate_modes
from ...worlds import WORLDS
from ..options import moment_parse

MODES = ("smart", "fixed")


class Command(BaseCommand):
    help = ("Collect a synthetic population on a test clock for N days and report what "
            "automatic collection recovered, with Smart Retries and with the fixed schedule.")

    def add_arguments(self, parser):
        parser.add_argument("--customers", type=int, default=500)
        parser.add_argument("--days", type=int, default=60)
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--seeds", type=int, default=1,
                            help="run this many seeds (seed, seed+1, ...) and sum them up")
        parser.add_argument("--retry-mode", choices=MODES, default="smart")
        parser.add_argument("--world", choices=WORLDS, default="cards",
                            help="how the customers' cards behave (automations/worlds.py): "
                                 "cards (the test card mix), paycycles, hours, nosignal")
        parser.add_argument("--no-compare", action="store_true",
                            help="skip the run with the other retry mode")
        parser.add_argument("--start", default="2026-01-05T00:00:00+00:00",
                            help="the test clock's starting time (ISO 8601 with an offset)")
        parser.add_argument("--currency", default="EUR")
        parser.add_argument("--attachments", action="store_true",
                            help="render the emails' PDF attachments (slow: one PDF per "
                                 "receipt); without it the emails go out without them")
        parser.add_argument("--subscriptions", type=float, default=0.0,
                            help="share of the customers (0-1) who subscribe instead of "
                                 "receiving one-off monthly invoices")
        parser.add_argument("--yearly", type=float, default=0.2,
                            help="share of the subscribers on a yearly price (0-1)")
        parser.add_argument("--keep", action="store_true",
                            help="keep the simulated customers and invoices (single mode only)")

    def handle(self, *args, customers, days, seed, seeds, retry_mode, no_compare, start,
               currency, keep, attachments, subscriptions=0.0, yearly=0.2, world="cards",
               **options):
        if not 1 <= customers <= 100_000:
            raise CommandError("--customers must be between 1 and 100000.")
        if not 1 <= days <= 366:
            raise CommandError("--days must be between 1 and 366.")
        if currency not in known_currencies():
            raise CommandError(f"--currency {currency!r} is not an ISO 4217 currency.")
        moment = moment_parse(start, "--start")
        if not 0 <= subscriptions <= 1 or not 0 <= yearly <= 1:
            raise CommandError("--subscriptions and --yearly are shares between 0 and 1.")
        if not 1 <= seeds <= 100:
            raise CommandError("--seeds must be between 1 and 100.")
        if not 0 <= seed <= 2**31:
            raise CommandError(f"--seed must be between 0 and {2**31}.")
        if keep and not no_compare:
            raise CommandError("--keep keeps one run: add --no-compare.")
        if keep and seeds > 1:
            raise CommandError("--keep keeps one run: leave --seeds out.")
        modes = [retry_mode] if no_compare else [retry_mode, *(m for m in MODES if m != retry_mode)]
        compared = []
        for run_seed in range(seed, seed + seeds):
            reports = simulate_modes(
                customers=customers, days=days, seed=run_seed, modes=modes,
                start=moment.astimezone(UTC), currency=currency, keep=keep,
                attachments=attachments, on_world=self._world, on_report=self._print,
                subscriptions=subscriptions, yearly=yearly,
                world=world,
            )
            if len(reports) == 2:
                pair = sorted(reports, key=lambda r: r.mode != "smart")
                self._compare(*pair)
                compared.append(pair)
        if len(compared) > 1:
            self._summary(compared)

    def _world(self, world) -> None:
        self.stdout.write(
            f"population: {len(world.population)} customers ({world.name} world) on a test "
            "clock from "
            f"{world.start:%Y-%m-%d %H:%M} UTC, built in {world.seconds:.0f} s; each mode "
            "runs from it"
        )

    def _print(self, report: Report) -> None:
        seconds = report.seconds
        money = lambda amount: format_money(amount, report.currency)  # noqa: E731
        statuses = ", ".join(
            f"{status} {n}" for status, n in sorted(report.invoices_by_status.items())
        )
        emails = ", ".join(f"{kind} {n}" for kind, n in sorted(report.emails_by_status.items()))
        outcomes = ", ".join(
            f"{status} {n}" for status, n in sorted(report.attempts_by_status.items())
        )
        self.stdout.write(
            f"\n{report.mode} retries — {report.customers} customers, {report.days} days, "
            f"seed {report.seed} ({seconds:.0f} s)\n"
            f"  invoices: {statuses}\n"
            f"  automatic attempts: {report.attempts} ({outcomes})\n"
            f"  billed: {money(report.billed)}\n"
            f"  at risk (first attempt did not collect): {money(report.at_risk)}\n"
            f"  recovered: {money(report.recovered)}\n"
            f"  recovery rate: {report.recovery_rate:.1%}\n"
            f"  emails: {emails or 'none'}\n"
            f"  charges of a hard-declined payment method: {report.hard_declined_charged_again}\n"
        )
        if report.subscriptions_by_status:
            subscribed = ", ".join(
                f"{status} {n}" for status, n in sorted(report.subscriptions_by_status.items())
            )
            self.stdout.write(f"  subscriptions: {subscribed}\n")
        calibration = report.calibration or {}
        if calibration.get("retries"):
            deciles = ", ".join(
                f"{row['range']}: {row['observed']:.0%} of {row['n']}"
                for row in calibration["deciles"]
            )
            self.stdout.write(
                f"  calibration (expected chance: succeeded): {deciles}; Brier score "
                f"{calibration['brier']:.3f}\n"
            )

    def _summary(self, compared: list[list[Report]]) -> None:
        smart = sum(pair[0].recovered for pair in compared)
        fixed = sum(pair[1].recovered for pair in compared)
        gains = [
            f"seed {s.seed} {s.recovered / f.recovered - 1:+.1%}" if f.recovered
            else f"seed {s.seed} (fixed recovered nothing)"
            for s, f in compared
        ]
        overall = f"{smart / fixed - 1:+.1%}" if fixed else "(the fixed schedule recovered nothing)"
        self.stdout.write(
            f"\nOver {len(compared)} seeds, Smart Retries recovered {overall} against the fixed "
            f"schedule ({'; '.join(gains)})."
        )

    def _compare(self, smart: Report, fixed: Report) -> None:
        if not fixed.recovered:
            self.stdout.write("\nThe fixed schedule recovered nothing: no comparison.")
            return
        gain = smart.recovered / fixed.recovered - 1
        self.stdout.write(
            f"\nSmart Retries recovered {gain:+.1%} against the fixed schedule with the same "
            f"budget ({smart.attempts} against {fixed.attempts} automatic attempts)."
        )
