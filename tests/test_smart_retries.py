"""Smart Retries: the learned model, the planner over the whole window, exploration,
calibration shown to staff, and the worlds `simulate` compares them in."""

import random
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from automations import retry_model, worlds
from automations.models import BillingSettings, RetryPolicy
from automations.retries import _plan, _slots, retry_calibration
from automations.simulation import simulate_modes
from customers.clock_due import one_transaction
from invoices import collection
from invoices.gateways.base import ChargeRequest, ChargeResult, GatewayError
from invoices.gateways.simulated import SimulatedGateway
from invoices.gateways.stripe import card_funding, intent_result
from invoices.models import Invoice, PaymentAttempt

from .factories import NOW, add_card, make_charged


@pytest.fixture(autouse=True)
def _fresh_model():
    retry_model.model_forget()
    yield
    retry_model.model_forget()


def hours(n):
    return timedelta(hours=n)


def test_the_planner_keeps_a_retry_for_a_payday_nine_days_away():
    start = datetime(2026, 3, 1, 9, tzinfo=UTC)
    slots = _slots(start, start + timedelta(days=14))
    payday = start + timedelta(days=9)
    chances = [0.8 if payday <= s < payday + hours(6) else 0.03 for s in slots]
    # One retry left: it waits nine days rather than trying now.
    first, expected = _plan(slots, chances, 1, start)
    assert slots[first] == payday and expected == pytest.approx(0.8, abs=0.05)
    # Three left: at most two go before the payday, and the plan counts on the payday.
    first, expected = _plan(slots, chances, 3, start)
    assert expected > 0.75  # without the payday, three retries would expect under 10%


def test_the_model_learns_hours_by_card_funding_from_history_and_is_calibrated():
    rng = random.Random(5)
    rows = []
    start = datetime(2026, 1, 5, tzinfo=UTC)
    for _n in range(3000):
        at = start + hours(rng.randrange(24 * 28))
        funding = rng.choice(["debit", "credit"])
        situation = retry_model.Situation(
            code="try_again_later", funding=funding, amount=5000, tries=0,
            first_failed_at=at - hours(30), timezone="UTC", segment="", active=False,
            paid_days=frozenset(), paid_weekdays=frozenset(),
        )
        business = at.weekday() < 5 and 9 <= at.hour < 17
        good = business if funding == "debit" else not business
        y = int(rng.random() < (0.4 if good else 0.04))
        rows.append((retry_model.base_features(situation)
                     + retry_model.slot_features(situation, at, at), y))
    weights, variances = retry_model.fit(rows)
    model = retry_model.Model(weights, variances, len(rows))
    predicted = [model.chance(features) for features, _y in rows]
    assert sum(predicted) / len(rows) == pytest.approx(sum(y for _f, y in rows) / len(rows),
                                                        abs=0.01)
    tuesday_10 = datetime(2026, 2, 3, 10, tzinfo=UTC)
    sunday_10 = datetime(2026, 2, 8, 10, tzinfo=UTC)
    debit = retry_model.Situation(
        code="try_again_later", funding="debit", amount=5000, tries=0,
        first_failed_at=tuesday_10 - hours(30), timezone="UTC", segment="", active=False,
        paid_days=frozenset(), paid_weekdays=frozenset(),
    )

    def chance(at):
        return model.chance(retry_model.base_features(debit)
                            + retry_model.slot_features(debit, at, at))

    assert chance(tuesday_10) > 0.25 > 0.1 > chance(sunday_10)
    # A factor the data supports is named; one nobody tried is not.
    assert model.supported("fh:debit:0:3")
    assert not model.supported("seg:enterprise")


def test_thompson_draws_explore_around_the_posterior():
    model = retry_model.Model({"h:9": 0.0}, {"h:9": 0.25}, 10)
    draws = [model.sampled(random.Random(n)).weight("h:9") for n in range(200)]
    assert min(draws) < -0.2 and max(draws) > 0.2  # it keeps trying other hours


def test_a_card_attached_at_sign_up_is_not_customer_activity():
    invoice = make_charged("sim_9995")  # card attached at NOW, before the failure
    collection.collect_due(now=NOW)
    invoice.refresh_from_db()
    assert "active" not in invoice.next_payment_attempt_reason
    assert invoice.next_payment_attempt_chance is not None


def test_the_reason_names_no_factor_before_any_history():
    invoice = make_charged("sim_9995")
    collection.collect_due(now=NOW)
    invoice.refresh_from_db()
    reason = invoice.next_payment_attempt_reason
    assert reason.startswith("Smart Retries: insufficient_funds, retry 1 of 8")
    assert "×" not in reason  # priors alone support no factor


def _default_policy(**fields) -> BillingSettings:
    """The billing settings with a new default retry policy of `fields`."""
    settings = BillingSettings.load()
    settings.default_retry_policy = RetryPolicy.objects.create(**fields)
    settings.save()
    return settings


def test_a_new_payment_method_retries_at_once_in_the_fixed_mode_too():
    _default_policy(name="Fixed", mode="fixed", max_retries=8, window_days=14)
    invoice = make_charged("sim_9995")
    collection.collect_due(now=NOW)
    later = NOW + hours(5)
    add_card(invoice.customer, "sim_4242", now=later)
    invoice.refresh_from_db()
    assert invoice.next_payment_attempt == later


def test_the_fixed_schedule_never_loads_the_retry_model():
    # Nothing on a fixed schedule reads the model: fitting it at every batch of
    # failures cost the fixed mode a twelfth of its rehearsal. Smart Retries load it.
    settings = _default_policy(name="Fixed", mode="fixed", max_retries=8, window_days=14)
    make_charged("sim_9995")
    collection.collect_due(now=NOW)
    invoice = Invoice.objects.get()
    assert invoice.next_payment_attempt_reason.startswith("Fixed schedule")
    assert invoice.next_payment_attempt_log_odds is None
    assert not retry_model._cache
    settings.default_retry_policy = RetryPolicy.objects.get(mode="smart")
    settings.save()
    make_charged("sim_9995")
    collection.collect_due(now=NOW + hours(1))
    assert retry_model._cache


def test_retry_statistics_show_calibration_by_decile_and_a_brier_score(admin_client):
    invoice = make_charged("sim_9995")
    collection.collect_due(now=NOW)
    invoice.refresh_from_db()
    collection.collect_due(now=invoice.next_payment_attempt)
    retry = PaymentAttempt.objects.get(invoice=invoice, retry_of_decline_code="insufficient_funds")
    assert retry.status == "failed" and retry.predicted_chance is not None
    table = retry_calibration()
    assert table["retries"] == 1
    assert table["brier"] == pytest.approx((retry.predicted_chance / 1000) ** 2)
    # By what the planner did: this first retry was kept at the fixed schedule's time.
    assert [(row["moved"], row["n"]) for row in table["moves"]] == [(False, 1)]
    assert table["moves"][0]["observed"] == 0.0
    body = admin_client.get(reverse("admin:automations_retrystat_changelist")).content.decode()
    assert "Brier score" in body and "expected chance" in body
    assert "calibration-moves" in body and "kept at the fixed schedule's time</td>" in body


def test_gateways_report_card_funding():
    request = ChargeRequest(idempotency_key="fund-1", amount=1000, currency="EUR",
                            payment_method="sim_2537", customer_reference="cus_1")
    result = SimulatedGateway().charge(request, now=datetime(2026, 1, 10, tzinfo=UTC))
    assert (result.status, result.funding) == ("failed", "debit")
    intent = {"object": "payment_intent", "id": "pi_1", "status": "succeeded",
              "amount": 1000, "amount_received": 1000, "currency": "eur",
              "latest_charge": {"payment_method_details": {"card": {"funding": "prepaid"}}}}
    assert intent_result(intent).funding == "prepaid"
    assert card_funding({"payment_method": {"card": {"funding": "debit"}}}) == "debit"
    assert card_funding({"payment_method": {"card": {"funding": "charge"}}}) == "unknown"
    with pytest.raises(GatewayError, match="funding"):
        ChargeResult(status="succeeded", gateway_reference="x", amount_received=1,
                     funding="gold")


def test_world_answers_depend_on_the_moment_not_on_the_retry_mode():
    profile = worlds.Profile(n=1, timezone="UTC", funding="debit", kind="hours",
                             code="try_again_later")
    tuesday = datetime(2026, 2, 3, 10, tzinfo=UTC)
    assert worlds.chance(profile, tuesday) > worlds.chance(profile, tuesday + hours(12))
    cycle = worlds.Profile(n=2, timezone="UTC", funding="debit", kind="cycle",
                           code="insufficient_funds", cycle="weekly", payday=4, float_hours=24)
    friday = datetime(2026, 2, 6, 7, tzinfo=UTC)
    assert worlds.chance(cycle, friday) > worlds.chance(cycle, friday - hours(2))
    with worlds.world_active("hours", [profile], seed=3):
        gateway = worlds.WorldGateway()
        request = ChargeRequest(idempotency_key="w-1", amount=1000, currency="EUR",
                                payment_method="world_1", customer_reference="cus_1")
        first = gateway.charge(request, now=tuesday)
        assert gateway.charge(request, now=tuesday) is first  # idempotent
        assert first.funding == "debit"


@pytest.mark.parametrize("world", ["paycycles", "hours", "nosignal"])
def test_simulate_runs_each_world_and_never_charges_a_hard_declined_card_twice(world):
    start = datetime(2026, 1, 5, tzinfo=UTC)
    seen = {}

    def hard_charged_again(report):
        seen[report.mode] = report

    reports = simulate_modes(customers=15, days=20, seed=7, modes=["smart", "fixed"],
                             start=start, world=world, on_report=hard_charged_again)
    assert [r.world for r in reports] == [world, world]
    assert all(r.hard_declined_charged_again == 0 for r in reports)


def test_an_unknown_world_is_refused():
    with pytest.raises(ValueError, match="Unknown world"):
        simulate_modes(customers=1, days=1, seed=1, modes=["smart"],
                       start=datetime(2026, 1, 5, tzinfo=UTC), world="mars")


def test_smart_retries_are_never_ahead_of_the_fixed_schedules_count():
    invoice = make_charged("sim_9995")  # insufficient_funds, never recovers
    collection.collect_due(now=NOW)
    pace = timedelta(days=14) / 8
    for n in range(1, 4):
        invoice.refresh_from_db()
        assert invoice.next_payment_attempt >= NOW + pace * (n - 1)
        collection.collect_due(now=invoice.next_payment_attempt)
    invoice.refresh_from_db()
    assert invoice.attempt_count == 4


def test_staff_re_enable_a_hard_declined_method_from_the_admin(admin_client):
    invoice = make_charged("sim_9979")
    collection.collect_due(now=NOW)
    method = invoice.customer.payment_methods.get()
    healthy = add_card(make_charged("sim_4242").customer, "sim_4242")
    url = reverse("admin:customers_paymentmethod_changelist")
    # One of the selection is not unusable: refused, nothing changes.
    response = admin_client.post(url, {"action": "reenable_selected",
                                       "_selected_action": [method.pk, healthy.pk]}, follow=True)
    assert "is not marked unusable" in response.content.decode()
    method.refresh_from_db()
    assert method.unusable_code == "stolen_card"
    admin_client.post(url, {"action": "reenable_selected", "_selected_action": [method.pk]})
    method.refresh_from_db()
    invoice.refresh_from_db()
    assert method.unusable_code == "" and invoice.payment_hold == ""


def _retries_finish(invoices, now):
    """Each invoice's next retry, made at `now` (after its planned time)."""
    for invoice in invoices:
        invoice.refresh_from_db()
        assert invoice.next_payment_attempt is not None
        now = max(now, invoice.next_payment_attempt)
    collection.collect_due(now=now)
    return now


def test_the_model_learns_only_the_retries_finished_since_its_last_fit(monkeypatch):
    # A refit over the whole history at every new retry made planning grow faster than
    # the population: the model is kept until enough retries finished, and a refit reads
    # and encodes only those.
    monkeypatch.setattr(retry_model, "REFIT_MIN", 5)
    invoices = [make_charged("sim_9995") for _n in range(6)]
    collection.collect_due(now=NOW)  # the first attempts fail: no retry finished yet
    empty = retry_model.model_load()
    assert empty.trained == 0
    now = _retries_finish(invoices, NOW)  # one retry each: 6 finished
    model = retry_model.model_load()
    assert model is not empty and model.trained == 6
    assert retry_model.model_load() is model  # nothing new: no refit
    monkeypatch.setattr(retry_model, "REFIT_MIN", 7)
    _retries_finish(invoices, now)  # 6 more: fewer than REFIT_MIN
    assert retry_model.model_load() is model
    monkeypatch.setattr(retry_model, "REFIT_MIN", 6)
    refitted = retry_model.model_load()
    assert refitted is not model and refitted.trained == 12
    history = retry_model._cache[next(iter(retry_model._cache))]
    assert len(history.design) == refitted.trained and not history.seen
    # Its rows are the ones a fit over the whole history reads (training_rows).
    assert sorted(map(sorted, (f for f, _y in retry_model.training_rows()))) == sorted(
        sorted(history.design.names[c] for c in row if c >= 0)
        for row in history.design.x.tolist())


def test_a_batchs_plans_read_its_payment_attempts_once():
    # The card cap's counts, the customers' histories and the invoices' automatic
    # attempts (the fixed schedule's shadow) come from one read of the attempts: three
    # before, at every collection batch with a soft decline.
    for token in ("sim_9995", "sim_0002"):
        make_charged(token)
    retry_model.model_load()  # the model's first load reads the history: not the plans'
    # (within one transaction: collection's claim reads the attempts in flight itself)
    with CaptureQueriesContext(connection) as captured, one_transaction():
        counts = collection.collect_due(now=NOW)
    assert counts.failed == 2
    reads = [q["sql"] for q in captured
             if q["sql"].startswith('SELECT "invoices_paymentattempt".')
             and "FOR UPDATE" not in q["sql"]]
    assert len(reads) == 1
    assert PaymentAttempt.objects.filter(status="failed").count() == 2
    assert all(invoice.next_payment_attempt_reason.startswith("Smart Retries")
               for invoice in Invoice.objects.all())


def test_stated_chances_are_recalibrated_on_what_was_stated_when_the_retry_was_planned(
        monkeypatch):
    # The record the stated chances are recalibrated on is the log-odds stated when each
    # retry was planned (the planner's choice of the best-looking time included), kept
    # on the invoice and then on the attempt, so that it holds whichever worker planned
    # the retry: not the prediction of the model that learns the retry later. A retry
    # with no plan kept (planned before there were any) is recalibrated on that
    # prediction instead. Whether the planner moved the retry is kept beside it.
    monkeypatch.setattr(retry_model, "REFIT_MIN", 1)
    invoices = [make_charged("sim_9995") for _n in range(4)]
    collection.collect_due(now=NOW)  # the first attempts fail: the retries are planned
    planned = Invoice.objects.filter(pk__in=[i.pk for i in invoices])
    assert all(i.next_payment_attempt_log_odds is not None and
               i.next_payment_attempt_moved is False for i in planned)
    # As another worker would have planned them (this process noted nothing).
    for n, invoice in enumerate(invoices):
        Invoice.objects.filter(pk=invoice.pk).update(
            next_payment_attempt_log_odds=1.25 + n if n < 3 else None,
            next_payment_attempt_moved=n == 1 if n < 3 else None)
    retry_model.model_forget()
    history_before = retry_model.model_load()
    assert history_before.trained == 0
    _retries_finish(invoices, NOW)
    made = PaymentAttempt.objects.filter(invoice__in=invoices).exclude(retry_of_decline_code="")
    assert sorted((a.predicted_log_odds, a.planner_moved) for a in made
                  if a.predicted_log_odds is not None) == [
        (1.25, False), (2.25, True), (3.25, False)]
    model = retry_model.model_load()
    assert model.trained == 4
    history = retry_model._cache[next(iter(retry_model._cache))]
    stated = sorted(history.stated[:, 0].tolist())
    assert stated[-3:] == [1.25, 2.25, 3.25]
    assert stated[0] < 0  # the model's own prediction of a retry of a card never paying
    assert history.stated[:, 1].tolist() == [0.0] * 4


def test_paydays_learn_from_the_customers_declined_for_lack_of_funds_most_lately(
        monkeypatch):
    # The pay-cycle fit reads the customers declined for lack of funds most lately, a
    # bounded number of them at each refit, not every customer the history ever held.
    for n in range(3):
        make_charged("sim_9995", now=NOW + hours(n))
        collection.collect_due(now=NOW + hours(n))
    assert PaymentAttempt.objects.filter(decline_code="insufficient_funds").count() == 3
    monkeypatch.setattr(retry_model, "PAYDAY_CUSTOMERS", 2)
    learned = retry_model._payday_customers()
    assert sorted(at for history, _zone in learned for at, _ok in history) == [
        NOW + hours(1), NOW + hours(2)]
    monkeypatch.setattr(retry_model, "PAYDAY_CUSTOMERS", 20_000)
    assert len(retry_model._payday_customers()) == 3
