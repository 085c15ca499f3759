"""Worlds for `manage.py simulate --world NAME`: populations whose payment behaviour the
retry engine was not written for, charged through the gateway interface.

`cards` is the simulated gateway's card mix (automations.simulation.CARD_MIX). The other
worlds give each customer a profile of their own and answer charges through
WorldGateway, which decides each outcome from the profile, the moment (in the
customer's time zone) and a draw seeded by (seed, customer, hour): the same moment gives
the same answer whatever the retry mode, so the modes differ only in when they retry.

- `paycycles`: customers short of funds until their own payday (monthly on a day of
  their own, semi-monthly on the 1st and 15th, weekly on a weekday of their own, or the
  last business day of the month); the money stays on the card from 06:00 on payday for
  a day or two, then is spent.
- `hours`: soft declines that depend on the local hour and weekday, by card funding:
  debit cards clear in business hours on weekdays, credit cards in the evening and at
  weekends, prepaid cards on the customer's reload day.
- `nosignal`: soft declines that succeed with the same small chance whenever retried:
  no timing signal at all (Smart Retries must not lose to the fixed schedule here).

Every world but `cards` also has hard declines (stolen, lost, fraudulent, incorrect
number; half the customers add a new card a few days later) and expired cards (replaced
by 60% of their customers).
"""

import calendar
import random
import zoneinfo
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.test import override_settings

from invoices.gateways.base import ChargeRequest, ChargeResult, Gateway, GatewayError

WORLDS = ("cards", "paycycles", "hours", "nosignal")
HARD_CODES = ("stolen_card", "lost_card", "fraudulent", "incorrect_number")
HARD_SHARE = 0.03  # customers whose card hard-declines...
EXPIRED_SHARE = 0.02  # ...or has expired
HARD_REPLACE = 0.5  # share of them who add a new card...
EXPIRED_REPLACE = 0.6
REPLACE_DELAY_HOURS = (24, 120)  # ...this long after being asked
TROUBLE_SHARE = 0.22  # customers whose card soft-declines at times
NEVER_SHARE = 0.04  # customers whose card never recovers
DEPOSIT_HOUR = 6  # local time at which a payday's money arrives


@dataclass
class Profile:
    """How one customer's card behaves (a world's draw, never shown to the engine)."""

    n: int
    timezone: str
    funding: str
    kind: str  # ok | hard | never | cycle | hours | random
    code: str = ""
    cycle: str = ""  # monthly | semimonthly | weekly | lastbusiness
    payday: int = 0  # day of month (monthly) or weekday 0-6 (weekly; hours: reload day)
    float_hours: int = 0  # how long the money stays after payday
    chance: float = 0.0  # nosignal: the chance of every retry
    responds: bool = False
    delay: timedelta = timedelta(0)
    replaced: bool = field(default=False)

    @property
    def token(self) -> str:
        return f"world_{self.n}"


@dataclass(frozen=True)
class WorldSpec:
    name: str
    trouble: str  # the kind of soft-declining customers: cycle | hours | random


SPECS = {
    "paycycles": WorldSpec("paycycles", "cycle"),
    "hours": WorldSpec("hours", "hours"),
    "nosignal": WorldSpec("nosignal", "random"),
}


def world_check(name: str) -> None:
    if name not in WORLDS:
        raise ValueError(f"Unknown world {name!r}: choose one of {', '.join(WORLDS)}.")


def profile_make(name: str, rng: random.Random, n: int, timezone: str) -> Profile:
    """A customer of world `name`, from the simulation's generator (a fixed number of
    draws per customer, so the population is the same whatever the draws decide)."""
    spec = SPECS[name]
    draws = [rng.random() for _ in range(8)]
    funding = "debit" if draws[1] < 0.55 else "credit" if draws[1] < 0.88 else "prepaid"
    profile = Profile(n=n, timezone=timezone, funding=funding, kind="ok")
    kind = draws[0]
    if kind < HARD_SHARE:
        profile.kind, profile.code = "hard", HARD_CODES[int(draws[2] * len(HARD_CODES))]
        profile.responds = draws[3] < HARD_REPLACE
    elif kind < HARD_SHARE + EXPIRED_SHARE:
        profile.kind, profile.code = "hard", "expired_card"
        profile.responds = draws[3] < EXPIRED_REPLACE
    elif kind < HARD_SHARE + EXPIRED_SHARE + NEVER_SHARE:
        profile.kind = "never"
        profile.code = ("insufficient_funds", "do_not_honor", "generic_decline")[int(draws[2] * 3)]
    elif kind < HARD_SHARE + EXPIRED_SHARE + NEVER_SHARE + TROUBLE_SHARE:
        profile.kind = spec.trouble
        _trouble(profile, draws)
    profile.delay = timedelta(hours=REPLACE_DELAY_HOURS[0] + int(
        draws[7] * (REPLACE_DELAY_HOURS[1] - REPLACE_DELAY_HOURS[0])))
    return profile


def _trouble(profile: Profile, draws: list[float]) -> None:
    if profile.kind == "cycle":
        profile.code = "insufficient_funds"
        cycle = draws[2]
        profile.cycle = ("monthly" if cycle < 0.35 else "semimonthly" if cycle < 0.6
                         else "weekly" if cycle < 0.85 else "lastbusiness")
        if profile.cycle == "monthly":
            profile.payday = 1 + int(draws[3] * 28)
        elif profile.cycle == "weekly":
            # Fridays most often, then Thursdays, then the start of the week.
            day = draws[3]
            profile.payday = 4 if day < 0.5 else 3 if day < 0.7 else int((day - 0.7) / 0.1)
        profile.float_hours = 12 + int(draws[4] * 36)
    elif profile.kind == "hours":
        profile.code = ("try_again_later", "do_not_honor", "generic_decline")[int(draws[2] * 3)]
        profile.payday = int(draws[3] * 7)  # a prepaid card's reload day
    else:
        profile.code = ("insufficient_funds", "try_again_later", "do_not_honor",
                        "generic_decline")[int(draws[2] * 4)]
        profile.chance = 0.08 + draws[3] * 0.1


def _paid_lately(profile: Profile, local: datetime) -> bool:
    """Whether a payday's money is on the card at `local` (its float not yet spent)."""
    for back in range(0, 4):
        day = (local - timedelta(days=back)).date()
        if _is_payday(profile, day):
            arrived = datetime(day.year, day.month, day.day, DEPOSIT_HOUR, tzinfo=local.tzinfo)
            if arrived <= local < arrived + timedelta(hours=profile.float_hours):
                return True
    return False


def _is_payday(profile: Profile, day) -> bool:
    if profile.cycle == "monthly":
        return day.day == min(profile.payday, calendar.monthrange(day.year, day.month)[1])
    if profile.cycle == "weekly":
        return day.weekday() == profile.payday
    if profile.cycle == "semimonthly":
        return day == _business_day_before(day.replace(day=1)) or \
            day == _business_day_before(day.replace(day=15))
    last = day.replace(day=calendar.monthrange(day.year, day.month)[1])
    return day == _business_day_before(last)


def _business_day_before(day):
    while day.weekday() >= 5:
        day -= timedelta(days=1)
    return day


def chance(profile: Profile, local: datetime) -> float:
    """The chance that a charge of this customer's card succeeds at `local`."""
    if profile.kind == "ok":
        return 1.0
    if profile.kind == "never":
        return 0.0
    if profile.kind == "cycle":
        return 0.85 if _paid_lately(profile, local) else 0.03
    if profile.kind == "random":
        return profile.chance
    # hours: by funding, local hour and weekday.
    weekday, hour = local.weekday(), local.hour
    if profile.funding == "debit":
        return 0.4 if weekday < 5 and 9 <= hour < 17 else 0.03
    if profile.funding == "credit":
        evening = 18 <= hour < 23
        return 0.4 if (weekday >= 5 and 9 <= hour < 23) or (weekday < 5 and evening) else 0.03
    return 0.6 if weekday == profile.payday and hour >= 8 else 0.02


_state = {"seed": 0, "profiles": {}, "charges": {}}


@contextmanager
def world_active(name: str, profiles: list[Profile], seed: int):
    """Charges go to this world's gateway while the block runs (one mode's run)."""
    _state.update(seed=seed, profiles={p.token: p for p in profiles}, charges={})
    for profile in profiles:
        _state["profiles"][f"{profile.token}_new"] = profile
    with override_settings(PAYMENT_GATEWAY="automations.worlds.WorldGateway"):
        yield
    _state.update(profiles={}, charges={})


class WorldGateway(Gateway):
    """Answers charges of a world's cards (tokens world_N, and world_N_new for the card a
    customer added after a hard decline, which always succeeds)."""

    def charge(self, request: ChargeRequest, *, now: datetime) -> ChargeResult:
        known = _state["charges"].get(request.idempotency_key)
        if known is not None:
            return known
        profile = _state["profiles"].get(request.payment_method)
        if profile is None:
            raise GatewayError(f"Unknown world card {request.payment_method!r}.")
        reference = f"wch_{len(_state['charges']) + 1}"
        local = now.astimezone(zoneinfo.ZoneInfo(profile.timezone))
        if request.payment_method.endswith("_new"):
            result = ChargeResult(status="succeeded", gateway_reference=reference,
                                  amount_received=request.amount, funding="credit")
        elif profile.kind == "hard":
            result = ChargeResult.declined(profile.code, gateway_reference=reference,
                                           funding=profile.funding)
        else:
            hour = int(now.timestamp() // 3600)
            draw = random.Random(f"{_state['seed']}:{profile.n}:{hour}").random()
            if draw < chance(profile, local):
                result = ChargeResult(status="succeeded", gateway_reference=reference,
                                      amount_received=request.amount, funding=profile.funding)
            else:
                result = ChargeResult.declined(profile.code, gateway_reference=reference,
                                               funding=profile.funding)
        _state["charges"][request.idempotency_key] = result
        return result

    def retrieve(self, idempotency_key: str) -> ChargeResult | None:
        return _state["charges"].get(idempotency_key)

    def refresh(self, gateway_reference: str, *, now: datetime) -> ChargeResult:
        raise GatewayError("World charges never stay processing.")
