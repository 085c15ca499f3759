"""Smart Retries' planner: the fixed schedule's budget as a cap, the fallback to the
fixed schedule when the model has no signal, the customer's own payday estimate, and
the shrinkage that keeps stated chances calibrated when the history is noise."""

import random
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from automations import paydays, retries, retry_model
from automations.models import RetryPolicy
from automations.retries import (
    SlotTables,
    _smart,
    fixed_marks,
    fixed_times,
    plan_retry,
    plan_value,
)

FIRST = datetime(2026, 3, 2, 9, tzinfo=UTC)  # a Monday
PACE = timedelta(days=14) / 8
WINDOW_END = FIRST + timedelta(days=14)


def hours(n):
    return timedelta(hours=n)


def situation(**fields):
    values = dict(code="insufficient_funds", funding="debit", amount=5000, tries=0,
                  first_failed_at=FIRST, timezone="UTC", segment="", active=False,
                  paid_days=frozenset(), paid_weekdays=frozenset())
    return retry_model.Situation(**{**values, **fields})


def features(s, at):
    return retry_model.base_features(s) + retry_model.slot_features(s, at, at)


def plan(model, *, at=FIRST, used=0, budget=8, history=(), seed=1):
    """Smart Retries' next retry of an invoice that first failed at FIRST and last failed
    at `at`, after `used` retries; the customer's earlier attempts are `history`."""
    failure = SimpleNamespace(
        invoice=SimpleNamespace(pk=7, past_due_at=FIRST, last_decline_code="insufficient_funds",
                                amount_remaining=5000),
        attempt=SimpleNamespace(decline_code="insufficient_funds", card_funding="debit"),
        customer=SimpleNamespace(pk=1, timezone="UTC", segment=""), at=at,
    )
    context = SimpleNamespace(model=model, histories={1: list(history)},
                              rng=random.Random(seed), active=lambda _failure: False)
    return _smart(failure, context, at + hours(1), WINDOW_END, budget - used, used, budget,
                  PACE)


def payday_model(day: int) -> retry_model.Model:
    """A model sure that retrying on the day of month `day` works and nothing else does
    (every other family's spread estimated small, as after much history)."""
    weights = {"c:insufficient_funds": -3.5, f"dd:funds:{day}": 4.0}
    families = ("amt", "tries", "fund", "hb", "fh", "fhh", "fw", "wh", "h", "dom", "dd",
                "age", "cd", "cw", "ch", "fwd", "fdm", "seg", "act")
    return retry_model.Model(weights, {f: 0.01 for f in weights}, 5000,
                             precisions={family: 400.0 for family in families})


def test_a_model_without_signal_keeps_the_fixed_schedule():
    # Every weight zero, surely: no time is better than another.
    flat = retry_model.Model({"c:insufficient_funds": -2.0}, {"c:insufficient_funds": 0.01},
                             5000)
    for used in range(3):
        at = FIRST + PACE * used
        retry = plan(flat, at=at, used=used)
        assert retry.at == at + PACE
        assert "no time clearly better than the fixed schedule" in retry.reason


def test_a_thin_history_keeps_the_fixed_schedule():
    # Before any history the model is its priors: mild, uncertain, not a reason to move.
    retry = plan(retry_model.Model({}, {}, 0))
    assert retry.at == FIRST + PACE


def test_a_clear_payday_moves_the_retry_but_never_ahead_of_the_fixed_count():
    payday = FIRST + timedelta(days=8)  # the 10th, a day the fixed schedule skips
    retry = plan(payday_model(payday.day))
    assert retry.at != FIRST + PACE and retry.at >= FIRST + PACE
    assert "no time clearly better" not in retry.reason
    assert "(8" in retry.reason  # over 80% expected over the plan, which holds the payday
    # Retry n comes no sooner than the fixed schedule's retry n - 1: at every moment
    # Smart Retries are at most one attempt ahead of its count on the invoice.
    soon = payday_model((FIRST + timedelta(days=1)).day)
    for used in range(4):
        at = FIRST + PACE * used
        assert plan(soon, at=at, used=used, seed=used).at >= FIRST + PACE * used


def test_a_payday_before_the_fixed_schedules_first_retry_is_not_missed():
    # The payday is the next day, 15 hours after the failure; the fixed schedule's first
    # retry comes 42 hours after it. The first retry may take the payday (one attempt
    # ahead of the fixed schedule's count), the next never comes before the fixed
    # schedule's first, and so on.
    payday = (FIRST + timedelta(days=1)).replace(hour=0)
    fixed = collect(RetryPolicy.Mode.FIXED, None, delay=hours(0))
    for seed in range(3):
        smart = collect(RetryPolicy.Mode.SMART, payday_model(payday.day), delay=hours(0),
                        seed=seed)
        assert payday <= smart[1] < fixed[1]
        assert all(s >= f for s, f in zip(smart[2:], fixed[1:], strict=False))
        assert len(smart) <= len(fixed)


def test_no_lead_on_the_fixed_schedule_until_timing_holds_up_out_of_sample():
    # The same payday the morning after the failure, from a model whose timing has not
    # held up out of sample enough (retries.LEAD_TIMING): retry n comes no sooner than
    # the fixed schedule's retry n, as where timing carries no signal.
    payday = (FIRST + timedelta(days=1)).replace(hour=0)
    fixed = collect(RetryPolicy.Mode.FIXED, None, delay=hours(0))
    for seed in range(3):
        model = payday_model(payday.day)
        model.timing = retries.LEAD_TIMING - 0.1
        smart = collect(RetryPolicy.Mode.SMART, model, delay=hours(0), seed=seed)
        assert smart[0] == fixed[0]
        assert all(s >= f for s, f in zip(smart[1:], fixed[1:], strict=False)), (smart, fixed)
        assert len(smart) <= len(fixed)


def test_the_planner_never_plans_beyond_the_budget():
    retry = plan(payday_model(11), at=FIRST + PACE * 7, used=7)
    assert retry.at is not None and retry.at <= WINDOW_END
    assert "retry 8 of 8" in retry.reason
    first = [(FIRST, FIRST, False)]
    marks = fixed_marks(first, FIRST + hours(1), WINDOW_END, 3, PACE)
    assert marks == [FIRST + PACE, FIRST + PACE * 2, FIRST + PACE * 3]
    assert fixed_times(marks, FIRST + hours(1), PACE, FIRST, WINDOW_END) == marks
    # Whatever the chances, the fixed schedule's retries end at the window's end.
    late = [(FIRST, FIRST, False)] + [(FIRST + PACE * k, FIRST + PACE * k, True)
                                      for k in range(1, 7)]
    late.append((FIRST + PACE * 7, FIRST + PACE * 7 + hours(30), True))
    assert fixed_marks(late, FIRST + PACE * 7 + hours(31), WINDOW_END, 5, PACE) == [
        WINDOW_END]


def test_plan_value_counts_each_retry_only_if_those_before_failed():
    times = [FIRST, FIRST]
    assert plan_value([0.5, 0.5], times, FIRST) == pytest.approx(0.75)
    assert plan_value([1.0, 0.9], times, FIRST) == pytest.approx(1.0)


def test_the_customers_own_payday_comes_from_their_successful_payments():
    tz = retry_model.zoneinfo.ZoneInfo("America/New_York")
    history = [
        (datetime(2026, 1, 9, 14, tzinfo=UTC), True),  # Friday 9 January, 09:00 local
        (datetime(2026, 2, 6, 3, tzinfo=UTC), False),
        (datetime(2026, 2, 7, 3, tzinfo=UTC), True),  # Friday 6 February, 22:00 local
        (datetime(2026, 3, 9, 14, tzinfo=UTC), True),  # after the moment asked about
    ]
    days, weekdays, paid_hours = retry_model.paid_before(
        history, datetime(2026, 3, 1, tzinfo=UTC), tz)
    assert (days, weekdays, paid_hours) == ({9, 6}, {4}, {9, 22})
    s = situation(paid_days=frozenset({9, 6}), paid_weekdays=frozenset({4}),
                  paid_hours=frozenset({9}))

    def customer_features(local):
        return {f for f in retry_model.slot_features(s, local, local)
                if f.startswith(("cd:", "cw:", "ch:"))}

    assert customer_features(datetime(2026, 3, 6, 10, tzinfo=UTC)) == {
        "cd:0", "cw:0", "ch:near"}
    assert customer_features(datetime(2026, 3, 10, 18, tzinfo=UTC)) == {
        "cd:1", "cw:far", "ch:far"}
    assert customer_features(datetime(2026, 3, 5, 9, tzinfo=UTC)) == {
        "cd:-1", "cw:-1", "ch:near"}
    assert customer_features(datetime(2026, 3, 21, 9, tzinfo=UTC)) == {
        "cd:far", "cw:1", "ch:near"}


def test_the_model_learns_the_customers_own_payday():
    rng = random.Random(3)
    rows = []
    for _n in range(4000):
        at = FIRST + hours(rng.randrange(24 * 28))
        paid = frozenset({rng.randrange(1, 29)})
        s = situation(paid_days=paid, first_failed_at=at - hours(40))
        near = min(abs(at.day - d) for d in paid) == 0
        rows.append((features(s, at), int(rng.random() < (0.6 if near else 0.05))))
    weights, variances, _precisions = retry_model.fit_shrunk(rows)
    model = retry_model.Model(weights, variances, len(rows))
    assert model.weight("cd:0") > 2.0 and model.supported("cd:0")


def test_noise_is_shrunk_away_and_chances_stay_calibrated_on_the_best_slots():
    # A history with no timing signal at all: 12% whenever retried.
    rng = random.Random(8)
    rows = []
    for _n in range(3000):
        at = FIRST + hours(rng.randrange(24 * 28))
        rows.append((features(situation(first_failed_at=at - hours(30)), at),
                     int(rng.random() < 0.12)))
    weights, variances, precisions = retry_model.fit_shrunk(rows)
    model = retry_model.Model(weights, variances, len(rows), precisions=precisions)
    hourly = [w for f, w in weights.items() if f.startswith("fhh:")]
    assert max(map(abs, hourly)) < 0.15  # an unshrunk fit gives some hours x1.5
    # The chance stated for the slot that looks best is still about 12%.
    slots = [FIRST + hours(h) for h in range(24 * 14)]
    best = max(model.chance(features(situation(), t)) for t in slots)
    assert best < 0.17
    assert not any(model.supported(f) for f in weights if not f.startswith("c:"))


def collect(mode, model, *, delay, budget=8, seed=1):
    """The automatic attempts of one invoice whose every charge fails, the gateway taking
    `delay` to say so, retried by plan_retry in `mode` (smart or fixed): their times."""
    policy = SimpleNamespace(retry_budget=budget, window_days=14, name="test", mode=mode,
                             after_last_retry=RetryPolicy.AfterLastRetry.LEAVE_PAST_DUE)
    invoice = SimpleNamespace(pk=7, past_due_at=None, attempt_count=0,
                              last_decline_code="insufficient_funds", amount_remaining=5000)
    customer = SimpleNamespace(pk=1, timezone="UTC", segment="")
    rows = []
    context = SimpleNamespace(model=model, histories={1: []}, rng=random.Random(seed),
                              active=lambda _failure: False, attempts={7: rows},
                              card_free_from=lambda _failure: None)
    when, chance = FIRST - delay, None
    while when is not None:
        attempt = SimpleNamespace(pk=len(rows) + 1, created_at=when, predicted_chance=chance,
                                  decline_code="insufficient_funds", card_funding="debit")
        rows.append((attempt.pk, when, None, chance is not None))
        invoice.attempt_count += 1
        failed = when + delay
        invoice.past_due_at = invoice.past_due_at or failed
        rows[-1] = (attempt.pk, when, failed, chance is not None)
        retry = plan_retry(SimpleNamespace(invoice=invoice, attempt=attempt, customer=customer,
                                           at=failed), policy, context)
        when, chance = retry.at, 1 if mode == "smart" else None
    return [created for _pk, created, _completed, _planned in rows]


@pytest.mark.parametrize("delay", [hours(0), hours(48), hours(5)])
@pytest.mark.parametrize("model", ["flat", "payday", "priors"])
def test_smart_retries_are_never_more_than_one_attempt_ahead_of_the_fixed_schedule(delay, model):
    # A gateway that takes two days to decline (a charge that stays processing): the
    # fixed schedule retries a whole pace after each failure; Smart Retries used to
    # catch up with the fixed grid half a pace after it, one attempt more on the invoice
    # at the end. Retry n comes no sooner than the fixed schedule's retry n - 1, and
    # there are no more of them.
    model = {"flat": retry_model.Model({"c:insufficient_funds": -2.0},
                                       {"c:insufficient_funds": 0.01}, 5000),
             "payday": payday_model((FIRST + timedelta(days=8)).day),
             "priors": retry_model.Model({}, {}, 0)}[model]
    fixed = collect(RetryPolicy.Mode.FIXED, model, delay=delay)
    for seed in range(3):
        smart = collect(RetryPolicy.Mode.SMART, model, delay=delay, seed=seed)
        assert len(smart) <= len(fixed)
        assert smart[0] == fixed[0]
        assert all(s >= f for s, f in zip(smart[1:], fixed, strict=False)), (smart, fixed)
    if delay == hours(48):
        assert len(fixed) < 9  # the delays cost the fixed schedule retries in the window


def test_stated_chances_are_recalibrated_against_the_winners_curse():
    # Every candidate time truly succeeds 20% of the time; the model's estimates are
    # noisy, and the retry goes to the best-looking of 50 times: its estimate is biased
    # upward. Recalibrated on the model's own out-of-sample predictions of the retries
    # made, the chance stated for the next such retries is what they succeed at.
    rng = random.Random(5)
    truth = retry_model._logit(0.2)

    def best_estimate():
        return max(truth + rng.gauss(0, 0.6) for _slot in range(50))

    pairs = [(best_estimate(), int(rng.random() < 0.2)) for _n in range(4000)]
    assert sum(retry_model._sigmoid(z) for z, _y in pairs) / len(pairs) > 0.4
    model = retry_model.Model({}, {}, 0, calibration=retry_model.recalibrate(pairs))
    stated = []
    for _n in range(2000):
        z = best_estimate()
        model.offset = z  # the model's log-odds for that slot
        stated.append(model.stated([]))
    assert sum(stated) / len(stated) == pytest.approx(0.2, abs=0.03)
    # No history of predictions: no change.
    calibration = retry_model.recalibrate([])
    assert (calibration.shift, calibration.slope) == (0.0, 1.0) and not len(calibration.values)
    assert calibration.chance(retry_model._logit(0.3)) == pytest.approx(0.3)


def decile_gaps(stated, outcomes, least=100):
    """The gap between the mean stated chance and the observed rate in each decile of
    the stated chance holding at least `least` retries (retry_calibration's table)."""
    found = {}
    for p, y in zip(stated, outcomes, strict=True):
        found.setdefault(min(int(p * 10), 9), []).append((p, y))
    return {d: abs(sum(y for _p, y in rows) - sum(p for p, _y in rows)) / len(rows)
            for d, rows in found.items() if len(rows) >= least}


def test_stated_chances_are_calibrated_in_every_decile_not_only_on_average():
    # The model's chances against the truth are not a line in log-odds: the retries it
    # puts at 8-20% all succeed about 8% of the time (customers who never pay mixed with
    # those who pay at some hours, which additive log-odds cannot tell apart), those
    # below and from 30% up are about right. One shift and slope of the log-odds cannot
    # make every decile right; the monotone correction by bins of the record does, on
    # the next retries.
    rng = random.Random(11)

    def truth(stated):
        if stated < 0.08 or stated >= 0.3:
            return stated
        if stated < 0.2:
            return 0.08
        return 0.08 + (stated - 0.2) * (0.3 - 0.08) / 0.1

    def retry():
        z = rng.uniform(retry_model._logit(0.02), retry_model._logit(0.6))
        return z, int(rng.random() < truth(retry_model._sigmoid(z)))

    calibration = retry_model.recalibrate([retry() for _n in range(12000)])
    later = [retry() for _n in range(20000)]
    outcomes = [y for _z, y in later]
    gaps = decile_gaps([calibration.chance(z) for z, _y in later], outcomes)
    assert len(gaps) >= 4
    assert max(gaps.values()) < 0.025, gaps
    line = retry_model.Calibration(calibration.shift, calibration.slope)
    assert max(decile_gaps([line.chance(z) for z, _y in later], outcomes).values()) > 0.04


def test_the_recalibration_follows_the_models_latest_errors():
    # Early in a run the model's chances were right; lately (its weights spread as the
    # history grew) those it states near 20% succeed 10% of the time. The map follows
    # the latest record, not the average over the run.
    rng = random.Random(12)

    def record(truth_of_stated, n):
        rows = []
        for _n in range(n):
            stated = rng.choice([0.05, 0.2, 0.4])
            rows.append((retry_model._logit(stated) + rng.gauss(0, 0.1),
                         int(rng.random() < truth_of_stated[stated])))
        return rows

    early = record({0.05: 0.05, 0.2: 0.2, 0.4: 0.4}, 12000)
    late = {0.05: 0.05, 0.2: 0.1, 0.4: 0.4}
    calibration = retry_model.recalibrate(early + record(late, 8000))
    assert calibration.chance(retry_model._logit(0.2)) == pytest.approx(0.1, abs=0.03)
    assert calibration.chance(retry_model._logit(0.4)) == pytest.approx(0.4, abs=0.04)
    # The map is monotone: a higher log-odds never states less.
    grid = [retry_model._logit(p / 100) for p in range(1, 99)]
    chances = [calibration.chance(z) for z in grid]
    assert all(b >= a - 1e-12 for a, b in zip(chances, chances[1:], strict=False))


def one_weight_at_a_time(rows, sweeps):
    """Ridge logistic regression by cyclic coordinate descent, one Newton step per weight
    in turn in the features' order (the model's fit before it took a family at once)."""
    index = {}
    for r, (fs, _y) in enumerate(rows):
        for f in fs:
            index.setdefault(f, []).append(r)
    weights = {f: retry_model.prior_mean(f) for f in index}
    margins = [sum(weights[f] for f in fs) for fs, _y in rows]
    for _sweep in range(sweeps):
        biggest = 0.0
        for f in sorted(index):
            ps = [retry_model._sigmoid(margins[r]) for r in index[f]]
            g = sum(rows[r][1] - p for r, p in zip(index[f], ps, strict=True))
            h = sum(p * (1 - p) for p in ps)
            precision = retry_model._precision(f)
            step = (g - precision * (weights[f] - retry_model.prior_mean(f))) / (h + precision)
            step = max(-2.0, min(2.0, step))
            weights[f] += step
            for r in index[f]:
                margins[r] += step
            biggest = max(biggest, abs(step))
        if biggest < 1e-3:
            break
    return weights


def test_the_fit_takes_a_family_at_once_exactly_as_one_weight_at_a_time():
    # A family's weights never share a row (one hour, one weekday... per retry), so the
    # Newton steps of all of them at once, in arrays, are the steps taken one at a time.
    rng = random.Random(3)
    rows = []
    for _n in range(600):
        at = FIRST + hours(rng.randrange(24 * 20))
        s = situation(funding=rng.choice(["debit", "credit"]), tries=rng.randrange(4),
                      amount=rng.choice([900, 5000, 40000]),
                      paid_days=frozenset({rng.randrange(1, 29)}) if rng.random() < 0.5
                      else frozenset())
        rows.append((features(s, at), int(rng.random() < (0.4 if at.hour < 12 else 0.1))))
    weights, variances = retry_model.fit(rows, sweeps=6)
    reference = one_weight_at_a_time(rows, sweeps=6)
    assert weights.keys() == reference.keys()
    for f, w in weights.items():
        assert w == pytest.approx(reference[f], abs=1e-9), f
    assert all(0 < v <= 1 / retry_model._precision(f) for f, v in variances.items())
    with pytest.raises(ValueError, match="Two features of one family"):
        retry_model.fit([(["h:1", "h:2"], 1)])


@pytest.mark.parametrize("zone", ["UTC", "America/New_York", "Asia/Kolkata"])
def test_every_candidate_time_gets_the_chance_of_its_own_features(zone):
    # The planner scores the candidate times by table look-ups (by local weekday and
    # hour, day of month, age): the same chances as the features of each time, across a
    # change of daylight saving time and in a zone half an hour off UTC.
    from automations.retries import SlotTables, _slots

    rng = random.Random(2)
    tz = retry_model.zoneinfo.ZoneInfo(zone)
    start = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)  # 8 March: New York's clocks move
    s = situation(timezone=zone, paid_days=frozenset({10, 25}), paid_weekdays=frozenset({4}),
                  paid_hours=frozenset({7}), failed_weekdays=frozenset({1}),
                  failed_days=frozenset({3}), first_failed_at=start - hours(20))
    slots = _slots(start, start + timedelta(days=14))
    weights = {f: rng.gauss(0, 1) for fs in (features(s, t.astimezone(tz)) for t in slots)
               for f in fs}
    model = retry_model.Model(weights, {f: 0.01 for f in weights}, 100)
    tables = SlotTables(model, s, tz, slots)
    found = tables.chances(model.means()[None, :])[0]
    expected = [model.chance(retry_model.base_features(s) + retry_model.slot_features(
        s, t.astimezone(tz), t)) for t in slots]
    assert found == pytest.approx(expected, abs=1e-9)


def test_timing_that_does_not_hold_up_out_of_sample_keeps_the_fixed_schedule():
    # The retries made, as the model predicted them before learning them: an untimed part
    # (the decline code's, true) and a timed part. Where timing is real, the timed part
    # predicts the outcomes as stated; where it is noise (the best-looking of 50 times,
    # the winner's curse) it predicts nothing, and its slope falls toward 0.
    rng = random.Random(7)

    def record(real: bool):
        pairs = []
        for _n in range(3000):
            untimed = rng.choice([-2.5, -1.0])
            timed = max(rng.gauss(0, 0.5) for _slot in range(50)) if not real else \
                rng.gauss(0, 1.0)
            truth = untimed + (timed if real else 0.0)
            pairs.append((untimed, timed, int(rng.random() < retry_model._sigmoid(truth))))
        return pairs

    assert retry_model.timing_slope(record(real=True)) > 0.85
    assert retry_model.timing_slope(record(real=False)) < 0.15
    assert retry_model.timing_slope([]) == 0.0  # no record, no evidence
    # A model sure of a payday moves the retry when its timing holds up (as in
    # test_a_clear_payday_moves_the_retry...), and keeps the fixed schedule when not.
    payday = FIRST + timedelta(days=8)
    model = payday_model(payday.day)
    model.timing = 0.0
    retry = plan(model)
    assert retry.at == FIRST + PACE
    assert "no time clearly better than the fixed schedule" in retry.reason


def test_a_timing_slope_not_clearly_above_zero_keeps_the_fixed_schedule_exactly():
    # Records whose timed part predicts nothing (a world with no timing signal): the
    # slope's estimate, clipped at 0, is above 0 in about half of them by chance, and any
    # slope at all lets the planner move retries on noise now and then (each move risks
    # an attempt more than the fixed schedule). Until the slope is two standard
    # deviations above 0 it counts as 0; a real timing effect passes.
    def record(seed, n, effect, spread):
        rng = random.Random(seed)
        pairs = []
        for _n in range(n):
            untimed, timed = rng.choice([-2.5, -1.5]), rng.gauss(0, spread)
            truth = untimed + effect * timed
            pairs.append((untimed, timed, int(rng.random() < retry_model._sigmoid(truth))))
        return pairs

    slopes = [retry_model.timing_slope(record(seed, 800, 0.0, 0.5)) for seed in range(20)]
    assert sum(slope > 0 for slope in slopes) <= 2, slopes
    assert retry_model.timing_slope(record(1, 3000, 1.0, 1.0)) > 0.85


def _paid_world(rng, schedule_of, chance_of, customers=300, tz_name="Europe/Paris"):
    """Customers with a payday each (schedule_of(n): a weekday, or a day of month), their
    attempts at random hours over 60 days, each a success with chance_of(hours since the
    payday's local midnight, or None)."""
    tz = retry_model.zoneinfo.ZoneInfo(tz_name)
    found = []
    for n in range(customers):
        kind, value = schedule_of(n)
        attempts = []
        for _k in range(rng.randrange(4, 14)):
            at = FIRST + hours(rng.randrange(24 * 60))
            local = at.astimezone(tz)
            since = None
            for back in range(3):
                day = (local - timedelta(days=back)).date()
                if (kind == "week" and day.weekday() == value) or (
                        kind == "month" and day.day == value):
                    since = back * 24 + local.hour
                    break
            attempts.append((at, rng.random() < chance_of(since)))
        found.append((sorted(attempts), tz))
    return found


UTC_ZONE = retry_model.zoneinfo.ZoneInfo("UTC")


def _money_after_payday(since):
    return 0.8 if since is not None and 8 <= since < 30 else 0.03


def test_the_population_teaches_the_chance_by_hours_since_a_payday():
    # Weekly and monthly paydays of their own; the money is there from 08:00 on payday
    # for a day: the fit learns it (nothing of the hour nor the length is assumed).
    rng = random.Random(5)
    customers = _paid_world(rng, lambda n: ("week", rng.choice([4, 4, 3, 0])) if n % 2 else
                            ("month", rng.randrange(1, 29)), _money_after_payday)
    fit = paydays.fit(customers)
    # Each bucket by the hours since a payday's midnight it ends at.
    chances = dict(zip((*paydays.HOURS, "far"), fit.chances, strict=True))
    assert chances[18] > 0.6 and chances[24] > 0.6  # 12:00-23:59 on payday
    assert chances[6] < 0.15 and chances[72] < 0.1 and chances["far"] < 0.1
    assert 0.2 < chances[36] < chances[24]  # spent during the next morning


def test_a_customers_payday_comes_from_their_own_successes_and_failures():
    rng = random.Random(6)
    fit = paydays.fit(_paid_world(rng, lambda n: ("week", rng.randrange(7)),
                                  _money_after_payday))
    tz = retry_model.zoneinfo.ZoneInfo("Europe/Paris")
    # Paid on two Wednesdays at 10:00 local, declined on other days.
    history = [(datetime(2026, 3, 4, 9, tzinfo=UTC), True),
               (datetime(2026, 3, 6, 9, tzinfo=UTC), False),
               (datetime(2026, 3, 9, 15, tzinfo=UTC), False),
               (datetime(2026, 3, 11, 9, tzinfo=UTC), True),
               (datetime(2026, 3, 13, 9, tzinfo=UTC), False)]
    posterior = fit.posterior(history, tz)
    wednesday, friday, night = (datetime(2026, 3, 18, 9, tzinfo=UTC),
                                datetime(2026, 3, 20, 9, tzinfo=UTC),
                                datetime(2026, 3, 18, 2, tzinfo=UTC))
    on, off, early = fit.chance(posterior, [wednesday, friday, night], tz)
    # (03:00 on a Wednesday: a Tuesday payday is not ruled out, its money still there.)
    assert on > 0.5 and off < 0.1 and early < on / 2
    # Before any attempt of theirs, the population's prior: no day much better.
    flat = fit.chance(fit.posterior([], tz), [wednesday, friday], tz)
    assert max(flat) < 0.3


def test_without_a_payday_signal_the_model_learns_no_payday():
    # Every attempt succeeds with the same chance whenever it is made. Some schedule
    # always fits a lucky success, so the estimate alone sees paydays; the model learns
    # pay:k from each retry as the estimate predicted it before its outcome, and finds
    # that the estimate predicts nothing.
    rng = random.Random(8)
    customers = _paid_world(rng, lambda n: ("week", rng.randrange(7)), lambda since: 0.12,
                            customers=400)
    fit = paydays.fit(customers)
    rows = []
    for attempts, tz in customers:
        for at, ok in attempts:
            s = situation(first_failed_at=attempts[0][0], timezone=tz.key,
                          payday=retry_model.payday_of(fit, "insufficient_funds", attempts,
                                                       at, tz))
            rows.append((features(s, at.astimezone(tz)), int(ok)))
    weights, variances, precisions = retry_model.fit_shrunk(rows)
    model = retry_model.Model(weights, variances, len(rows), precisions=precisions)
    chances = [model.chance(["c:insufficient_funds", f"pay:{k}"])
               for k in range(len(paydays.PAY_CENTERS))
               if f"pay:{k}" in weights]
    assert max(chances) - min(chances) < 0.08, chances


def test_the_planner_waits_for_the_customers_estimated_payday():
    # A customer declined for lack of funds who paid on Fridays at 10:00 before; the
    # population says money stays a day after a payday's morning. The model takes the
    # estimate at its word (pay:k's prior), and its timing holds up: the retry moves to
    # the coming Friday morning (FIRST is a Monday), no sooner than the fixed schedule.
    rng = random.Random(9)
    fit = paydays.fit(_paid_world(rng, lambda n: ("week", rng.randrange(7)),
                                  _money_after_payday, tz_name="UTC"))
    model = retry_model.Model({"c:insufficient_funds": -2.0},
                              {"c:insufficient_funds": 0.01}, 5000,
                              precisions={family: 400.0 for family in (
                                  "amt", "tries", "fund", "hb", "fh", "fhh", "fw", "wh", "h",
                                  "dom", "dd", "age", "cd", "cw", "ch", "fwd", "fdm")})
    model.paydays = fit
    history = [(FIRST - timedelta(days=7 * k + 3) + hours(1), True) for k in range(1, 4)]
    history += [(FIRST - timedelta(days=7 * k + 1), False) for k in range(1, 4)]
    # ...and was declined on Thursday afternoons (no Thursday payday).
    history += [(FIRST - timedelta(days=7 * k + 4) + hours(5), False) for k in range(1, 4)]
    retry = plan(model, history=sorted(history))
    assert "no time clearly better" not in retry.reason
    assert "(9" in retry.reason  # over 90% expected over the plan, which holds Fridays
    # The chances it planned on: Friday 10:00 near the money, Wednesday not.
    s = situation(payday=retry_model.payday_of(fit, "insufficient_funds", sorted(history),
                                               FIRST, UTC_ZONE))
    slots = [FIRST + timedelta(days=4, hours=1), FIRST + timedelta(days=2, hours=1)]
    friday, wednesday = SlotTables(model, s, UTC_ZONE, slots).chances(
        model.means()[None, :])[0]
    assert friday > 0.3 and wednesday < friday / 5
    # Without the estimate (the same model, no population fitted) it keeps the fixed
    # schedule.
    model = retry_model.Model({"c:insufficient_funds": -2.0},
                              {"c:insufficient_funds": 0.01}, 5000)
    assert plan(model, history=sorted(history)).at == FIRST + PACE


def test_the_payday_feature_is_timing_only_not_how_often_a_card_succeeds():
    # A card that succeeds a third of the time whenever it is charged: the estimate says
    # so at every hour, which is no reason to charge it at one time rather than another
    # (nor, where timing carries no signal, a sign that timing holds up out of sample).
    flat = paydays.PaydayFit(chances=[1 / 3] * (paydays.FAR + 1), customers=100)
    posterior = flat.posterior([(FIRST - hours(24 * k + 5), k % 3 == 0) for k in range(9)],
                               UTC_ZONE)
    assert flat.average(posterior) == pytest.approx(1 / 3)
    s = situation(payday=(flat, posterior, UTC_ZONE))
    found = {f for at in (FIRST + hours(h) for h in range(0, 24 * 14, 7))
             for f in retry_model.slot_features(s, at, at) if f.startswith("pay:")}
    assert len(found) == 1
    assert retry_model.prior_mean(found.pop()) == 0.0
