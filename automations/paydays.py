"""Each customer's payday, estimated from their own attempts and everyone's.

A card declined for lack of funds works again once money arrives: most people are paid
on a schedule (monthly on a day of their own, possibly moved to the business day before
when it falls on a weekend; twice a month; weekly or every other week on a weekday), and
the money stays on the card for a while after it arrives. Which schedule a customer is
on is unknown: this module keeps a posterior over a list of generic pay schedules
(SCHEDULES, plus "no schedule") from the customer's own finished attempts, successes and
failures alike, and predicts the chance of a charge at any moment as the posterior's
average of the chance of a charge that many hours after a payday's local midnight.

A payday's money comes once: a charge declined in a payday's window after the hour by
which the money is there for most customers (arrived(): the first bucket whose chance
reaches half the best one's, and is clearly above the chance far from a payday) says
that this time it did not come, or was spent. A charge later in that window counts as
far from a payday (an estimate that took each attempt as an independent draw planned a
retry an hour after a decline on a payday morning as if the decline had said little).
Where no bucket stands out (no pay cycles) nothing is changed: a learned
chance of its own for those charges would have told customers who are often declined
from the others (they have more of them), a difference between customers that the
planner would have taken for one between times.

Those chances by hours since a payday (HOURS buckets, and "no payday in the last three
days") and the population's prior over schedules are learned from every customer
declined for lack of funds by expectation-maximisation (PaydayFit, refitted with the
retry model). Nothing is assumed of the hour at which money arrives nor of how long it
stays. Where outcomes do not depend on paydays (no pay cycles, or no timing at all) the
chances by bucket differ only by what chance fits (some schedule always fits a lucky
success): the estimate then predicts nothing out of sample, which the retry model's
record shows (its pay slope stays 0).

retry_model uses the estimate as one feature family (`pay:k`, the estimated chance in
buckets), its prior weights the estimate taken at its word: the logistic model weighs it
against everything else it knows, and the planner counts it only as far as it has held
up out of sample (its own slope: retry_model.timing_slopes).
"""

import calendar
import math
from datetime import date, datetime, timedelta

import numpy as np

HOURS = (6, 12, 18, 24, 36, 48, 72)  # buckets of hours since a payday's local midnight
FAR = len(HOURS)  # no payday in the last three days
ARRIVED_SHARE = 0.5  # the money is there once a bucket's chance reaches this share of the best
ARRIVED_LIFT = 2.0  # ...and this many times the chance far from a payday
DAY = HOURS.index(24) + 1  # the first bucket after the payday's own 24 hours
Q_PRIOR = (0.5, 4.5)  # Beta prior of each bucket's chance (weak, mean 0.1)
# Where the fit starts: money is there from some time on payday and spent in the days
# after (mild).
START = (0.1, 0.2, 0.2, 0.2, 0.15, 0.1, 0.07, 0.05)
SCHEDULE_PRIOR = 0.5  # Dirichlet pseudo-count per schedule
EM_ROUNDS = 12
# The estimated chance as a feature: pay:k for the bucket k of its log-odds against the
# customer's own average estimated chance (timing only: a customer whose card succeeds
# more often whenever it is charged is no reason to charge it at one time rather than
# another), by these edges; each bucket's prior weight its center.
PAY_EDGES = (-2.0, -1.25, -0.75, -0.25, 0.25, 0.75, 1.25, 2.0, 3.0)
PAY_CENTERS = (-2.5, -1.6, -1.0, -0.5, 0.0, 0.5, 1.0, 1.6, 2.5, 3.5)
# Days between paydays, by kind of schedule (a month's average), for the average chance.
PERIODS = {"none": math.inf, "month": 30.44, "semi": 15.22, "week": 7.0, "fortnight": 14.0}


def _schedules() -> list[tuple]:
    found = [("none",)]
    found += [("month", day, adjusted) for adjusted in (False, True) for day in range(1, 32)]
    found += [("semi", first, adjusted) for first in (1, 15) for adjusted in (False, True)]
    found += [("week", weekday) for weekday in range(7)]
    found += [("fortnight", phase) for phase in range(14)]
    return found


SCHEDULES = _schedules()


def _business_before(day: date) -> date:
    while day.weekday() >= 5:
        day -= timedelta(days=1)
    return day


def _month_day(year: int, month: int, day: int, adjusted: bool) -> date:
    found = date(year, month, min(day, calendar.monthrange(year, month)[1]))
    return _business_before(found) if adjusted else found


class _Table:
    """Which days are paydays of each schedule: schedules x days (ordinal - low)."""

    def __init__(self):
        self.low, self.days = 0, np.zeros((len(SCHEDULES), 0), dtype=bool)

    def covering(self, low: int, high: int) -> np.ndarray:
        if self.days.shape[1] and self.low <= low and high <= self.low + self.days.shape[1]:
            return self.days
        if self.days.shape[1]:
            low, high = min(low, self.low), max(high, self.low + self.days.shape[1])
        low, high = low - 200, high + 200
        table = np.zeros((len(SCHEDULES), high - low), dtype=bool)
        ordinals = np.arange(low, high)
        first, last = date.fromordinal(low), date.fromordinal(high - 1)
        months = [(y, m) for y in range(first.year - 1, last.year + 2) for m in range(1, 13)]

        def mark(row, day):
            if low <= day.toordinal() < high:
                table[row, day.toordinal() - low] = True

        for row, schedule in enumerate(SCHEDULES):
            kind = schedule[0]
            if kind == "month":
                for y, m in months:
                    mark(row, _month_day(y, m, schedule[1], schedule[2]))
            elif kind == "semi":
                for y, m in months:
                    if schedule[1] == 1:
                        days = (1, 15)
                    else:
                        days = (15, 31)
                    for d in days:
                        mark(row, _month_day(y, m, d, schedule[2]))
            elif kind == "week":
                table[row] = (ordinals - 1) % 7 == schedule[1]  # date.weekday()
            elif kind == "fortnight":
                table[row] = ordinals % 14 == schedule[1]
        self.low, self.days = low, table
        return table


_table = _Table()


def buckets(moments: list[datetime], tz) -> np.ndarray:
    """schedules x moments: the bucket of hours since the last payday's local midnight
    (FAR: none in the last three days)."""
    return windows(moments, tz)[0]


def windows(moments: list[datetime], tz) -> tuple[np.ndarray, np.ndarray]:
    """buckets(), and schedules x moments: the payday each bucket counts from (its
    ordinal; -1 for FAR)."""
    if not moments:
        empty = np.zeros((len(SCHEDULES), 0), dtype=np.intp)
        return empty, empty
    local = [m.astimezone(tz) for m in moments]
    ordinals = np.array([m.toordinal() for m in local])
    hours = np.array([m.hour + m.minute / 60 for m in local])
    table = _table.covering(int(ordinals.min()) - 3, int(ordinals.max()) + 1)
    found = np.full((len(SCHEDULES), len(local)), FAR, dtype=np.intp)
    payday = np.full((len(SCHEDULES), len(local)), -1, dtype=np.intp)
    for back in (2, 1, 0):  # the most recent payday last, so that it wins
        paid = table[:, ordinals - back - _table.low]
        bucket = np.searchsorted(HOURS, hours + 24 * back, side="right")
        near = paid & (bucket < FAR)
        found = np.where(near, bucket[None, :], found)
        payday = np.where(near, (ordinals - back)[None, :], payday)
    found[0], payday[0] = FAR, -1  # "none": never a payday
    return found, payday


def after_declines(found: np.ndarray, payday: np.ndarray, ok,
                   arrived: int | None) -> tuple[np.ndarray, np.ndarray]:
    """The buckets of attempts in time order (windows()) with those made after a decline
    within the same payday's window, from bucket `arrived` on, counted as FAR, by
    schedule; and, for the moments after them, each schedule's payday whose window that
    holds for (-1: none)."""
    ok = np.asarray(ok, dtype=bool)
    none = np.full(len(SCHEDULES), -1, dtype=np.intp)
    declines = np.flatnonzero(~ok)
    if arrived is None or not len(declines):
        return found, none
    # A payday's window is a run of equal paydays in a schedule's row (the moments are
    # in time order), and the buckets grow within it: a decline from `arrived` on before
    # a moment in its window is the latest decline before it, if that one counts from
    # the same payday and is from `arrived` on.
    latest = np.full(len(ok), -1, dtype=np.intp)
    inner = declines[declines < len(ok) - 1]
    latest[inner + 1] = inner
    latest = np.maximum.accumulate(latest)
    before = np.maximum(latest, 0)
    gone = (latest >= 0)[None, :] & (payday >= 0) & (payday[:, before] == payday) & \
        (found[:, before] >= arrived)
    last = declines[-1]
    following = np.where((payday[:, last] >= 0) & (found[:, last] >= arrived),
                         payday[:, last], -1)
    return np.where(gone, FAR, found), following


class Estimate:
    """A customer's estimated payday: the posterior over SCHEDULES (`weights`) and, by
    schedule, the payday whose window their latest decline closed (after_declines)."""

    def __init__(self, weights: np.ndarray, declined: np.ndarray | None = None):
        self.weights = weights
        self.declined = declined


class PaydayFit:
    """The population's chances by bucket and prior over schedules (fit)."""

    def __init__(self, chances=None, prior=None, customers: int = 0):
        self.chances = np.array(chances if chances is not None else START)
        self.prior = np.array(prior if prior is not None else
                              [1 / len(SCHEDULES)] * len(SCHEDULES))
        self.customers = customers

    def arrived(self) -> int | None:
        """The first bucket by which a payday's money is there for most customers: its
        chance at least ARRIVED_SHARE of the best bucket's and ARRIVED_LIFT times the
        chance far from a payday (None: no such bucket, no pay cycles to speak of)."""
        near = self.chances[:FAR]
        found = np.flatnonzero((near >= ARRIVED_SHARE * near.max()) &
                               (near >= ARRIVED_LIFT * self.chances[FAR]))
        return int(found[0]) if len(found) else None

    def posterior(self, attempts: list[tuple[datetime, bool]], tz) -> Estimate:
        """The customer's estimate from their finished attempts (in time order): the
        posterior over SCHEDULES, and where their latest decline was."""
        log = np.log(self.prior)
        declined = None
        if attempts:
            ok = np.array([bool(y) for _at, y in attempts])
            found, declined = after_declines(*windows([at for at, _ok in attempts], tz), ok,
                                             self.arrived())
            q = self.chances[found]
            log = log + np.where(ok[None, :], np.log(q), np.log(1 - q)).sum(axis=1)
        log -= log.max()
        weights = np.exp(log)
        return Estimate(weights / weights.sum(), declined)

    def average(self, estimate: Estimate) -> float:
        """The customer's estimated chance averaged over time (every hour alike)."""
        widths = np.diff((0, *HOURS))  # hours in each bucket near a payday
        found = 0.0
        for weight, schedule in zip(estimate.weights, SCHEDULES, strict=True):
            days = PERIODS[schedule[0]]
            near = 0.0 if math.isinf(days) else widths / (24 * days)
            found += weight * (float(np.sum(near * self.chances[:FAR]))
                               + (1 - float(np.sum(near))) * self.chances[FAR])
        return found

    def chance(self, estimate: Estimate, moments: list[datetime], tz) -> np.ndarray:
        """The estimated chance of a charge at each of `moments` (after the customer's
        attempts the estimate was made from)."""
        found, payday = windows(moments, tz)
        if estimate.declined is not None:
            gone = (payday >= 0) & (payday == estimate.declined[:, None])
            found = np.where(gone, FAR, found)
        return estimate.weights @ self.chances[found]


def fit(customers: list[tuple[list[tuple[datetime, bool]], object]],
        start: PaydayFit | None = None) -> PaydayFit:
    """EM over customers (their finished attempts and time zone): each one's posterior
    over the schedules, then the chances by bucket and the prior over schedules."""
    data = []
    for attempts, tz in customers:
        if attempts:
            ok = np.array([bool(y) for _at, y in attempts])
            data.append((*windows([at for at, _ok in attempts], tz), ok))
    current = start or PaydayFit()
    arrived = current.arrived()  # as the last fit says (kept through the rounds)
    data = [(after_declines(found, payday, ok, arrived)[0], ok) for found, payday, ok in data]
    if not data:
        return current
    chances, prior = current.chances.copy(), current.prior.copy()
    for _round in range(EM_ROUNDS):
        hits = np.full(FAR + 1, Q_PRIOR[0])
        tries = np.full(FAR + 1, sum(Q_PRIOR))
        counts = np.full(len(SCHEDULES), SCHEDULE_PRIOR)
        log_q, log_not = np.log(chances), np.log(1 - chances)
        for found, ok in data:
            log = np.log(prior) + np.where(ok[None, :], log_q[found], log_not[found]).sum(axis=1)
            log -= log.max()
            post = np.exp(log)
            post /= post.sum()
            counts += post
            flat = found.ravel()
            weight = np.repeat(post, found.shape[1])
            tries += np.bincount(flat, weight, minlength=FAR + 1)
            hits += np.bincount(flat, (weight.reshape(found.shape) * ok[None, :]).ravel(),
                                minlength=FAR + 1)
        chances = np.clip(hits / tries, 1e-4, 1 - 1e-4)
        # The money is there on payday at the latest and is spent after: past the
        # payday's own 24 hours no bucket beats the best of the day, nor the one before.
        # (Without it a schedule read a day late explains the day after a payday as well
        # as the right one explains the payday.)
        chances[DAY] = min(chances[DAY], chances[:DAY].max())
        for k in range(DAY + 1, FAR):
            chances[k] = min(chances[k], chances[k - 1])
        prior = counts / counts.sum()
    return PaydayFit(chances, prior, len(data))


def _logits(p):
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def pay_buckets(chances: np.ndarray, average: float) -> np.ndarray:
    """The buckets of `chances` against the customer's `average` (PAY_EDGES)."""
    return np.searchsorted(PAY_EDGES, _logits(np.asarray(chances)) - _logits(average),
                           side="right")


def pay_prior(bucket: int) -> float:
    """The prior weight of pay:bucket: the estimate taken at its word (its log-odds
    against the customer's average)."""
    return PAY_CENTERS[bucket]
