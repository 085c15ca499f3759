"""The invoices admin, one module per concept. Importing registers the screens."""

from .. import customer_admin  # noqa: E402,F401  (extends the customer page; after the rest)
from . import collection, invoice, payments, reference  # noqa: F401
