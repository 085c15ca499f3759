"""When to retry a failed payment: Smart Retries, the fixed schedule and custom schedules.

Smart Retries estimate, for each hourly slot in reach, the chance that a retry succeeds,
from this system's own history (RetryStat): the success rate of retries of the same
decline code by hour of day in the customer's time zone, by day of month (paydays) and
by days since the first failure, times a lift when the customer was active lately (a
hosted page visit, a new payment method). While history is thin, priors stand in: each
rate is shrunk towards its prior with PSEUDO_COUNT retries' weight, so a handful of
outcomes moves it little and a few hundred decide it. The best slot wins, with a small
preference for sooner; the chosen time and the reason are stored on the invoice.

The retry budget, the window and the card networks' cap (15 retries of one card in 30
days) bound every mode alike, so the fixed schedule is a fair comparison.
"""

import math
import zoneinfo
from collections import defaultdict
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Count
from django.utils.translation import gettext as _

from invoices.collection import CollectionPolicy, Failure, Outcome, RetryPlan
from invoices.models import Event, PaymentAttempt

from .engine.retrying import invoice_policies
from .models import BillingSettings, RetryPolicy, RetryStat

CARD_CAP = 15  # retries of one card...
CARD_CAP_DAYS = 30  # ...in this many days (card network rules)
MIN_GAP = timedelta(hours=1)
PSEUDO_COUNT = 20
ACTIVITY_WINDOW = timedelta(hours=48)
ACTIVITY_LIFT = 1.5
SOONER = 0.97  # per day of waiting: among near-equal slots, the earlier one
MAX_AGE_BUCKET = 30

# Priors: industry rules of thumb, used until this system's history says otherwise.
BASE_PRIOR = {
    "insufficient_funds": 0.15,
    "try_again_later": 0.35,
    "processing_error": 0.35,
    "partial_payment": 0.2,
}
DEFAULT_BASE_PRIOR = 0.1


def hour_prior(hour: int) -> float:
    """Mid-mornings, customer time, after overnight deposits and batch runs, do best."""
    if hour < 6:
        return 0.7
    if hour < 8:
        return 1.1
    if hour < 12:
        return 1.3
    return 1.0 if hour < 18 else 0.8


def day_prior(code: str, day: int) -> float:
    """Paydays (start and end of month, mid-month) help a card short of funds."""
    if code not in ("insufficient_funds", "partial_payment"):
        return 1.0
    if day <= 5:
        return 1.5
    if day >= 25:
        return 1.3
    return 1.2 if 14 <= day <= 16 else 0.8


def age_prior(code: str, days: int) -> float:
    """Funds come back with time; transient errors pass quickly."""
    if code in ("try_again_later", "processing_error"):
        return 1.3 if days == 0 else 1.0
    return (0.6, 0.8, 1.0)[days] if days < 3 else 1.2


PRIORS = {
    RetryStat.Dimension.HOUR: lambda code, bucket: hour_prior(bucket),
    RetryStat.Dimension.DAY: day_prior,
    RetryStat.Dimension.AGE: age_prior,
}
LABELS = {
    RetryStat.Dimension.HOUR: lambda bucket: _("%(h)02d:00 local") % {"h": bucket},
    RetryStat.Dimension.DAY: lambda bucket: _("day %(d)s of the month") % {"d": bucket},
    RetryStat.Dimension.AGE: lambda bucket: _("%(n)s days after the failure") % {"n": bucket},
}


class Model:
    """The learned rates, loaded once per batch: P(success) of a retry of `code` at a
    slot is base(code) x lift(hour) x lift(day) x lift(age) [x activity]."""

    def __init__(self, rows):
        self.counts = {(r.decline_code, r.dimension, r.bucket): (r.attempts, r.successes)
                       for r in rows}

    def base(self, code: str) -> float:
        prior = BASE_PRIOR.get(code, DEFAULT_BASE_PRIOR)
        attempts, successes = self.counts.get((code, RetryStat.Dimension.ALL, 0), (0, 0))
        return (successes + PSEUDO_COUNT * prior) / (attempts + PSEUDO_COUNT)

    def lift(self, code: str, dimension: str, bucket: int, base: float) -> float:
        prior_rate = min(base * PRIORS[dimension](code, bucket), 1.0)
        attempts, successes = self.counts.get((code, dimension, bucket), (0, 0))
        return (successes + PSEUDO_COUNT * prior_rate) / (attempts + PSEUDO_COUNT) / base

    def estimate(self, code: str, local: datetime, age_days: int, active: bool):
        base = self.base(code)
        lifts = {
            RetryStat.Dimension.HOUR: (local.hour, self.lift(code, "hour", local.hour, base)),
            RetryStat.Dimension.DAY: (local.day, self.lift(code, "day", local.day, base)),
            RetryStat.Dimension.AGE: (age_days, self.lift(code, "age", age_days, base)),
        }
        p = base * math.prod(lift for _bucket, lift in lifts.values())
        if active:
            p *= ACTIVITY_LIFT
        return min(p, 0.99), base, lifts


def model_load() -> Model:
    return Model(RetryStat.objects.all())


class SmartCollectionPolicy(CollectionPolicy):
    """The billing settings and retry policies, applied (registered by AutomationsConfig)."""

    @property
    def enabled(self) -> bool:
        return BillingSettings.load().automatic_collection

    def tolerance(self, currency: str) -> int:
        return BillingSettings.load().tolerance_for(currency)

    def retry_now_on_new_method(self) -> bool:
        return BillingSettings.load().default_retry_policy.mode == RetryPolicy.Mode.SMART

    def plan(self, failures: list[Failure]) -> dict[int, RetryPlan]:
        settings = BillingSettings.load()
        policies = list(RetryPolicy.objects.all())
        context = _Context(failures, model_load())
        # A policy an automation started for an invoice replaces the default one.
        started = invoice_policies([f.invoice.pk for f in failures])
        return {
            f.attempt.pk: plan_retry(
                f, started.get(f.invoice.pk) or policy_for(f.customer, settings, policies),
                context,
            )
            for f in failures
        }

    def observe(self, outcomes: list[Outcome]) -> None:
        stats_record(outcomes)


def policy_for(customer, settings: BillingSettings, policies: list[RetryPolicy]) -> RetryPolicy:
    for policy in policies:
        if customer.segment and customer.segment in policy.customer_segments:
            return policy
    return settings.default_retry_policy


class _Context:
    """What planning a batch needs from the database, in three queries."""

    def __init__(self, failures: list[Failure], model: Model):
        self.model = model
        now = max(f.at for f in failures)
        methods = {f.attempt.payment_method_id for f in failures if f.attempt.payment_method_id}
        self.card_counts = dict(
            PaymentAttempt.objects.filter(
                payment_method_id__in=methods,
                created_at__gt=now - timedelta(days=CARD_CAP_DAYS),
            ).order_by().values_list("payment_method_id").annotate(n=Count("pk"))
        )
        self.active = set(
            Event.objects.filter(
                customer_id__in={f.customer.pk for f in failures},
                type__in=["invoice.hosted_page_viewed", "payment_method.attached"],
                created_at__gt=now - ACTIVITY_WINDOW,
            ).values_list("customer_id", flat=True)
        )

    def card_free_from(self, failure: Failure) -> datetime | None:
        """When the card may be retried again under the network cap (None: now)."""
        method_id = failure.attempt.payment_method_id
        if self.card_counts.get(method_id, 0) < CARD_CAP:
            return None
        recent = PaymentAttempt.objects.filter(
            payment_method_id=method_id,
            created_at__gt=failure.at - timedelta(days=CARD_CAP_DAYS),
        ).order_by("-created_at").values_list("created_at", flat=True)
        return recent[CARD_CAP - 1] + timedelta(days=CARD_CAP_DAYS)


def plan_retry(failure: Failure, policy: RetryPolicy, context: _Context) -> RetryPlan:
    invoice, at = failure.invoice, failure.at
    used = max(invoice.attempt_count - 1, 0)  # retries after the first attempt
    budget = policy.retry_budget
    exhausted = policy.after_last_retry == RetryPolicy.AfterLastRetry.MARK_UNCOLLECTIBLE
    if used >= budget:
        return RetryPlan(None, _("All %(n)s retries used (%(policy)s).")
                         % {"n": budget, "policy": policy.name}, uncollectible=exhausted)
    first = invoice.past_due_at or at
    window_end = first + timedelta(days=policy.window_days)
    earliest = at + MIN_GAP
    free_from = context.card_free_from(failure)
    if free_from is not None and free_from > earliest:
        earliest = free_from
    if policy.mode == RetryPolicy.Mode.CUSTOM:
        when = max(at + timedelta(days=policy.custom_schedule[used]), earliest)
        reason = _("Custom schedule: retry %(n)s of %(b)s, %(d)s days after the last attempt.") % {
            "n": used + 1, "b": budget, "d": policy.custom_schedule[used]}
        return RetryPlan(when, reason)
    if earliest > window_end:
        return RetryPlan(None, _("No retry left within the %(w)s-day window (%(policy)s).")
                         % {"w": policy.window_days, "policy": policy.name},
                         uncollectible=exhausted)
    if policy.mode == RetryPolicy.Mode.FIXED:
        step = timedelta(days=policy.window_days) / budget
        when = max(at + step, earliest)
        if when > window_end:
            when = window_end
        reason = _("Fixed schedule: retry %(n)s of %(b)s, every %(h)s hours.") % {
            "n": used + 1, "b": budget, "h": round(step.total_seconds() / 3600)}
        return RetryPlan(when, reason)
    return _smart(failure, context, earliest, window_end, budget - used, used, budget)


def _smart(failure, context, earliest, window_end, left, used, budget) -> RetryPlan:
    code = failure.attempt.decline_code or failure.invoice.last_decline_code
    tz = zoneinfo.ZoneInfo(failure.customer.timezone)
    first = failure.invoice.past_due_at or failure.at
    # Reach: a fair share of what is left of the window for each remaining retry, at
    # least a day, so that a retry can wait for a better hour or payday.
    reach = max((window_end - earliest) / math.ceil(left / 2), timedelta(days=1))
    last = min(window_end, earliest + reach)
    slot = _hour_ceil(earliest)
    if slot > last:
        slot = earliest
    active = failure.customer.pk in context.active
    best = None
    while slot <= last:
        local = slot.astimezone(tz)
        age = min((slot - first).days, MAX_AGE_BUCKET)
        p, base, lifts = context.model.estimate(code, local, age, active)
        score = p * SOONER ** ((slot - earliest).total_seconds() / 86400)
        if best is None or score > best[0]:
            best = (score, slot, p, base, lifts)
        slot += timedelta(hours=1)
    _score, when, p, base, lifts = best
    return RetryPlan(when, _reason(code, when.astimezone(tz), p, base, lifts, active, used, budget))


def _reason(code, local, p, base, lifts, active, used, budget) -> str:
    strong = sorted(
        ((lift, dimension, bucket) for dimension, (bucket, lift) in lifts.items() if lift >= 1.1),
        reverse=True,
    )
    factors = [f"{LABELS[dim](bucket)} ×{lift:.1f}" for lift, dim, bucket in strong[:2]]
    if active:
        factors.append(_("customer active lately ×%(x)s") % {"x": ACTIVITY_LIFT})
    return _(
        "Smart Retries: %(code)s, retry %(n)s of %(b)s at %(when)s customer time; expected "
        "success %(p)s%% (%(base)s%% on average)%(why)s."
    ) % {
        "code": code or _("decline"),
        "n": used + 1,
        "b": budget,
        "when": local.strftime("%a %d %b %H:%M"),
        "p": round(p * 100),
        "base": round(base * 100),
        "why": ": " + ", ".join(factors) if factors else "",
    }


def _hour_ceil(moment: datetime) -> datetime:
    floor = moment.replace(minute=0, second=0, microsecond=0)
    return floor if floor == moment else floor + timedelta(hours=1)


def stats_record(outcomes: list[Outcome]) -> None:
    """Count each finished retry under its decline code, by hour, day and age: one
    statement for the batch, increments merged in SQL (two workers never lose one)."""
    increments = defaultdict(lambda: [0, 0])
    for outcome in outcomes:
        attempt = outcome.attempt
        code = attempt.retry_of_decline_code
        local = attempt.created_at.astimezone(zoneinfo.ZoneInfo(outcome.customer.timezone))
        first = outcome.first_failed_at or attempt.created_at
        age = min(max((attempt.created_at - first).days, 0), MAX_AGE_BUCKET)
        for dimension, bucket in (("all", 0), ("hour", local.hour), ("day", local.day),
                                  ("age", age)):
            counts = increments[(code, dimension, bucket)]
            counts[0] += 1
            counts[1] += int(outcome.succeeded)
    if not increments:
        return
    table = RetryStat._meta.db_table
    rows = ", ".join(["(%s, %s, %s, %s, %s)"] * len(increments))
    params = [value for key, counts in sorted(increments.items()) for value in (*key, *counts)]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (decline_code, dimension, bucket, attempts, successes) "
            f"VALUES {rows} ON CONFLICT (decline_code, dimension, bucket) DO UPDATE SET "
            f"attempts = {table}.attempts + excluded.attempts, "
            f"successes = {table}.successes + excluded.successes",
            params,
        )
