"""Each customer's payday, estimated from their own attempts and everyone's.

A card declined for lack of funds works again once money arrives: most people are paid
on a schedule (monthly on a day of their own, possibly moved to the business day before
when it falls on a weekend; twice a month; weekly or every other week on a weekday), and
the money stays on the card for a while after it arrives. Which schedule a customer is
on is unknown: this module keeps a posterior over a list of generic pay schedules
(SCHEDULES, plus "no schedule") from the customer's own finished attempts, successes and
failures alike, and predicts the chance of a charge at any moment as the posterior's
average of the chance of a charge that many hours after a payday's local midnight.

Those chances by hours since a payday (HOURS buckets, and "no payday in the last three
days") and the population's prior over schedules are learned from every customer
declined for lack of funds by expectation-maximisation (PaydayFit, refitted with the
retry model). Nothing is assumed of the hour at which money arrives nor of how long it
stays: where outcomes do not depend on paydays (no pay cycles, or no timing at all) the
chances by bucket come out alike and the estimate is flat.

retry_model uses the estimate as one feature family (`pay:k`, the estimated chance in
buckets), its prior weights the estimate taken at its word: the logistic model weighs it
against everything else it knows, and the planner compresses it with the other timing
features while it has not held up out of sample.
"""

import calendar
import math
from datetime import date, datetime, timedelta

import numpy as np

HOURS = (6, 12, 18, 24, 36, 48, 72)  # buckets of hours since a payday's local midnight
FAR = len(HOURS)  # no payday in the last three days
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
    if not moments:
        return np.zeros((len(SCHEDULES), 0), dtype=np.intp)
    local = [m.astimezone(tz) for m in moments]
    ordinals = np.array([m.toordinal() for m in local])
    hours = np.array([m.hour + m.minute / 60 for m in local])
    table = _table.covering(int(ordinals.min()) - 3, int(ordinals.max()) + 1)
    found = np.full((len(SCHEDULES), len(local)), FAR, dtype=np.intp)
    for back in (2, 1, 0):  # the most recent payday last, so that it wins
        paid = table[:, ordinals - back - _table.low]
        bucket = np.searchsorted(HOURS, hours + 24 * back, side="right")
        found = np.where(paid & (bucket < FAR), bucket[None, :], found)
    found[0] = FAR  # "none": never a payday
    return found


class PaydayFit:
    """The population's chances by bucket and prior over schedules (fit)."""

    def __init__(self, chances=None, prior=None, customers: int = 0):
        self.chances = np.array(chances if chances is not None else START)
        self.prior = np.array(prior if prior is not None else
                              [1 / len(SCHEDULES)] * len(SCHEDULES))
        self.customers = customers

    def posterior(self, attempts: list[tuple[datetime, bool]], tz) -> np.ndarray:
        """The customer's posterior over SCHEDULES from their finished attempts."""
        log = np.log(self.prior)
        if attempts:
            found = buckets([at for at, _ok in attempts], tz)
            ok = np.array([bool(y) for _at, y in attempts])
            q = self.chances[found]
            log = log + np.where(ok[None, :], np.log(q), np.log(1 - q)).sum(axis=1)
        log -= log.max()
        weights = np.exp(log)
        return weights / weights.sum()

    def average(self, posterior: np.ndarray) -> float:
        """The customer's estimated chance averaged over time (every hour alike)."""
        widths = np.diff((0, *HOURS))  # hours in each bucket near a payday
        found = 0.0
        for weight, schedule in zip(posterior, SCHEDULES, strict=True):
            days = PERIODS[schedule[0]]
            near = 0.0 if math.isinf(days) else widths / (24 * days)
            found += weight * (float(np.sum(near * self.chances[:FAR]))
                               + (1 - float(np.sum(near))) * self.chances[FAR])
        return found

    def chance(self, posterior: np.ndarray, moments: list[datetime], tz) -> np.ndarray:
        """The estimated chance of a charge at each of `moments`."""
        return posterior @ self.chances[buckets(moments, tz)]


def fit(customers: list[tuple[list[tuple[datetime, bool]], object]],
        start: PaydayFit | None = None) -> PaydayFit:
    """EM over customers (their finished attempts and time zone): each one's posterior
    over the schedules, then the chances by bucket and the prior over schedules."""
    data = [(buckets([at for at, _ok in attempts], tz),
             np.array([bool(y) for _at, y in attempts]))
            for attempts, tz in customers if attempts]
    current = start or PaydayFit()
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
