"""The automations' screens: staff build one with its steps and see its sentence; bad
input is refused with the reason and nothing saved; recipes install disabled; the dry
run page shows what would have matched; runs are canceled from their list."""

from datetime import timedelta

import pytest
import time_machine
from django.urls import reverse
from django.utils.html import escape

from automations.engine.models import Automation, AutomationRun
from automations.engine.runs import runs_sweep
from invoices.models import Event

from ..factories import NOW, make_open
from .support import make_automation


@pytest.fixture
def staff(client, admin_user):
    client.force_login(admin_user)
    return client


def form_data(steps=(("add_note", {"note_text": "hello"}),), rows=(), group="all",
              nested="", **fields):
    """The automation form as the page posts it: conditions as rows (field, key,
    operator, value, currency), each step as its kind's inputs."""
    data = {"name": "Note on finalize", "priority": "100", "trigger": "invoice_finalized",
            "days": "", "conditions": nested, "conditions_group": group,
            "steps-TOTAL_FORMS": str(len(steps)), "steps-INITIAL_FORMS": "0",
            "steps-MIN_NUM_FORMS": "0", "steps-MAX_NUM_FORMS": "1000", **fields}
    for n, part in enumerate(("field", "key", "op", "value", "currency")):
        data[f"condition_rows_{part}"] = [row[n] for row in rows]
    for i, (kind, inputs) in enumerate(steps):
        data.update({f"steps-{i}-position": str(i + 1), f"steps-{i}-kind": kind,
                     **{f"steps-{i}-{name}": value for name, value in inputs.items()}})
    return data


def test_staff_create_an_automation_with_steps_and_read_its_sentence(staff):
    response = staff.post(reverse("admin:automations_automation_add"), form_data(
        steps=(("add_note", {"note_text": "hello"}),
               ("wait", {"wait_amount": "2", "wait_unit": "days"}))))
    assert response.status_code == 302
    automation = Automation.objects.get()
    assert automation.live_version.number == 1
    page = staff.get(reverse("admin:automations_automation_change", args=[automation.pk]))
    sentence = 'When an invoice is finalized: add the note "hello", wait 2 days.'
    assert escape(sentence) in page.content.decode()


def test_bad_input_is_refused_with_the_reason_and_nothing_saved(staff):
    response = staff.post(reverse("admin:automations_automation_add"), form_data(
        steps=(("cancel_subscription", {"cancel_when": "now"}),)))
    assert response.status_code == 200
    assert ("Step 1: Cancel its subscription cannot apply: the trigger (an invoice is "
            "finalized) carries no subscription.") in response.content.decode()
    assert not Automation.objects.exists()


def test_a_recipe_installs_disabled_in_one_click(staff, settings):
    settings.COMPANY_EMAIL_DOMAIN = "example.com"
    url = reverse("admin:automations_automation_recipes")
    assert "Large invoice past due" in staff.get(url).content.decode()
    response = staff.post(url, {"recipe": "large_past_due"})
    automation = Automation.objects.get()
    assert response.url == reverse("admin:automations_automation_change", args=[automation.pk])
    assert (automation.enabled, automation.recipe) == (False, "large_past_due")


def test_the_dry_run_page_lists_what_would_have_matched_and_does_nothing(staff):
    automation = make_automation("Later", "invoice_finalized", [("wait", {"days": 1}),
                                                                ("void_invoice", {})],
                                 enabled=False)
    invoice = make_open(now=NOW)
    events_before = Event.objects.count()
    with time_machine.travel(NOW + timedelta(days=3), tick=False):
        page = staff.get(reverse("admin:automations_automation_dry_run",
                                 args=[automation.pk]), {"days": "7"})
    text = page.content.decode()
    assert str(invoice) in text and "void the invoice" in text
    assert "1 looked at, 1 would have matched." in text
    assert Event.objects.count() == events_before
    assert not AutomationRun.objects.exists()


def test_staff_cancel_runs_from_their_list(staff):
    make_automation("Later", "invoice_finalized", [("wait", {"days": 1}),
                                                   ("void_invoice", {})])
    make_open(now=NOW)
    runs_sweep(now=NOW)
    run = AutomationRun.objects.get()
    response = staff.post(reverse("admin:automations_automationrun_changelist"),
                          {"action": "cancel", "_selected_action": [run.pk]}, follow=True)
    assert "1 runs canceled; 0 had already ended." in response.content.decode()
    run.refresh_from_db()
    assert run.status == "canceled"
    runs_sweep(now=NOW + timedelta(days=2))
    run.refresh_from_db()
    assert run.status == "canceled"
