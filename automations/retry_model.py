"""What Smart Retries know: the chance that a retry at a given moment succeeds, learned
from this system's own finished retries.

The model is a logistic regression over one-hot features, fitted here in plain Python
(no numerical library: a few hundred weights and tens of thousands of rows do not need
one, and every weight can be read as an odds ratio). The features:

- the decline code, and the customer's segment (segment -> everyone);
- the local hour (3-hour blocks, and each hour within them) x weekend, and the weekday,
  each by card funding as the gateway reported it (debit, credit, prepaid); the weekday
  x 3-hour block;
- the hour of day; the day of month (3-day blocks, and each day within them) by kind of
  decline (funds or other);
- the time since the first failure, by kind of decline; how many retries already failed;
- the amount (order of magnitude);
- the customer's own history (customer level): how far the day of month is from a day on
  which this customer's payments succeeded before, and whether that weekday saw one (a
  per-customer payday estimate, pooled through weights shared by every customer);
- where the customer's money was not: a weekday on which this invoice already failed, a
  day of month on which the customer's payments failed lately;
- whether the customer did something since the failure (visited the invoice page).

Each weight has a Gaussian prior (ridge): mild generic priors (a retry within hours of
a lack of funds rarely works; nights are weak; a day on which the customer paid before
helps) that a few hundred retries override. The prior is also the shrinkage: a feature
seen a few times stays near its prior, a segment or a customer pattern near everyone's,
an hour near its 3-hour block's. Each family's prior spread is itself estimated from
the data (empirical Bayes, group_precisions): where a family's weights are noise, as in
a world with no timing signal, its prior tightens until its factors vanish.
The posterior is approximated per weight (Laplace, diagonal), which gives Thompson
sampling (exploration) and tells which factors the data supports (the reason names only
those whose weight is at least two standard deviations from zero).
"""

import math
import random
import zoneinfo
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection

from invoices.gateways.base import HARD_DECLINE_CODES
from invoices.models import PaymentAttempt

FUNDS_CODES = frozenset({"insufficient_funds", "partial_payment", "card_velocity_exceeded",
                         "withdrawal_count_limit_exceeded"})
TRAIN_LIMIT = 50_000  # the most recent finished retries learned from
PRIOR_PRECISION = 4.0  # 1 / variance of a weight's prior before its family's is estimated
GROUP_SPREAD = 0.2  # the hyperprior: a family's prior spread (sd) when data says little...
GROUP_PSEUDO = 1.0  # ...worth this many well-determined weights
GROUP_SPREAD_MIN = 0.03
GROUP_SPREAD_MAX = 1.5
SHRINK_ROUNDS = 4
INTERCEPT_PRECISION = 0.3
BASE_PRIOR = {"insufficient_funds": 0.12, "try_again_later": 0.3, "processing_error": 0.3,
              "partial_payment": 0.15}
DEFAULT_BASE_PRIOR = 0.1
REFIT_GROWTH = 0.1  # refit once the history grew by this share (always under REFIT_ALWAYS)
REFIT_ALWAYS = 400
SUPPORTED_Z = 2.0  # a factor is named only when its weight is this sure
FAILED_MEMORY = timedelta(days=40)
PAID_MEMORY = 3  # the customer's latest successes that make their payday estimate
EXPLORATION = 0.3  # Thompson draws use this share of the posterior's spread
CALIBRATION_PAIRS = 20_000  # the latest out-of-sample predictions recalibrated on
CALIBRATION_PRIOR = (1.0, 4.0)  # precision of the recalibration's shift (toward 0)...
# ...and of its slope (toward 1): a few hundred retries move them


def _logit(p: float) -> float:
    return math.log(p / (1 - p))


def _sigmoid(z: float) -> float:
    if z < -30:
        return 1e-13
    if z > 30:
        return 1 - 1e-13
    return 1 / (1 + math.exp(-z))


def prior_mean(feature: str) -> float:
    """Mild, generic: what a collector would say before seeing any data."""
    kind, _sep, value = feature.partition(":")
    if kind == "c":
        return _logit(BASE_PRIOR.get(value, DEFAULT_BASE_PRIOR))
    if feature in ("age:funds:0", "age:funds:1"):
        return -0.3  # money rarely comes back within hours
    if kind == "hb" and value in ("0", "1"):
        return -0.2  # 00:00-05:59 local
    if feature in ("cd:0", "cd:1"):
        return 0.3  # on or just after a day of month on which this customer paid before
    if feature in ("cw:0", "cw:1"):
        return 0.1
    return 0.0


def group(feature: str) -> str:
    """The family a feature belongs to (its weights share one prior spread)."""
    return feature.partition(":")[0]


def _precision(feature: str, precisions: dict | None = None) -> float:
    if feature.startswith("c:"):
        return INTERCEPT_PRECISION
    if precisions:
        return precisions.get(group(feature), PRIOR_PRECISION)
    return PRIOR_PRECISION


def group_precisions(weights: dict, variances: dict, precisions: dict) -> dict:
    """Empirical Bayes: each family's prior spread re-estimated from its own weights
    (MacKay's fixed point: the spread of the weights over how well the data determines
    them), with a weak hyperprior toward GROUP_SPREAD. A family whose weights are noise
    (a world with no timing signal) gets a tight prior and its factors vanish; one with
    a real effect keeps a wide one. This is the shrinkage: customer -> segment -> everyone."""
    sums = defaultdict(lambda: [0.0, 0.0])
    for feature, w in weights.items():
        if feature.startswith("c:"):
            continue
        g = group(feature)
        precision = _precision(feature, precisions)
        sums[g][0] += (w - prior_mean(feature)) ** 2
        sums[g][1] += max(0.0, 1 - variances[feature] * precision)
    found = {}
    for g, (square, determined) in sums.items():
        spread = (square + GROUP_PSEUDO * GROUP_SPREAD ** 2) / (determined + GROUP_PSEUDO)
        spread = min(max(spread, GROUP_SPREAD_MIN ** 2), GROUP_SPREAD_MAX ** 2)
        found[g] = 1 / spread
    return found


@dataclass
class Situation:
    """What is known about a failed invoice when its retry is planned."""

    code: str
    funding: str
    amount: int
    tries: int  # retries already failed
    first_failed_at: datetime
    timezone: str
    segment: str
    active: bool
    paid_days: frozenset  # days of month of this customer's earlier successes
    paid_weekdays: frozenset
    paid_hours: frozenset = frozenset()  # local hours of those successes
    failed_weekdays: frozenset = frozenset()  # local weekdays of this invoice's failures
    failed_days: frozenset = frozenset()  # days of month of the customer's recent failures


AGE_EDGES = (6, 24, 48, 72, 120, 192, 336)  # hours since the first failure


def _age_bucket(hours: float) -> int:
    for n, edge in enumerate(AGE_EDGES):
        if hours < edge:
            return n
    return len(AGE_EDGES)


def _day_offset(day: int, paid_days) -> str:
    """The day of month against the nearest day on which this customer paid before,
    signed (money arrives on a payday and is spent in the days after): the per-customer
    payday estimate."""
    if not paid_days:
        return "none"
    offsets = [((day - d + 15) % 31) - 15 for d in paid_days]
    near = min(offsets, key=lambda o: (abs(o), -o))
    if -1 <= near <= 1:
        return str(near)
    return "-3" if -3 <= near < 0 else "+3" if 0 < near <= 3 else "far"


def _weekday_offset(weekday: int, paid_weekdays) -> str:
    offsets = [((weekday - d + 3) % 7) - 3 for d in paid_weekdays]
    near = min(offsets, key=lambda o: (abs(o), -o))
    return str(near) if -1 <= near <= 1 else "far"


def base_features(s: Situation) -> list[str]:
    group = "funds" if s.code in FUNDS_CODES else "other"
    magnitude = min(int(math.log10(max(s.amount, 1))), 6)
    features = [f"c:{s.code or 'none'}", f"amt:{group}:{magnitude}",
                f"tries:{min(s.tries, 5)}", f"fund:{s.funding}"]
    if s.segment:
        features.append(f"seg:{s.segment}")
    if s.active:
        features.append("act:1")
    return features


def slot_features(s: Situation, local: datetime, at: datetime) -> list[str]:
    group = "funds" if s.code in FUNDS_CODES else "other"
    weekday = local.weekday()
    block = local.hour // 3
    age = (at - s.first_failed_at).total_seconds() / 3600
    features = [
        f"hb:{block}", f"fh:{s.funding}:{int(weekday >= 5)}:{block}",
        f"fw:{s.funding}:{weekday}", f"h:{local.hour}",
        f"fhh:{s.funding}:{int(weekday >= 5)}:{local.hour}", f"wh:{weekday}:{block}",
        f"dom:{group}:{min((local.day - 1) // 3, 9)}", f"dd:{group}:{local.day}",
        f"age:{group}:{_age_bucket(age)}",
        f"cd:{_day_offset(local.day, s.paid_days)}",
    ]
    if s.paid_weekdays:
        features.append(f"cw:{_weekday_offset(weekday, s.paid_weekdays)}")
    # Where this customer's money was not: a weekday this invoice already failed on, a
    # day of month on which the customer's payments failed lately.
    features.append(f"fwd:{int(weekday in s.failed_weekdays)}")
    features.append(f"fdm:{int(local.day in s.failed_days)}")
    if s.paid_hours:
        near = min(min(abs(local.hour - h), 24 - abs(local.hour - h)) for h in s.paid_hours)
        features.append("ch:near" if near <= 2 else "ch:far")
    return features


class Model:
    def __init__(self, weights: dict, variances: dict, rows: int, offset: float = 0.0,
                 precisions: dict | None = None, calibration: tuple = (0.0, 1.0)):
        self.weights = weights
        self.variances = variances
        self.rows = rows
        self.offset = offset  # added to every log-odds (0: none)
        self.precisions = precisions or {}  # each family's prior precision (estimated)
        self.calibration = calibration  # (shift, slope) of the stated chance's log-odds
        self.trained = 0  # training rows fitted on
        self.pairs: list = []  # (log-odds predicted before the outcome was known, outcome)

    def stated(self, features: list[str]) -> float:
        """The chance stated for a retry (on the invoice, and recorded for calibration):
        the posterior mean's, recalibrated on this system's own history (recalibrate)."""
        shift, slope = self.calibration
        z = self.offset + sum(self.weight(f) for f in features)
        return _sigmoid(shift + slope * z)

    def weight(self, feature: str) -> float:
        w = self.weights.get(feature)
        return prior_mean(feature) if w is None else w

    def sd(self, feature: str) -> float:
        v = self.variances.get(feature)
        return math.sqrt(1 / _precision(feature, self.precisions) if v is None else v)

    def sampled(self, rng: random.Random, spread: float = EXPLORATION) -> "SampledWeights":
        """One draw from the posterior, with `spread` of its standard deviations."""
        return SampledWeights(self, rng, spread)

    def chance(self, features: list[str]) -> float:
        return _sigmoid(self.offset + sum(self.weight(f) for f in features))

    def supported(self, feature: str) -> bool:
        """Whether the data, not the prior, says this factor matters."""
        if feature not in self.variances:
            return False
        weight, sd = self.weight(feature), self.sd(feature)
        # Away from zero, and moved there by the data rather than held by its prior.
        return abs(weight) >= SUPPORTED_Z * sd and \
            abs(weight - prior_mean(feature)) >= SUPPORTED_Z * sd


class SampledWeights:
    """One draw from the posterior (Thompson sampling), weights drawn as needed."""

    def __init__(self, model: Model, rng: random.Random, spread: float = EXPLORATION):
        self.model, self.rng, self.drawn, self.spread = model, rng, {}, spread

    def weight(self, feature: str) -> float:
        w = self.drawn.get(feature)
        if w is None:
            w = self.drawn[feature] = self.rng.gauss(
                self.model.weight(feature), self.spread * self.model.sd(feature))
        return w

    def chance(self, features: list[str]) -> float:
        return _sigmoid(self.model.offset + sum(self.weight(f) for f in features))


def fit_shrunk(rows: list[tuple[list[str], int]], start: dict | None = None,
               precisions: dict | None = None, sweeps: int = 12) -> tuple[dict, dict, dict]:
    """`fit`, then each family's prior spread estimated from the data and the weights
    refitted under it (SHRINK_ROUNDS times). Returns weights, variances, precisions."""
    weights, variances = fit(rows, start, sweeps, precisions)
    precisions = dict(precisions or {})
    for _round in range(SHRINK_ROUNDS):
        precisions = group_precisions(weights, variances, precisions)
        weights, variances = fit(rows, weights, 4, precisions)
    return weights, variances, precisions


def fit(rows: list[tuple[list[str], int]], start: dict | None = None,
        sweeps: int = 12, precisions: dict | None = None) -> tuple[dict, dict]:
    """Ridge logistic regression by cyclic coordinate descent: one Newton step per weight
    in turn, the rows' margins kept up to date (robust to the features' overlaps, like
    glmnet's). Warm-started from `start`. Returns the weights and their posterior
    variances (diagonal Laplace approximation)."""
    index = defaultdict(list)  # feature -> the rows it is in
    for r, (fs, _y) in enumerate(rows):
        for f in fs:
            index[f].append(r)
    weights = {f: (start or {}).get(f, prior_mean(f)) for f in index}
    ys = [y for _fs, y in rows]
    margins = [sum(weights[f] for f in fs) for fs, _y in rows]
    order = sorted(index)
    for _sweep in range(sweeps):
        biggest = 0.0
        for f in order:
            g = h = 0.0
            for r in index[f]:
                p = _sigmoid(margins[r])
                g += ys[r] - p
                h += p * (1 - p)
            precision = _precision(f, precisions)
            step = (g - precision * (weights[f] - prior_mean(f))) / (h + precision)
            step = max(-2.0, min(2.0, step))
            if step:
                weights[f] += step
                for r in index[f]:
                    margins[r] += step
                biggest = max(biggest, abs(step))
        if biggest < 1e-3:
            break
    variances = {}
    for f, members in index.items():
        h = 0.0
        for r in members:
            p = _sigmoid(margins[r])
            h += p * (1 - p)
        variances[f] = 1 / (h + _precision(f, precisions))
    return weights, variances


# --- the history ---------------------------------------------------------------------


def _histories(customer_ids) -> dict:
    """customer -> [(moment, succeeded)] of their finished attempts, in time order."""
    found = defaultdict(list)
    rows = PaymentAttempt.objects.filter(
        customer_id__in=list(customer_ids),
        status__in=[PaymentAttempt.Status.SUCCEEDED, PaymentAttempt.Status.FAILED],
    ).order_by("created_at").values_list("customer_id", "created_at", "status")
    for customer_id, at, status in rows:
        found[customer_id].append((at, status == PaymentAttempt.Status.SUCCEEDED))
    return found


def paid_before(history, before: datetime, tz) -> tuple[frozenset, frozenset, frozenset]:
    """The customer's own payday estimate: the local days of month, weekdays and hours of
    their payments that succeeded before `before` (the most recent PAID_MEMORY)."""
    moments = [at.astimezone(tz) for at, ok in history if ok and at < before][-PAID_MEMORY:]
    return (frozenset(m.day for m in moments), frozenset(m.weekday() for m in moments),
            frozenset(m.hour for m in moments))


def failed_before(history, before: datetime, first: datetime, tz) -> tuple[frozenset, frozenset]:
    """The local weekdays of failures since `first` (this invoice's), and the days of
    month of failures in the FAILED_MEMORY before `before`."""
    recent = [(at, at.astimezone(tz)) for at, ok in history
              if not ok and before - FAILED_MEMORY <= at < before]
    return (frozenset(m.weekday() for at, m in recent if at >= first),
            frozenset(m.day for _at, m in recent))


def training_rows() -> list[tuple[list[str], int]]:
    attempts = list(
        PaymentAttempt.objects.filter(
            source=PaymentAttempt.Source.AUTOMATIC,
            status__in=[PaymentAttempt.Status.SUCCEEDED, PaymentAttempt.Status.FAILED],
        ).exclude(retry_of_decline_code="").exclude(
            # Retries of a hard decline are charges of the new card the customer added.
            retry_of_decline_code__in=HARD_DECLINE_CODES,
        ).order_by("-pk").values(
            "customer_id", "created_at", "status", "retry_of_decline_code", "card_funding",
            "amount", "invoice_id", "invoice__past_due_at", "customer__timezone",
            "customer__segment",
        )[:TRAIN_LIMIT]
    )
    histories = _histories({a["customer_id"] for a in attempts})
    tries = defaultdict(int)
    rows = []
    zones = {}
    for a in sorted(attempts, key=lambda a: a["created_at"]):
        tz = zones.setdefault(a["customer__timezone"], zoneinfo.ZoneInfo(a["customer__timezone"]))
        at = a["created_at"]
        days, weekdays, paid_hours = paid_before(histories[a["customer_id"]], at, tz)
        first = a["invoice__past_due_at"] or at
        failed_weekdays, failed_days = failed_before(histories[a["customer_id"]], at, first, tz)
        situation = Situation(
            code=a["retry_of_decline_code"], funding=a["card_funding"] or "unknown",
            amount=a["amount"], tries=tries[a["invoice_id"]],
            first_failed_at=first, timezone=a["customer__timezone"],
            segment=a["customer__segment"] or "", active=False,
            paid_days=days, paid_weekdays=weekdays, paid_hours=paid_hours,
            failed_weekdays=failed_weekdays, failed_days=failed_days,
        )
        succeeded = int(a["status"] == PaymentAttempt.Status.SUCCEEDED)
        rows.append((base_features(situation) + slot_features(situation, at.astimezone(tz), at),
                     succeeded))
        tries[a["invoice_id"]] += 1
    return rows


def recalibrate(pairs: list) -> tuple[float, float]:
    """Platt scaling of the model's own out-of-sample predictions: the shift and slope of
    the log-odds that make the chances predicted for the retries actually made (before
    their outcome was learned) match what happened. The retries made are the ones whose
    chance looked best among many candidate times: their estimates are biased upward
    (the winner's curse), which this corrects. Ridge priors toward no change."""
    shift, slope = 0.0, 1.0
    (p_shift, p_slope) = CALIBRATION_PRIOR
    for _step in range(20):
        g0 = -p_shift * shift
        g1 = -p_slope * (slope - 1.0)
        h00, h01, h11 = p_shift, 0.0, p_slope
        for z, y in pairs:
            p = _sigmoid(shift + slope * z)
            w = p * (1 - p)
            g0 += y - p
            g1 += (y - p) * z
            h00 += w
            h01 += w * z
            h11 += w * z * z
        det = h00 * h11 - h01 * h01
        if det <= 0:
            break
        d0 = (h11 * g0 - h01 * g1) / det
        d1 = (h00 * g1 - h01 * g0) / det
        shift += max(-1.0, min(1.0, d0))
        slope += max(-1.0, min(1.0, d1))
        if abs(d0) < 1e-6 and abs(d1) < 1e-6:
            break
    return shift, max(slope, 0.1)


_cache: dict = {}


def model_load() -> Model:
    """The model fitted on the history, refitted when the history has grown enough
    (per process; a database rolled back to less history starts afresh)."""
    count = PaymentAttempt.objects.filter(
        source=PaymentAttempt.Source.AUTOMATIC,
        status__in=[PaymentAttempt.Status.SUCCEEDED, PaymentAttempt.Status.FAILED],
    ).exclude(retry_of_decline_code="").count()
    key = connection.settings_dict.get("NAME")
    cached = _cache.get(key)
    if cached is not None and cached.rows <= count and (
        count < cached.rows * (1 + REFIT_GROWTH) and count >= REFIT_ALWAYS
    ):
        return cached
    rows = training_rows() if count else []
    warm = cached is not None and cached.rows <= count
    pairs = []
    if warm:
        # The rows learned since the last fit, as the model then predicted them: the
        # out-of-sample predictions the stated chances are recalibrated on.
        new = len(rows) - cached.trained if len(rows) < TRAIN_LIMIT else count - cached.rows
        pairs = cached.pairs + [
            (cached.offset + sum(cached.weight(f) for f in features), y)
            for features, y in rows[len(rows) - max(new, 0):]
        ] if new > 0 else list(cached.pairs)
        pairs = pairs[-CALIBRATION_PAIRS:]
    if rows:
        weights, variances, precisions = fit_shrunk(
            rows, cached.weights if warm else None, cached.precisions if warm else None,
            sweeps=4 if warm else 15)
    else:
        weights, variances, precisions = {}, {}, {}
    model = Model(weights, variances, count, precisions=precisions,
                  calibration=recalibrate(pairs) if pairs else (0.0, 1.0))
    model.trained, model.pairs = len(rows), pairs
    _cache[key] = model
    return model


def model_forget() -> None:
    _cache.clear()
