"""What customers get as files: branding, the invoice, credit note and receipt PDFs
(invoices as Factur-X), rendered once by a worker and served from storage afterwards.

models.py (Branding, Document), services.py (the API others call), render.py (HTML to
PDF with WeasyPrint), facturx.py (the EN 16931 XML and its embedding), tasks.py.
"""
