"""Bad input is refused when the automation is saved, with the reason; nothing saved."""

import pytest

from automations.engine.services import plan_build, plan_summary, plan_validate


def errors(trigger="payment_failed", steps=(("add_note", {"text": "x"}),), conditions=None,
           days=None):
    return plan_validate(plan_build(trigger=trigger, days=days, conditions=conditions,
                                    steps=[{"kind": k, "params": p} for k, p in steps]))


def test_a_sound_automation_passes_and_reads_as_one_sentence():
    plan = plan_build(
        trigger="subscription_payment_failed", days=None,
        conditions={"all": [{"field": "subscription.interval", "op": "eq", "value": "year"}]},
        steps=[{"kind": "start_retry_policy", "params": {"mode": "smart", "max_retries": 8,
                                                          "window_days": 60}},
               {"kind": "wait", "params": {"days": 7}},
               {"kind": "cancel_subscription", "params": {"when": "now"}},
               {"kind": "mark_uncollectible", "params": {}}],
    )
    assert plan_validate(plan) == []
    assert plan_summary(plan) == (
        "When a subscription payment fails and subscription's billing interval = year: start a "
        "retry policy (Smart Retries, up to 8 retries within 60 days), wait 7 days, cancel "
        "the subscription, mark the invoice uncollectible.")


@pytest.mark.parametrize("conditions, message", [
    ({"all": [{"field": "invoice.colour", "op": "eq", "value": "red"}]}, "Unknown field"),
    ({"all": [{"field": "subscription.interval", "op": "eq", "value": "year"}]},
     "The trigger carries no subscription"),
    ({"all": [{"field": "invoice.total", "op": "gt", "value": 50000}]}, "needs its currency"),
    ({"all": [{"field": "invoice.total", "op": "gt", "value": "500", "currency": "USD"}]},
     "amount in minor units"),
    ({"all": [{"field": "invoice.attempt_count", "op": "gt", "value": 1.5}]}, "whole number"),
    ({"all": [{"field": "payment.hard_decline", "op": "eq", "value": "yes"}]},
     "true or false"),
    ({"any": []}, "at least one condition"),
])
def test_conditions_are_checked_against_the_trigger(conditions, message):
    [error] = errors(conditions=conditions)
    assert message in error


def test_a_payment_field_needs_a_payment_trigger():
    [error] = errors("invoice_paid", conditions={
        "all": [{"field": "payment.decline_code", "op": "eq", "value": "expired_card"}]})
    assert "carries no payment" in error


@pytest.mark.parametrize("steps, message", [
    ((("cancel_subscription", {"when": "now"}),), "carries no subscription"),
    ((("wait", {"days": 0}),), "at least one hour"),
    ((("wait", {"days": 366}),), "at most a year"),
    ((("start_retry_policy", {"mode": "smart", "max_retries": 9}),), "max_retries"),
    ((("start_retry_policy", {"mode": "smart", "window_days": 90}),), "window_days"),
    ((("start_retry_policy", {"policy": "Nope"}),), "No retry policy is named Nope"),
    ((("email_team", {"to": "someone@gmail.com", "memo": "x"}),), "Refused: someone@gmail.com"),
    ((("email_team", {"to": "ops@example.com", "memo": "Late by {days_past_due"}),),
     "syntax error"),
    ((("email_team", {"to": "ops@example.com", "memo": "{secret}"}),), "unknown values"),
    ((("email_customer", {"template": "nope"}),), "Choose a customer email"),
    ((("teleport", {}),), "unknown step teleport"),
    ((), "at least one step"),
])
def test_steps_are_checked_against_the_trigger(settings, steps, message):
    settings.COMPANY_EMAIL_DOMAIN = "example.com"
    assert any(message in error for error in errors("invoice_paid", steps=steps)), errors(
        "invoice_paid", steps=steps)


def test_a_day_counted_trigger_needs_its_days():
    assert errors("invoice_past_due") == ["This trigger needs a number of days, 1 to 365."]
    assert errors("invoice_past_due", days=7) == []
