"""The emails the system sends, as data: who reads each one, and the variables its
templates may use (a template using any other name is refused when saved)."""

from dataclasses import dataclass

from django.utils.translation import gettext_lazy as _

CUSTOMER, STAFF = "customer", "staff"

COMMON = ("company_name", "support_email", "accent_colour")
INVOICE = (*COMMON, "customer_name", "invoice_number", "hosted_url", "amount_remaining",
           "due_date")
SUBSCRIPTION = (*COMMON, "customer_name", "plan")
SUBSCRIPTION_KINDS = (
    "subscription_renewal_upcoming", "subscription_trial_ending", "subscription_card_expiring",
    "subscription_canceled", "subscription_paused", "subscription_resumed",
)


@dataclass(frozen=True)
class Kind:
    name: str
    label: str
    audience: str
    variables: tuple[str, ...]


KINDS = {
    kind.name: kind
    for kind in [
        Kind("invoice_finalized", _("Invoice sent"), CUSTOMER,
             (*INVOICE, "amount_due", "total", "totals", "paid")),
        Kind(
            "payment_failed", _("Payment failed"), CUSTOMER,
            (*INVOICE, "amount", "failure_reason", "next_attempt_date"),
        ),
        Kind(
            "payment_failed_hard", _("Payment failed: new payment method needed"), CUSTOMER,
            (*INVOICE, "amount", "failure_reason"),
        ),
        Kind(
            "payment_action_required", _("Payment needs authentication"), CUSTOMER,
            (*INVOICE, "amount", "action_url"),
        ),
        Kind(
            "receipt", _("Payment receipt"), CUSTOMER,
            (*INVOICE, "amount_paid", "paid_date", "payment_method", "totals"),
        ),
        Kind(
            "credit_note", _("Credit note issued"), CUSTOMER,
            (*INVOICE, "credit_note_number", "credit_note_amount", "totals"),
        ),
        Kind("reminder_upcoming", _("Reminder: invoice due soon"), CUSTOMER,
             (*INVOICE, "days_until_due")),
        Kind("reminder_due", _("Reminder: invoice due today"), CUSTOMER, INVOICE),
        Kind("reminder_overdue", _("Reminder: invoice overdue"), CUSTOMER,
             (*INVOICE, "days_overdue")),
        Kind("invoice_link", _("New invoice page link"), CUSTOMER,
             (*INVOICE, "link_expires_date")),
        Kind(
            "overdue_alert", _("Overdue alert (staff)"), STAFF,
            (*COMMON, "customer_name", "invoice_number", "amount_remaining", "due_date",
             "days_overdue", "admin_url"),
        ),
        Kind(
            "payment_held", _("Payment held for review (staff)"), STAFF,
            (*COMMON, "customer_name", "invoice_number", "amount", "reason", "admin_url"),
        ),
        Kind(
            "digest", _("Daily collection digest (staff)"), STAFF,
            (*COMMON, "day", "attempts", "succeeded", "failures", "recoveries",
             "uncollectible", "upcoming", "admin_url"),
        ),
        Kind("subscription_renewal_upcoming", _("Subscription renews soon"), CUSTOMER,
             SUBSCRIPTION + ("amount", "renewal_date")),
        Kind("subscription_trial_ending", _("Subscription trial ends soon"), CUSTOMER,
             SUBSCRIPTION + ("amount", "trial_end_date")),
        Kind("subscription_card_expiring", _("Card expires before the next renewal"),
             CUSTOMER, SUBSCRIPTION + ("card", "renewal_date")),
        Kind("subscription_canceled", _("Subscription canceled"), CUSTOMER,
             SUBSCRIPTION + ("cancellation_date", "survey_url")),
        Kind("subscription_paused", _("Subscription paused"), CUSTOMER,
             SUBSCRIPTION + ("resume_date",)),
        Kind("subscription_resumed", _("Subscription resumed"), CUSTOMER,
             SUBSCRIPTION + ("renewal_date",)),
        # Queued by automations (automations/engine), its context written whole then.
        Kind(
            "automation_team", _("Automation: email to the team (staff)"), STAFF,
            (*COMMON, "memo", "automation_name", "admin_url"),
        ),
    ]
}
KIND_CHOICES = [(kind.name, kind.label) for kind in KINDS.values()]
REMINDER_KINDS = ("reminder_upcoming", "reminder_due", "reminder_overdue")

# What templates are checked and previewed with. Lists of rows carry the same keys as
# the real ones (see digest.py).
_ROW = {"invoice_number": "ACME-0042", "customer_name": "Acme Labs", "amount": "€1,250.00",
        "due_date": "March 30, 2026", "reason": "Insufficient funds"}
SAMPLE_VALUES = {
    "company_name": "Your Company",
    "support_email": "billing@example.com",
    "accent_colour": "#1F4E79",
    "customer_name": "Acme Labs",
    "invoice_number": "ACME-0042",
    "hosted_url": "https://billing.example.com/i/sample-token/",
    "amount_remaining": "€1,250.00",
    "amount_due": "€1,250.00",
    "total": "€1,250.00",
    "due_date": "March 30, 2026",
    "paid": False,  # the invoice was paid before its email went out
    "amount": "€1,250.00",
    "failure_reason": "The card has insufficient funds.",
    "next_attempt_date": "March 5, 2026",
    "action_url": "https://billing.example.com/i/sample-token/",
    "amount_paid": "€1,250.00",
    "paid_date": "March 2, 2026",
    "payment_method": "Card",
    "credit_note_number": "ACME-0042-CN-01",
    "credit_note_amount": "€250.00",
    "days_until_due": 7,
    "days_overdue": 3,
    "link_expires_date": "May 30, 2026",
    # From the total to the amount due, as the invoice page shows them (invoices.totals).
    "totals": [{"label": "Total", "amount": "€1,500.00"},
               {"label": "Credit notes", "amount": "-€250.00"},
               {"label": "Amount due", "amount": "€1,250.00"}],
    "admin_url": "https://billing.example.com/admin/",
    "reason": "The gateway reports a charge in JPY; it was asked for EUR.",
    "day": "March 1, 2026",
    "attempts": 12,
    "succeeded": [_ROW],
    "failures": [_ROW],
    "recoveries": [_ROW],
    "uncollectible": [_ROW],
    "upcoming": [_ROW],
    "plan": "2 × Pro (€29.00 / month)",
    "renewal_date": "April 2, 2026",
    "trial_end_date": "March 16, 2026",
    "card": "Visa •••• 4242 (expires 03/2026)",
    "cancellation_date": "April 2, 2026",
    "survey_url": "https://example.com/survey",
    "resume_date": "May 1, 2026",
    "memo": "Invoice over $500 past due by 7 days: ACME-0042, Acme Labs, $1,250.00 remaining.",
    "automation_name": "Large invoice past due: alert the team",
}


def kind_get(name: str) -> Kind:
    return KINDS[name]


def sample_context(name: str) -> dict:
    return {variable: SAMPLE_VALUES[variable] for variable in KINDS[name].variables}
