"""What Smart Retries know: the chance that a retry at a given moment succeeds, learned
from this system's own finished retries.

The model is a logistic regression over one-hot features (every weight can be read as
an odds ratio), fitted here with numpy arrays: each retry holds one feature of each
family at most, so the design is a retries x families table of columns, and a family's
weights, which never share a row, take their Newton steps at once (coordinate descent
by family; a refit over the whole history at every new retry in plain Python made
planning grow faster than the population). The history is learned incrementally: a
refit reads and encodes only the retries finished since the last one, and starts from
its weights. The features:

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
- for a decline for lack of funds, the customer's estimated payday (automations.paydays:
  a posterior over generic pay schedules from the customer's own attempts, the chances
  by hours since a payday learned from everyone declined for lack of funds): the chance
  it estimates at the slot against the customer's average, in buckets (`pay:k`), its
  prior weight the estimate taken at its word;
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

Whether the timing differences hold up at all is measured on the model's own record:
the retries made, as it predicted them before learning their outcomes (timing_slope).
The planner compresses the differences between candidate times by that slope, so that
where timing carries no signal it keeps the fixed schedule instead of choosing on noise;
a slope not yet two standard deviations above 0 counts as 0 (the fixed schedule exactly).

The chance stated is then recalibrated on the record of what was stated (the model's
log-odds when each retry was planned, kept on the attempt so that it holds whichever
worker planned it): recalibrate, Calibration.
"""

import math
import random
import zoneinfo
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from django.db import connection
from django.db.models import Max

from invoices.gateways.base import HARD_DECLINE_CODES
from invoices.models import PaymentAttempt

from . import paydays

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
REFIT_GROWTH = 0.1  # refit once the retries finished since the last fit are this share...
REFIT_MIN = 10  # ...of those learned, and at least this many
SUPPORTED_Z = 2.0  # a factor is named only when its weight is this sure
FAILED_MEMORY = timedelta(days=40)
PAID_MEMORY = 3  # the customer's latest successes that make their payday estimate
PAYDAY_CUSTOMERS = 20_000  # the customers declined for lack of funds most lately, learned from
EXPLORATION = 0.3  # Thompson draws use this share of the posterior's spread
CALIBRATION_PAIRS = 20_000  # the latest out-of-sample predictions recalibrated on
CALIBRATION_PRIOR = (1.0, 4.0)  # precision of the recalibration's shift (toward 0)...
# ...and of its slope (toward 1): a few hundred retries move them
CALIBRATION_BIN = 200  # the record's retries by bin of the recalibration's correction...
CALIBRATION_BINS = 30  # ...in this many bins at most...
CALIBRATION_WIDTH = 0.5  # ...each at most this wide on the line's log-odds
CALIBRATION_PSEUDO = 20.0  # a bin's rate is shrunk toward the line's by this many retries
CALIBRATION_HALF_LIFE = 3000  # retries: the record's weight halves over this many newer
# The families whose features do not depend on when a retry is made (base_features):
# every other family is the model's timing, whose out-of-sample slope (timing_slope)
# tells how much its differences between candidate times hold up.
UNTIMED = frozenset({"c", "amt", "tries", "fund", "seg", "act"})
TIMING_PRIOR = 4.0  # precision of the timing slope's prior, toward 0: no evidence, no move
TIMING_SURE = 2.0  # the timing slope counts only once this many sds above 0


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
    if kind == "pay":
        # The customer's estimated chance on this day and hour (paydays), at its word.
        return paydays.pay_prior(int(value))
    return 0.0


def group(feature: str) -> str:
    """The family a feature belongs to (its weights share one prior spread)."""
    return feature.partition(":")[0]


def timed(feature: str) -> bool:
    """Whether the feature depends on the moment of the retry (slot_features)."""
    return group(feature) not in UNTIMED


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
    # (paydays.PaydayFit, the customer's posterior over its schedules, time zone): the
    # customer's estimated payday, for a decline for lack of funds (None: no estimate).
    payday: tuple | None = None


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
    weekday, hour, day = local.weekday(), local.hour, local.day
    age = (at - s.first_failed_at).total_seconds() / 3600
    return [*clock_features(s.funding, weekday, hour), *day_features(group, day),
            f"age:{group}:{_age_bucket(age)}",
            *customer_clock_features(s, weekday, hour), *customer_day_features(s, day),
            *customer_pay_features(s, at)]


def customer_pay_features(s: Situation, at: datetime) -> list[str]:
    """The customer's estimated chance at `at` from their estimated payday (paydays),
    against their own average, in buckets; only for a decline for lack of funds, once
    the population was fitted."""
    if s.payday is None:
        return []
    fit, posterior, tz = s.payday
    found = paydays.pay_buckets(fit.chance(posterior, [at], tz), fit.average(posterior))
    return [f"pay:{int(found[0])}"]


def payday_of(fit, code: str, history, before: datetime, tz) -> tuple | None:
    """Situation.payday for a decline `code` of a customer whose finished attempts are
    `history` ((moment, succeeded), in time order): those before `before` make the
    posterior."""
    if fit is None or not fit.customers or code not in FUNDS_CODES:
        return None
    return fit, fit.posterior([(at, ok) for at, ok in history if at < before], tz), tz


def clock_features(funding: str, weekday: int, hour: int) -> list[str]:
    """The slot's features that depend on its local weekday and hour alone."""
    block = hour // 3
    weekend = int(weekday >= 5)
    return [f"hb:{block}", f"fh:{funding}:{weekend}:{block}", f"fw:{funding}:{weekday}",
            f"h:{hour}", f"fhh:{funding}:{weekend}:{hour}", f"wh:{weekday}:{block}"]


def day_features(group: str, day: int) -> list[str]:
    """The slot's features that depend on its local day of month alone."""
    return [f"dom:{group}:{min((day - 1) // 3, 9)}", f"dd:{group}:{day}"]


def customer_clock_features(s: Situation, weekday: int, hour: int) -> list[str]:
    """The customer's own history against the slot's weekday and hour."""
    return customer_weekday_features(s, weekday) + customer_hour_features(s, hour)


def customer_weekday_features(s: Situation, weekday: int) -> list[str]:
    features = []
    if s.paid_weekdays:
        features.append(f"cw:{_weekday_offset(weekday, s.paid_weekdays)}")
    # Where this customer's money was not: a weekday this invoice already failed on.
    features.append(f"fwd:{int(weekday in s.failed_weekdays)}")
    return features


def customer_hour_features(s: Situation, hour: int) -> list[str]:
    if not s.paid_hours:
        return []
    near = min(min(abs(hour - h), 24 - abs(hour - h)) for h in s.paid_hours)
    return ["ch:near" if near <= 2 else "ch:far"]


def customer_day_features(s: Situation, day: int) -> list[str]:
    """The customer's own history against the slot's day of month: the payday estimate,
    and a day of month on which the customer's payments failed lately."""
    return [f"cd:{_day_offset(day, s.paid_days)}", f"fdm:{int(day in s.failed_days)}"]


class Model:
    def __init__(self, weights: dict, variances: dict, rows: int, offset: float = 0.0,
                 precisions: dict | None = None, calibration: "Calibration | None" = None,
                 timing: float = 1.0):
        self.weights = weights
        self.variances = variances
        self.rows = rows
        self.offset = offset  # added to every log-odds (0: none)
        self.precisions = precisions or {}  # each family's prior precision (estimated)
        # The stated chance's map from the log-odds (recalibrate).
        self.calibration = calibration or Calibration()
        # How much of the timing features' log-odds holds up out of sample (0..1,
        # timing_slope): the planner compresses the differences between times by it.
        self.timing = timing
        self.paydays: paydays.PaydayFit | None = None  # the population's (paydays.fit)
        self.trained = 0  # training rows fitted on
        # The weights as arrays (the planner's fast path): feature -> column, and each
        # column's posterior mean and sd, the last entry a zero for "no feature".
        self._columns: dict[str, int] = {}
        self._means: list[float] = []
        self._sds: list[float] = []
        self._arrays = None
        self._factor = None  # compressed(): each column's factor

    def stated(self, features: list[str]) -> float:
        """The chance stated for a retry (on the invoice, and recorded for calibration):
        the posterior mean's, recalibrated on this system's own history (recalibrate)."""
        return self.calibration.chance(self.log_odds(features))

    def log_odds(self, features: list[str]) -> float:
        """The posterior mean's log-odds (before recalibration)."""
        return self.offset + sum(self.weight(f) for f in features)

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

    # --- the arrays (the planner's fast path) ---

    def column(self, feature: str) -> int:
        """The feature's column in means() and draws() (added with its prior if new)."""
        found = self._columns.get(feature)
        if found is None:
            found = self._columns[feature] = len(self._means)
            self._means.append(self.weight(feature))
            self._sds.append(self.sd(feature))
            self._arrays = None
        return found

    def columns(self, features: list[str], width: int | None = None) -> list[int]:
        """The features' columns, padded with -1 (no feature: weight 0) to `width`."""
        found = [self.column(f) for f in features]
        return found + [-1] * ((width or len(found)) - len(found))

    def _vectors(self):
        if self._arrays is None:
            self._arrays = (np.array([*self._means, 0.0]), np.array([*self._sds, 0.0]))
        return self._arrays

    def compressed(self, weights: np.ndarray) -> np.ndarray:
        """Rows of weights by column (means() or draws()) with the timing features'
        weights multiplied by `timing`: the log-odds differences between candidate times
        that the model's own out-of-sample record supports."""
        if self.timing >= 1.0:
            return weights
        factor = self._factor
        if factor is None or len(factor) != weights.shape[-1]:
            names = sorted(self._columns, key=self._columns.get)
            factor = self._factor = np.array([self.timing_of(f) for f in names] + [0.0])
        return weights * factor

    def timing_of(self, feature: str) -> float:
        """The factor of a feature's weight in compressed(): 1 if untimed, else the
        timing slope."""
        return self.timing if timed(feature) else 1.0

    def means(self) -> np.ndarray:
        """The posterior means by column (and a last 0 that the column -1 picks)."""
        return self._vectors()[0]

    def draws(self, generator: np.random.Generator, n: int,
              spread: float = EXPLORATION) -> np.ndarray:
        """n draws from the posterior (n x columns), with `spread` of its sd."""
        mean, sd = self._vectors()
        return mean + spread * sd * generator.standard_normal((n, len(mean)))


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


# --- fitting --------------------------------------------------------------------------


class Design:
    """Training rows as arrays: each row holds at most one feature of each family (the
    one-hot encoding's groups), so the design is a rows x families matrix of columns (-1:
    none of that family). Rows are appended as they are learned (model_load keeps one
    per database and adds only the retries finished since the last fit)."""

    def __init__(self):
        self.columns: dict[str, int] = {}
        self.names: list[str] = []
        self.families: dict[str, int] = {}
        self.family_of: list[int] = []  # column -> family
        self.prior: list[float] = []  # column -> prior mean
        self.x = np.zeros((0, 0), dtype=np.int32)
        self.y = np.zeros(0)

    def __len__(self) -> int:
        return len(self.y)

    def column(self, feature: str) -> int:
        found = self.columns.get(feature)
        if found is None:
            found = self.columns[feature] = len(self.names)
            self.names.append(feature)
            family = group(feature)
            self.family_of.append(self.families.setdefault(family, len(self.families)))
            self.prior.append(prior_mean(feature))
        return found

    def add(self, rows: list[tuple[list[str], int]]) -> None:
        block = []
        for features, _y in rows:
            row = {}
            for feature in features:
                column = self.column(feature)
                family = self.family_of[column]
                if family in row:
                    raise ValueError(f"Two features of one family in a row: {features}")
                row[family] = column
            block.append(row)
        width = len(self.families)
        x = np.full((len(rows), width), -1, dtype=np.int32)
        for r, row in enumerate(block):
            for family, column in row.items():
                x[r, family] = column
        if self.x.shape[1] < width:
            self.x = np.pad(self.x, ((0, 0), (0, width - self.x.shape[1])),
                            constant_values=-1)
        self.x = np.vstack([self.x, x]) if len(self.y) else x
        self.y = np.concatenate([self.y, [float(y) for _f, y in rows]])

    def keep_last(self, n: int) -> None:
        if len(self.y) > n:
            self.x, self.y = self.x[-n:], self.y[-n:]

    def margins(self, weights: np.ndarray) -> np.ndarray:
        """Each row's log-odds under `weights` (by column)."""
        return np.append(weights, 0.0)[self.x].sum(axis=1)

    def precisions(self, precisions: dict | None) -> np.ndarray:
        return np.array([_precision(f, precisions) for f in self.names])


def _sigmoids(z: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-np.clip(z, -30, 30)))


def fit_design(design: Design, start: dict | None = None, sweeps: int = 12,
               precisions: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Ridge logistic regression by cyclic coordinate descent, one family at a time: a
    family's weights never share a row, so the Newton steps of all its weights are taken
    at once, exactly as one at a time (glmnet's method, robust to the features'
    overlaps), the rows' margins kept up to date. Warm-started from `start`. Returns the
    weights and their posterior variances (diagonal Laplace approximation), by column."""
    n_columns = len(design.names)
    prior = np.array(design.prior)
    start = start or {}
    weights = np.array([start.get(f, p) for f, p in zip(design.names, design.prior,
                                                         strict=True)])
    if not len(design) or not n_columns:
        return weights, 1 / design.precisions(precisions)
    precision = design.precisions(precisions)
    family_of = np.array(design.family_of)
    x, y = design.x, design.y
    margins = design.margins(weights)
    blocks = []
    for family in sorted(design.families, key=lambda name: name):
        f = design.families[family]
        rows = np.flatnonzero(x[:, f] >= 0)
        if not len(rows):
            continue
        columns = np.flatnonzero(family_of == f)
        local = np.searchsorted(columns, x[rows, f])  # the row's column, within the family
        blocks.append((rows, columns, local))
    for _sweep in range(sweeps):
        biggest = 0.0
        for rows, columns, local in blocks:
            p = _sigmoids(margins[rows])
            g = np.bincount(local, y[rows] - p, minlength=len(columns))
            h = np.bincount(local, p * (1 - p), minlength=len(columns))
            lam = precision[columns]
            step = (g - lam * (weights[columns] - prior[columns])) / (h + lam)
            step = np.clip(step, -2.0, 2.0)
            weights[columns] += step
            margins[rows] += step[local]
            biggest = max(biggest, float(np.abs(step).max()))
        if biggest < 1e-3:
            break
    p = _sigmoids(margins)
    h = np.zeros(n_columns)
    for rows, columns, local in blocks:
        h[columns] += np.bincount(local, (p * (1 - p))[rows], minlength=len(columns))
    return weights, 1 / (h + precision)


def fit_design_shrunk(design: Design, start: dict | None = None,
                      precisions: dict | None = None,
                      sweeps: int = 12) -> tuple[np.ndarray, np.ndarray, dict]:
    """fit_design, then each family's prior spread estimated from the data and the
    weights refitted under it (SHRINK_ROUNDS times)."""
    weights, variances = fit_design(design, start, sweeps, precisions)
    precisions = dict(precisions or {})
    for _round in range(SHRINK_ROUNDS):
        found = dict(zip(design.names, weights.tolist(), strict=True))
        precisions = group_precisions(
            found, dict(zip(design.names, variances.tolist(), strict=True)), precisions)
        weights, variances = fit_design(design, found, 4, precisions)
    return weights, variances, precisions


def fit_shrunk(rows: list[tuple[list[str], int]], start: dict | None = None,
               precisions: dict | None = None, sweeps: int = 12) -> tuple[dict, dict, dict]:
    """`fit`, then each family's prior spread estimated from the data and the weights
    refitted under it (SHRINK_ROUNDS times). Returns weights, variances, precisions."""
    design = Design()
    design.add(rows)
    weights, variances, precisions = fit_design_shrunk(design, start, precisions, sweeps)
    return (dict(zip(design.names, weights.tolist(), strict=True)),
            dict(zip(design.names, variances.tolist(), strict=True)), precisions)


def fit(rows: list[tuple[list[str], int]], start: dict | None = None,
        sweeps: int = 12, precisions: dict | None = None) -> tuple[dict, dict]:
    """Ridge logistic regression (fit_design) of rows of features. Returns the weights
    and their posterior variances by feature."""
    design = Design()
    design.add(rows)
    weights, variances = fit_design(design, start, sweeps, precisions)
    return (dict(zip(design.names, weights.tolist(), strict=True)),
            dict(zip(design.names, variances.tolist(), strict=True)))


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


def _payday_customers() -> list[tuple[list, object]]:
    """The PAYDAY_CUSTOMERS customers declined for lack of funds most lately: their
    finished attempts and time zone (what paydays.fit learns from at each refit, so
    bounded however long the history grows)."""
    from customers.models import Customer

    ids = set(PaymentAttempt.objects.filter(decline_code__in=FUNDS_CODES)
              .values("customer_id").annotate(last=Max("created_at"))
              .order_by("-last", "customer_id")
              .values_list("customer_id", flat=True)[:PAYDAY_CUSTOMERS])
    if not ids:
        return []
    histories = _histories(ids)
    zones = dict(Customer.objects.filter(pk__in=ids).values_list("pk", "timezone"))
    return [(histories.get(pk, []), zoneinfo.ZoneInfo(zones[pk])) for pk in sorted(ids)]


def _finished_retries():
    return PaymentAttempt.objects.filter(
        source=PaymentAttempt.Source.AUTOMATIC,
        status__in=[PaymentAttempt.Status.SUCCEEDED, PaymentAttempt.Status.FAILED],
    ).exclude(retry_of_decline_code="")


class History:
    """What a database's finished retries taught so far (one per database and process):
    the design, the retries learned since `frontier` (every retry written before it was
    learned or will never be), each invoice's retries learned, and the last model."""

    def __init__(self):
        self.design = Design()
        self.frontier = 0  # the lowest pk that may still be learned
        self.seen: set[int] = set()  # pks >= frontier already learned (or skipped)
        self.tries: dict[int, int] = defaultdict(int)
        self.model: Model | None = None
        # (log-odds predicted before the outcome: untimed part, timed part; outcome)
        self.pairs = np.zeros((0, 3))
        # The record the stated chances are recalibrated on, in the order learned: the
        # log-odds stated when each retry was planned (or as the last model predicted
        # it), the outcome.
        self.stated = np.zeros((0, 2))
        # The last rows learned: the log-odds stated when planned (nan: not known).
        self.planned = np.zeros(0)
        self.paydays: paydays.PaydayFit | None = None

    def waiting(self) -> int:
        """Finished retries not learned yet (one indexed count)."""
        return _finished_retries().filter(pk__gte=self.frontier).count() - len(self.seen)

    def learn(self) -> int:
        """Adds the retries finished since the last look to the design; their number."""
        attempts = [
            a for a in _finished_retries().filter(pk__gte=self.frontier).order_by().values(
                "pk", "customer_id", "created_at", "status", "retry_of_decline_code",
                "card_funding", "amount", "invoice_id", "invoice__past_due_at",
                "customer__timezone", "customer__segment", "predicted_log_odds",
            ) if a["pk"] not in self.seen
        ]
        self.seen.update(a["pk"] for a in attempts)
        # Retries of a hard decline are charges of the new card the customer added.
        learned = sorted((a for a in attempts
                          if a["retry_of_decline_code"] not in HARD_DECLINE_CODES),
                         key=lambda a: (a["created_at"], a["pk"]))
        rows = _rows(learned, self.tries, self.paydays)
        self.planned = np.array([math.nan if a["predicted_log_odds"] is None
                                 else a["predicted_log_odds"] for a in learned], dtype=float)
        if rows:
            self.design.add(rows)
            self.design.keep_last(TRAIN_LIMIT)
        # Every retry before the first one still unfinished is learned: forget their pks.
        unfinished = PaymentAttempt.objects.filter(
            source=PaymentAttempt.Source.AUTOMATIC, pk__gte=self.frontier,
            status__in=[PaymentAttempt.Status.PENDING, PaymentAttempt.Status.PROCESSING],
        ).exclude(retry_of_decline_code="").order_by("pk").values_list("pk", flat=True).first()
        if unfinished is None:
            unfinished = max(self.seen, default=self.frontier - 1) + 1
        self.frontier = max(self.frontier, unfinished)
        self.seen = {pk for pk in self.seen if pk >= self.frontier}
        return len(rows)


def _rows(attempts: list[dict], tries: dict,
          fit: "paydays.PaydayFit | None" = None) -> list[tuple[list[str], int]]:
    """The attempts as training rows (features, succeeded), in time order; `tries` counts
    each invoice's retries learned before (updated); `fit` estimates paydays."""
    histories = _histories({a["customer_id"] for a in attempts})
    rows = []
    zones = {}
    for a in sorted(attempts, key=lambda a: (a["created_at"], a["pk"])):
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
            payday=payday_of(fit, a["retry_of_decline_code"], histories[a["customer_id"]],
                             at, tz),
        )
        succeeded = int(a["status"] == PaymentAttempt.Status.SUCCEEDED)
        rows.append((base_features(situation) + slot_features(situation, at.astimezone(tz), at),
                     succeeded))
        tries[a["invoice_id"]] += 1
    return rows


def training_rows() -> list[tuple[list[str], int]]:
    """Every finished retry (the latest TRAIN_LIMIT) as a training row."""
    history = History()
    history.paydays = paydays.fit(_payday_customers())
    history.learn()
    design = history.design
    return [([design.names[c] for c in row if c >= 0], int(y))
            for row, y in zip(design.x.tolist(), design.y.tolist(), strict=True)]


class Calibration:
    """The map from the model's log-odds to the stated chance's (recalibrate): Platt's
    line (shift + slope x log-odds), then a monotone correction read off the retries'
    own record by bins along that line (`knots`: the line's log-odds at a bin's mean
    chance, `values`: the log-odds of the rate its retries succeeded at, both
    increasing), interpolated between knots and carried along the line beyond them. One
    line cannot make every decile right when the model's errors are not the same at
    every level of chance (a mix of customers who pay at some hours and of customers who
    never pay, which the model's additive log-odds cannot tell apart); the bins can."""

    def __init__(self, shift: float = 0.0, slope: float = 1.0, knots=(), values=()):
        self.shift, self.slope = shift, slope
        self.knots = np.asarray(knots, dtype=float)
        self.values = np.asarray(values, dtype=float)

    def log_odds(self, z):
        """The stated chance's log-odds for the model's log-odds `z` (a number or array)."""
        line = self.shift + self.slope * np.asarray(z, dtype=float)
        if not len(self.knots):
            return line
        return np.where(line < self.knots[0], line + (self.values[0] - self.knots[0]),
                        np.where(line > self.knots[-1],
                                 line + (self.values[-1] - self.knots[-1]),
                                 np.interp(line, self.knots, self.values)))

    def chance(self, z: float) -> float:
        return _sigmoid(float(self.log_odds(z)))


def _platt(z: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    """The shift and slope of the log-odds that fit the outcomes, each pair weighted by
    `w` (ridge priors toward no change, CALIBRATION_PRIOR)."""
    shift, slope = 0.0, 1.0
    (p_shift, p_slope) = CALIBRATION_PRIOR
    for _step in range(20):
        p = _sigmoids(shift + slope * z)
        h = w * p * (1 - p)
        r = w * (y - p)
        g0 = -p_shift * shift + float(r.sum())
        g1 = -p_slope * (slope - 1.0) + float((r * z).sum())
        h00 = p_shift + float(h.sum())
        h01 = float((h * z).sum())
        h11 = p_slope + float((h * z * z).sum())
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


def _monotone(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The non-decreasing sequence nearest `values` in weighted squares (pool adjacent
    violators)."""
    blocks = []  # [mean, weight, count]
    for v, w in zip(values.tolist(), weights.tolist(), strict=True):
        blocks.append([v, w, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            v2, w2, n2 = blocks.pop()
            v1, w1, n1 = blocks.pop()
            blocks.append([(v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, n1 + n2])
    return np.array([v for v, _w, n in blocks for _i in range(n)])


def recalibrate(pairs) -> Calibration:
    """The stated chances' map (Calibration), fitted on the model's own out-of-sample
    predictions of the retries made (before their outcome was learned) against what
    happened: Platt's line, then, with enough record, a monotone correction by bins of
    CALIBRATION_BIN retries along the line, no wider than CALIBRATION_WIDTH where the
    record is sparse (each bin's observed rate shrunk toward the line's by
    CALIBRATION_PSEUDO retries: a bin of few retries keeps the line). The retries made
    are the ones whose chance looked best among many candidate times: their estimates
    are biased upward (the winner's curse), which this corrects. The model's errors
    change as it learns (its weights spread as the history grows, new customers'
    histories appear), so the record counts less the older it is (a weight halved every
    CALIBRATION_HALF_LIFE retries). `pairs`: (log-odds, outcome) pairs in the order the
    retries were made."""
    pairs = np.asarray(pairs, dtype=float).reshape(-1, 2)
    z, y = pairs[:, 0], pairs[:, 1]
    w = 0.5 ** (np.arange(len(pairs))[::-1] / CALIBRATION_HALF_LIFE)
    shift, slope = _platt(z, y, w)
    total = float(w.sum())
    effective = total ** 2 / float((w * w).sum()) if len(w) else 0.0
    bins = int(min(CALIBRATION_BINS, effective // CALIBRATION_BIN))
    if bins < 2:
        return Calibration(shift, slope)
    # Bins of equal weight along the line (each counted as its share of the effective
    # number of retries), those wider than CALIBRATION_WIDTH cut into equal widths.
    line = shift + slope * z
    order = np.argsort(line, kind="stable")
    cumulative = np.cumsum(w[order])
    chunks = []
    for chunk in np.split(order, np.searchsorted(cumulative, total * np.arange(1, bins) / bins)):
        if not len(chunk):
            continue
        low, high = line[chunk[0]], line[chunk[-1]]
        pieces = math.ceil((high - low) / CALIBRATION_WIDTH) if high > low else 1
        cuts = np.searchsorted(line[chunk], low + (high - low) * np.arange(1, pieces) / pieces)
        chunks += [piece for piece in np.split(chunk, cuts) if len(piece)]
    scale = effective / total
    n = np.array([w[c].sum() * scale for c in chunks])
    expected = np.array([(w[c] * _sigmoids(line[c])).sum() / w[c].sum() for c in chunks])
    observed = np.array([(w[c] * y[c]).sum() * scale for c in chunks])
    rate = (observed + CALIBRATION_PSEUDO * expected) / (n + CALIBRATION_PSEUDO)
    rate = np.clip(_monotone(rate, n + CALIBRATION_PSEUDO), 1e-4, 1 - 1e-4)
    knots = np.log(expected / (1 - expected))
    values = np.log(rate / (1 - rate))
    keep = np.concatenate([[True], np.diff(knots) > 1e-9])  # strictly increasing knots
    return Calibration(shift, slope, knots[keep], values[keep])


def timing_slope(pairs) -> float:
    """How much the model's timing holds up out of sample: the slope of the timing
    features' log-odds in a logistic regression of the outcomes of retries made on the
    log-odds the model predicted for them before learning them (untimed part and timed
    part, each with its own slope: y ~ shift + a * untimed + b * timed), clipped to 0..1.
    Where timing matters the timed part predicts as stated (b near 1); where it does not,
    its differences are the noise the planner chose on (the winner's curse) and b falls
    toward 0. Ridge priors: the shift toward 0 and the untimed slope toward 1
    (CALIBRATION_PRIOR), the timed slope toward 0 (TIMING_PRIOR: until the record shows
    that the model's timing holds up, the planner keeps the fixed schedule; no record at
    all: 0), and a slope whose lower credible bound is not above 0 (TIMING_SURE) is 0.
    `pairs`: (untimed log-odds, timed log-odds, outcome) triples."""
    pairs = np.asarray(pairs, dtype=float).reshape(-1, 3)
    if not len(pairs):
        return 0.0
    x = np.column_stack([np.ones(len(pairs)), pairs[:, 0], pairs[:, 1]])
    y = pairs[:, 2]
    prior = np.array([0.0, 1.0, 0.0])
    precision = np.diag([CALIBRATION_PRIOR[0], CALIBRATION_PRIOR[1], TIMING_PRIOR])
    beta = prior.copy()
    for _step in range(25):
        p = _sigmoids(x @ beta)
        gradient = x.T @ (y - p) - precision @ (beta - prior)
        hessian = (x * (p * (1 - p))[:, None]).T @ x + precision
        step = np.clip(np.linalg.solve(hessian, gradient), -1.0, 1.0)
        beta += step
        if np.abs(step).max() < 1e-6:
            break
    # A slope that may well be 0 (its lower credible bound at or below it: noise the
    # planner would move retries on, an attempt lost wherever the fixed schedule's luck
    # was better) keeps the fixed schedule exactly.
    p = _sigmoids(x @ beta)
    hessian = (x * (p * (1 - p))[:, None]).T @ x + precision
    sd = math.sqrt(max(float(np.linalg.inv(hessian)[2, 2]), 0.0))
    if beta[2] - TIMING_SURE * sd <= 0:
        return 0.0
    return float(min(beta[2], 1.0))


_cache: dict = {}


def model_load() -> Model:
    """The model fitted on the history, refitted once the retries finished since the last
    fit reach REFIT_GROWTH of those learned (REFIT_MIN at least): each refit learns only
    the new retries and starts from the last fit's weights (per process; a database
    rolled back to less history starts afresh)."""
    key = connection.settings_dict.get("NAME")
    history = _cache.get(key)
    if history is not None:
        waiting = history.waiting()
        if waiting < 0:  # rolled back: the history learned is gone
            history = None
        elif history.model is not None and \
                waiting < max(REFIT_MIN, REFIT_GROWTH * len(history.design)):
            return history.model
    if history is None:
        history = _cache[key] = History()
    previous = history.model
    history.paydays = paydays.fit(_payday_customers(), history.paydays)
    new = history.learn()
    design = history.design
    if new:
        # The chances stated for the retries just learned (their log-odds when planned,
        # kept on the attempt; else as the last model predicted them): the record the
        # stated chances are recalibrated on.
        if previous is not None:
            known = design.margins(np.array([previous.weight(f) for f in design.names]))
            known = known[-new:] + previous.offset
        else:
            known = np.full(new, np.nan)
        stated = np.where(np.isnan(history.planned), known, history.planned)
        rows = np.column_stack([stated, design.y[-new:]])
        history.stated = np.vstack([history.stated, rows[~np.isnan(stated)]])
        history.stated = history.stated[-CALIBRATION_PAIRS:]
    if previous is not None and new:
        # The rows learned since the last fit, as the model then predicted them: the
        # out-of-sample predictions the stated chances are recalibrated on.
        before = np.array([previous.weight(f) for f in design.names])
        untimed = np.array([0.0 if timed(f) else 1.0 for f in design.names])
        z = design.margins(before)[-new:] + previous.offset
        z_untimed = design.margins(before * untimed)[-new:] + previous.offset
        history.pairs = np.vstack([history.pairs, np.column_stack(
            [z_untimed, z - z_untimed, design.y[-new:]])])
        history.pairs = history.pairs[-CALIBRATION_PAIRS:]
    if len(design):
        weights, variances, precisions = fit_design_shrunk(
            design, previous.weights if previous else None,
            previous.precisions if previous else None, sweeps=4 if previous else 15)
        weights = dict(zip(design.names, weights.tolist(), strict=True))
        variances = dict(zip(design.names, variances.tolist(), strict=True))
    else:
        weights, variances, precisions = {}, {}, {}
    model = Model(weights, variances, len(design), precisions=precisions,
                  calibration=recalibrate(history.stated),
                  timing=timing_slope(history.pairs))
    model.trained = len(design)
    model.paydays = history.paydays
    history.model = model
    return model


def model_forget() -> None:
    _cache.clear()
