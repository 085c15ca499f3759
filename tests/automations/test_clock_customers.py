"""A customer created on a test clock starts the "customer is created" automations in
the clock's time when the clock advances: in their order, waits included, once."""

from datetime import timedelta

from automations.clocks import clock_advance
from automations.engine.clock import sweep
from automations.engine.models import AutomationRun
from customers.clock import system_now
from customers.models import TestClock
from invoices.models import Event

from ..factories import NOW, make_customer
from .support import make_automation

T0 = NOW  # the clock's time: months before the system's


def steps_of(customer):
    return [(e.created_at, e.actor_label, e.data.get("text", "")) for e in
            Event.objects.filter(customer=customer, type="automation.step")
            .order_by("created_at", "pk")]


def test_a_customer_created_on_a_test_clock_runs_its_automations_in_the_clock_time():
    clock = TestClock.objects.create(name="onboarding", frozen_time=T0)
    make_automation("Second", "customer_created", [
        ("wait", {"days": 3}), ("set_segment", {"segment": "onboarded"})], priority=20)
    make_automation("First", "customer_created", [("add_note", {"text": "welcome"})],
                    priority=10)
    on_clock = make_customer(test_clock=clock)
    elsewhere = make_customer()

    # The system's sweep leaves the clock's customer to its clock.
    sweep(now=system_now())
    assert not AutomationRun.objects.filter(customer=on_clock).exists()
    assert AutomationRun.objects.filter(customer=elsewhere).count() == 2
    AutomationRun.objects.filter(customer=elsewhere).delete()

    clock_advance(clock, to=T0 + timedelta(days=5))

    on_clock.refresh_from_db()
    assert on_clock.segment == "onboarded"
    assert steps_of(on_clock) == [
        (T0, "automation: First", "welcome"),
        (T0 + timedelta(days=3), "automation: Second",
         "Customer segment set to onboarded."),
    ]
    runs = AutomationRun.objects.filter(customer=on_clock).order_by("pk")
    assert [(run.automation.name, run.status, run.created_at) for run in runs] == [
        ("First", "completed", T0), ("Second", "completed", T0)]
    assert Event.objects.get(customer=on_clock, type="customer.updated").created_at == (
        T0 + timedelta(days=3))
    # Once: advancing again starts nothing; the other customer was not the clock's.
    clock_advance(clock, to=T0 + timedelta(days=9))
    assert AutomationRun.objects.filter(customer=on_clock).count() == 2
    assert not AutomationRun.objects.filter(customer=elsewhere).exists()


def test_a_clock_customer_the_conditions_leave_out_is_skipped_once():
    clock = TestClock.objects.create(name="segments", frozen_time=T0)
    make_automation("Enterprise only", "customer_created", [("add_note", {"text": "hi"})],
                    conditions={"field": "customer.segment", "op": "eq", "value": "enterprise"})
    big, small = (make_customer(test_clock=clock, segment="enterprise"),
                  make_customer(test_clock=clock, segment="smb"))
    result = clock_advance(clock, to=T0 + timedelta(days=1))
    assert result["automations"]["started"] == 1 and result["automations"]["skipped"] == 1
    assert [text for _at, _who, text in steps_of(big)] == ["hi"]
    assert steps_of(small) == []
    assert AutomationRun.objects.get(customer=small).status == "exited"
