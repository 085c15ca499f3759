"""The subscriptions admin as staff meet it: products with prices, the subscription list,
its buttons (cancel, pause, resume, reactivate, change with the proration preview), the
customer page, and what each staff group may do."""

from datetime import timedelta

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from customers.clock import system_now
from subscriptions.models import Subscription
from subscriptions.services import subscription_cancel
from subscriptions.transitions import subscription_transition

from .factories import STAFF, add_card, make_customer
from .subscription_factories import make_price, make_subscription

S = Subscription.Status


def url(name, *args):
    return reverse(f"admin:{name}", args=args)


@pytest.fixture
def staff_client(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def as_member(client, django_user_model):
    def login(group: str):
        user = django_user_model.objects.create_user(
            username=group.lower().replace(" ", "-"), password="pw-staff-123", is_staff=True
        )
        user.groups.add(Group.objects.get(name=group))
        client.force_login(user)
        return client

    return login


@pytest.fixture
def active():
    """Active now (the admin uses the real clock), a 30-day period from now."""
    now = system_now()
    price = make_price(3000, interval="day", count=30, name="Team")
    subscription = make_subscription(price, now=now, trial_period_days=3)
    subscription_transition(subscription, S.ACTIVE, now=now, actor=STAFF)
    return subscription


def test_product_page_lists_its_prices(staff_client):
    price = make_price(4900, name="Gold", nickname="Gold monthly")
    page = staff_client.get(url("subscriptions_product_change", price.product.pk))
    assert page.status_code == 200
    assert "Gold monthly" in page.content.decode()


def test_list_filters_and_search(staff_client, active):
    product = active.items.get().price.product_id
    for query in ["", "?status=active", "?interval=day", f"?product={product}",
                  "?segment=smb", f"?q={active.customer.name}", "?currency=EUR"]:
        response = staff_client.get(url("subscriptions_subscription_changelist") + query)
        assert response.status_code == 200, query
    page = staff_client.get(url("subscriptions_subscription_changelist") + "?status=active")
    assert active.customer.name in page.content.decode()
    page = staff_client.get(url("subscriptions_subscription_changelist") + "?status=canceled")
    assert active.customer.name not in page.content.decode()


def test_subscription_page_shows_buttons_and_timeline(staff_client, active):
    page = staff_client.get(url("subscriptions_subscription_change", active.pk)).content.decode()
    assert url("subscriptions_subscription_cancel", active.pk) in page
    assert url("subscriptions_subscription_pause", active.pk) in page
    assert url("subscriptions_subscription_change_plan", active.pk) in page
    assert "customer.subscription.created" in page


def test_cancel_at_period_end_then_reactivate(staff_client, active):
    response = staff_client.post(url("subscriptions_subscription_cancel", active.pk), {
        "when": "period_end", "reason": "cancellation_requested", "feedback": "unused",
        "comment": "",
    })
    assert response.status_code == 302
    active.refresh_from_db()
    assert active.cancel_at_period_end and active.cancellation_feedback == "unused"

    again = staff_client.post(url("subscriptions_subscription_cancel", active.pk), {
        "when": "period_end", "reason": "cancellation_requested",
    })
    assert "already set to cancel" in again.content.decode()

    staff_client.post(url("subscriptions_subscription_reactivate", active.pk))
    active.refresh_from_db()
    assert not active.cancel_at_period_end


def test_cancel_now_with_a_canceled_subscription_says_so(staff_client, active):
    subscription_cancel(active, now=system_now(), actor=STAFF)
    response = staff_client.post(url("subscriptions_subscription_cancel", active.pk), {
        "when": "now", "reason": "cancellation_requested",
    })
    assert "already canceled" in response.content.decode()


def test_pause_and_resume(staff_client, active):
    staff_client.post(url("subscriptions_subscription_pause", active.pk),
                      {"behavior": "keep_as_draft", "resumes_at": ""})
    active.refresh_from_db()
    assert active.status == S.PAUSED
    staff_client.post(url("subscriptions_subscription_resume", active.pk))
    active.refresh_from_db()
    assert active.status == S.ACTIVE


def test_change_plan_previews_then_applies(staff_client, active):
    item = active.items.get()
    form = {"item": item.pk, "price": item.price_id, "quantity": 3,
            "proration_behavior": "create_prorations"}
    preview = staff_client.post(url("subscriptions_subscription_change_plan", active.pk), form)
    text = preview.content.decode()
    assert "Unused time on 1 × Team" in text and "Remaining time on 3 × Team" in text
    assert "Upcoming invoice" in text
    item.refresh_from_db()
    assert item.quantity == 1  # a preview changes nothing

    applied = staff_client.post(url("subscriptions_subscription_change_plan", active.pk),
                                {**form, "apply": "1"})
    assert applied.status_code == 302
    item.refresh_from_db()
    assert item.quantity == 3


def test_change_plan_refuses_a_price_in_another_currency(staff_client, active):
    item = active.items.get()
    usd = make_price(3000, currency="USD", interval="day", count=30)
    response = staff_client.post(url("subscriptions_subscription_change_plan", active.pk), {
        "item": item.pk, "price": usd.pk, "quantity": 1, "proration_behavior": "none",
    })
    assert response.status_code == 200  # not offered: the form refuses it
    item.refresh_from_db()
    assert item.price_id != usd.pk


def test_create_from_the_admin(staff_client):
    customer = make_customer()
    add_card(customer)
    price = make_price(1500)
    response = staff_client.post(url("subscriptions_subscription_create"), {
        "customer": customer.pk, "price": price.pk, "quantity": 0,
        "collection_method": "charge_automatically",
    })
    assert "Quantity must be" in response.content.decode()
    assert not Subscription.objects.exists()
    response = staff_client.post(url("subscriptions_subscription_create"), {
        "customer": customer.pk, "price": price.pk, "quantity": 2, "trial_period_days": 7,
        "collection_method": "charge_automatically",
    })
    assert response.status_code == 302
    assert Subscription.objects.get().status == S.TRIALING


def test_customer_page_lists_subscriptions_and_their_events(staff_client, active):
    page = staff_client.get(url("customers_customer_change", active.customer_id)).content.decode()
    assert url("subscriptions_subscription_change", active.pk) in page
    assert "Subscription created" in page


def test_auditor_sees_but_changes_nothing(as_member, active):
    client = as_member("Auditor")
    assert client.get(url("subscriptions_subscription_changelist")).status_code == 200
    page = client.get(url("subscriptions_subscription_change", active.pk)).content.decode()
    assert url("subscriptions_subscription_cancel", active.pk) not in page
    response = client.post(url("subscriptions_subscription_cancel", active.pk),
                           {"when": "now", "reason": "cancellation_requested"})
    assert response.status_code == 403
    active.refresh_from_db()
    assert active.status == S.ACTIVE


def test_finance_admin_cancels(as_member, active):
    client = as_member("Finance admin")
    client.post(url("subscriptions_subscription_cancel", active.pk),
                {"when": "now", "reason": "cancellation_requested"})
    active.refresh_from_db()
    assert active.status == S.CANCELED
    assert active.canceled_at is not None
    assert active.canceled_at <= system_now() + timedelta(seconds=1)
