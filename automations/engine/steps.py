"""Steps: actions and waits, as a registry. Each kind says what it needs from the
trigger (an invoice, a subscription), how its parameters are checked when the automation
is saved, how it reads in the summary, and how it applies: through the same domain door
as the staff action, with the automation as actor, its emails through the outbox.

The subscription steps register themselves from subscription.py."""

import string
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext_lazy

from customers.actors import Actor
from customers.errors import DomainError
from customers.money import format_money, is_int
from invoices.events import event_build
from invoices.models import Invoice

from ..models import MAX_RETRIES, RetryPolicy
from ..notifications.models import NotificationSettings
from ..notifications.outbox import outbox_message
from ..notifications.recipients import addresses_parse, recipients_validate
from .subjects import Subject, days_past_due
from .triggers import CUSTOMER, INVOICE

MAX_WAIT = timedelta(days=365)
WINDOW_DAYS = (7, 60)  # a retry policy started here: 1 week .. 2 months


class StepError(DomainError):
    """A step that cannot apply to this run's subject: the run stops with this reason."""


@dataclass
class StepContext:
    """What a step applies with; `events` and `messages` are written with the batch."""

    run: object  # AutomationRun
    subject: Subject
    now: datetime
    actor: Actor
    automation_name: str
    events: list = field(default_factory=list)
    messages: list = field(default_factory=list)


@dataclass(frozen=True)
class StepKind:
    key: str
    label: object
    needs: str | None  # INVOICE, SUBSCRIPTION, CUSTOMER or None
    validate: Callable  # validate(params) -> list[str]
    describe: Callable  # describe(params) -> str
    apply: Callable | None = None  # apply(context, params) -> str (for the timeline)
    wait: Callable | None = None  # wait(params) -> timedelta
    # After applying, the run may be held until what the step started has ended:
    # hold(context, params) -> (resume at, what it waits for) or None to go on.
    hold: Callable | None = None


STEPS: dict[str, StepKind] = {}


def step_register(kind: StepKind) -> StepKind:
    STEPS[kind.key] = kind
    return kind


def step_choices() -> list[tuple[str, str]]:
    return [(key, kind.label) for key, kind in STEPS.items()]


def _unknown_keys(params: dict, allowed: set) -> list[str]:
    unknown = set(params) - allowed
    if unknown:
        return [
            _("Unknown parameters: %(k)s (allowed: %(a)s).")
            % {"k": ", ".join(sorted(unknown)), "a": ", ".join(sorted(allowed)) or "-"}
        ]
    return []


def _invoice_of(context: StepContext) -> Invoice:
    invoice = context.subject.invoice
    if invoice is None:
        raise StepError(_("This run has no invoice."))
    return invoice


# --- wait ----------------------------------------------------------------------------


def wait_duration(params: dict) -> timedelta:
    return timedelta(days=params.get("days", 0), hours=params.get("hours", 0))


def wait_validate(params: dict) -> list[str]:
    errors = _unknown_keys(params, {"days", "hours", "until_paid"})
    if errors:
        return errors
    if not all(is_int(params.get(k, 0)) for k in ("days", "hours")):
        return [_("A wait is a whole number of days or hours.")]
    duration = wait_duration(params)
    if duration <= timedelta(0):
        return [_("A wait must last at least one hour.")]
    if duration > MAX_WAIT:
        return [_("A wait lasts at most a year.")]
    if not isinstance(params.get("until_paid", False), bool):
        return [_('"until_paid" is true or false.')]
    return []


def wait_describe(params: dict) -> str:
    days, hours = params.get("days", 0), params.get("hours", 0)
    text = (
        _("wait %(n)s days") % {"n": days}
        if days and not hours
        else _("wait %(n)s hours") % {"n": days * 24 + hours}
    )
    if params.get("until_paid"):
        text += _(" (stop if the invoice is paid)")
    return text


step_register(
    StepKind(
        "wait",
        pgettext_lazy("automation", "Wait"),
        None,
        wait_validate,
        wait_describe,
        wait=wait_duration,
    )
)


# --- retry policy ------------------------------------------------------------------------


def retry_validate(params: dict) -> list[str]:
    errors = _unknown_keys(
        params,
        {
            "policy",
            "mode",
            "max_retries",
            "window_days",
            "custom_schedule",
            "after_last_retry",
            "subscription_after_last_retry",
        },
    )
    if errors:
        return errors
    if "policy" in params:
        if len(params) > 1:
            return [_("Name an existing policy, or describe a new one: not both.")]
        if not RetryPolicy.objects.filter(name=params["policy"]).exists():
            return [_("No retry policy is named %(n)s.") % {"n": params["policy"]}]
        return []
    policy = _policy_build(params, "-")
    try:
        policy.full_clean(exclude=["name"])
    except ValidationError as error:
        return [f"{name}: {' '.join(messages)}" for name, messages in error.message_dict.items()]
    except (TypeError, ValueError):
        return [_("The retry policy's values are not valid.")]
    window = policy.window_days
    if not WINDOW_DAYS[0] <= window <= WINDOW_DAYS[1] or policy.retry_budget > MAX_RETRIES:
        return [
            _("A retry policy makes up to %(n)s retries within 1 week to 2 months.")
            % {"n": MAX_RETRIES}
        ]
    if policy.mode == RetryPolicy.Mode.CUSTOM and sum(policy.custom_schedule) > WINDOW_DAYS[1]:
        return [_("A custom schedule spans at most 2 months.")]
    return []


def _policy_build(params: dict, name: str) -> RetryPolicy:
    return RetryPolicy(
        name=name,
        mode=params.get("mode", RetryPolicy.Mode.SMART),
        max_retries=params.get("max_retries", MAX_RETRIES),
        window_days=params.get("window_days", 60),
        custom_schedule=params.get("custom_schedule", []),
        after_last_retry=params.get("after_last_retry", RetryPolicy.AfterLastRetry.LEAVE_PAST_DUE),
        subscription_after_last_retry=params.get("subscription_after_last_retry", ""),
    )


def retry_describe(params: dict) -> str:
    if "policy" in params:
        return _('start retry policy "%(n)s"') % {"n": params["policy"]}
    policy = _policy_build(params, "-")
    return _("start a retry policy (%(mode)s, up to %(n)s retries within %(d)s days)") % {
        "mode": policy.get_mode_display(),
        "n": policy.retry_budget,
        "d": policy.window_days,
    }


def retry_apply(context: StepContext, params: dict) -> str:
    from .retrying import invoice_retry_policy_start

    invoice = _invoice_of(context)
    if "policy" in params:
        policy = RetryPolicy.objects.filter(name=params["policy"]).first()
        if policy is None:
            raise StepError(_("The retry policy %(n)s no longer exists.") % {"n": params["policy"]})
    else:
        name = (_("%(automation)s (automation)") % {"automation": context.automation_name})[:100]
        policy = RetryPolicy.objects.filter(name=name).first()
        if policy is None:
            policy = _policy_build(params, name)
            policy.save()
    return invoice_retry_policy_start(
        invoice,
        policy=policy,
        automation_id=context.run.automation_id,
        now=context.now,
        actor=context.actor,
    )


HOLD_SLACK = timedelta(minutes=1)  # looked at just after the retry planned


def retry_hold(context: StepContext, params: dict):
    """The steps after a retry policy come once its retries have ended (the invoice
    paid exits the run before that)."""
    from invoices.collection import IN_FLIGHT
    from invoices.models import PaymentAttempt

    invoice = context.subject.invoice
    if invoice is None or invoice.status != Invoice.Status.OPEN:
        return None
    if invoice.next_payment_attempt is not None:
        return (
            max(invoice.next_payment_attempt, context.now) + HOLD_SLACK,
            _("the retries to end (next retry %(at)s)")
            % {"at": invoice.next_payment_attempt.strftime("%Y-%m-%d %H:%M UTC")},
        )
    if PaymentAttempt.objects.filter(invoice=invoice, status__in=IN_FLIGHT).exists():
        return context.now + timedelta(hours=1), _("a payment in progress to end")
    return None


step_register(
    StepKind(
        "start_retry_policy",
        gettext_lazy("Start a retry policy"),
        INVOICE,
        retry_validate,
        retry_describe,
        retry_apply,
        hold=retry_hold,
    )
)


# --- invoice actions ---------------------------------------------------------------------


def _no_params(params: dict) -> list[str]:
    return _unknown_keys(params, set())


def uncollectible_apply(context: StepContext, params: dict) -> str:
    from invoices.services import invoice_mark_uncollectible

    invoice = _invoice_of(context)
    invoice_mark_uncollectible(invoice, now=context.now, actor=context.actor)
    return _("Invoice %(n)s marked uncollectible.") % {"n": invoice.number}


def void_apply(context: StepContext, params: dict) -> str:
    from invoices.services import invoice_void

    invoice = _invoice_of(context)
    invoice_void(invoice, now=context.now, actor=context.actor)
    return _("Invoice %(n)s voided.") % {"n": invoice.number}


step_register(
    StepKind(
        "mark_uncollectible",
        gettext_lazy("Mark the invoice uncollectible"),
        INVOICE,
        _no_params,
        lambda p: _("mark the invoice uncollectible"),
        uncollectible_apply,
    )
)
step_register(
    StepKind(
        "void_invoice",
        gettext_lazy("Void the invoice"),
        INVOICE,
        _no_params,
        lambda p: _("void the invoice"),
        void_apply,
    )
)


# --- emails ------------------------------------------------------------------------------

MEMO_NAMES = {"invoice", "amount", "customer", "days_past_due", "automation"}


def memo_validate(memo) -> list[str]:
    if not isinstance(memo, str) or not memo.strip():
        return [_("The team email needs a memo.")]
    try:
        names = {name for _text, name, _spec, _conv in string.Formatter().parse(memo) if name}
    except ValueError as error:
        return [
            _(
                "The memo has a syntax error (%(e)s); write {invoice}, {amount}, "
                "{customer}, {days_past_due} or {automation}, and {{ }} for braces."
            )
            % {"e": error}
        ]
    unknown = names - MEMO_NAMES
    if unknown:
        return [
            _("The memo names unknown values: %(u)s (known: %(k)s).")
            % {"u": ", ".join(sorted(unknown)), "k": ", ".join(sorted(MEMO_NAMES))}
        ]
    return []


def memo_render(memo: str, context: StepContext) -> str:
    subject, invoice = context.subject, context.subject.invoice
    values = {
        "invoice": (invoice.number or f"#{invoice.pk}") if invoice else "",
        "amount": format_money(invoice.amount_remaining, invoice.currency) if invoice else "",
        "customer": subject.customer.name if subject.customer else "",
        "days_past_due": days_past_due(invoice, context.now) if invoice else 0,
        "automation": context.automation_name,
    }
    return memo.format(**values)


def team_validate(params: dict) -> list[str]:
    errors = _unknown_keys(params, {"to", "memo"})
    to = params.get("to")
    if not isinstance(to, str) or not addresses_parse(to):
        errors.append(_("Whom should the team email go to? One address per line."))
    else:
        try:
            recipients_validate(to)
        except ValidationError as error:
            errors.extend(error.messages)
    return errors + memo_validate(params.get("memo"))


def team_apply(context: StepContext, params: dict) -> str:
    from django.conf import settings
    from django.urls import reverse

    memo = memo_render(params["memo"], context)
    invoice = context.subject.invoice
    locale = NotificationSettings.load().staff_locale
    admin_url = ""
    if invoice is not None:
        admin_url = settings.SITE_URL + reverse("admin:invoices_invoice_change", args=[invoice.pk])
    context.messages.append(
        outbox_message(
            f"automation:{context.run.pk}:{context.run.step}",
            kind="automation_team",
            now=context.now,
            customer_id=context.subject.customer.pk if context.subject.customer else None,
            invoice_id=invoice.pk if invoice else None,
            to=addresses_parse(params["to"]),
            locale=locale,
            context={
                "memo": memo,
                "automation_name": context.automation_name,
                "admin_url": admin_url,
            },
        )
    )
    return _("Team emailed: %(memo)s") % {"memo": memo}


step_register(
    StepKind(
        "email_team",
        gettext_lazy("Email the team"),
        None,
        team_validate,
        lambda p: _('email the team ("%(memo)s")') % {"memo": p.get("memo", "")},
        team_apply,
    )
)


# Customer emails an automation may send: template -> (what it needs, message builder:
# build(context, params) -> an unsaved outbox row, the same one the notifications queue
# for that email when they do, so that the customer gets it once).
CUSTOMER_TEMPLATES: dict[str, tuple[str, Callable]] = {}


def customer_email_validate(params: dict) -> list[str]:
    errors = _unknown_keys(params, {"template", "survey_url"})
    if params.get("template") not in CUSTOMER_TEMPLATES:
        errors.append(
            _("Choose a customer email among: %(t)s.") % {"t": ", ".join(CUSTOMER_TEMPLATES) or "-"}
        )
    url = params.get("survey_url", "")
    if url and not (isinstance(url, str) and url.startswith("https://")):
        errors.append(_("The survey link is an https:// address."))
    return errors


def customer_email_apply(context: StepContext, params: dict) -> str:
    customer = context.subject.customer
    if customer is None or not customer.email:
        raise StepError(_("The customer has no email address."))
    _needs, build = CUSTOMER_TEMPLATES[params["template"]]
    context.messages.append(build(context, params))
    return _("Customer emailed (%(t)s) at %(to)s.") % {
        "t": params["template"],
        "to": customer.email,
    }


def customer_email_needs(params: dict) -> str | None:
    entry = CUSTOMER_TEMPLATES.get(params.get("template"))
    return entry[0] if entry else None


step_register(
    StepKind(
        "email_customer",
        gettext_lazy("Email the customer"),
        CUSTOMER,
        customer_email_validate,
        lambda p: _("email the customer (%(t)s)") % {"t": p.get("template")},
        customer_email_apply,
    )
)


# --- metadata, segment, note -----------------------------------------------------------


def metadata_validate(params: dict) -> list[str]:
    errors = _unknown_keys(params, {"target", "key", "value"})
    if params.get("target") not in ("invoice", "customer"):
        errors.append(_('Set metadata on the "invoice" or the "customer" (target).'))
    if not isinstance(params.get("key"), str) or not params.get("key"):
        errors.append(_("The metadata key is a text."))
    if not isinstance(params.get("value"), str):
        errors.append(_("The metadata value is a text."))
    return errors


def metadata_apply(context: StepContext, params: dict) -> str:
    from .customer_changes import customer_metadata_set

    key, value = params["key"], params["value"]
    if params["target"] == "invoice":
        from invoices.services import invoice_update

        invoice = _invoice_of(context)
        invoice_update(
            invoice, now=context.now, actor=context.actor, metadata={**invoice.metadata, key: value}
        )
    else:
        customer_metadata_set(
            context.subject.customer, key=key, value=value, now=context.now, actor=context.actor
        )
    return _("Metadata %(k)s set to %(v)s on the %(t)s.") % {
        "k": key,
        "v": value,
        "t": params["target"],
    }


def metadata_needs(params: dict) -> str:
    return INVOICE if params.get("target") == "invoice" else CUSTOMER


def segment_validate(params: dict) -> list[str]:
    errors = _unknown_keys(params, {"segment"})
    segment = params.get("segment")
    if not isinstance(segment, str) or len(segment) > 50:
        errors.append(_("The segment is a text of at most 50 characters."))
    return errors


def segment_apply(context: StepContext, params: dict) -> str:
    from .customer_changes import customer_segment_set

    customer_segment_set(
        context.subject.customer, segment=params["segment"], now=context.now, actor=context.actor
    )
    return _("Customer segment set to %(s)s.") % {"s": params["segment"]}


def note_validate(params: dict) -> list[str]:
    errors = _unknown_keys(params, {"text"})
    if not isinstance(params.get("text"), str) or not params["text"].strip():
        errors.append(_("The note needs a text."))
    return errors


step_register(
    StepKind(
        "set_metadata",
        gettext_lazy("Set metadata"),
        CUSTOMER,
        metadata_validate,
        lambda p: (
            _("set %(t)s metadata %(k)s = %(v)s")
            % {"t": p.get("target"), "k": p.get("key"), "v": p.get("value")}
        ),
        metadata_apply,
    )
)
step_register(
    StepKind(
        "set_segment",
        gettext_lazy("Set the customer segment"),
        CUSTOMER,
        segment_validate,
        lambda p: _("set the customer segment to %(s)s") % {"s": p.get("segment")},
        segment_apply,
    )
)
step_register(
    StepKind(
        "add_note",
        gettext_lazy("Add a note to the timeline"),
        None,
        note_validate,
        lambda p: _('add the note "%(t)s"') % {"t": p.get("text")},
        lambda context, params: params["text"],
    )
)


# What a step needs may depend on its parameters.
NEEDS_BY_PARAMS = {"set_metadata": metadata_needs, "email_customer": customer_email_needs}


def step_needs(kind: str, params: dict) -> str | None:
    if kind in NEEDS_BY_PARAMS:
        return NEEDS_BY_PARAMS[kind](params)
    return STEPS[kind].needs


def timeline_event(context: StepContext, type_: str, data: dict):
    subject = context.subject
    event = event_build(
        type_,
        now=context.now,
        actor=context.actor,
        invoice=subject.invoice,
        customer=subject.customer,
        data=data,
    )
    if subject.subscription is not None and hasattr(event, "subscription_id"):
        event.subscription_id = subject.subscription.pk
    return event
