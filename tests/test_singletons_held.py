"""customers.singletons.singletons_held: the settings rows read once in a clock's advance,
read again after any save that could change what they answer."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from automations.clocks import clock_advance
from automations.models import BillingSettings, RetryPolicy
from automations.notifications.models import NotificationSchedule, NotificationSettings
from customers.models import TestClock
from customers.singletons import held_forget, held_read, singletons_held
from invoices.models import InvoicingSettings

from .factories import NOW, make_charged, make_customer

pytestmark = pytest.mark.django_db


def queries(function):
    with CaptureQueriesContext(connection) as captured:
        result = function()
    return result, len(captured)


def test_outside_a_held_block_every_load_reads_the_row():
    InvoicingSettings.load()
    _row, count = queries(lambda: [InvoicingSettings.load() for _ in range(3)])
    assert count == 3


def test_in_a_held_block_each_row_is_read_once():
    BillingSettings.load(), NotificationSettings.load(), InvoicingSettings.load()
    with singletons_held():
        first, count = queries(lambda: [BillingSettings.load(), NotificationSettings.load(),
                                        InvoicingSettings.load()])
        again, count_again = queries(lambda: [BillingSettings.load(),
                                              NotificationSettings.load(),
                                              InvoicingSettings.load()])
        with singletons_held():  # nested: the outer block's rows
            nested, count_nested = queries(BillingSettings.load)
    assert (count, count_again, count_nested) == (3, 0, 0)
    assert again == first and nested is first[0]
    _row, count_after = queries(BillingSettings.load)
    assert count_after == 1  # the block ended: read again


def test_a_save_in_a_held_block_is_seen_by_the_next_load():
    with singletons_held():
        settings = BillingSettings.load()
        assert settings.uncollectible_after_days is None
        other = BillingSettings.objects.get(pk=1)  # another copy, as the admin would edit
        other.uncollectible_after_days = 12
        other.save()
        assert BillingSettings.load().uncollectible_after_days == 12

        invoicing = InvoicingSettings.load()
        InvoicingSettings.objects.get(pk=1).delete()
        assert InvoicingSettings.load() is not invoicing


def test_a_saved_default_retry_policy_is_seen_through_the_billing_settings():
    with singletons_held():
        policy = BillingSettings.load().default_retry_policy
        fresh = RetryPolicy.objects.get(pk=policy.pk)
        fresh.max_retries = policy.max_retries + 1
        fresh.save()
        assert BillingSettings.load().default_retry_policy.max_retries == policy.max_retries + 1


def test_a_clock_advance_reads_the_settings_once():
    clock = TestClock.objects.create(name="Rehearsal", frozen_time=NOW)
    customer = make_customer(test_clock=clock)
    make_charged("sim_4242", customer=customer)
    clock_advance(clock, to=NOW + timedelta(minutes=1))  # the settings rows exist

    with CaptureQueriesContext(connection) as captured:
        clock_advance(clock, to=NOW + timedelta(days=2))
    reads = [q for q in captured if 'FROM "automations_billingsettings"' in q["sql"]]
    assert len(reads) == 1

    # Outside an advance nothing is held: a change made between two advances is seen.
    settings = BillingSettings.load()
    settings.uncollectible_after_days = 30
    settings.save()
    with singletons_held():
        assert BillingSettings.load().uncollectible_after_days == 30


def test_a_held_read_is_read_again_after_a_watched_save_or_held_forget():
    reads = []

    def load():
        reads.append(1)
        return len(reads)

    with singletons_held():
        assert [held_read("k", load, watch={RetryPolicy}) for _ in range(2)] == [1, 1]
        RetryPolicy.objects.create(name="Another")
        assert held_read("k", load, watch={RetryPolicy}) == 2
        held_forget()  # what a queryset's update() of a held model calls
        assert held_read("k", load, watch={RetryPolicy}) == 3
        NotificationSettings.load().save()  # not watched by "k"
        assert held_read("k", load, watch={RetryPolicy}) == 3
    assert held_read("k", load, watch={RetryPolicy}) == 4  # outside a block: every call


def test_the_retry_policies_are_read_once_in_a_held_block_and_again_after_a_save():
    from automations.retries import retry_policies

    BillingSettings.load()  # the default policy exists
    with singletons_held():
        first, count = queries(retry_policies)
        again, count_again = queries(retry_policies)
        segmented = RetryPolicy.objects.create(name="VIP", customer_segments=["vip"])
        after_save, count_after_save = queries(retry_policies)
    assert (count, count_again, count_after_save) == (1, 0, 1)
    assert again is first and segmented in after_save and segmented not in first


def test_a_delete_of_rows_no_block_watches_is_one_statement():
    # Listening to the deletes of every model made every queryset's delete() read its
    # rows first (and send a signal a row): only the watched models are listened to.
    with singletons_held():
        BillingSettings.load()
        clock = TestClock.objects.create(name="Rehearsal", frozen_time=NOW)
        invoice = make_charged("sim_4242", customer=make_customer(test_clock=clock))
        assert NotificationSchedule.objects.filter(invoice=invoice).exists()
        deleted, captured = queries(
            lambda: NotificationSchedule.objects.filter(invoice=invoice).delete())
        assert deleted[0] == 1 and captured == 1
        # and a watched row's delete is still seen
        invoicing = InvoicingSettings.load()
        InvoicingSettings.objects.get(pk=1).delete()
        assert InvoicingSettings.load() is not invoicing
