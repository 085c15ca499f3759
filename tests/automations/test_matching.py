"""Matching as the event log drives it: conditions (compiled once per plan) decide which
invoices start a run, an edited automation matches by its new version at once, and a
batch of events costs the same few queries whatever its size."""

import pytest

from automations.engine.matching import on_events
from automations.engine.models import AutomationRun
from invoices.events import event_record
from invoices.models import Event

from ..factories import NOW, STAFF, make_customer, make_open
from .support import make_automation, steps_set

NOTE = [("add_note", {"text": "matched"})]


def finalized(*invoices):
    """Each invoice's finalized event, handled again by matching (the first handling
    started nothing: the automations are made after)."""
    AutomationRun.objects.all().delete()
    on_events(list(Event.objects.filter(invoice__in=invoices, type="invoice.finalized")
                   .order_by("pk")))
    started = set(AutomationRun.objects.values_list("invoice_id", flat=True))
    return [invoice in started for invoice in [i.pk for i in invoices]]


@pytest.fixture
def invoices():
    """EUR 100.00 for a VIP customer in France with metadata plan=gold; EUR 300.00 for
    a customer with no segment and no metadata; USD 300.00."""
    vip = make_customer(segment="vip", country="FR", metadata={"plan": "gold"})
    plain = make_customer()
    usd = make_customer(currency="USD")
    return (make_open(vip, lines=((1, 10000),)), make_open(plain, lines=((1, 30000),)),
            make_open(usd, lines=((1, 30000),)))


CASES = [
    ({"field": "invoice.total", "op": "gte", "value": 20000, "currency": "EUR"},
     [False, True, False]),  # the USD invoice never matches an amount in EUR
    ({"field": "invoice.total", "op": "lt", "value": 20000, "currency": "EUR"},
     [True, False, False]),
    ({"field": "customer.segment", "op": "eq", "value": "vip"}, [True, False, False]),
    ({"field": "customer.segment", "op": "ne", "value": "vip"}, [False, True, True]),
    ({"field": "customer.country", "op": "in", "value": ["FR", "BE"]}, [True, False, False]),
    ({"field": "customer.metadata.plan", "op": "eq", "value": "gold"}, [True, False, False]),
    ({"field": "customer.metadata.plan", "op": "not_in", "value": ["gold"]},
     [False, True, True]),  # no key: only "is none of" matches
    ({"any": [{"field": "customer.segment", "op": "eq", "value": "vip"},
              {"field": "invoice.total", "op": "gt", "value": 20000, "currency": "USD"}]},
     [True, False, True]),
    ({"all": [{"field": "customer.segment", "op": "ne", "value": "vip"},
              {"any": [{"field": "invoice.total", "op": "gt", "value": 20000,
                        "currency": "USD"},
                       {"field": "invoice.attempt_count", "op": "gte", "value": 1}]}]},
     [False, False, True]),
]


@pytest.mark.parametrize(("conditions", "expected"), CASES)
def test_conditions_decide_which_invoices_start_a_run(invoices, conditions, expected):
    make_automation("Match", "invoice_finalized", NOTE, conditions=conditions)
    assert finalized(*invoices) == expected


def test_an_edited_automation_matches_by_its_new_version_at_once(invoices):
    automation = make_automation("Edited", "invoice_finalized", NOTE, conditions=CASES[0][0])
    assert finalized(*invoices) == [False, True, False]
    automation.conditions = CASES[2][0]
    automation.save()
    steps_set(automation, NOTE)  # publishes
    assert finalized(*invoices) == [True, False, False]


def test_a_batch_of_events_costs_the_same_queries_whatever_its_size(
        invoices, django_assert_max_num_queries):
    make_automation("A", "invoice_finalized", NOTE)
    make_automation("B", "invoice_finalized", NOTE,
                    conditions={"field": "customer.segment", "op": "eq", "value": "vip"})
    for _n in range(12):
        make_open(make_customer())
    AutomationRun.objects.all().delete()
    events = list(Event.objects.filter(type="invoice.finalized").order_by("pk"))
    assert len(events) == 15
    # The automations, the invoices, the customers, the runs under way, the insert.
    with django_assert_max_num_queries(5):
        on_events(events)
    assert AutomationRun.objects.filter(automation__name="A").count() == 15
    assert list(AutomationRun.objects.filter(automation__name="B")
                .values_list("invoice_id", flat=True)) == [invoices[0].pk]


def test_an_invoice_a_waiting_run_is_about_starts_no_second_run(invoices):
    make_automation("Waits", "invoice_finalized", [("wait", {"days": 3}), *NOTE])
    invoice = invoices[1]
    finalized(invoice)
    event_record("invoice.finalized", now=NOW, actor=STAFF, invoice=invoice)  # matched too
    assert AutomationRun.objects.filter(invoice=invoice).count() == 1
