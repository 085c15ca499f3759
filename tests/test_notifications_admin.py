"""The notification screens: settings with clear refusals, templates refused at save
with the reason and previewed, the outbox visible and re-sendable, and the reminders
opt-out on the customer page."""

from datetime import date

import pytest
from django.contrib.auth.models import Group
from django.core import mail
from django.urls import reverse

from automations.models import (
    CustomerNotificationPreference,
    EmailTemplate,
    NotificationSettings,
    OutboxMessage,
)
from automations.notifications.delivery import outbox_drain
from automations.notifications.outbox import outbox_write
from automations.notifications.reminders import reminder_message
from automations.notifications.rendering import default_sources

from .admin_forms import rows
from .factories import NOW, make_customer, make_open
from .test_admin_customers import edit_form

pytestmark = pytest.mark.usefixtures("pdfs")
DUE = date(2026, 3, 31)
TEMPLATE_ADD = reverse("admin:automations_emailtemplate_add")


@pytest.fixture
def staff(client, admin_user):
    client.force_login(admin_user)
    return client


def settings_form(**overrides):
    data = {
        "send_finalized_invoices": "on", "from_email": "", "reminder_offsets": "-7, 0, 7",
        "overdue_alert_days": "7", "alert_recipients": "",
        "digest_recipients": "", "digest_hour": "7", "staff_locale": "en",
        "upcoming_renewal_days": "7",
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


def settings_url():
    return reverse("admin:automations_notificationsettings_change",
                   args=[NotificationSettings.load().pk])


def form_errors(response):
    return response.context["adminform"].form.errors


def template_form(**overrides):
    sources = default_sources("reminder_due", "en")
    data = {"kind": "reminder_due", "locale": "en", "subject": sources["subject"].strip(),
            "text_body": sources["text"], "html_body": sources["html"]}
    data.update(overrides)
    return data


# --- settings -----------------------------------------------------------------------


def test_the_settings_list_opens_the_single_settings_page(staff):
    response = staff.get(reverse("admin:automations_notificationsettings_changelist"))

    assert response.status_code == 302 and response.url == settings_url()
    assert staff.get(settings_url()).status_code == 200


def test_settings_are_saved_sorted(staff):
    response = staff.post(settings_url(), settings_form(reminder_offsets="7, -3, 0"))

    assert response.status_code == 302
    assert NotificationSettings.load().reminder_offsets == [-3, 0, 7]


def test_settings_refuse_outside_recipients_with_a_clear_message(staff, settings):
    settings.COMPANY_EMAIL_DOMAIN = "acme.test"
    response = staff.post(settings_url(), settings_form(
        alert_recipients="someone@gmail.com",
        **rows("overdue_alert_thresholds", {"EUR": "1000.00"}),
    ))

    assert response.status_code == 200
    assert form_errors(response)["alert_recipients"] == [
        "Refused: someone@gmail.com: only staff users' addresses or addresses at acme.test "
        "are allowed."
    ]
    assert NotificationSettings.load().alert_recipients == ""


def test_a_digest_without_recipients_is_refused(staff):
    response = staff.post(settings_url(), settings_form(digest_enabled="on"))

    assert form_errors(response)["digest_recipients"] == ["Who should receive the digest?"]


# --- templates ----------------------------------------------------------------------


def test_adding_a_template_starts_from_the_built_in_text(staff):
    response = staff.get(TEMPLATE_ADD + "?kind=reminder_overdue&locale=fr")

    form = response.context["adminform"].form
    assert form.initial["subject"] == "La facture {{ invoice_number }} est en retard de paiement"
    assert "{{ days_overdue }}" in form.initial["text_body"]


@pytest.mark.parametrize(("field", "source", "error"), [
    ("subject", "{% if invoice_number %}Due", "Template syntax error:"),
    ("subject", "{{ invoice_number|shout }}", "Template syntax error: Invalid filter"),
    ("text_body", "Pay {{ amount_du }} now", "Unknown variables: amount_du."),
    ("html_body", "{% if overdue %}late{% endif %}", "Unknown variables: overdue."),
    ("text_body", "{% load static %}x", "The tag {% load %} is not allowed in emails"),
    ("text_body", "{% include 'admin/base.html' %}", "The tag {% include %} is not allowed"),
])
def test_a_broken_template_is_refused_at_save_with_the_reason(staff, field, source, error):
    response = staff.post(TEMPLATE_ADD, template_form(**{field: source}))

    assert response.status_code == 200
    assert form_errors(response)[field][0].startswith(error)
    assert not EmailTemplate.objects.exists()


def test_a_saved_template_is_previewed_and_used_for_the_next_emails(staff):
    response = staff.post(TEMPLATE_ADD, template_form(
        subject="Today: {{ invoice_number }}",
        text_body="{% if amount_remaining %}Please pay {{ amount_remaining }}.{% endif %}",
    ))
    template = EmailTemplate.objects.get()
    assert response.status_code == 302

    page = staff.get(reverse("admin:automations_emailtemplate_change", args=[template.pk]))
    assert "Today: ACME-0042" in page.content.decode()

    invoice = make_open(due_date=DUE, lines=((1, 10000),))
    outbox_write([reminder_message(invoice, 0, NOW)])
    outbox_drain(now=NOW)
    reminder = [m for m in mail.outbox if m.subject == f"Today: {invoice.number}"]
    assert reminder and reminder[0].body.strip() == "Please pay €100.00."


# --- outbox -------------------------------------------------------------------------


def test_the_outbox_shows_each_email_its_error_and_its_content(staff):
    failing = make_open(make_customer(email=""), due_date=DUE)
    outbox_drain(now=NOW)
    row = OutboxMessage.objects.get(invoice=failing)

    listing = staff.get(reverse("admin:automations_outboxmessage_changelist")).content.decode()
    detail = staff.get(reverse("admin:automations_outboxmessage_change", args=[row.pk]))

    assert "The customer has no email address" in listing
    assert detail.status_code == 200
    assert "The customer has no email address" in detail.content.decode()


def test_the_outbox_preview_shows_the_email_as_it_would_go_out(staff):
    invoice = make_open(due_date=DUE)
    row = OutboxMessage.objects.get(invoice=invoice)

    page = staff.get(reverse("admin:automations_outboxmessage_change", args=[row.pk]))

    assert f"Invoice {invoice.number} from Billing" in page.content.decode()


def test_resend_action_requeues_and_says_how_many(staff):
    make_open(due_date=DUE)
    pending = make_open(due_date=DUE)
    outbox_drain(now=NOW)
    OutboxMessage.objects.filter(invoice=pending).update(status="pending")

    response = staff.post(
        reverse("admin:automations_outboxmessage_changelist"),
        {"action": "resend", "_selected_action": list(
            OutboxMessage.objects.values_list("pk", flat=True))},
        follow=True,
    )

    messages = [str(m) for m in response.context["messages"]]
    assert "1 email will be sent again." in messages
    assert "1 email was not re-sent: it is still waiting to be sent." in messages


# --- the customer page --------------------------------------------------------------


def test_reminders_are_paused_from_the_customer_page(staff):
    customer = make_customer()
    data = edit_form(customer)
    data.update({
        "notification_preference-TOTAL_FORMS": "1",
        "notification_preference-0-reminders_paused": "on",
        "notification_preference-0-reason": "Disputed invoice",
        "notification_preference-0-customer": str(customer.pk),
    })

    response = staff.post(reverse("admin:customers_customer_change", args=[customer.pk]), data)

    assert response.status_code == 302
    preference = CustomerNotificationPreference.objects.get(customer=customer)
    assert preference.reminders_paused and preference.reason == "Disputed invoice"


# --- who may do what ----------------------------------------------------------------


def member(client, django_user_model, group):
    user = django_user_model.objects.create_user("agent", password="pw-staff-123", is_staff=True)
    user.groups.add(Group.objects.get(name=group))
    client.force_login(user)
    return client


def test_collections_agents_see_the_outbox_and_pause_reminders_but_not_settings(
    client, django_user_model
):
    agent = member(client, django_user_model, "Collections agent")
    user = django_user_model.objects.get(username="agent")

    assert agent.get(reverse("admin:automations_outboxmessage_changelist")).status_code == 200
    assert user.has_perm("automations.change_customernotificationpreference")
    assert not user.has_perm("automations.change_notificationsettings")
    assert not user.has_perm("automations.change_emailtemplate")
    assert not user.has_perm("automations.change_outboxmessage")  # no re-send


def test_auditors_only_read(client, django_user_model):
    member(client, django_user_model, "Auditor")
    user = django_user_model.objects.get(username="agent")

    assert user.has_perm("automations.view_outboxmessage")
    assert user.has_perm("automations.view_notificationsettings")
    assert not user.has_perm("automations.change_customernotificationpreference")
