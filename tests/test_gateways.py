"""The gateway interface and the simulated gateway's documented test cards."""

import dataclasses
import itertools
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from invoices.gateways import ChargeRequest, ChargeResult, GatewayError, gateway_load
from invoices.gateways.base import refresh_many_safely
from invoices.gateways.simulated import (
    SIMULATED_CARDS,
    SimulatedGateway,
    simulated_card_for_number,
)
from invoices.models import SimulatedCharge

# A Monday, 09:00 UTC, on day 2 of the month: inside every "good" window.
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
_keys = itertools.count(1)


def charge_request(card_number="4242424242424242", *, key=None, amount=12000, currency="EUR",
                   customer="cus_1"):
    return ChargeRequest(
        idempotency_key=key or f"attempt-{next(_keys)}",
        amount=amount,
        currency=currency,
        payment_method=simulated_card_for_number(card_number).token,
        customer_reference=customer,
        description="Invoice CUS0001-0001",
    )


def charge(card_number, *, now=NOW, **fields):
    return SimulatedGateway().charge(charge_request(card_number, **fields), now=now)


# --- the documented cards ------------------------------------------------------------------


@pytest.mark.parametrize("number", ["4242424242424242", "4000000000000077", "5555555555554444"])
def test_success_cards_collect_the_full_amount(number):
    result = charge(number, amount=12000)

    assert result.status == "succeeded"
    assert result.amount_received == 12000
    assert result.gateway_reference.startswith("simch_")
    assert result.decline_code == ""


@pytest.mark.parametrize(
    "number, decline_code, hard, advice",
    [
        ("4000000000009995", "insufficient_funds", False, "retry"),
        ("4000000000000002", "generic_decline", False, "retry"),
        ("4000000000000119", "do_not_honor", False, "retry"),
        ("4000000000000135", "processing_error", False, "retry"),
        ("4000000000009979", "stolen_card", True, "update_payment_method"),
        ("4000000000009987", "lost_card", True, "update_payment_method"),
        ("4000000000000069", "expired_card", True, "update_payment_method"),
        ("4242424242424241", "incorrect_number", True, "update_payment_method"),
        ("4100000000000019", "fraudulent", True, "update_payment_method"),
        ("4000002760003184", "authentication_required", True, "update_payment_method"),
    ],
)
def test_decline_cards_fail_with_their_code(number, decline_code, hard, advice):
    result = charge(number)

    assert result.status == "failed"
    assert result.decline_code == decline_code
    assert result.hard_decline is hard
    assert result.advice == advice
    assert result.amount_received == 0
    assert result.failure_message  # plain words for the customer


def test_stolen_card_message_does_not_tell_the_customer_why():
    result = charge("4000000000009979")

    assert "stolen" not in result.failure_message.lower()
    assert "different payment method" in result.failure_message


def test_action_card_requires_the_customer():
    result = charge("4000002500003155")

    assert result.status == "requires_action"
    assert result.amount_received == 0
    assert not result.is_final


def test_processing_card_settles_succeeded_two_days_later_on_refresh():
    gateway = SimulatedGateway()
    first = charge("4000000000002222", amount=5000)
    assert first.status == "processing"
    assert first.amount_received == 0

    still = gateway.refresh(first.gateway_reference, now=NOW + timedelta(days=1, hours=23))
    settled = gateway.refresh(first.gateway_reference, now=NOW + timedelta(days=2))

    assert still.status == "processing"
    assert settled.status == "succeeded"
    assert settled.amount_received == 5000
    assert gateway.retrieve(first.raw["idempotency_key"]).status == "succeeded"


def test_processing_card_that_settles_failed():
    gateway = SimulatedGateway()
    first = charge("4000000000002230")

    settled = gateway.refresh(first.gateway_reference, now=NOW + timedelta(days=3))

    assert settled.status == "failed"
    assert settled.decline_code == "insufficient_funds"
    assert settled.hard_decline is False


def test_refreshing_a_settled_charge_changes_nothing():
    gateway = SimulatedGateway()
    first = charge("4000000000002222")
    gateway.refresh(first.gateway_reference, now=NOW + timedelta(days=2))

    again = gateway.refresh(first.gateway_reference, now=NOW + timedelta(days=30))

    assert again.status == "succeeded"
    assert SimulatedCharge.objects.count() == 1


def test_recovering_card_declines_for_three_days_after_its_first_decline_then_succeeds():
    first = charge("4000000000000333", now=NOW)
    day_two = charge("4000000000000333", now=NOW + timedelta(days=2, hours=23))
    day_three = charge("4000000000000333", now=NOW + timedelta(days=3))

    assert (first.status, first.decline_code) == ("failed", "insufficient_funds")
    assert (day_two.status, day_two.decline_code) == ("failed", "insufficient_funds")
    assert day_three.status == "succeeded"


def test_recovering_card_counts_days_per_customer():
    charge("4000000000000333", now=NOW, customer="cus_early")

    other_customer = charge("4000000000000333", now=NOW + timedelta(days=4), customer="cus_late")

    assert other_customer.status == "failed"  # its own first decline, not cus_early's


@pytest.mark.parametrize(
    "hour, minute, status",
    [(7, 59, "failed"), (8, 0, "succeeded"), (10, 59, "succeeded"), (11, 0, "failed")],
)
def test_morning_card_succeeds_only_from_8_to_11_utc_without_a_time_zone(hour, minute, status):
    result = charge("4000000000000812", now=NOW.replace(hour=hour, minute=minute))

    assert result.status == status
    if status == "failed":
        assert result.decline_code == "try_again_later"
        assert result.hard_decline is False


def test_morning_card_reads_the_hour_in_the_customers_time_zone():
    # 09:30 in Paris in March is 08:30 UTC; 09:30 in New York is 13:30 UTC.
    paris_morning = datetime(2026, 3, 2, 9, 30, tzinfo=ZoneInfo("Europe/Paris"))
    gateway = SimulatedGateway()

    def at(zone, key):
        request = charge_request("4000000000000812", key=key)
        request = dataclasses.replace(request, metadata={"customer_timezone": zone})
        return gateway.charge(request, now=paris_morning).status

    assert at("Europe/Paris", "tz-paris") == "succeeded"
    assert at("Asia/Tokyo", "tz-tokyo") == "failed"  # 17:30 there
    assert at("Not/AZone", "tz-bad") == "succeeded"  # unknown zone: UTC, 08:30


@pytest.mark.parametrize(
    "day, status",
    [(1, "succeeded"), (5, "succeeded"), (6, "failed"), (24, "failed"), (25, "succeeded"),
     (31, "succeeded")],
)
def test_payday_card_succeeds_only_at_the_start_and_end_of_the_month(day, status):
    result = charge("4000000000002537", now=datetime(2026, 3, day, 15, 0, tzinfo=UTC))

    assert result.status == status
    if status == "failed":
        assert result.decline_code == "insufficient_funds"


def test_every_documented_card_has_a_distinct_number_and_token():
    numbers = [card.number for card in SIMULATED_CARDS]
    tokens = [card.token for card in SIMULATED_CARDS]

    assert len(set(numbers)) == len(numbers)
    assert len(set(tokens)) == len(tokens)


def test_docs_list_every_card():
    docs = (Path(__file__).resolve().parent.parent / "docs" / "gateways.md").read_text()
    for card in SIMULATED_CARDS:
        assert card.number in docs.replace(" ", "") and f"`{card.token}`" in docs


def test_card_numbers_are_never_stored():
    charge("4242424242424242")

    stored = SimulatedCharge.objects.get()
    assert "4242424242424242" not in str(stored.__dict__)
    assert stored.card_token == "sim_4242"


def test_a_card_number_outside_the_table_is_refused():
    with pytest.raises(ValueError, match="test cards"):
        simulated_card_for_number("4111 1111 1111 1111")


def test_a_typed_number_with_spaces_is_recognised():
    assert simulated_card_for_number("4242 4242 4242 4242").token == "sim_4242"


# --- idempotency and reconciliation --------------------------------------------------------


def test_charging_twice_with_the_same_key_charges_once_and_returns_the_first_result():
    gateway = SimulatedGateway()
    request = charge_request("4242424242424242", key="attempt-same")

    first = gateway.charge(request, now=NOW)
    replay = gateway.charge(request, now=NOW + timedelta(hours=5))

    assert SimulatedCharge.objects.count() == 1
    assert replay == first


def test_a_replayed_decline_stays_the_same_decline_even_when_the_card_would_now_pass():
    gateway = SimulatedGateway()
    request = charge_request("4000000000000812", key="attempt-night")

    first = gateway.charge(request, now=NOW.replace(hour=2))
    replay = gateway.charge(request, now=NOW.replace(hour=9))

    assert first.status == replay.status == "failed"
    assert SimulatedCharge.objects.count() == 1


def test_reusing_a_key_for_a_different_charge_is_refused():
    gateway = SimulatedGateway()
    gateway.charge(charge_request(key="attempt-reused", amount=100), now=NOW)

    with pytest.raises(GatewayError, match="already used"):
        gateway.charge(charge_request(key="attempt-reused", amount=200), now=NOW)
    assert SimulatedCharge.objects.count() == 1


def test_retrieve_finds_a_charge_the_caller_never_recorded():
    # Given a worker that charged and crashed before writing down the result
    gateway = SimulatedGateway()
    gateway.charge(charge_request("4242424242424242", key="attempt-crashed"), now=NOW)

    # When a fresh gateway (another process) reconciles
    found = gateway_load().retrieve("attempt-crashed")

    # Then the charge is known, and charging again with the key charges nothing new
    assert found.status == "succeeded"
    again = gateway.charge(charge_request("4242424242424242", key="attempt-crashed"), now=NOW)
    assert again == found
    assert SimulatedCharge.objects.count() == 1


def test_retrieve_of_an_unknown_key_is_none():
    assert SimulatedGateway().retrieve("attempt-never-sent") is None


def test_refresh_of_an_unknown_reference_is_a_gateway_error():
    with pytest.raises(GatewayError, match="No simulated charge"):
        SimulatedGateway().refresh("simch_999999", now=NOW)


# --- bad requests and bad answers -----------------------------------------------------------


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"amount": -100}, "between 1"),
        ({"amount": 0}, "between 1"),
        ({"amount": 12.5}, "int of minor units"),
        ({"amount": True}, "int of minor units"),
        ({"currency": "eur"}, "ISO 4217"),
        ({"currency": "EURO"}, "ISO 4217"),
        ({"idempotency_key": ""}, "idempotency_key"),
        ({"idempotency_key": "it's"}, "idempotency_key"),
        ({"payment_method": ""}, "payment_method"),
    ],
)
def test_a_malformed_request_is_refused_before_any_gateway_is_called(fields, message):
    values = {"idempotency_key": "attempt-bad", "amount": 100, "currency": "EUR",
              "payment_method": "sim_4242", **fields}

    with pytest.raises(ValueError, match=message):
        ChargeRequest(**values)


def test_an_unknown_card_token_is_a_gateway_error_and_charges_nothing():
    request = ChargeRequest(
        idempotency_key="attempt-unknown", amount=100, currency="EUR", payment_method="sim_1234"
    )

    with pytest.raises(GatewayError, match="Unknown simulated payment method"):
        SimulatedGateway().charge(request, now=NOW)
    assert SimulatedCharge.objects.count() == 0


def test_a_naive_now_is_refused():
    with pytest.raises(ValueError, match="timezone-aware"):
        SimulatedGateway().charge(charge_request(), now=datetime(2026, 3, 2, 9, 0))


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"status": "pending"}, "Unknown charge status"),
        ({"status": "succeeded", "amount_received": -1}, "non-negative int"),
        ({"status": "succeeded", "amount_received": 10.0}, "non-negative int"),
        ({"status": "succeeded", "amount_received": 0}, "received an amount"),
        ({"status": "succeeded", "gateway_reference": "", "amount_received": 1}, "reference"),
        ({"status": "failed", "decline_code": ""}, "decline code"),
        ({"status": "failed", "decline_code": "x", "advice": "maybe"}, "Unknown advice"),
    ],
)
def test_a_nonsense_result_from_any_gateway_is_a_gateway_error(fields, message):
    values = {"gateway_reference": "ref_1", **fields}

    with pytest.raises(GatewayError, match=message):
        ChargeResult(**values)


# --- configuration ---------------------------------------------------------------------------


def test_the_simulated_gateway_is_the_default():
    assert isinstance(gateway_load(), SimulatedGateway)


@pytest.mark.parametrize(
    "path, message",
    [
        ("invoices.gateways.nowhere.Gateway", "cannot be imported"),
        ("not-a-dotted-path", "cannot be imported"),
        ("invoices.gateways.base.ChargeRequest", "not a subclass"),
        ("invoices.gateways.base.gateway_load", "not a subclass"),
        ("invoices.gateways.base.Gateway", "cannot be created"),
    ],
)
def test_a_bad_gateway_setting_is_a_clear_configuration_error(path, message):
    with override_settings(PAYMENT_GATEWAY=path), pytest.raises(
        ImproperlyConfigured, match=message
    ):
        gateway_load()


@override_settings(PAYMENT_GATEWAY="invoices.gateways.stripe.StripeGateway", STRIPE_SECRET_KEY="")
def test_stripe_without_a_key_is_a_clear_configuration_error():
    with pytest.raises(ImproperlyConfigured, match="STRIPE_SECRET_KEY"):
        gateway_load()


# --- concurrency (PostgreSQL: real row locks, one connection per thread) ----------------------


@pytest.mark.postgres
@pytest.mark.skipif(
    connection.vendor != "postgresql",
    reason="needs PostgreSQL: run with DATABASE_URL=postgres://...",
)
@pytest.mark.django_db(transaction=True)
def test_workers_charging_the_same_key_at_once_make_one_charge():
    # Given eight workers that picked up the same attempt at the same moment
    request = charge_request("4242424242424242", key="attempt-raced")
    barrier = threading.Barrier(8)
    results, errors = [], []

    def worker():
        try:
            connection.ensure_connection()
            barrier.wait(timeout=30)
            results.append(SimulatedGateway().charge(request, now=NOW))
        except Exception as error:  # noqa: BLE001 - the test reports it
            errors.append(error)
        finally:
            connection.close()

    # When they all charge
    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # Then there is one charge, and every worker was told about that one
    assert errors == []
    assert SimulatedCharge.objects.count() == 1
    assert len({result.gateway_reference for result in results}) == 1
    assert len(results) == 8


def test_refreshing_many_answers_as_one_by_one_with_one_read():
    gateway = SimulatedGateway()
    settles = charge("4000000000002222", amount=5000)
    fails = charge("4000000000002230")
    later = NOW + timedelta(days=2)
    items = [(settles.gateway_reference, later), ("simch_999999", later),
             (fails.gateway_reference, NOW + timedelta(hours=1)), ("bogus", later)]

    with CaptureQueriesContext(connection) as queries:
        outcomes = gateway.refresh_many(items)

    assert [o.status for o in outcomes if isinstance(o, ChargeResult)] == [
        "succeeded", "processing"]
    assert [type(o) for o in outcomes] == [ChargeResult, GatewayError, ChargeResult,
                                           GatewayError]
    assert "simch_999999" in str(outcomes[1])
    assert outcomes[0] == gateway.refresh(settles.gateway_reference, now=later)
    assert outcomes[2] == gateway.refresh(fails.gateway_reference, now=NOW + timedelta(hours=1))
    # One read for all, then the one that settles is written and read again.
    assert len(queries) == 3


class _BatchBroken(SimulatedGateway):
    def __init__(self, answer):
        super().__init__()
        self.answer = answer

    def refresh_many(self, items):
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


@pytest.mark.parametrize("answer", [
    RuntimeError("batch endpoint down"),  # the whole call fails
    [],  # fewer outcomes than charges
    ["succeeded", "succeeded"],  # something else than outcomes
])
def test_a_batch_refresh_that_breaks_its_contract_leaves_every_charge_unknown(answer):
    gateway = _BatchBroken(answer)
    items = [(charge("4000000000002222").gateway_reference, NOW + timedelta(days=2)),
             (charge("4000000000002230").gateway_reference, NOW + timedelta(days=2))]

    outcomes = refresh_many_safely(gateway, items)

    assert len(outcomes) == 2
    assert all(isinstance(outcome, GatewayError) for outcome in outcomes)
