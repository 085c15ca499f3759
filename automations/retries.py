"""When to retry a failed payment: Smart Retries, the fixed schedule and custom schedules.

Smart Retries estimate, for every hour left in the retry window, the chance that a retry
then succeeds (automations.retry_model: a model learned from this system's own finished
retries, with mild priors while history is thin). A planner then spends the remaining
budget over the whole window: dynamic programming over the candidate hours chooses the
set of retry times with the largest expected recovery (a payday nine days away beats
three retries before it), and the first of them is the next retry. The chances used to
choose are drawn from the model's posterior (Thompson sampling), so the engine keeps
exploring instead of locking in on its first lucky hour; the chance stored on the
invoice (and on the retry, for calibration) is the posterior mean, and the reason names
only the factors whose effect the data supports.

The retry budget, the window, the card networks' cap (15 retries of one card in 30
days) and the reaction to a new payment method (retry at once) are the same in every
mode, so the fixed schedule is a fair comparison.
"""

import math
import random
import zoneinfo
from collections import defaultdict
from datetime import datetime, timedelta

from django.db import connection
from django.db.models import Count
from django.utils.translation import gettext as _

from invoices.collection import CollectionPolicy, Failure, Outcome, RetryPlan
from invoices.models import Event, PaymentAttempt

from . import retry_model
from .engine.retrying import invoice_policies
from .models import BillingSettings, RetryPolicy, RetryStat
from .retry_model import Situation

CARD_CAP = 15  # retries of one card...
CARD_CAP_DAYS = 30  # ...in this many days (card network rules)
MIN_GAP = timedelta(hours=1)
PLAN_GAP = timedelta(hours=20)  # between the retries a plan counts on (not the next one)
MAX_SLOTS = 400  # candidate times per plan (hourly up to ~16 days, coarser beyond)
SOONER = 0.995  # per day: of two equal plans, the one that collects sooner
MAX_AGE_BUCKET = 30


class SmartCollectionPolicy(CollectionPolicy):
    """The billing settings and retry policies, applied (registered by AutomationsConfig)."""

    @property
    def enabled(self) -> bool:
        return BillingSettings.load().automatic_collection

    def tolerance(self, currency: str) -> int:
        return BillingSettings.load().tolerance_for(currency)

    def retry_now_on_new_method(self) -> bool:
        # Every mode alike (a fair comparison, and what a customer who just added a card
        # expects), whenever collection is automatic.
        return self.enabled

    def plan(self, failures: list[Failure]) -> dict[int, RetryPlan]:
        settings = BillingSettings.load()
        policies = list(RetryPolicy.objects.all())
        context = _Context(failures, retry_model.model_load())
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
    """What planning a batch needs from the database, in a few queries."""

    def __init__(self, failures: list[Failure], model):
        self.model = model
        now = max(f.at for f in failures)
        methods = {f.attempt.payment_method_id for f in failures if f.attempt.payment_method_id}
        self.card_counts = dict(
            PaymentAttempt.objects.filter(
                payment_method_id__in=methods,
                created_at__gt=now - timedelta(days=CARD_CAP_DAYS),
            ).order_by().values_list("payment_method_id").annotate(n=Count("pk"))
        )
        customers = {f.customer.pk for f in failures}
        # Activity the customer did since the payment first failed (a card attached by
        # someone else before it, at sign-up, is not a sign of anything).
        first = min((f.invoice.past_due_at or f.at) for f in failures)
        self.visits = defaultdict(list)
        for customer_id, at in Event.objects.filter(
            customer_id__in=customers, type="invoice.hosted_page_viewed", created_at__gt=first,
        ).values_list("customer_id", "created_at"):
            self.visits[customer_id].append(at)
        self.histories = retry_model._histories(customers)
        self.rng = random.Random(int(now.timestamp()) ^ len(failures))

    def active(self, failure: Failure) -> bool:
        since = failure.invoice.past_due_at or failure.at
        return any(at >= since for at in self.visits.get(failure.customer.pk, ()))

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
    pace = timedelta(days=policy.window_days) / budget
    return _smart(failure, context, earliest, window_end, budget - used, used, budget, pace)


def _smart(failure, context, earliest, window_end, left, used, budget, pace) -> RetryPlan:
    code = failure.attempt.decline_code or failure.invoice.last_decline_code
    customer = failure.customer
    tz = zoneinfo.ZoneInfo(customer.timezone)
    first = failure.invoice.past_due_at or failure.at
    days, weekdays = retry_model.paid_before(context.histories.get(customer.pk, []),
                                             failure.at, tz)
    situation = Situation(
        code=code, funding=failure.attempt.card_funding or "unknown",
        amount=failure.invoice.amount_remaining, tries=used, first_failed_at=first,
        timezone=customer.timezone, segment=customer.segment or "",
        active=context.active(failure), paid_days=days, paid_weekdays=weekdays,
    )
    slots = _slots(earliest, window_end)
    base = retry_model.base_features(situation)
    sampled = context.model.sampled(context.rng)
    features = [base + retry_model.slot_features(situation, slot.astimezone(tz), slot)
                for slot in slots]
    drawn = [sampled.chance(f) for f in features]
    # Never ahead of the fixed schedule's count: retry n no sooner than (n - 1) paces
    # after the first failure, so Smart never makes more attempts than it would.
    marks = {k: first + pace * (used + left - k) for k in range(1, left + 1)}
    choice, expected = _plan(slots, drawn, left, earliest, marks)
    when = slots[choice]
    p = context.model.chance(features[choice])
    reason = _reason(context.model, situation, features[choice], when.astimezone(tz), p,
                     expected, used, budget, when - earliest)
    return RetryPlan(when, reason, chance=p)


def _slots(earliest: datetime, window_end: datetime) -> list[datetime]:
    """Candidate retry times: on the hour from `earliest` to the window's end, hourly
    or coarser so that there are at most MAX_SLOTS."""
    first = _hour_ceil(earliest)
    if first > window_end:
        return [earliest]
    hours = int((window_end - first).total_seconds() // 3600)
    step = max(1, math.ceil((hours + 1) / MAX_SLOTS))
    return [first + timedelta(hours=h) for h in range(0, hours + 1, step)]


def _plan(slots: list[datetime], chances: list[float], left: int, earliest: datetime,
          marks: dict | None = None):
    """Dynamic programming over the candidate times: the set of at most `left` retries,
    PLAN_GAP apart, that maximises the expected recovery (a success at slot i is worth
    SOONER^days), each retry counting only if those before it failed; the retry placed
    with k retries left comes no sooner than marks[k]. Returns the first retry of the
    best set and its expected recovery."""
    marks = marks or {}
    n = len(slots)
    following = []  # the first slot at least PLAN_GAP after each
    j = 0
    for i in range(n):
        while j < n and slots[j] - slots[i] < PLAN_GAP:
            j += 1
        following.append(j)
    worth = [c * SOONER ** ((slot - earliest).total_seconds() / 86400)
             for slot, c in zip(slots, chances, strict=True)]
    # value[k][i]: the best expected recovery with k retries among slots i..n-1.
    value = [[0.0] * (n + 1) for _k in range(left + 1)]
    for k in range(1, left + 1):
        row, below, mark = value[k], value[k - 1], marks.get(k)
        for i in range(n - 1, -1, -1):
            if mark is not None and slots[i] < mark:
                row[i] = row[i + 1]
                continue
            take = worth[i] + (1 - chances[i]) * below[following[i]]
            row[i] = take if take > row[i + 1] else row[i + 1]
    # The first retry of the best plan: the first slot at which taking it is best.
    row, below, mark = value[left], value[left - 1], marks.get(left)
    for i in range(n):
        if mark is not None and slots[i] < mark:
            continue
        if worth[i] + (1 - chances[i]) * below[following[i]] >= row[0] - 1e-12:
            return i, row[0]
    return n - 1, row[0]


def _reason(model, situation, features, local, p, expected, used, budget, wait) -> str:
    factors = []
    for feature in features:
        if feature in ("b",) or feature.startswith(("c:", "fund:")):
            continue
        weight = model.weight(feature)
        if weight >= math.log(1.15) and model.supported(feature):
            factors.append((weight, feature))
    factors.sort(reverse=True)
    named = [f"{_label(feature, situation, local)} ×{math.exp(weight):.1f}"
             for weight, feature in factors[:3]]
    text = _(
        "Smart Retries: %(code)s, retry %(n)s of %(b)s at %(when)s customer time; expected "
        "success %(p)s%% (%(all)s%% over the %(left)s retries left)"
    ) % {
        "code": situation.code or _("decline"),
        "n": used + 1,
        "b": budget,
        "when": local.strftime("%a %d %b %H:%M"),
        "p": round(p * 100),
        "all": round(expected * 100),
        "left": budget - used,
    }
    if named:
        text += ": " + ", ".join(named)
    if wait >= timedelta(days=2):
        text += _(" (waits %(d)s days for a better time)") % {"d": wait.days}
    return text + "."


def _label(feature: str, situation, local) -> str:
    kind, _sep, rest = feature.partition(":")
    if kind in ("hb", "fh"):
        block = local.hour // 3
        hours = f"{block * 3:02d}:00-{block * 3 + 2:02d}:59"
        if kind == "hb":
            return _("%(h)s local") % {"h": hours}
        return _("%(f)s card, %(h)s local on a %(d)s") % {
            "f": situation.funding, "h": hours,
            "d": _("weekend") if local.weekday() >= 5 else _("weekday")}
    if kind == "fw":
        return _("%(f)s card on %(d)s") % {"f": situation.funding, "d": local.strftime("%A")}
    if kind == "h":
        return _("%(h)02d:00 local") % {"h": local.hour}
    if kind == "dom":
        block = min((local.day - 1) // 3, 9)
        last = 31 if block == 9 else block * 3 + 3
        return _("days %(a)s-%(b)s of the month") % {"a": block * 3 + 1, "b": last}
    if kind == "age":
        return _("%(n)s days after the failure") % {
            "n": round((local - situation.first_failed_at).total_seconds() / 86400, 1)}
    if kind == "cd":
        return _("near a day on which this customer paid before")
    if kind == "cw":
        return _("a weekday on which this customer paid before")
    if kind == "act":
        return _("customer active since the failure")
    if kind == "seg":
        return _("segment %(s)s") % {"s": rest}
    if kind == "tries":
        return _("%(n)s retries failed before") % {"n": rest}
    if kind == "amt":
        return _("amount")
    return feature


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


def retry_calibration(*, test_clock=None) -> dict:
    """Smart Retries' stated chances against what happened, by decile of the chance
    (finished automatic retries that had one), and the Brier score (mean squared gap
    between chance and outcome: 0 is perfect, 0.25 is a coin toss's)."""
    from django.db.models import Case, F, FloatField, IntegerField, Sum, Value, When
    from django.db.models.functions import Cast

    finished = PaymentAttempt.objects.filter(
        source=PaymentAttempt.Source.AUTOMATIC, predicted_chance__isnull=False,
        status__in=[PaymentAttempt.Status.SUCCEEDED, PaymentAttempt.Status.FAILED],
    )
    if test_clock is not None:
        finished = finished.filter(customer__test_clock=test_clock)
    chance = Cast(F("predicted_chance"), FloatField()) / 1000
    won = Case(When(status=PaymentAttempt.Status.SUCCEEDED, then=Value(1.0)),
               default=Value(0.0), output_field=FloatField())
    rows = (
        finished.annotate(decile=Cast(F("predicted_chance") / 100, IntegerField()), won=won)
        .values("decile").order_by("decile")
        .annotate(n=Count("pk"), predicted=Sum(chance), observed=Sum("won"),
                  squared=Sum((chance - F("won")) * (chance - F("won"))))
    )
    deciles, total, squared = {}, 0, 0.0
    for row in rows:
        decile = min(row["decile"], 9)
        slot = deciles.setdefault(decile, {"n": 0, "predicted": 0.0, "observed": 0})
        slot["n"] += row["n"]
        slot["predicted"] += row["predicted"]
        slot["observed"] += row["observed"]
        total += row["n"]
        squared += row["squared"]
    table = [
        {"decile": d, "range": f"{d * 10}-{d * 10 + 10}%", "n": v["n"],
         "predicted": v["predicted"] / v["n"], "observed": v["observed"] / v["n"],
         "gap": v["observed"] / v["n"] - v["predicted"] / v["n"]}
        for d, v in sorted(deciles.items())
    ]
    return {"deciles": table, "retries": total, "brier": squared / total if total else None}
