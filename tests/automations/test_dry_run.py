"""The dry run replays the event log through an automation, saved or not, and does
nothing: no run, no event, no email."""

import json
from datetime import timedelta
from io import StringIO

import pytest
import time_machine
from django.core.management import CommandError, call_command

from automations.engine.dryrun import dry_run
from automations.engine.models import AutomationRun
from automations.engine.services import plan_build
from automations.notifications.models import OutboxMessage
from invoices.models import Event

from ..factories import NOW, make_customer, make_open


def test_an_unsaved_automation_replayed_over_the_last_days_changes_nothing():
    usd = make_customer(currency="USD")
    large = make_open(usd, lines=((1, 60000),), now=NOW, collection_method="send_invoice",
                      days_until_due=10)
    make_open(usd, lines=((1, 100),), now=NOW, collection_method="send_invoice",
              days_until_due=10)
    old = make_open(usd, lines=((1, 90000),), now=NOW - timedelta(days=60),
                    collection_method="send_invoice", days_until_due=10)
    plan = plan_build(trigger="invoice_past_due", days=7, conditions={"all": [
        {"field": "invoice.total", "op": "gt", "value": 50000, "currency": "USD"}]},
        steps=[{"kind": "add_note", "params": {"text": "call them"}},
               {"kind": "wait", "params": {"days": 3}},
               {"kind": "void_invoice", "params": {}}])
    counts = (Event.objects.count(), OutboxMessage.objects.count())

    result = dry_run(plan, now=NOW + timedelta(days=30), days=14)

    assert result.errors == [] and result.looked_at == 2
    [match] = result.matches
    moment = (NOW + timedelta(days=17)).replace(hour=0)
    assert (match.invoice, match.at) == (large, moment)
    assert match.steps == [(moment, 'add the note "call them"'), (moment, "wait 3 days"),
                           (moment + timedelta(days=3), "void the invoice")]
    assert old not in [m.invoice for m in result.matches]
    assert (Event.objects.count(), OutboxMessage.objects.count()) == counts
    assert not AutomationRun.objects.exists()


def test_a_dry_run_of_a_bad_automation_says_why():
    plan = plan_build(trigger="invoice_paid", days=None, conditions=None, steps=[
        {"kind": "cancel_subscription", "params": {}}])
    result = dry_run(plan, now=NOW, days=7)
    assert result.matches == [] and "carries no subscription" in result.errors[0]


def test_the_dry_run_command_replays_an_unsaved_automation_from_a_file(tmp_path):
    invoice = make_open(now=NOW)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"trigger": "invoice_finalized", "steps": [
        {"kind": "wait", "params": {"days": 2}}, {"kind": "void_invoice", "params": {}}]}))
    out = StringIO()
    with time_machine.travel(NOW + timedelta(days=1), tick=False):
        call_command("automation_dry_run", "--plan", str(plan), "--days", "7", stdout=out)
    text = out.getvalue()
    assert "When an invoice is finalized: wait 2 days, void the invoice." in text
    assert f"{invoice}: " in text and "1 would have matched" in text
    plan.write_text(json.dumps({"trigger": "invoice_finalized", "steps": []}))
    with pytest.raises(CommandError, match="at least one step"):
        call_command("automation_dry_run", "--plan", str(plan))
