"""Automation runs on PostgreSQL. (A test module of tests/, not tests/automations/: its
transactional tests flush the database, so they run after the browser tests' serialized
rollbacks, as the other reliability tests do.)

Each step applied once, with real processes on PostgreSQL: two workers sweeping the
same due runs, and a worker killed in the middle of a batch. Every run ends completed,
with its metadata set once, one note, one team email queued, one event of each step."""

from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection, transaction

from automations.engine.models import AutomationRun
from automations.engine.runs import runs_sweep
from automations.notifications.models import NotificationSettings, OutboxMessage
from invoices.models import Event, InvoicingSettings

from .automations.processes import sweep_runs_together
from .automations.support import make_automation
from .factories import NOW, make_customer, make_open

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(connection.vendor != "postgresql",
                       reason="needs PostgreSQL (several processes, row locks)"),
    pytest.mark.django_db(transaction=True),
]
RUNS = 120


@pytest.fixture
def due_runs(settings):
    settings.COMPANY_EMAIL_DOMAIN = "example.com"
    InvoicingSettings.load()
    NotificationSettings.load()
    with transaction.atomic():
        make_automation("Tag, note and tell", "invoice_finalized", [
            ("set_metadata", {"target": "invoice", "key": "chased", "value": "yes"}),
            ("add_note", {"text": "chased"}),
            ("email_team", {"to": "ops@example.com", "memo": "Chased {invoice}"}),
        ])
        customer = make_customer()
        invoices = [make_open(customer, now=NOW) for _ in range(RUNS)]
    assert AutomationRun.objects.filter(status="waiting").count() == RUNS
    return invoices


def assert_each_step_applied_once(invoices):
    pks = [invoice.pk for invoice in invoices]
    assert Counter(AutomationRun.objects.values_list("status", flat=True)) == {"completed": RUNS}
    steps = Counter(Event.objects.filter(type="automation.step", invoice__in=pks)
                    .values_list("invoice", "data__kind"))
    assert set(steps.values()) == {1} and len(steps) == 3 * RUNS
    updates = Counter(Event.objects.filter(type="invoice.updated", invoice__in=pks,
                                           actor_label="automation: Tag, note and tell")
                      .values_list("invoice", flat=True))
    assert set(updates.values()) == {1} and len(updates) == RUNS
    emails = Counter(OutboxMessage.objects.filter(kind="automation_team")
                     .values_list("invoice", flat=True))
    assert set(emails.values()) == {1} and len(emails) == RUNS


def test_two_workers_apply_each_step_once(due_runs):
    results = sweep_runs_together(NOW + timedelta(minutes=1), batch_size=10)
    for status, _counts, stderr in results:
        assert status == 0, stderr
    assert sum(counts.get("completed", 0) for _s, counts, _e in results) == RUNS
    assert all(counts.get("completed", 0) for _s, counts, _e in results), results
    assert_each_step_applied_once(due_runs)


def test_a_worker_killed_mid_batch_loses_nothing_and_repeats_nothing(due_runs):
    [(status, counts, _stderr)] = sweep_runs_together(
        NOW + timedelta(minutes=1), batch_size=50, workers=1, die_after=75)
    assert (status, counts) == (9, None)
    # Its first batch committed; the second died with it, and is taken again from the
    # step each run was at.
    assert AutomationRun.objects.filter(status="completed").count() == 50
    runs_sweep(now=NOW + timedelta(minutes=2))
    assert_each_step_applied_once(due_runs)
