"""The invoice page's views: thin, they resolve the token, call domain functions and
render. Every response carries the page's security headers (headers.hosted_headers).

Unknown, tampered, truncated and revoked tokens all get the same 404 page; an expired
link gets the page that asks for a fresh one by email. Forms follow POST-redirect-GET.
"""

from dataclasses import dataclass
from datetime import datetime
from functools import wraps
from urllib.parse import urlencode

from django.conf import settings
from django.http import FileResponse, HttpResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import translation
from django.utils.cache import patch_vary_headers
from django.utils.translation import gettext as _
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods

from customers.actors import Actor
from customers.clock import now_for
from customers.errors import DomainError

from ..collection import method_for
from ..documents.services import document_ensure
from ..gateways.simulated import CARDS_BY_TOKEN
from ..models import Branding, Invoice, InvoicingSettings, Payment
from ..services import local_date
from .branding import PageBranding, page_branding
from .csrf import invoice_page_csrf, page_csrf_token
from .forms import (
    CARD_FIELDS,
    CardPaymentForm,
    LinkRequestForm,
    PaymentConfirmationForm,
    SimulatedCardForm,
    nonce_new,
)
from .fresh_link import hosted_link_request
from .headers import hosted_headers
from .links import link_live_until, link_read
from .locale import language_chosen, page_languages
from .page import (
    Shown,
    is_payable,
    page_context,
    page_shown,
    page_status,
    page_view_is_new,
    page_view_record,
    row,
    visitor_of,
)
from .payments import attempt_for_nonce, card_entry_available, hosted_card_save, hosted_pay
from .ratelimit import (
    CARD_LIMITS,
    LINK_LIMITS,
    PAY_LIMITS,
    UNKNOWN_LINK_LIMITS,
    client_address,
    rate_limit_hit,
)
from .rendered import SlottedPage, page_key, rendered_pages, slot

CUSTOMER = Actor.customer("invoice page")


@dataclass
class Visit:
    """One request on one invoice's link."""

    token: str
    invoice: Invoice
    settings: InvoicingSettings
    branding: Branding
    now: datetime
    language: str
    shown: Shown | None = None  # the payments and attempts read with the link (GET)
    values: tuple = ()  # the link's row as read (links.LinkRead.values)
    state: str = ""  # the versions of the rows read (links.LinkRead.state), when known
    expires_at: datetime | None = None  # when the link stops working (None: it has none)

    @property
    def today(self):
        return local_date(self.now, self.invoice.customer.timezone)

    def url(self, name: str = "hosted:page", *args, **query) -> str:
        """A URL of this invoice's page, keeping the chosen language."""
        query = {"lang": self.language, **query}
        return f"{reverse(name, args=[self.token, *args])}?{urlencode(query)}"


def hosted_view(*, methods: list[str], when_expired: bool = False, with_shown: bool = False):
    """Resolve the token into a Visit for the view, in the page's language.

    Unknown tokens get the 404 page. Expired links get the expired page, except for
    views that serve expired links only (`when_expired`), which redirect live ones
    back to the page. `with_shown`: the view shows the payments and attempts, read
    with the link (Visit.shown).
    """

    def decorator(view):
        @hosted_headers
        @require_http_methods(methods)
        @wraps(view)
        def wrapped(request, token, *args, **kwargs):
            read = link_read(token, with_shown=with_shown)
            if read is None:
                return not_found(request)
            invoice = read.invoice
            visit = Visit(
                token=token,
                invoice=invoice,
                settings=read.settings,
                branding=read.branding,
                now=now_for(invoice.customer),
                language=language_chosen(request.GET.get("lang"), invoice.customer),
                shown=read.shown,
                values=read.values,
                state=read.state,
                expires_at=read.expires_at,
            )
            with translation.override(visit.language):
                live = link_live_until(visit.expires_at, visit.now)
                if live == when_expired:
                    response = expired(request, visit) if not live else redirect(visit.url())
                else:
                    response = view(request, visit, *args, **kwargs)
            response.headers.setdefault("Content-Language", visit.language)
            return response

        return wrapped

    return decorator


def render_page(request, visit: Visit, template: str, context: dict, status: int = 200):
    return render(request, template, {
        **page_frame(visit, page_branding(visit.branding)),
        "csp_nonce": request.csp_nonce,
        **context,
    }, status=status)


def page_frame(visit: Visit, brand: PageBranding) -> dict:
    """What every page on a link shows around its content."""
    return {
        "visit": visit,
        "brand": brand,
        "page_url": visit.url(),
        "language_links": [
            (code, name, f"{reverse('hosted:page', args=[visit.token])}?lang={code}")
            for code, name in page_languages().items()
        ],
    }


def not_found(request):
    """The one page for every link that does not lead to an invoice (no branding either:
    it must not differ from one deployment's invoice to another's), in the browser's
    language (the locale middleware skips invoice pages: billing_site.middleware). A
    client trying many such links (guessing tokens) is throttled: 429, then the same
    page again later."""
    language = translation.get_language_from_request(request)
    with translation.override(language):
        if rate_limit_hit(UNKNOWN_LINK_LIMITS, invoice_id=0, client=client_address(request)):
            response = render(request, "hosted/too_many.html",
                              {"csp_nonce": request.csp_nonce}, status=429)
            response["Retry-After"] = str(UNKNOWN_LINK_LIMITS[0].seconds)
        else:
            response = render(request, "hosted/not_found.html",
                              {"csp_nonce": request.csp_nonce}, status=404)
    patch_vary_headers(response, ["Accept-Language"])
    response.headers.setdefault("Content-Language", language)
    return response


@hosted_headers
def no_invoice(request, *args, **kwargs):
    """The not-found page as a view: anything else under /i/."""
    return not_found(request)


def expired(request, visit: Visit, form: LinkRequestForm | None = None, status: int = 410):
    return render_page(request, visit, "hosted/expired.html", {
        "form": form or LinkRequestForm(),
        "invoice_number": visit.invoice.number,
        "request_url": visit.url("hosted:link_request"),
    }, status=status)


def rate_limited(request, visit: Visit):
    return render_page(request, visit, "hosted/rate_limited.html", {}, status=429)


# --- the page -------------------------------------------------------------------------


@hosted_view(methods=["GET", "HEAD"], with_shown=True)
def page(request, visit: Visit):
    # A HEAD (a link checker) is no visit; a visitor coming back within the window (or a
    # mail filter opening every link) is the same visit.
    if request.method == "GET" and page_view_is_new(visit.token, visitor_of(request), visit.now):
        page_view_record(visit.invoice, now=visit.now, actor=CUSTOMER, language=visit.language)
    return page_render(request, visit)


def page_render(request, visit: Visit, status: int = 200, **given):
    """The page; `given` are the forms (with their errors) and messages of a POST."""
    if not given:
        return HttpResponse(kept_page(request, visit).fill({
            "csp": lambda: request.csp_nonce,
            "csrf": lambda: page_csrf_token(request),
            "saved": nonce_new,
            "card": nonce_new,
        }), status=status)
    nonces = {"saved": nonce_new(), "card": nonce_new()}
    context = page_content(request, visit, page_shown(visit.invoice), nonces, given)
    return render_page(request, visit, "hosted/page.html", context, status=status)


def kept_page(request, visit: Visit) -> SlottedPage:
    """The page of the invoice's state, rendered once with slots for the values that are
    new on every response, and kept (rendered.py). Its key is everything it is rendered
    from but the lines, frozen since finalization."""
    invoice, shown = visit.invoice, visit.shown or page_shown(visit.invoice)
    # The versions of the rows read name every value of the invoice (its own payment
    # method included), its customer and theirs, the settings, the branding, the payments
    # and attempts; without them, the rows as read hold those values (cheaper than reading
    # them back from the instances).
    rows = visit.state or (
        visit.values or (
            row(invoice), row(invoice.customer), row(invoice.customer.default_payment_method),
            row(invoice.default_payment_method), row(visit.settings), row(visit.branding),
        ),
        shown.rows(),
    )
    key = (
        visit.token, visit.language, page_status(invoice, visit.now),
        request.GET.get("attempt", ""), request.GET.get("saved") == "card",
        card_entry_available(), rows,
    )
    # The versions are one short text: the key as it is. The rows hold JSON (dicts):
    # their digest.
    key = key if visit.state else page_key(*key)
    page = rendered_pages.get(key)
    if page is None:
        nonces = {"saved": slot("saved"), "card": slot("card")}
        context = {
            **page_frame(visit, page_branding(visit.branding)),
            **page_content(request, visit, shown, nonces, {}),
            "csp_nonce": slot("csp"),
            "csrf_token": slot("csrf"),
        }
        page = SlottedPage.cut(render_to_string("hosted/page.html", context, request))
        if not settings.DEBUG:
            rendered_pages.put(key, page)
    return page


def page_content(request, visit: Visit, shown: Shown, nonces: dict, given: dict) -> dict:
    invoice = visit.invoice
    context = page_context(invoice, shown, now=visit.now, language=visit.language)
    context["expires_at"] = visit.expires_at
    context["pdf_url"] = visit.url("hosted:invoice_pdf")
    for payment in context["payments"]:
        payment["receipt_url"] = visit.url("hosted:receipt_pdf", payment["id"])
    context["result"] = shown_attempt(request, context["attempts"])
    context["method_saved"] = request.GET.get("saved") == "card"
    context.update(payment_forms(visit, context, given, nonces))
    return {**context, **given}


def shown_attempt(request, attempts: list[dict]) -> dict | None:
    """The attempt a pay form redirected to (?attempt=<id>), among this invoice's."""
    wanted = request.GET.get("attempt", "")
    return next((a for a in attempts if str(a["id"]) == wanted), None)


def payment_forms(visit: Visit, context: dict, given: dict, nonces: dict) -> dict:
    """Fresh forms (with the nonces given) unless a POST handed back one with errors."""
    invoice, cards = visit.invoice, card_entry_available()
    can_pay = context["payable"] and not context["in_flight"]
    initial = {"amount": invoice.amount_remaining}
    method = method_for(invoice)  # the invoice's own (a subscription's), else the customer's
    saved = method if method is not None and method.usable else None
    forms = {
        "saved_method": saved,
        "saved_form": PaymentConfirmationForm(
            initial={**initial, "nonce": nonces["saved"]}, invoice=invoice
        ) if can_pay and saved else None,
        "card_form": CardPaymentForm(
            initial={**initial, "nonce": nonces["card"]}, invoice=invoice, today=visit.today
        ) if can_pay and cards else None,
        "method_form": SimulatedCardForm(today=visit.today)
        if cards and invoice.status in (Invoice.Status.OPEN, Invoice.Status.UNCOLLECTIBLE)
        else None,
        "pay_url": visit.url("hosted:pay"),
        "method_url": visit.url("hosted:payment_method"),
    }
    shown = {name: given.get(name, form) for name, form in forms.items()}
    shown["test_cards"] = test_cards() if cards else []
    return shown


def test_cards() -> list[tuple[str, str]]:
    """The simulated gateway's main cards, to try the page (docs/gateways.md has all)."""
    picked = {
        "sim_4242": _("Succeeds"), "sim_9995": _("Declines: insufficient funds"),
        "sim_9979": _("Declines: stolen card (not retried)"),
        "sim_2222": _("Processing, then succeeds 2 days later"),
        "sim_3155": _("Asks for authentication"),
    }
    return [
        (" ".join(card.number[i:i + 4] for i in range(0, 16, 4)), label)
        for token, label in picked.items()
        if (card := CARDS_BY_TOKEN.get(token))
    ]


# --- paying -----------------------------------------------------------------------------


@invoice_page_csrf
@sensitive_post_parameters(*CARD_FIELDS)
@hosted_view(methods=["POST"])
def pay(request, visit: Visit):
    """Pay the amount due (POST, then redirect to the page showing the attempt). The same
    form sent twice returns its first attempt: never a second charge."""
    invoice = visit.invoice
    done = attempt_for_nonce(invoice, request.POST.get("nonce", ""))
    if done is not None:
        return redirect(attempt_url(visit, done))
    if rate_limit_hit(PAY_LIMITS, invoice_id=invoice.pk, client=client_address(request)):
        return rate_limited(request, visit)
    if not is_payable(invoice):
        return page_render(request, visit, status=409,
                           pay_error=_("This invoice has nothing left to pay."))
    with_saved = request.POST.get("with") == "saved"
    if with_saved:
        form = PaymentConfirmationForm(request.POST, invoice=invoice)
    elif card_entry_available():
        form = CardPaymentForm(request.POST, invoice=invoice, today=visit.today)
    else:
        return page_render(request, visit, status=400,
                           pay_error=_("Cards cannot be typed on this page."))
    if not form.is_valid():
        return page_render(request, visit, status=400,
                           **{"saved_form" if with_saved else "card_form": form})
    nonce = form.cleaned_data["nonce"]
    try:
        attempt = hosted_pay(
            invoice, nonce=nonce, now=visit.now, actor=CUSTOMER,
            card=None if with_saved else form.cleaned_data["number"],
        )
    except DomainError as error:
        # A double click whose first request wrote its attempt while this one waited
        # ("a payment is already in progress"): answer with that attempt.
        done = attempt_for_nonce(invoice, nonce)
        if done is not None:
            return redirect(attempt_url(visit, done))
        return page_render(request, visit, status=409, pay_error=error.message)
    return redirect(attempt_url(visit, attempt))


def attempt_url(visit: Visit, attempt) -> str:
    """The page showing how a payment went (GET: reloading it records nothing)."""
    return visit.url(attempt=attempt.pk) + "#payment"


@invoice_page_csrf
@sensitive_post_parameters(*CARD_FIELDS)
@hosted_view(methods=["POST"])
def payment_method(request, visit: Visit):
    """Save a card as the customer's payment method for the next invoices."""
    if not card_entry_available():
        return page_render(request, visit, status=400,
                           method_error=_("Cards cannot be typed on this page."))
    if rate_limit_hit(CARD_LIMITS, invoice_id=visit.invoice.pk, client=client_address(request)):
        return rate_limited(request, visit)
    form = SimulatedCardForm(request.POST, today=visit.today)
    if not form.is_valid():
        return page_render(request, visit, status=400, method_form=form)
    try:
        hosted_card_save(
            visit.invoice.customer, card=form.cleaned_data["number"],
            expiry=form.cleaned_data["expiry"], now=visit.now, actor=CUSTOMER,
        )
    except DomainError as error:
        return page_render(request, visit, status=409, method_error=error.message)
    return redirect(visit.url(saved="card") + "#payment")


# --- downloads --------------------------------------------------------------------------


@hosted_view(methods=["GET", "HEAD"])
def invoice_pdf(request, visit: Visit):
    return document_response(request, visit, "invoice", visit.invoice)


@hosted_view(methods=["GET", "HEAD"])
def receipt_pdf(request, visit: Visit, payment_id: int):
    """A receipt of this invoice's payments only: any other id is the not-found page."""
    payment = Payment.objects.filter(invoice=visit.invoice, pk=payment_id).first()
    if payment is None:
        return not_found(request)
    return document_response(request, visit, "receipt", payment)


def document_response(request, visit: Visit, kind: str, obj):
    """The stored PDF (rendered now if the workers have not yet), as a download."""
    try:
        document = document_ensure(kind, obj, now=visit.now)
    except DomainError as error:
        return render_page(request, visit, "hosted/unavailable.html",
                           {"message": error.message}, status=503)
    return FileResponse(
        document.file.open("rb"), as_attachment=True, filename=f"{document.number}.pdf",
        content_type="application/pdf",
    )


@require_GET
def branding_icon(request):
    """The seller's icon, public and cacheable (its URL changes with the file)."""
    return branding_file(request, Branding.load().icon)


@require_GET
def branding_logo(request):
    """The seller's logo, public and cacheable (its URL changes with the file)."""
    return branding_file(request, Branding.load().logo)


def branding_file(request, file):
    if not file:
        return no_invoice(request)
    response = FileResponse(file.open("rb"))
    response["Cache-Control"] = "public, max-age=604800, immutable"
    return response


# --- a fresh link, for an expired one --------------------------------------------------


@invoice_page_csrf
@sensitive_post_parameters("email")
@hosted_view(methods=["POST"], when_expired=True)
def link_request(request, visit: Visit):
    """Same answer whatever the address: the fresh link goes to the customer's own
    address when the typed one matches it, and nowhere otherwise."""
    form = LinkRequestForm(request.POST)
    if not form.is_valid():
        return expired(request, visit, form, status=400)
    client = client_address(request)
    if rate_limit_hit(LINK_LIMITS, invoice_id=visit.invoice.pk, client=client):
        return rate_limited(request, visit)
    hosted_link_request(
        visit.invoice, email=form.cleaned_data["email"], now=visit.now, actor=CUSTOMER
    )
    # The old link stops working when a new one is issued: the answer lives at a URL
    # without a token, so that even reloading it tells nothing.
    return redirect(f"{reverse('hosted:link_sent')}?{urlencode({'lang': visit.language})}")


@hosted_headers
@require_GET
def link_sent(request):
    language = language_chosen(request.GET.get("lang"), None)
    with translation.override(language):
        response = render(request, "hosted/link_sent.html", {"csp_nonce": request.csp_nonce})
    response.headers.setdefault("Content-Language", language)
    return response

