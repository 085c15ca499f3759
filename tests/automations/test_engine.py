"""The engine's promises, each as staff would notice it: runs start on the event in
order, wait, act through the domain doors with the automation as actor, exit when no
longer needed, keep their version, stop with a reason, and never loop."""

from datetime import timedelta

from automations.engine.chain import MAX_CHAIN_DEPTH, acting_as
from automations.engine.clock import sweep
from automations.engine.models import AutomationRun, InvoiceRetryPolicy
from automations.engine.runs import run_cancel, runs_sweep
from automations.sweeps import collect_payments
from customers.clock import system_now
from invoices.events import event_record
from invoices.models import Event, Invoice
from invoices.services import invoice_record_payment, invoice_void

from ..factories import NOW, STAFF, make_charged, make_customer, make_open
from .support import make_automation, steps_set

T0 = NOW
S = Invoice.Status


def timeline(invoice):
    return [(e.type, e.created_at, e.data.get("text", "")) for e in
            Event.objects.filter(invoice=invoice, type__startswith="automation.")
            .order_by("created_at", "pk")]


def failed_invoice():
    invoice = make_charged("sim_9995", now=T0)
    collect_payments(now=T0)
    invoice.refresh_from_db()
    assert invoice.attempt_count == 1 and invoice.status == S.OPEN
    return invoice


def test_a_failed_payment_runs_the_steps_with_the_wait_then_acts_as_the_automation():
    automation = make_automation("Chase", "payment_failed", [
        ("add_note", {"text": "Call the customer"}),
        ("wait", {"days": 2}),
        ("mark_uncollectible", {}),
    ])
    invoice = failed_invoice()
    run = AutomationRun.objects.get(automation=automation)
    assert (run.invoice_id, run.resume_at) == (invoice.pk, T0)

    assert runs_sweep(now=T0) == {"steps": 1, "waits": 1}
    run.refresh_from_db()
    assert (run.status, run.resume_at) == ("waiting", T0 + timedelta(days=2))
    assert run.waiting_for.startswith("wait 2 days, until")
    assert runs_sweep(now=T0 + timedelta(days=1)) == {}

    runs_sweep(now=T0 + timedelta(days=2))
    invoice.refresh_from_db()
    run.refresh_from_db()
    assert invoice.status == S.UNCOLLECTIBLE and run.status == "completed"
    marked = Event.objects.get(invoice=invoice, type="invoice.marked_uncollectible")
    assert marked.actor_label == "automation: Chase"
    assert [(t, at) for t, at, _text in timeline(invoice)] == [
        ("automation.step", T0), ("automation.waiting", T0),
        ("automation.step", T0 + timedelta(days=2)),
    ]
    last = Event.objects.filter(invoice=invoice, type="automation.step").latest("pk")
    assert last.data["outcome"] == "completed"


def test_a_run_exits_when_its_invoice_is_paid_meanwhile():
    make_automation("Chase", "payment_failed", [("wait", {"days": 2}), ("void_invoice", {})])
    invoice = failed_invoice()
    runs_sweep(now=T0)
    invoice_record_payment(invoice, amount=invoice.amount_remaining, method="bank_transfer",
                           now=T0 + timedelta(days=1), actor=STAFF)
    runs_sweep(now=T0 + timedelta(days=2))
    invoice.refresh_from_db()
    run = AutomationRun.objects.get()
    assert invoice.status == S.PAID
    assert (run.status, run.reason) == ("exited", "Exited: the invoice was paid.")


def test_a_step_that_cannot_apply_stops_its_run_with_the_reason_and_others_flow():
    make_automation("Void on finalize", "invoice_finalized", [("wait", {"hours": 1}),
                                                               ("void_invoice", {})])
    voided, kept = make_open(now=T0), make_open(now=T0)
    runs_sweep(now=T0)
    invoice_void(voided, now=T0, actor=STAFF)
    runs_sweep(now=T0 + timedelta(hours=1))
    failed = AutomationRun.objects.get(invoice=voided)
    assert failed.status == "failed"
    assert failed.reason == ("Step 2 (Void the invoice) could not apply: A void invoice "
                             "cannot be voided.")
    assert timeline(voided)[-1][0] == "automation.failed"
    assert timeline(voided)[-1][2] == failed.reason
    kept.refresh_from_db()
    assert kept.status == S.VOID
    assert AutomationRun.objects.get(invoice=kept).status == "completed"


def test_several_automations_all_run_in_priority_order():
    make_automation("Second", "invoice_finalized", [("add_note", {"text": "second"})],
                    priority=20)
    make_automation("First", "invoice_finalized", [("add_note", {"text": "first"})],
                    priority=10)
    invoice = make_open(now=T0)
    runs_sweep(now=T0)
    notes = [text for type_, _at, text in timeline(invoice) if type_ == "automation.step"]
    assert notes == ["first", "second"]


def test_an_action_never_retriggers_its_automation_and_chains_stop_at_the_depth_limit():
    own = make_automation("Own", "invoice_finalized", [("add_note", {"text": "own"})])
    other = make_automation("Other", "invoice_finalized", [("add_note", {"text": "other"})])
    invoice = make_open(now=T0)
    AutomationRun.objects.all().delete()
    with acting_as(own.pk, 0):
        event = event_record("invoice.finalized", now=T0, actor=STAFF, invoice=invoice)
    [run] = AutomationRun.objects.filter(event=event)
    assert (run.automation_id, run.depth) == (other.pk, 1)
    with acting_as(own.pk, MAX_CHAIN_DEPTH):
        event_record("invoice.finalized", now=T0, actor=STAFF, invoice=invoice)
    assert AutomationRun.objects.count() == 1


def test_the_same_event_handled_twice_starts_one_run():
    make_automation("Once", "invoice_finalized", [("add_note", {"text": "x"})])
    invoice = make_open(now=T0)
    from automations.engine.matching import on_events

    on_events(list(Event.objects.filter(invoice=invoice, type="invoice.finalized")))
    assert AutomationRun.objects.count() == 1


def test_a_run_keeps_the_version_it_started_with():
    automation = make_automation("Pinned", "invoice_finalized", [
        ("wait", {"days": 1}), ("add_note", {"text": "v1"})])
    first = make_open(now=T0)
    runs_sweep(now=T0)
    steps_set(automation, [("wait", {"days": 1}), ("add_note", {"text": "v2"})])
    second = make_open(now=T0)
    runs_sweep(now=T0 + timedelta(days=1))
    runs_sweep(now=T0 + timedelta(days=2))
    assert timeline(first)[-1][2] == "v1"
    assert timeline(second)[-1][2] == "v2"
    assert automation.versions.count() == 2


def test_staff_cancel_a_waiting_run():
    make_automation("Later", "invoice_finalized", [("wait", {"days": 1}),
                                                   ("void_invoice", {})])
    invoice = make_open(now=T0)
    runs_sweep(now=T0)
    run = AutomationRun.objects.get()
    assert run_cancel(run, now=T0, actor=STAFF) is True
    assert run_cancel(run, now=T0, actor=STAFF) is False
    runs_sweep(now=T0 + timedelta(days=2))
    invoice.refresh_from_db()
    assert invoice.status == S.OPEN
    assert timeline(invoice)[-1][:2] == ("automation.canceled", T0)


def test_a_retry_policy_started_by_an_automation_replans_the_next_retry_once():
    make_automation("Slow retries", "payment_failed", [
        ("start_retry_policy", {"mode": "custom", "custom_schedule": [10],
                                "window_days": 30}),
        ("add_note", {"text": "retries over"}),
    ])
    invoice = failed_invoice()
    default_plan = invoice.next_payment_attempt
    assert default_plan is not None
    assert invoice.next_payment_attempt_chance is not None  # Smart Retries' plan
    runs_sweep(now=T0)
    invoice.refresh_from_db()
    assert invoice.next_payment_attempt == T0 + timedelta(days=10) != default_plan
    assert invoice.next_payment_attempt_reason.startswith("Custom schedule: retry 1 of 1")
    # The replaced plan's chance and log-odds are not left for the custom schedule's retry.
    assert (invoice.next_payment_attempt_chance, invoice.next_payment_attempt_log_odds,
            invoice.next_payment_attempt_moved) == (None, None, None)
    assert InvoiceRetryPolicy.objects.get(invoice=invoice).policy.custom_schedule == [10]
    run = AutomationRun.objects.get()
    assert run.resume_at == T0 + timedelta(days=10, minutes=1)
    assert run.waiting_for.startswith("the retries to end")

    collect_payments(now=T0 + timedelta(days=5))  # nothing planned then: no attempt
    collect_payments(now=T0 + timedelta(days=10))
    invoice.refresh_from_db()
    assert invoice.payment_attempts.count() == 2 and invoice.next_payment_attempt is None
    runs_sweep(now=T0 + timedelta(days=10, minutes=1))
    run.refresh_from_db()
    assert run.status == "completed"
    assert timeline(invoice)[-1][2] == "retries over"


def test_a_new_customer_of_a_segment_is_tagged_once():
    make_automation("Welcome", "customer_created", [
        ("set_metadata", {"target": "customer", "key": "welcome", "value": "sent"})],
        conditions={"all": [{"field": "customer.segment", "op": "eq", "value": "enterprise"}]})
    big, small = make_customer(segment="enterprise"), make_customer(segment="smb")
    now = system_now()
    assert sweep(now=now) == {"started": 1, "skipped": 1, "steps": 1, "completed": 1}
    assert sweep(now=now) == {"started": 0, "skipped": 0}
    big.refresh_from_db()
    small.refresh_from_db()
    assert (big.metadata, small.metadata) == ({"welcome": "sent"}, {})
    assert Event.objects.get(customer=big, type="customer.updated").actor_label == (
        "automation: Welcome")


def test_a_step_that_breaks_unexpectedly_stops_only_its_own_run(monkeypatch):
    from automations.engine import steps

    note = steps.STEPS["add_note"]

    def apply(context, params):
        if params["text"] == "boom":
            raise RuntimeError("bug")
        return note.apply(context, params)

    monkeypatch.setitem(steps.STEPS, "add_note", steps.StepKind(
        note.key, note.label, note.needs, note.validate, note.describe, apply))
    make_automation("Broken", "invoice_finalized", [("add_note", {"text": "boom"})])
    make_automation("Fine", "invoice_finalized", [("add_note", {"text": "fine"})])
    invoice = make_open(now=T0)
    runs_sweep(now=T0)
    outcomes = dict(AutomationRun.objects.values_list("automation__name", "status"))
    assert outcomes == {"Broken": "failed", "Fine": "completed"}
    assert AutomationRun.objects.get(automation__name="Broken").reason == (
        "Step 1 (Add a note to the timeline) could not apply: RuntimeError")
    assert [text for _t, _at, text in timeline(invoice)][-1] == "fine"


def test_the_past_due_scan_starts_one_run_per_invoice_and_remembers_where_it_was():
    automation = make_automation("Late", "invoice_past_due", [("add_note", {"text": "late"})],
                                 days=3)
    late = make_open(now=T0, collection_method="send_invoice", days_until_due=1)
    make_open(now=T0, collection_method="send_invoice", days_until_due=30)  # not yet
    moment = (T0 + timedelta(days=4)).replace(hour=0)
    assert sweep(now=moment - timedelta(seconds=1)) == {"started": 0, "skipped": 0}
    assert sweep(now=moment)["started"] == 1
    assert sweep(now=moment + timedelta(days=1)) == {"started": 0, "skipped": 0}
    automation.refresh_from_db()
    assert automation.scanned_until == moment + timedelta(days=1)
    assert AutomationRun.objects.get().invoice_id == late.pk
