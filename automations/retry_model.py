"""What Smart Retries know: the chance that a retry at a given moment succeeds, learned
from this system's own finished retries.

The model is a logistic regression over one-hot features, fitted here in plain Python
(no numerical library: a few hundred weights and tens of thousands of rows do not need
one, and every weight can be read as an odds ratio). The features:

- the decline code, and the customer's segment (segment -> everyone);
- the local hour (3-hour blocks) x weekend, and the weekday, each by card funding as the
  gateway reported it (debit, credit, prepaid);
- the hour of day; the day of month (3-day blocks) by kind of decline (funds or other);
- the time since the first failure, by kind of decline; how many retries already failed;
- the amount (order of magnitude);
- the customer's own history (customer level): how far the day of month is from a day on
  which this customer's payments succeeded before, and whether that weekday saw one (a
  per-customer payday estimate, pooled through weights shared by every customer);
- whether the customer did something since the failure (visited the invoice page).

Each weight has a Gaussian prior (ridge): mild generic priors (a retry within hours of
a lack of funds rarely works; nights are weak; a day on which the customer paid before
helps) that a few hundred retries override. The prior is also the shrinkage: a feature
seen a few times stays near its prior, a segment or a customer pattern near everyone's.
The posterior is approximated per weight (Laplace, diagonal), which gives Thompson
sampling (exploration) and tells which factors the data supports (the reason names only
those whose weight is at least two standard deviations from zero).
"""

import math
import random
import zoneinfo
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

from django.db import connection

from invoices.gateways.base import HARD_DECLINE_CODES
from invoices.models import PaymentAttempt

FUNDS_CODES = frozenset({"insufficient_funds", "partial_payment", "card_velocity_exceeded",
                         "withdrawal_count_limit_exceeded"})
TRAIN_LIMIT = 50_000  # the most recent finished retries learned from
PRIOR_PRECISION = 4.0  # 1 / variance of a weight's prior (intercepts: INTERCEPT_PRECISION)
INTERCEPT_PRECISION = 0.3
BASE_PRIOR = {"insufficient_funds": 0.12, "try_again_later": 0.3, "processing_error": 0.3,
              "partial_payment": 0.15}
DEFAULT_BASE_PRIOR = 0.1
REFIT_GROWTH = 0.1  # refit once the history grew by this share (always under REFIT_ALWAYS)
REFIT_ALWAYS = 400
SUPPORTED_Z = 2.0  # a factor is named only when its weight is this sure
EXPLORATION = 0.3  # Thompson draws use this share of the posterior's spread


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
    if feature == "cd:0":
        return 0.3  # a day of month on which this customer paid before
    if feature == "cw:same":
        return 0.1
    return 0.0


def _precision(feature: str) -> float:
    return INTERCEPT_PRECISION if feature.startswith("c:") else PRIOR_PRECISION


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


AGE_EDGES = (6, 24, 48, 72, 120, 192, 336)  # hours since the first failure


def _age_bucket(hours: float) -> int:
    for n, edge in enumerate(AGE_EDGES):
        if hours < edge:
            return n
    return len(AGE_EDGES)


def _near_bucket(day: int, paid_days) -> str:
    if not paid_days:
        return "none"
    near = min(min(abs(day - d), 31 - abs(day - d)) for d in paid_days)
    return "0" if near == 0 else "1" if near == 1 else "2" if near <= 3 else "4"


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
        f"dom:{group}:{min((local.day - 1) // 3, 9)}", f"age:{group}:{_age_bucket(age)}",
        f"cd:{_near_bucket(local.day, s.paid_days)}",
    ]
    if s.paid_weekdays:
        features.append("cw:same" if weekday in s.paid_weekdays else "cw:other")
    return features


class Model:
    def __init__(self, weights: dict, variances: dict, rows: int, offset: float = 0.0):
        self.weights = weights
        self.variances = variances
        self.rows = rows
        self.offset = offset  # added to every log-odds (0: none)

    def weight(self, feature: str) -> float:
        w = self.weights.get(feature)
        return prior_mean(feature) if w is None else w

    def sd(self, feature: str) -> float:
        v = self.variances.get(feature)
        return math.sqrt(1 / _precision(feature) if v is None else v)

    def sampled(self, rng: random.Random) -> "SampledWeights":
        return SampledWeights(self, rng)

    def chance(self, features: list[str]) -> float:
        return _sigmoid(self.offset + sum(self.weight(f) for f in features))

    def supported(self, feature: str) -> bool:
        """Whether the data, not the prior, says this factor matters."""
        if feature not in self.variances:
            return False
        return abs(self.weight(feature)) >= SUPPORTED_Z * self.sd(feature)


class SampledWeights:
    """One draw from the posterior (Thompson sampling), weights drawn as needed."""

    def __init__(self, model: Model, rng: random.Random):
        self.model, self.rng, self.drawn = model, rng, {}

    def weight(self, feature: str) -> float:
        w = self.drawn.get(feature)
        if w is None:
            w = self.drawn[feature] = self.rng.gauss(
                self.model.weight(feature), EXPLORATION * self.model.sd(feature))
        return w

    def chance(self, features: list[str]) -> float:
        return _sigmoid(self.model.offset + sum(self.weight(f) for f in features))


def fit(rows: list[tuple[list[str], int]], start: dict | None = None,
        sweeps: int = 12) -> tuple[dict, dict]:
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
            precision = _precision(f)
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
        variances[f] = 1 / (h + _precision(f))
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


def paid_before(history, before: datetime, tz) -> tuple[frozenset, frozenset]:
    moments = [at.astimezone(tz) for at, ok in history if ok and at < before]
    return frozenset(m.day for m in moments), frozenset(m.weekday() for m in moments)


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
        days, weekdays = paid_before(histories[a["customer_id"]], at, tz)
        situation = Situation(
            code=a["retry_of_decline_code"], funding=a["card_funding"] or "unknown",
            amount=a["amount"], tries=tries[a["invoice_id"]],
            first_failed_at=a["invoice__past_due_at"] or at, timezone=a["customer__timezone"],
            segment=a["customer__segment"] or "", active=False,
            paid_days=days, paid_weekdays=weekdays,
        )
        succeeded = int(a["status"] == PaymentAttempt.Status.SUCCEEDED)
        rows.append((base_features(situation) + slot_features(situation, at.astimezone(tz), at),
                     succeeded))
        tries[a["invoice_id"]] += 1
    return rows


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
    start = cached.weights if cached is not None and cached.rows <= count else None
    weights, variances = fit(rows, start, sweeps=4 if start else 15) if rows else ({}, {})
    model = Model(weights, variances, count)
    _cache[key] = model
    return model


def model_forget() -> None:
    _cache.clear()
