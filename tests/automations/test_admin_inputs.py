"""Structured inputs on the automation page: conditions as rows under an AND / OR
choice, each step's parameters as its kind's inputs, stored as the same JSON; bad input
is refused with the reason and nothing saved; a page saved as it shows changes nothing."""

import pytest
from django.urls import reverse

from automations.engine.models import Automation

from .support import make_automation
from .test_admin import form_data


@pytest.fixture
def staff(client, admin_user, settings):
    settings.COMPANY_EMAIL_DOMAIN = "example.com"
    client.force_login(admin_user)
    return client


ADD = "admin:automations_automation_add"


def test_staff_build_conditions_and_steps_from_inputs_stored_as_json(staff):
    response = staff.post(reverse(ADD), form_data(
        trigger="subscription_payment_failed", group="any",
        rows=[("invoice.total", "", "gte", "500.00", "usd"),
              ("customer.segment", "", "in", "vip, key accounts", ""),
              ("customer.metadata", "plan", "eq", "gold", ""),
              ("payment.hard_decline", "", "eq", "true", "")],
        steps=[("start_retry_policy", {"retry_mode": "custom", "retry_max_retries": "3",
                                       "retry_window_days": "14",
                                       "retry_custom_schedule": "1, 3, 5",
                                       "retry_after_last_retry": "mark_uncollectible"}),
               ("wait", {"wait_amount": "7", "wait_unit": "days", "wait_until_paid": "on"}),
               ("email_team", {"team_to": "collections@example.com",
                               "team_memo": "Invoice {invoice} past due by {days_past_due}"}),
               ("cancel_subscription", {"cancel_when": "period_end",
                                        "cancel_reason": "payment_failed"}),
               ("set_metadata", {"metadata_target": "customer", "metadata_key": "dunned",
                                 "metadata_value": "yes"}),
               ("mark_uncollectible", {})]))
    assert response.status_code == 302, response.context["errors"]
    automation = Automation.objects.get()
    assert automation.conditions == {"any": [
        {"field": "invoice.total", "op": "gte", "value": 50000, "currency": "USD"},
        {"field": "customer.segment", "op": "in", "value": ["vip", "key accounts"]},
        {"field": "customer.metadata.plan", "op": "eq", "value": "gold"},
        {"field": "payment.hard_decline", "op": "eq", "value": True},
    ]}
    assert [(step["kind"], step["params"]) for step in automation.live_version.plan["steps"]] == [
        ("start_retry_policy", {"mode": "custom", "max_retries": 3, "window_days": 14,
                                "custom_schedule": [1, 3, 5],
                                "after_last_retry": "mark_uncollectible"}),
        ("wait", {"days": 7, "until_paid": True}),
        ("email_team", {"to": "collections@example.com",
                        "memo": "Invoice {invoice} past due by {days_past_due}"}),
        ("cancel_subscription", {"when": "period_end", "reason": "payment_failed"}),
        ("set_metadata", {"target": "customer", "key": "dunned", "value": "yes"}),
        ("mark_uncollectible", {}),
    ]


def test_an_existing_retry_policy_is_chosen_by_name(staff):
    from automations.models import RetryPolicy

    RetryPolicy.objects.create(name="Annual")
    response = staff.post(reverse(ADD), form_data(
        trigger="payment_failed",
        steps=[("start_retry_policy", {"retry_policy": "Annual", "retry_mode": "smart",
                                       "retry_max_retries": "8", "retry_window_days": "60"})]))
    assert response.status_code == 302
    assert Automation.objects.get().steps.get().params == {"policy": "Annual"}


BAD = [
    ({"rows": [("invoice.total", "", "gte", "500", "")]},
     "Condition 1: the amount of invoice total needs its currency, e.g. USD."),
    ({"rows": [("invoice.total", "", "gte", "5.001", "USD")]},
     "Condition 1: USD amounts have at most 2 decimal places."),
    ({"rows": [("", "", "eq", "", ""), ("customer.segment", "", "eq", "vip", ""),
               ("invoice.attempt_count", "", "gte", "two", "")]},
     "Condition 2: attempt count is compared with a whole number, not &#x27;two&#x27;."),
    ({"rows": [("customer.metadata", "", "eq", "gold", "")]},
     "Condition 1: give the metadata key."),
    ({"rows": [("customer.segment", "", "gt", "vip", "")]},
     "Condition 1: customer segment takes the operators"),
    ({"rows": [("payment.decline_code", "", "eq", "expired_card", "")]},
     "The trigger carries no payment: a condition on payment.decline_code cannot apply."),
    ({"rows": [("customer.segment", "", "eq", "vip", "")],
      "nested": '{"all": [{"field": "customer.segment", "op": "eq", "value": "b"}]}'},
     "Give the conditions as rows or as JSON, not both."),
    ({"steps": [("wait", {"wait_amount": "0", "wait_unit": "days"})]},
     "Step 1: A wait must last at least one hour."),
    ({"steps": [("wait", {"wait_amount": "400", "wait_unit": "days"})]},
     "Step 1: A wait lasts at most a year."),
    ({"steps": [("email_team", {"team_to": "someone@elsewhere.org", "team_memo": "Hi"})]},
     "elsewhere.org"),
    ({"steps": [("email_team", {"team_to": "ops@example.com", "team_memo": "Hi {oops"})]},
     "Step 1: The memo has a syntax error"),
    ({"trigger": "payment_failed",
      "steps": [("start_retry_policy", {"retry_mode": "smart", "retry_max_retries": "9",
                                        "retry_window_days": "60"})]},
     "Step 1: max_retries: Ensure this value is less than or equal to 8."),
    ({"trigger": "payment_failed",
      "steps": [("start_retry_policy", {"retry_mode": "custom", "retry_max_retries": "3",
                                        "retry_window_days": "14",
                                        "retry_custom_schedule": "1, soon"})]},
     "The custom schedule is whole days separated by commas, e.g. 1, 3, 5, 7."),
    ({"steps": [("cancel_subscription", {"cancel_when": "now"})]},
     "Step 1: Cancel its subscription cannot apply"),
    ({"steps": [("set_metadata", {"metadata_target": "invoice", "metadata_value": "x"})]},
     "Step 1: The metadata key is a text."),
]


@pytest.mark.parametrize(("fields", "message"), BAD)
def test_bad_input_is_refused_with_the_reason_and_nothing_saved(staff, fields, message):
    response = staff.post(reverse(ADD), form_data(**fields))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Automation.objects.exists()


def page_data(response) -> dict:
    """What the change page posts when saved as it shows: every input's value."""
    data = {}
    form = response.context["adminform"].form
    for name in form.fields:
        value = form[name].value()
        if value is None or value is False or name == "condition_rows":
            continue
        data[name] = "on" if value is True else value
    data["conditions"] = form["conditions"].value() or ""
    rows = form["condition_rows"].value() or []
    for part in ("field", "key", "op", "value", "currency"):
        data[f"condition_rows_{part}"] = [row[part] for row in rows]
    [inline] = response.context["inline_admin_formsets"]
    formset = inline.formset
    for name, value in formset.management_form.initial.items():
        data[f"{formset.prefix}-{name}"] = value
    for step in formset.forms:
        for name in step.fields:
            value = step[name].value()
            if value is None or value is False:
                continue
            data[step.add_prefix(name)] = "on" if value is True else value
    return data


NESTED = {"all": [{"field": "invoice.total", "op": "gte", "value": 50000, "currency": "EUR"},
                  {"any": [{"field": "invoice.attempt_count", "op": "gte", "value": 2},
                           {"field": "payment.hard_decline", "op": "eq", "value": True}]}]}


@pytest.mark.parametrize("conditions", [
    {"any": [{"field": "invoice.total", "op": "gte", "value": 50000, "currency": "USD"},
             {"field": "customer.country", "op": "not_in", "value": ["FR", "BE"]},
             {"field": "invoice.metadata.channel", "op": "ne", "value": "web"}]},
    NESTED,  # more than rows hold: shown and kept as JSON
])
def test_a_page_saved_as_it_shows_changes_nothing(staff, conditions):
    automation = make_automation("Round trip", "payment_failed", [
        ("start_retry_policy", {"mode": "fixed", "max_retries": 4, "window_days": 21,
                                "after_last_retry": "leave_past_due"}),
        ("wait", {"hours": 36, "until_paid": True}),
        ("email_team", {"to": "ops@example.com", "memo": "{invoice}: {amount}"}),
        ("set_segment", {"segment": "watch"}), ("void_invoice", {})],
        conditions=conditions)
    url = reverse("admin:automations_automation_change", args=[automation.pk])
    page = staff.get(url)
    form = page.context["adminform"].form
    rows = form["condition_rows"].value()
    assert (rows[0]["field"] if rows else None) == (
        None if conditions is NESTED else "invoice.total")
    before = automation.live_version.plan
    response = staff.post(url, page_data(page))
    assert response.status_code == 302, response.context["errors"]
    automation.refresh_from_db()
    after = automation.live_version.plan
    assert after == before
    assert automation.conditions == conditions
