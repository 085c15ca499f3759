"""Test clocks in the admin: advancing runs the work due to the clock's customers only."""

import re
from datetime import timedelta

import pytest
from django.urls import reverse

from customers.models import TestClock
from invoices.models import Invoice

from .factories import NOW, make_customer, make_draft

S = Invoice.Status


def advance_url(clock):
    return reverse("admin:automations_testclock_advance", args=[clock.pk])


def change_url(clock):
    return reverse("admin:customers_testclock_change", args=[clock.pk])


def typed(moment):
    return moment.strftime("%Y-%m-%dT%H:%M")


@pytest.fixture
def staff(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def clock():
    return TestClock.objects.create(name="Rehearsal", frozen_time=NOW)


def test_clock_list_counts_customers(staff, clock):
    make_customer(test_clock=clock)
    make_customer(test_clock=clock)
    make_customer()

    page = staff.get(reverse("admin:customers_testclock_changelist")).content.decode()

    assert "Rehearsal" in page
    assert re.search(r'<td class="field-customers_count[^>]*>2</td>', page)


def test_clock_page_has_an_advance_button(staff, clock):
    page = staff.get(change_url(clock)).content.decode()

    assert advance_url(clock) in page and "Advance" in page


def test_advance_finalizes_due_drafts_of_its_customers_only(staff, clock):
    on_clock = make_customer(test_clock=clock, invoice_prefix="CLOCK")
    due = [make_draft(on_clock, now=NOW) for _ in range(3)]
    not_yet = make_draft(on_clock, now=NOW + timedelta(days=2))
    # A customer on the real clock whose draft is long overdue is not this clock's business.
    elsewhere = make_draft(make_customer(), now=NOW - timedelta(days=30))

    response = staff.post(
        advance_url(clock), {"to": typed(NOW + timedelta(hours=2))}, follow=True
    )

    assert "3 drafts finalized" in response.content.decode()
    clock.refresh_from_db()
    assert clock.frozen_time == NOW + timedelta(hours=2)
    assert [Invoice.objects.get(pk=d.pk).status for d in due] == [S.OPEN] * 3
    # Finalized at the moment each was due, as the real sweep would have done.
    assert Invoice.objects.get(pk=due[0].pk).finalized_at == NOW + timedelta(hours=1)
    assert Invoice.objects.get(pk=not_yet.pk).status == S.DRAFT
    assert Invoice.objects.get(pk=elsewhere.pk).status == S.DRAFT


def test_quick_step_advances_by_whole_days(staff, clock):
    draft = make_draft(make_customer(test_clock=clock), now=NOW)

    response = staff.post(advance_url(clock), {"quick": "7"}, follow=True)

    clock.refresh_from_db()
    assert clock.frozen_time == NOW + timedelta(days=7)
    assert Invoice.objects.get(pk=draft.pk).status == S.OPEN
    assert "1 draft finalized" in response.content.decode()


def test_advance_with_nothing_due_says_so(staff, clock):
    response = staff.post(advance_url(clock), {"quick": "1"}, follow=True)

    assert "nothing was due" in response.content.decode()


@pytest.mark.parametrize(
    "data,message",
    [
        ({"to": typed(NOW - timedelta(days=1))}, "only moves forward"),
        ({"to": typed(NOW)}, "only moves forward"),
        ({"to": "next tuesday"}, "Enter a valid date/time"),
        ({"to": ""}, "Enter the new time"),
        ({"quick": "3"}, "Select a valid choice"),
    ],
)
def test_bad_times_are_refused_and_change_nothing(staff, clock, data, message):
    draft = make_draft(make_customer(test_clock=clock), now=NOW - timedelta(hours=5))

    response = staff.post(advance_url(clock), data)

    assert response.status_code == 200
    assert message in response.content.decode()
    clock.refresh_from_db()
    assert clock.frozen_time == NOW
    assert Invoice.objects.get(pk=draft.pk).status == S.DRAFT


def test_frozen_time_is_read_only_after_creation(staff, clock):
    staff.post(change_url(clock), {"name": "Renamed", "frozen_time_0": "2030-01-01",
                                   "frozen_time_1": "00:00:00"})

    clock.refresh_from_db()
    assert (clock.name, clock.frozen_time) == ("Renamed", NOW)
