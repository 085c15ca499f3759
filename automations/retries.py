"""When to retry a failed payment: Smart Retries, the fixed schedule and custom schedules.

Smart Retries estimate, for every hour left in the retry window, the chance that a retry
then succeeds (automations.retry_model: a model learned from this system's own finished
retries, with mild priors while history is thin). A planner then spends the remaining
budget over the whole window: dynamic programming over the candidate hours chooses the
set of retry times with the largest expected recovery (a payday nine days away beats
three retries before it), and the first of them is the next retry. The chances used to
choose are drawn from the model's posterior (Thompson sampling), so the engine keeps
exploring instead of locking in on its first lucky hour. The differences between
candidate times count only as far as the model's timing held up out of sample (its
predictions of the retries made, before their outcomes were learned: timing_slope), so
where timing carries no signal the planner keeps the fixed schedule. The chance stored on the
invoice (and on the retry, for calibration) is the posterior mean's, recalibrated on the
model's own out-of-sample predictions (the best-looking of many times is overstated),
and the reason names only the factors whose effect the data supports.

The retry budget, the window, the card networks' cap (15 retries of one card in 30
days) and the reaction to a new payment method (retry at once) are the same in every
mode, so the fixed schedule is a fair comparison; and Smart Retries make retry n of an
invoice no sooner than the fixed schedule's retry n - 1, and no more retries than it
(fixed_marks: its shadow on the invoice's own attempts): at every moment they are at
most one attempt ahead of it on an invoice, and never make more attempts on it in all.
That lead is taken only once the model's timing has held up out of sample (LEAD_TIMING);
until then retry n comes no sooner than the fixed schedule's retry n.
"""

import math
import random
import zoneinfo
from collections import Counter, defaultdict
from datetime import datetime, timedelta

import numpy as np
from django.db import connection
from django.db.models import Count, Q
from django.utils.translation import gettext as _

from customers.singletons import held_read
from invoices.collection import CollectionPolicy, Failure, Outcome, RetryPlan
from invoices.models import Event, PaymentAttempt

from . import paydays, retry_model
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
MIN_GAIN = 0.08  # Smart Retries leave the fixed schedule only for this much more...
CONFIDENCE = 0.9  # ...expected recovery, in this share of the posterior's draws
# The one attempt ahead of the fixed schedule is taken only once the model's timing has
# held up out of sample at least this much (Model.timing): where timing carries no
# signal, a retry ahead only spends an attempt sooner (and one more on an invoice the
# run's or the window's end cuts off).
LEAD_TIMING = 0.5
DRAWS = 40


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
        policies = retry_policies()
        # A policy an automation started for an invoice replaces the default one.
        started = invoice_policies([f.invoice.pk for f in failures])
        chosen = {f.attempt.pk: started.get(f.invoice.pk) or policy_for(f.customer, settings,
                                                                         policies)
                  for f in failures}
        # The retry model is loaded (and refitted when due) for every batch with a
        # failure on Smart Retries, whether or not its plan reads it; the fixed and
        # custom schedules never read it.
        smart = any(p.mode == RetryPolicy.Mode.SMART for p in chosen.values())
        context = _Context(failures, retry_model.model_load() if smart else None)
        return {f.attempt.pk: plan_retry(f, chosen[f.attempt.pk], context) for f in failures}

    def observe(self, outcomes: list[Outcome]) -> None:
        stats_record(outcomes)


def retry_policies() -> list[RetryPolicy]:
    """Every retry policy: read once in a singletons_held() block (a clock's advance
    plans retries at many of its stops), read again after a save or delete of one."""
    return held_read("automations.retry_policies", lambda: list(RetryPolicy.objects.all()),
                     watch={RetryPolicy})


def policy_for(customer, settings: BillingSettings, policies: list[RetryPolicy]) -> RetryPolicy:
    for policy in policies:
        if customer.segment and customer.segment in policy.customer_segments:
            return policy
    return settings.default_retry_policy


class _Context:
    """What planning a batch needs from the database, in a few queries."""

    def __init__(self, failures: list[Failure], model):
        self.model = model  # None when no failure of the batch is on Smart Retries
        now = max(f.at for f in failures)
        methods = {f.attempt.payment_method_id for f in failures if f.attempt.payment_method_id}
        customers = {f.customer.pk for f in failures}
        invoices = {f.invoice.pk for f in failures}
        self._attempts_read(methods, customers, invoices, now - timedelta(days=CARD_CAP_DAYS))
        # Activity the customer did since the payment first failed (a card attached by
        # someone else before it, at sign-up, is not a sign of anything).
        first = min((f.invoice.past_due_at or f.at) for f in failures)
        self.visits = defaultdict(list)
        for customer_id, at in Event.objects.filter(
            customer_id__in=customers, type="invoice.hosted_page_viewed", created_at__gt=first,
        ).values_list("customer_id", "created_at"):
            self.visits[customer_id].append(at)
        self.rng = random.Random(int(now.timestamp()) ^ len(failures))
        self.generator = np.random.default_rng(int(now.timestamp()) ^ len(failures))

    def _attempts_read(self, methods, customers, invoices, since) -> None:
        """In one query (three before), the batch's payment attempts: the card cap's
        counts (the methods' attempts since `since`), the customers' finished attempts
        in time order (retry_model._histories) and each invoice's automatic attempts
        (the fixed schedule's shadow, fixed_marks), in time order."""
        self.card_counts = Counter()
        self.histories = defaultdict(list)
        self.attempts = defaultdict(list)
        finished = (PaymentAttempt.Status.SUCCEEDED, PaymentAttempt.Status.FAILED)
        rows = PaymentAttempt.objects.filter(
            Q(payment_method_id__in=methods) | Q(customer_id__in=customers)
            | Q(invoice_id__in=invoices)
        ).order_by().values_list(
            "pk", "customer_id", "invoice_id", "payment_method_id", "source", "status",
            "created_at", "completed_at", "predicted_chance",
        )
        for pk, customer_id, invoice_id, method_id, source, status, created, completed, \
                chance in sorted(rows, key=lambda row: (row[6], row[0])):
            if method_id in methods and created > since:
                self.card_counts[method_id] += 1
            if customer_id in customers and status in finished:
                self.histories[customer_id].append(
                    (created, status == PaymentAttempt.Status.SUCCEEDED))
            if invoice_id in invoices and source == PaymentAttempt.Source.AUTOMATIC:
                self.attempts[invoice_id].append((pk, created, completed, chance is not None))

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
    planned = _smart(failure, context, earliest, window_end, budget - used, used, budget, pace)
    if planned is None:
        return RetryPlan(None, _("No retry left within the %(w)s-day window (%(policy)s).")
                         % {"w": policy.window_days, "policy": policy.name},
                         uncollectible=exhausted)
    return planned


def _smart(failure, context, earliest, window_end, left, used, budget, pace) -> RetryPlan | None:
    code = failure.attempt.decline_code or failure.invoice.last_decline_code
    customer = failure.customer
    tz = zoneinfo.ZoneInfo(customer.timezone)
    first = failure.invoice.past_due_at or failure.at
    history = context.histories.get(customer.pk, [])
    days, weekdays, hours = retry_model.paid_before(history, failure.at, tz)
    if (failure.at, False) not in history:  # the failure being planned for
        history = [*history, (failure.at, False)]
    model = context.model
    situation = Situation(
        code=code, funding=failure.attempt.card_funding or "unknown",
        amount=failure.invoice.amount_remaining, tries=used, first_failed_at=first,
        timezone=customer.timezone, segment=customer.segment or "",
        active=context.active(failure), paid_days=days, paid_weekdays=weekdays,
        paid_hours=hours,
        payday=retry_model.payday_of(model.paydays, code, history, failure.at + MIN_GAP, tz),
    )
    situation.failed_weekdays, situation.failed_days = retry_model.failed_before(
        history, failure.at + MIN_GAP, first, tz)
    base = retry_model.base_features(situation)

    def features_at(moment):
        return base + retry_model.slot_features(situation, moment.astimezone(tz), moment)

    # What the fixed schedule would have done on this invoice (its shadow: the same
    # first attempt, the same reaction to a new payment method, the gateway's delays as
    # observed): retry n of Smart Retries comes no sooner than the fixed schedule's
    # retry n - 1, and there are no more of them, so that at every moment Smart Retries
    # are at most one attempt ahead of the fixed schedule's count on an invoice (a payday
    # the morning after a failure is not missed because the fixed schedule waits 42 hours)
    # and make no more attempts on it in all. The lead is taken only once the model's
    # timing holds up out of sample (LEAD_TIMING); before, retry n comes no sooner than
    # the fixed schedule's retry n.
    attempts = getattr(context, "attempts", {}).get(failure.invoice.pk, [])
    chain = _chain(attempts, failure)
    marks = fixed_marks(chain, earliest, window_end, left, pace)
    if not marks:
        return None  # the fixed schedule would have no retry left either
    left = len(marks)
    fixed = fixed_times(marks, earliest, pace, failure.at, window_end)
    fixed_features = [features_at(t) for t in fixed]
    if model.timing >= LEAD_TIMING:
        marks_by_retry = [fixed_shadow(chain, window_end, pace), *marks[:-1]]
    else:
        marks_by_retry = marks  # no evidence of timing: never ahead of the fixed count
    by_left = {left - j: mark for j, mark in enumerate(marks_by_retry)}
    slots = _slots(earliest, window_end)
    generator = _generator(context)
    # Every candidate time's chance under one draw from the posterior (Thompson
    # sampling), all at once: the slots' log-odds are sums of tables by local weekday and
    # hour, day of month and age (SlotTables).
    tables = SlotTables(model, situation, tz, slots)
    drawn = tables.chances(model.draws(generator, 1))[0]
    chosen = _plan_slots(slots, drawn, left, earliest, by_left)
    planned = [features_at(slots[i]) for i in chosen]
    planned_times = [slots[i] for i in chosen]
    better = chosen and _clearly_better(
        model, generator, planned, planned_times, fixed_features, fixed, earliest)
    if better:
        when, chosen_features, times, feats = slots[chosen[0]], planned[0], planned_times, planned
    else:
        when, chosen_features, times, feats = fixed[0], fixed_features[0], fixed, fixed_features
    # The chance stated is the posterior mean's, recalibrated on the chances stated for
    # the retries made before (retry_model.recalibrate: the best-looking of many times
    # is overstated, the winner's curse); the model's log-odds are kept on the attempt,
    # to recalibrate on once its outcome is learned, and whether the retry was moved
    # from the fixed schedule's time (Retry statistics shows them apart).
    z = model.log_odds(chosen_features)
    p = model.calibration.chance(z)
    expected = plan_value([model.stated(f) for f in feats], times, earliest)
    reason = _reason(model, situation, chosen_features, when.astimezone(tz), p,
                     expected, used, budget, when - max(earliest, failure.at + pace),
                     not better)
    return RetryPlan(when, reason, chance=p, log_odds=z, moved=bool(better))


def _generator(context) -> np.random.Generator:
    """The context's generator of posterior draws (seeded from its random.Random)."""
    generator = getattr(context, "generator", None)
    if generator is None:
        generator = context.generator = np.random.default_rng(context.rng.getrandbits(64))
    return generator


class SlotTables:
    """The candidate times' features as tables: a slot's log-odds is the situation's
    base features plus table entries by its local weekday and hour, its day of month and
    its age, so the chances of every slot under any draw of the weights are a few array
    look-ups (the same features as retry_model.slot_features, built once per table)."""

    def __init__(self, model, situation: Situation, tz, slots: list[datetime]):
        group = "funds" if situation.code in retry_model.FUNDS_CODES else "other"
        self.model = model
        self.base = model.columns(retry_model.base_features(situation))
        self.clock = _model_table(model, ("clock", situation.funding), 168, lambda i: (
            retry_model.clock_features(situation.funding, i // 24, i % 24)))
        self.day = _model_table(model, ("day", group), 31, lambda i: (
            retry_model.day_features(group, i + 1)))
        self.age = _model_table(model, ("age", group), len(retry_model.AGE_EDGES) + 1,
                                lambda i: [f"age:{group}:{i}"])
        self.weekday = _table(model, 7, lambda i: (
            retry_model.customer_weekday_features(situation, i)))
        self.hour = _table(model, 24, lambda i: retry_model.customer_hour_features(situation, i))
        self.payday = _table(model, 31, lambda i: (
            retry_model.customer_day_features(situation, i + 1)))
        self.clock_of, self.day_of = _local_parts(tz, slots)
        # The customer's estimated chance at each slot from their payday (pay:k).
        self.pay = None
        if situation.payday is not None:
            fit, posterior, zone = situation.payday
            found = paydays.pay_buckets(fit.chance(posterior, slots, zone),
                                        fit.average(posterior))
            self.pay = np.array([model.column(f"pay:{k}")
                                 for k in range(len(paydays.PAY_CENTERS))],
                                dtype=np.intp)[found]
        ages = np.array([(s - situation.first_failed_at).total_seconds() / 3600 for s in slots])
        self.age_of = np.searchsorted(retry_model.AGE_EDGES, ages, side="right")

    def chances(self, weights: np.ndarray) -> np.ndarray:
        """Each slot's chance under each row of `weights` (draws x columns): draws x slots."""
        weights = self.model.compressed(weights)

        def summed(table):
            return weights[:, table].sum(axis=-1) if table.shape[-1] else \
                np.zeros((len(weights), len(table)))

        z = self.model.offset + weights[:, self.base].sum(axis=1)[:, None]
        z = z + summed(self.clock)[:, self.clock_of]
        z = z + summed(self.weekday)[:, self.clock_of // 24]
        z = z + summed(self.hour)[:, self.clock_of % 24]
        z = z + (summed(self.day) + summed(self.payday))[:, self.day_of - 1]
        z = z + summed(self.age)[:, self.age_of]
        if self.pay is not None:
            z = z + weights[:, self.pay]
        return retry_model._sigmoids(z)


def _table(model, n: int, features_of) -> np.ndarray:
    """n rows of the model's columns (-1: none), row i holding features_of(i)."""
    rows = [features_of(i) for i in range(n)]
    width = max(map(len, rows))
    return np.array([model.columns(row, width) for row in rows], dtype=np.intp).reshape(n, width)


def _model_table(model, key, n: int, features_of) -> np.ndarray:
    """_table, kept on the model (the tables that depend on no customer)."""
    tables = model.__dict__.setdefault("_slot_tables", {})
    found = tables.get(key)
    if found is None:
        found = tables[key] = _table(model, n, features_of)
    return found


_local_hours: dict = {}


def _local_parts(tz, slots: list[datetime]) -> tuple[np.ndarray, np.ndarray]:
    """The slots' local weekday x 24 + hour, and day of month, in time zone `tz`: read
    from a table by UTC hour kept per time zone (slots on the hour), else computed."""
    stamps = [s.timestamp() for s in slots]
    if any(stamp % 3600 for stamp in stamps):
        local = [s.astimezone(tz) for s in slots]
        return (np.array([m.weekday() * 24 + m.hour for m in local], dtype=np.intp),
                np.array([m.day for m in local], dtype=np.intp))
    hours = np.array(stamps, dtype=np.int64) // 3600
    low, high = int(hours.min()), int(hours.max()) + 1
    known = _local_hours.get(tz.key)
    if known is None or known[0] > low or known[0] + len(known[1]) < high:
        if known is not None:
            low, high = min(low, known[0]), max(high, known[0] + len(known[1]))
        clock, day = [], []
        for hour in range(low, high):
            moment = datetime.fromtimestamp(hour * 3600, tz)
            clock.append(moment.weekday() * 24 + moment.hour)
            day.append(moment.day)
        known = _local_hours[tz.key] = (low, np.array(clock, dtype=np.intp),
                                        np.array(day, dtype=np.intp))
    offset = hours - known[0]
    return known[1][offset], known[2][offset]


def _chain(attempts, failure) -> list[tuple[datetime, datetime, bool]]:
    """The invoice's automatic attempts up to the failure being planned for, as
    (created, completed, planned by a retry schedule): the failure's own attempt last,
    completed at the failure (it may not be written yet)."""
    chain = []
    current = failure.attempt
    for pk, created, completed, planned in attempts:
        if pk == getattr(current, "pk", None):
            break
        chain.append((created, completed or created, planned))
    created = getattr(current, "created_at", None) or failure.at
    planned = getattr(current, "predicted_chance", None) is not None
    if not chain:
        planned = False  # the first attempt: the same moment in every mode
    chain.append((created, failure.at, planned))
    return chain


def fixed_marks(chain, earliest, window_end, left, pace) -> list[datetime]:
    """The fixed schedule's next `left` retries at most (fewer when its window ends) on an
    invoice whose automatic attempts were `chain` (see _chain): its shadow. An attempt
    not planned by a schedule (the first, a retry at once on a new payment method) is at
    the same moment in every mode; after each, the fixed schedule retries one pace after
    the attempt failed (the gateway taking as long as it did), at the window's end at the
    latest, and stops once the window has ended."""
    shadow, following, delay = _shadow_walk(chain, window_end, pace)
    if shadow is None:
        return []
    marks = []
    when = following
    while when is not None and len(marks) < left:
        marks.append(when)
        when = _fixed_next(when + delay, window_end, pace)
    return marks


def fixed_shadow(chain, window_end, pace) -> datetime | None:
    """When the fixed schedule would have made the attempt that just failed (the last of
    `chain`, see fixed_marks); None if it would have made none."""
    return _shadow_walk(chain, window_end, pace)[0]


def _shadow_walk(chain, window_end, pace):
    """The fixed schedule's attempt matching the last of `chain`, its next retry and the
    gateway's last delay (fixed_marks)."""
    shadow = following = None
    delay = timedelta(0)
    for created, completed, planned in chain:
        if shadow is None or not planned:
            shadow = created
        else:
            shadow = following
            if shadow is None:
                return None, None, delay
        delay = max(completed - created, timedelta(0))
        following = _fixed_next(shadow + delay, window_end, pace)
    return shadow, following, delay


def _fixed_next(failed_at, window_end, pace):
    """The fixed schedule's retry after a failure at `failed_at` (plan_retry's FIXED)."""
    if failed_at + MIN_GAP > window_end:
        return None
    return min(failed_at + pace, window_end)


def fixed_times(marks, earliest, pace, at=None, window_end=None) -> list[datetime]:
    """The fallback: the fixed schedule's retries (`marks`, fixed_marks) after a failure
    at `at`. After Smart Retries waited for a better time, the marks may have passed: the
    retries catch up with them, half a pace apart at least (never ahead of a mark)."""
    times = []
    previous = at
    for mark in marks:
        when = max(mark, earliest) if previous is None else max(mark, earliest,
                                                                 previous + pace / 2)
        if window_end is not None and when > window_end:
            when = window_end
            if times and times[-1] + MIN_GAP > window_end:
                break
        times.append(when)
        previous = when
    return times


def plan_value(chances: list[float], times: list[datetime], earliest: datetime) -> float:
    """The expected recovery of retrying at `times` (each only if those before failed),
    a success worth SOONER per day of waiting."""
    value, missed = 0.0, 1.0
    for c, moment in zip(chances, times, strict=True):
        value += missed * c * SOONER ** ((moment - earliest).total_seconds() / 86400)
        missed *= 1 - c
    return value


def _plan_values(chances: np.ndarray, times: list[datetime], earliest: datetime) -> np.ndarray:
    """plan_value for each row of `chances` (draws x retries)."""
    worth = SOONER ** (np.array([(t - earliest).total_seconds() for t in times]) / 86400)
    missed = np.cumprod(1 - chances, axis=1)
    missed = np.hstack([np.ones((len(chances), 1)), missed[:, :-1]])
    return (missed * chances * worth).sum(axis=1)


def _clearly_better(model, generator, planned, planned_times, fixed, fixed_times_,
                    earliest) -> bool:
    """Whether the planned retries beat the fixed schedule's under the model, clearly:
    by MIN_GAIN of expected recovery under the posterior mean, and in CONFIDENCE of
    draws from the posterior, the timing features' weights compressed by how much they
    held up out of sample (Model.timing, retry_model.timing_slope). Without a timing
    signal (or with too little history) the model cannot tell them apart and Smart
    Retries keep the fixed schedule."""
    width = max(map(len, planned + fixed))
    columns = np.array([model.columns(f, width) for f in planned + fixed], dtype=np.intp)
    split = len(planned)

    def values(weights):
        weights = model.compressed(weights)
        chances = retry_model._sigmoids(model.offset + weights[:, columns].sum(axis=-1))
        return (_plan_values(chances[:, :split], planned_times, earliest),
                _plan_values(chances[:, split:], fixed_times_, earliest))

    smart, base = values(model.means()[None, :])
    if smart[0] < base[0] * (1 + MIN_GAIN):
        return False
    smart, base = values(model.draws(generator, DRAWS, spread=1.0))
    return int((smart > base).sum()) >= CONFIDENCE * DRAWS


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
    """The first retry of the best plan (see _plan_slots) and its expected recovery."""
    chosen = _plan_slots(slots, chances, left, earliest, marks)
    if not chosen:
        return len(slots) - 1, 0.0
    return chosen[0], plan_value([chances[i] for i in chosen], [slots[i] for i in chosen],
                                 earliest)


def _plan_slots(slots: list[datetime], chances, left: int, earliest: datetime,
                marks: dict | None = None) -> list[int]:
    """Dynamic programming over the candidate times: the set of at most `left` retries,
    PLAN_GAP apart, that maximises the expected recovery (a success at slot i is worth
    SOONER^days), each retry counting only if those before it failed; the retry placed
    with k retries left comes no sooner than marks[k]. Returns the chosen slots' indexes
    in time order. Each number of retries left is one pass over the slots in arrays:
    the best plan from slot i on is the best of taking slot i and of the best from i+1."""
    marks = marks or {}
    n = len(slots)
    seconds = np.array([(slot - earliest).total_seconds() for slot in slots])
    following = np.searchsorted(seconds, seconds + PLAN_GAP.total_seconds(), side="left")
    chances = np.asarray(chances, dtype=float)
    worth = chances * SOONER ** (seconds / 86400)
    # value[k][i]: the best expected recovery with k retries among slots i..n-1; take[k][i]
    # that of a plan that takes slot i (-inf where slot i is before the mark).
    value = [np.zeros(n + 1)]
    takes = [None]
    for k in range(1, left + 1):
        take = worth + (1 - chances) * value[k - 1][following]
        mark = marks.get(k)
        if mark is not None:
            take[seconds < (mark - earliest).total_seconds()] = -np.inf
        row = np.zeros(n + 1)
        row[:n] = np.maximum(np.maximum.accumulate(take[::-1])[::-1], 0.0)
        value.append(row)
        takes.append(take)
    chosen, i = [], 0
    for k in range(left, 0, -1):
        target = value[k][i]
        if target <= 0:
            break
        found = np.flatnonzero(takes[k][i:] >= target - 1e-12)
        if not len(found):
            break
        i += int(found[0])
        chosen.append(i)
        i = int(following[i])
        if i >= n:
            break
    return chosen


def _reason(model, situation, features, local, p, expected, used, budget, wait,
            as_fixed=False) -> str:
    factors = []
    for feature in features:
        if feature in ("b",) or feature.startswith(("c:", "fund:")):
            continue
        # A timing factor as far as the timing held up out of sample (none: not named).
        weight = model.weight(feature) * model.timing_of(feature)
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
    if as_fixed:
        text += _(": no time clearly better than the fixed schedule's")
    elif named:
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
    if kind == "fhh":
        return _("%(f)s card, %(h)02d:00 local on a %(d)s") % {
            "f": situation.funding, "h": local.hour,
            "d": _("weekend") if local.weekday() >= 5 else _("weekday")}
    if kind == "wh":
        block = local.hour // 3
        return _("%(d)s %(h)s local") % {
            "d": local.strftime("%A"), "h": f"{block * 3:02d}:00-{block * 3 + 2:02d}:59"}
    if kind == "dd":
        return _("day %(n)s of the month") % {"n": local.day}
    if kind == "ch":
        return _("near an hour at which this customer paid before")
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
        return _("near a day of the month on which this customer paid before")
    if kind == "cw":
        return _("near a weekday on which this customer paid before")
    if kind == "fwd":
        return _("a weekday on which this invoice failed before") if rest == "1" else \
            _("a weekday on which this invoice did not fail yet")
    if kind == "fdm":
        return _("a day of the month on which this customer's payment failed lately") \
            if rest == "1" else _("a day of the month without a recent failure")
    if kind == "act":
        return _("customer active since the failure")
    if kind == "pay":
        return _("this customer's estimated payday")
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
    (finished automatic retries that had one) and by whether the planner moved the retry
    from the fixed schedule's time, and the Brier score (mean squared gap between chance
    and outcome: 0 is perfect, 0.25 is a coin toss's)."""
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
    # The same retries by what the planner did: moved to a time it expected better, or
    # kept at the fixed schedule's (planned before this was kept on the attempt: none).
    moves = [
        {"moved": row["planner_moved"], "n": row["n"], "predicted": row["predicted"] / row["n"],
         "observed": row["observed"] / row["n"],
         "gap": (row["observed"] - row["predicted"]) / row["n"]}
        for row in finished.annotate(won=won).values("planner_moved")
        .order_by("planner_moved").annotate(n=Count("pk"), predicted=Sum(chance),
                                            observed=Sum("won"))
        if row["planner_moved"] is not None
    ]
    return {"deciles": table, "moves": moves, "retries": total,
            "brier": squared / total if total else None}
