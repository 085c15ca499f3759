"""Load the demo data that `make run` shows: customers in several currencies, locales
and time zones, invoices in every status, credit notes, a customer balance credit and a
test clock. Everything goes through the domain functions, at fixed moments relative to
now, so the demo tells the same story as real use (events, numbers, ledger).

Idempotent: the demo customers' invoice prefixes start with DEMO; when one exists the
command does nothing. It runs in one transaction, so a failed run leaves nothing behind.
"""

import io
from datetime import timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.core.management.base import BaseCommand
from django.db import transaction
from django.db.models import Min
from PIL import Image, ImageDraw

from customers.actors import Actor
from customers.clock import system_now
from customers.ledger import balance_transaction_create
from customers.models import BalanceTransaction, Customer, TestClock
from customers.money import format_money
from customers.services import customer_create
from invoices.credit_notes import CreditLine, credit_note_create, credit_note_void
from invoices.models import Branding, CreditNote, Invoice, Payment, TaxRate
from invoices.services import (
    invoice_create,
    invoice_finalize,
    invoice_line_add,
    invoice_mark_uncollectible,
    invoice_record_payment,
    invoice_void,
)

DEMO_PREFIX = "DEMO"
ACTOR = Actor.system("demo data")
# What higher apps add to the demo (subscriptions...), registered in their ready():
# each is called as extension(now=, customers=) after the invoices' demo and returns a
# line for the summary.
DEMO_EXTENSIONS: list = []


def demo_extension_register(extension) -> None:
    if extension not in DEMO_EXTENSIONS:
        DEMO_EXTENSIONS.append(extension)

TAX_RATES = {
    "fr_standard": dict(display_name="TVA", percentage="20", inclusive=False, country="FR"),
    "fr_reduced": dict(display_name="TVA", percentage="5.5", inclusive=False, country="FR"),
    "de_standard": dict(display_name="MwSt", percentage="19", inclusive=True, country="DE"),
    "zero": dict(display_name="Zero-rated", percentage="0", inclusive=False, category="Z"),
}

CUSTOMERS = {
    "acme": dict(
        name="Acme Industries SARL", invoice_prefix="DEMOACME", email="compta@acme.example",
        currency="EUR", preferred_locale="fr", timezone="Europe/Paris", segment="enterprise",
        address_line1="12 rue de la Paix", postal_code="75002", city="Paris", country="FR",
        tax_ids=[{"type": "eu_vat", "value": "FR40303265045"}],
        metadata={"account_manager": "Claire", "plan": "enterprise"},
    ),
    "globex": dict(
        name="Globex Corporation", invoice_prefix="DEMOGLOBEX", email="ap@globex.example",
        currency="USD", preferred_locale="en", timezone="America/New_York", segment="smb",
        address_line1="100 Main Street", postal_code="10001", city="New York", state="NY",
        country="US", metadata={"plan": "growth"},
    ),
    "initech": dict(
        name="Initech Ltd", invoice_prefix="DEMOINITECH", email="accounts@initech.example",
        currency="GBP", preferred_locale="en", timezone="Europe/London", segment="smb",
        address_line1="1 Bishopsgate", postal_code="EC2N 3AR", city="London", country="GB",
        tax_ids=[{"type": "gb_vat", "value": "GB980780684"}], metadata={"plan": "growth"},
    ),
    "tanaka": dict(
        name="Tanaka Shoji KK", invoice_prefix="DEMOTANAKA", email="keiri@tanaka.example",
        currency="JPY", preferred_locale="en", timezone="Asia/Tokyo", segment="enterprise",
        city="Tokyo", country="JP", metadata={"plan": "enterprise", "po_required": "yes"},
    ),
    "padaria": dict(
        name="Padaria Pão Quente Ltda", invoice_prefix="DEMOPADARIA",
        email="financeiro@paoquente.example", currency="BRL", preferred_locale="pt-BR",
        timezone="America/Sao_Paulo", segment="smb", city="São Paulo", state="SP",
        country="BR", metadata={"plan": "starter"},
    ),
    "safat": dict(
        name="Al-Safat Trading Co.", invoice_prefix="DEMOSAFAT", email="finance@safat.example",
        currency="KWD", preferred_locale="en", timezone="Asia/Kuwait", segment="enterprise",
        city="Kuwait City", country="KW", metadata={"plan": "enterprise"},
    ),
    "muller": dict(
        name="Müller Maschinenbau GmbH", invoice_prefix="DEMOMULLER",
        email="buchhaltung@mueller.example", currency="EUR", preferred_locale="en",
        timezone="Europe/Berlin", segment="enterprise", city="Stuttgart", country="DE",
        tax_ids=[{"type": "eu_vat", "value": "DE136695976"}], metadata={"plan": "enterprise"},
    ),
}
# Attached to a test clock, which only exists once the command runs.
# The seller printed on documents (valid SIREN, SIRET and VAT number, made up).
BRANDING = dict(
    company_name="Demo Billing SAS", address_line1="8 rue du Faubourg Montmartre",
    postal_code="75009", city="Paris", country="FR", vat_number="FR44732829320",
    siren="732829320", siret="73282932000017", accent_colour="#1F4E79",
    support_email="billing@demo.example",
    # The late-payment terms are printed by the product, in each customer's language.
    invoice_footer="Demo Billing SAS, capital 10 000 EUR, RCS Paris 732 829 320.",
)

REHEARSAL = dict(
    name="Boulangerie Rehearsal (test clock)", invoice_prefix="DEMOCLOCK",
    email="test@boulangerie.example", currency="EUR", preferred_locale="fr",
    timezone="Europe/Paris", segment="trial", city="Lyon", country="FR",
    metadata={"purpose": "rehearse collection on a test clock"},
)


class Command(BaseCommand):
    help = "Load demo customers, invoices in every status and credit notes (once)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--admin-password",
            help="Also make sure a superuser 'admin' exists, created with this password.",
        )

    def handle(self, *args, admin_password=None, **options):
        if admin_password:
            self.stdout.write(admin_ensure(admin_password))
        if Customer.objects.filter(invoice_prefix__startswith=DEMO_PREFIX).exists():
            self.stdout.write("Demo data already loaded: nothing to do.")
            return
        now = system_now()
        with transaction.atomic():
            customers = demo_load(now=now)
            extra = [extension(now=now, customers=customers) for extension in DEMO_EXTENSIONS]
            # Last: the extensions (subscriptions) bill some customers months back.
            customers_dated(customers.values())
        self.stdout.write("\n".join([demo_summary(), *extra]))


def admin_ensure(password: str) -> str:
    users = get_user_model().objects
    if users.filter(username="admin").exists():
        return "Demo admin user 'admin' already exists (password unchanged)."
    users.create_superuser("admin", "admin@example.com", password)
    return "Created the demo superuser 'admin'."


def branding_demo() -> None:
    """Fill the branding, logo and icon included, unless staff already did."""
    branding = Branding.load()
    if not branding.company_name:
        Branding.objects.filter(pk=branding.pk).update(**BRANDING)
        branding.refresh_from_db()
        branding.logo.save("demo-logo.png", ContentFile(demo_mark(320, 96)), save=False)
        branding.icon.save("demo-icon.png", ContentFile(demo_mark(128, 128)), save=False)
        branding.save(update_fields=["logo", "icon"])


def demo_mark(width: int, height: int) -> bytes:
    """A plain brand mark in the demo's accent colour (PNG), drawn here: no asset to ship."""
    image = Image.new("RGB", (width, height), BRANDING["accent_colour"])
    draw = ImageDraw.Draw(image)
    side = min(width, height)
    pad = side // 5
    draw.rectangle([pad, pad, side - pad, side - pad], outline="white", width=max(2, side // 16))
    stroke = max(2, side // 16)
    draw.line([pad * 2, side // 2, side - pad * 2, side // 2], fill="white", width=stroke)
    if width > height:
        draw.text((side + pad // 2, height // 2 - 6), "Demo Billing", fill="white")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def demo_load(*, now) -> dict[str, Customer]:
    branding_demo()
    rates = {key: tax_rate_get(**fields) for key, fields in TAX_RATES.items()}
    clock = TestClock.objects.create(name="Demo rehearsal", frozen_time=now)
    customers = {key: customer_create(**fields) for key, fields in CUSTOMERS.items()}
    customers["rehearsal"] = customer_create(**REHEARSAL, test_clock=clock)
    ago = lambda **delta: now - timedelta(**delta)  # noqa: E731  fixed moments before now

    acme = customers["acme"]
    # Paid, with two French VAT rates and a 10% invoice discount; then a post-payment
    # credit note split between a refund and a credit to the customer's balance.
    paid = invoice_build(
        acme, now=ago(days=40), discount_percent=Decimal(10),
        lines=[
            ("Annual platform licence", 1, 1_200_00, [rates["fr_standard"]]),
            ("Training books", 4, 35_00, [rates["fr_reduced"]]),
        ],
    )
    invoice_finalize(paid, now=ago(days=40), actor=ACTOR)
    invoice_record_payment(
        paid, amount=paid.amount_remaining, method=Payment.Method.BANK_TRANSFER,
        now=ago(days=30), actor=ACTOR, reference="VIR-2231",
    )
    credit_note_create(
        paid, lines=[CreditLine(amount=120_00, description="Unused seats")],
        reason=CreditNote.Reason.ORDER_CHANGE, refund_amount=70_00, credit_amount=50_00,
        now=ago(days=20), actor=ACTOR,
    )
    # Open, with a pre-payment credit note, and a second one that was voided.
    open_invoice = invoice_build(
        acme, now=ago(days=5), lines=[("Consulting days", 3, 800_00, [rates["fr_standard"]])]
    )
    invoice_finalize(open_invoice, now=ago(days=5), actor=ACTOR)
    credit_note_create(
        open_invoice, lines=[CreditLine(amount=240_00, description="Half day not delivered")],
        reason=CreditNote.Reason.PRODUCT_UNSATISFACTORY, now=ago(days=4), actor=ACTOR,
    )
    mistaken = credit_note_create(
        open_invoice, lines=[CreditLine(amount=100_00, description="Entered by mistake")],
        reason=CreditNote.Reason.DUPLICATE, now=ago(days=3), actor=ACTOR,
    )
    credit_note_void(mistaken, now=ago(days=3, hours=-1), actor=ACTOR)
    # A draft that staff still edit (no automatic finalization).
    invoice_build(
        acme, now=ago(hours=3), auto_advance=False,
        lines=[("Support plan, next quarter", 1, 2_400_00, [rates["fr_standard"]])],
    )

    globex = customers["globex"]
    # Partially paid, with a per-line amount discount.
    partial = invoice_build(
        globex, now=ago(days=10), lines=[("Implementation", 1, 5_000_00, [])],
        line_discount=250_00,
    )
    invoice_finalize(partial, now=ago(days=10), actor=ACTOR)
    invoice_record_payment(
        partial, amount=2_000_00, method=Payment.Method.CHEQUE, now=ago(days=2), actor=ACTOR,
        reference="CHK 1042",
    )
    # A draft with automatic collection, due for finalization already: the beat sweep
    # finalizes it within a minute of `make run` starting.
    invoice_build(globex, now=ago(hours=2), lines=[("Usage, last month", 1_250, 12, [])])

    initech = customers["initech"]
    # Open and past due: finalized 45 days ago on 30-day terms.
    past_due = invoice_build(
        initech, now=ago(days=45), days_until_due=30,
        lines=[("Hosting, quarterly", 1, 900_00, [rates["zero"]])],
    )
    invoice_finalize(past_due, now=ago(days=45), actor=ACTOR)

    tanaka = customers["tanaka"]
    # Void (JPY has no minor unit: amounts are whole yen).
    voided = invoice_build(tanaka, now=ago(days=15), lines=[("Localisation", 1, 480_000, [])])
    invoice_finalize(voided, now=ago(days=15), actor=ACTOR)
    invoice_void(voided, now=ago(days=14), actor=ACTOR)
    invoice_finalize(
        invoice_build(tanaka, now=ago(days=7), lines=[("Localisation (reissued)", 1, 450_000, [])]),
        now=ago(days=7), actor=ACTOR,
    )

    padaria = customers["padaria"]
    # Uncollectible after months past due.
    lost = invoice_build(
        padaria, now=ago(days=120), days_until_due=15,
        lines=[("Sistema de caixa", 2, 349_90, [])],
    )
    invoice_finalize(lost, now=ago(days=120), actor=ACTOR)
    invoice_mark_uncollectible(lost, now=ago(days=30), actor=ACTOR)

    safat = customers["safat"]
    # Paid in full (KWD has three decimals).
    kwd = invoice_build(safat, now=ago(days=25), lines=[("Advisory retainer", 1, 1_250_500, [])])
    invoice_finalize(kwd, now=ago(days=25), actor=ACTOR)
    invoice_record_payment(
        kwd, amount=kwd.amount_remaining, method=Payment.Method.BANK_TRANSFER,
        now=ago(days=20), actor=ACTOR,
    )

    muller = customers["muller"]
    # A goodwill credit on the balance, applied when the next invoice is finalized.
    balance_transaction_create(
        customer=muller, amount=-150_00, type=BalanceTransaction.Type.ADJUSTMENT,
        now=ago(days=9), actor=ACTOR, description="Goodwill credit for a late delivery",
    )
    with_credit = invoice_build(
        muller, now=ago(days=8),
        lines=[("Wartungsvertrag (MwSt inklusive)", 1, 1_190_00, [rates["de_standard"]])],
    )
    invoice_finalize(with_credit, now=ago(days=8), actor=ACTOR)

    # A customer on a test clock: its draft finalizes when staff advance the clock.
    invoice_build(
        customers["rehearsal"], now=clock.frozen_time,
        lines=[("Pain de campagne, abonnement", 30, 4_50, [rates["fr_reduced"]])],
    )
    return customers


def customers_dated(customers) -> None:
    """Each demo customer dates from its first invoice or balance entry, not from the
    moment the command ran (a customer is not younger than its invoices)."""
    for customer in customers:
        firsts = [
            Invoice.objects.filter(customer=customer).aggregate(first=Min("created_at"))["first"],
            BalanceTransaction.objects.filter(customer=customer)
            .aggregate(first=Min("created_at"))["first"],
        ]
        first = min(filter(None, firsts), default=None)
        if first is not None and first < customer.created_at:
            Customer.objects.filter(pk=customer.pk).update(created_at=first)


def tax_rate_get(**fields) -> TaxRate:
    fields["percentage"] = Decimal(fields["percentage"])
    rate = TaxRate.objects.filter(**fields).first()
    if rate is None:
        rate = TaxRate(**fields)
        rate.full_clean()
        rate.save()
    return rate


def invoice_build(customer, *, now, lines, line_discount=0, **fields) -> Invoice:
    invoice = invoice_create(customer=customer, now=now, actor=ACTOR, **fields)
    for description, quantity, unit_amount, rates in lines:
        invoice_line_add(
            invoice, description=description, quantity=quantity, unit_amount=unit_amount,
            tax_rates=rates, discount_amount=line_discount,
        )
    return invoice


def demo_summary() -> str:
    demo = Invoice.objects.filter(customer__invoice_prefix__startswith=DEMO_PREFIX)
    statuses = ", ".join(
        f"{status} {demo.filter(status=status).count()}" for status in Invoice.Status.values
    )
    open_invoices = demo.filter(status=Invoice.Status.OPEN)
    past_due = open_invoices.filter(due_date__lt=system_now().date()).count()
    partial = open_invoices.filter(amount_paid__gt=0).count()
    notes = CreditNote.objects.filter(invoice__in=demo)
    voided_notes = notes.filter(status=CreditNote.Status.VOID).count()
    customers = Customer.objects.filter(invoice_prefix__startswith=DEMO_PREFIX).count()
    credited = Invoice.objects.filter(customer__invoice_prefix="DEMOMULLER").first()
    credit = format_money(-credited.starting_balance, credited.currency)
    return "\n".join([
        f"Loaded demo data: {customers} customers (EUR, USD, GBP, JPY, BRL, KWD; "
        "en, fr, pt-BR), one on a test clock.",
        f"Invoices: {statuses} (open: {past_due} past due, {partial} partially paid).",
        f"Credit notes: {notes.count()} ({voided_notes} void).",
        f"Balance credit applied at finalization: {credit} on {credited.number}.",
    ])
