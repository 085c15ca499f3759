"""Reminders, overdue alerts and the digest, by time travel: the beat sweep and the
delivery run every few hours over a whole schedule, and the tests assert exactly which
emails went out and when."""

from datetime import UTC, date, datetime, timedelta

import pytest
from django.core import mail
from django.core.exceptions import ValidationError

from automations.clocks import clock_advance
from automations.models import (
    CustomerNotificationPreference,
    NotificationSchedule,
    NotificationSettings,
    OutboxMessage,
)
from automations.notifications.delivery import outbox_drain
from automations.notifications.digest import digest_queue
from automations.notifications.reminders import schedules_rebuild
from automations.notifications.sweeps import notifications_sweep
from customers.models import TestClock
from invoices.events import event_record
from invoices.services import invoice_mark_uncollectible, invoice_record_payment

from .factories import NOW, STAFF, make_customer, make_open
from .notify_support import COLLECTION, payment_failed

pytestmark = pytest.mark.usefixtures("pdfs")
DUE = date(2026, 3, 31)
STEP = timedelta(hours=6)  # NOW is 09:00 UTC: every step lands on 09:00 once a day


def at(day: str, hour: int = 9) -> datetime:
    return datetime.fromisoformat(f"2026-{day}T{hour:02d}:00").replace(tzinfo=UTC)


def travel(start, end, between=None):
    """Run beat's sweeps and the delivery every STEP from `start` to `end`; call
    `between(moment)` before each step."""
    moment = start
    while moment <= end:
        if between:
            between(moment)
        notifications_sweep(now=moment)
        outbox_drain(now=moment)
        moment += STEP


def reminders_sent():
    """(queued at, kind, offset) of every reminder delivered."""
    rows = OutboxMessage.objects.filter(key__startswith="reminder:", status="sent")
    return [(r.created_at, r.kind, r.context["offset"]) for r in rows.order_by("created_at")]


def full_schedule():
    return [
        (at("03-24"), "reminder_upcoming", -7),
        (at("03-28"), "reminder_upcoming", -3),
        (at("03-31"), "reminder_due", 0),
        (at("04-03"), "reminder_overdue", 3),
        (at("04-07"), "reminder_overdue", 7),
        (at("04-14"), "reminder_overdue", 14),
        (at("04-30"), "reminder_overdue", 30),
    ]


def test_an_unpaid_invoice_gets_each_reminder_once_at_its_offset():
    invoice = make_open(due_date=DUE)

    travel(NOW, at("05-20"))

    assert reminders_sent() == full_schedule()
    subjects = [m.subject for m in mail.outbox]
    assert subjects[0] == f"Invoice {invoice.number} from Billing"
    assert subjects[1:4] == [
        f"Reminder: invoice {invoice.number} is due on March 31, 2026",
        f"Reminder: invoice {invoice.number} is due on March 31, 2026",
        f"Invoice {invoice.number} is due today",
    ]
    assert "was due on March 31, 2026, 30 days ago" in mail.outbox[-1].body
    assert not NotificationSchedule.objects.get(invoice=invoice).next_reminder_at


def test_reminders_follow_the_customers_time_zone():
    make_open(make_customer(timezone="America/New_York"), due_date=DUE)

    travel(NOW, at("03-25"), )

    # 09:00 in New York on March 24 is 13:00 UTC: the 15:00 UTC sweep sends it
    assert reminders_sent() == [(at("03-24", 15), "reminder_upcoming", -7)]


def test_no_reminder_once_paid_and_a_queued_one_is_cancelled():
    invoice = make_open(due_date=DUE, lines=((1, 10000),))

    def pay_on_april_first(moment):
        if moment == at("04-01"):
            invoice_record_payment(invoice, amount=10000, method="bank_transfer", now=moment,
                                   actor=STAFF)

    travel(NOW, at("05-20"), between=pay_on_april_first)

    assert reminders_sent() == full_schedule()[:3]
    assert not NotificationSchedule.objects.filter(invoice=invoice).exists()


def test_none_for_uncollectible_invoices():
    invoice = make_open(due_date=DUE)
    invoice_mark_uncollectible(invoice, now=NOW, actor=STAFF)

    travel(NOW, at("05-01"))

    assert reminders_sent() == []


def test_none_while_a_payment_is_processing_but_still_when_action_is_required(monkeypatch):
    invoice = make_open(due_date=DUE)
    processing = set()
    for module in ("reminders", "delivery"):
        monkeypatch.setattr(
            f"automations.notifications.{module}.invoices_with_payment_processing",
            lambda ids: {i for i in ids if i in processing},
        )

    def bank_debit(moment):
        if moment == at("03-27"):  # a debit in flight over the -3 and 0 reminders
            processing.add(invoice.pk)
        if moment == at("04-02"):  # it failed; the customer must act on another payment
            processing.clear()
            event_record("invoice.payment_action_required", now=moment, actor=COLLECTION,
                         invoice=invoice, data={"attempt": 9, "action_url": "https://x/3ds"})

    travel(NOW, at("05-20"), between=bank_debit)

    schedule = full_schedule()
    assert reminders_sent() == [schedule[0], *schedule[3:]]


def test_paused_customers_get_none_until_resumed():
    invoice = make_open(due_date=DUE)
    preference = CustomerNotificationPreference.objects.create(
        customer=invoice.customer, reminders_paused=True, reason="disputed"
    )

    def resume_in_april(moment):
        if moment == at("04-05"):
            preference.reminders_paused = False
            preference.save()

    travel(NOW, at("05-20"), between=resume_in_april)

    assert reminders_sent() == full_schedule()[4:]


def test_after_downtime_only_the_latest_missed_reminder_goes_out():
    make_open(due_date=DUE)

    travel(at("04-10"), at("04-10"))

    assert reminders_sent() == [(at("04-10"), "reminder_overdue", 7)]


def test_no_reminder_on_the_day_the_invoice_was_sent():
    make_open(due_date=date(2026, 3, 5))  # sent on March 2: -3 falls that same day

    travel(NOW, at("03-06"))

    assert reminders_sent() == [(at("03-05"), "reminder_due", 0)]


def test_changed_offsets_apply_to_open_invoices():
    make_open(due_date=DUE)
    NotificationSettings.objects.filter(pk=1).update(reminder_offsets=[1, 10])

    schedules_rebuild(now=NOW)
    travel(NOW, at("04-20"))

    assert reminders_sent() == [
        (at("04-01"), "reminder_overdue", 1), (at("04-10"), "reminder_overdue", 10),
    ]


def test_a_test_clock_sends_the_whole_schedule_when_advanced():
    clock = TestClock.objects.create(name="rehearsal", frozen_time=NOW)
    make_open(make_customer(test_clock=clock), due_date=DUE)

    result = clock_advance(clock, to=at("05-20"))

    assert reminders_sent() == full_schedule()
    assert result["reminders"]["queued"] == 7
    assert result["emails"]["sent"] == 8  # the invoice and 7 reminders


def test_the_real_sweep_leaves_test_clock_customers_alone():
    clock = TestClock.objects.create(name="rehearsal", frozen_time=NOW)
    make_open(make_customer(test_clock=clock), due_date=DUE)

    notifications_sweep(now=at("05-20"))

    assert reminders_sent() == []


# --- overdue alerts -----------------------------------------------------------------


@pytest.fixture
def alerting(django_user_model):
    django_user_model.objects.create_user("carol", "carol@example.com", "pw", is_staff=True)
    settings = NotificationSettings.load()
    settings.overdue_alert_thresholds = {"EUR": 100000}
    settings.overdue_alert_days = 7
    settings.alert_recipients = "carol@example.com"
    settings.full_clean()
    settings.save()


@pytest.mark.usefixtures("alerting")
def test_large_invoices_overdue_by_the_set_days_alert_the_team_once():
    large = make_open(due_date=DUE, lines=((1, 250000),))
    make_open(due_date=DUE, lines=((1, 99999),))  # below the threshold
    paid = make_open(due_date=DUE, lines=((1, 500000),))
    invoice_record_payment(paid, amount=500000, method="bank_transfer", now=NOW, actor=STAFF)

    travel(NOW, at("05-20"))

    alerts = OutboxMessage.objects.filter(kind="overdue_alert")
    assert [(a.key, a.created_at, a.to) for a in alerts] == [
        (f"overdue_alert:{large.pk}", at("04-07"), ["carol@example.com"])
    ]
    [email] = [m for m in mail.outbox if m.to == ["carol@example.com"]]
    assert email.subject == f"Overdue: {large.number} ({large.customer.name}), €2,500.00"
    assert "is 7 days overdue" in email.body
    assert f"/admin/invoices/invoice/{large.pk}/change/" in email.body


def test_alert_recipients_outside_the_company_are_refused(settings, django_user_model):
    django_user_model.objects.create_user("dan", "dan@example.com", "pw", is_staff=True)
    django_user_model.objects.create_user("eve", "eve@gmail.com", "pw", is_staff=False)
    settings.COMPANY_EMAIL_DOMAIN = "acme.test"
    notification_settings = NotificationSettings.load()
    notification_settings.alert_recipients = "dan@example.com\ncollections@acme.test"
    notification_settings.full_clean()  # a staff user and an address in the domain

    notification_settings.alert_recipients = "collections@acme.test, eve@gmail.com"
    with pytest.raises(ValidationError) as refused:
        notification_settings.full_clean()

    assert refused.value.message_dict["alert_recipients"] == [
        "Refused: eve@gmail.com: only staff users' addresses or addresses at acme.test are "
        "allowed."
    ]


@pytest.mark.parametrize(("offsets", "message"), [
    ([-7, -7], "Each offset may appear only once."),
    ([-90, 3], "Offsets go from -60 to 120 days around the due date; not -90."),
    (["3"], "Reminder offsets are a list of whole days, e.g. [-7, 0, 7]."),
])
def test_reminder_offsets_are_validated(offsets, message):
    notification_settings = NotificationSettings.load()
    notification_settings.reminder_offsets = offsets

    with pytest.raises(ValidationError) as refused:
        notification_settings.full_clean()

    assert refused.value.message_dict["reminder_offsets"] == [message]


@pytest.mark.parametrize("thresholds", [{"XYZ": 100}, {"EUR": 10.5}, {"EUR": -1}, [100]])
def test_alert_thresholds_are_validated(thresholds):
    notification_settings = NotificationSettings.load()
    notification_settings.overdue_alert_thresholds = thresholds

    with pytest.raises(ValidationError):
        notification_settings.full_clean()


# --- the digest ---------------------------------------------------------------------


def test_the_daily_digest_reports_yesterday_once(django_user_model):
    django_user_model.objects.create_user("carol", "carol@example.com", "pw", is_staff=True)
    NotificationSettings.objects.update_or_create(pk=1, defaults={
        "digest_enabled": True, "digest_recipients": "carol@example.com", "digest_hour": 7,
        "overdue_alert_thresholds": {"EUR": 100000},
    })
    recovered = make_open(collection_method="charge_automatically", lines=((1, 30000),))
    failing = make_open(collection_method="charge_automatically", lines=((1, 20000),))
    payment_failed(recovered, now=NOW, attempt=1)
    payment_failed(failing, now=NOW + timedelta(hours=1), attempt=2, code="expired_card")
    invoice_record_payment(recovered, amount=30000, method="card", now=NOW + timedelta(hours=2),
                           actor=STAFF)
    upcoming = make_open(due_date=date(2026, 3, 6), lines=((1, 150000),))

    assert not digest_queue(now=at("03-03", 6))  # before the digest hour
    assert digest_queue(now=at("03-03", 7))
    assert not digest_queue(now=at("03-03", 8))  # once a day
    outbox_drain(now=at("03-03", 7))

    [digest] = [m for m in mail.outbox if m.to == ["carol@example.com"]]
    assert digest.subject == "Collection digest for March 2, 2026"
    body = digest.body
    assert "2 payment attempts" in body  # the staff-recorded payment is not one
    assert f"- {failing.number} {failing.customer.name}: €200.00 (The card has expired.)" in body
    recoveries = body.split("Recovered invoices (paid after a failure):")[1]
    assert recoveries.lstrip().startswith(f"- {recovered.number}")
    assert f"- {upcoming.number} {upcoming.customer.name}: €1,500.00 (due March 6, 2026)" in body
