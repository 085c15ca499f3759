"""The simulated gateway's own ledger of charges.

It lives in the database (not in memory) so that idempotency and `retrieve` survive a
crashed worker, exactly as a real gateway's records would. Imported by invoices.models
so that Django sees it in the invoices app.
"""

from django.db import models
from django.utils.translation import gettext_lazy as _


class SimulatedCharge(models.Model):
    class Status(models.TextChoices):
        SUCCEEDED = "succeeded", _("Succeeded")
        PROCESSING = "processing", _("Processing")
        REQUIRES_ACTION = "requires_action", _("Requires action")
        FAILED = "failed", _("Failed")

    idempotency_key = models.CharField(_("idempotency key"), max_length=255, unique=True)
    # The test card's token (e.g. sim_4242); card numbers are never stored.
    card_token = models.CharField(_("card token"), max_length=32)
    customer_reference = models.CharField(_("customer reference"), max_length=255, blank=True)
    amount = models.BigIntegerField(_("amount (minor units)"))
    currency = models.CharField(_("currency"), max_length=3)
    status = models.CharField(_("status"), max_length=16, choices=Status.choices)
    decline_code = models.CharField(_("decline code"), max_length=64, blank=True)
    created_at = models.DateTimeField(_("created at"))
    # When a processing charge settles (its final status is decided by the card).
    settles_at = models.DateTimeField(_("settles at"), null=True, blank=True)

    class Meta:
        app_label = "invoices"
        verbose_name = _("simulated charge")
        verbose_name_plural = _("simulated charges")
        ordering = ["created_at", "id"]
        indexes = [
            # The card's history for one customer: "recovers after N days" cards.
            models.Index(
                fields=["card_token", "customer_reference", "created_at"],
                name="simcharge_history_idx",
            ),
        ]

    def __str__(self):
        return f"{self.reference} {self.status}"

    @property
    def reference(self) -> str:
        return f"simch_{self.pk}"
