"""The admin's forms for the subscription buttons: they only collect input; the domain
functions decide (and refuse with a DomainError, shown on the form)."""

from django import forms
from django.utils.translation import gettext_lazy as _

from customers.models import Customer
from invoices.models import Invoice

from .models import Price, Subscription

WHEN = [("now", _("Now")), ("period_end", _("At the end of the current period"))]
PRORATION = [
    ("create_prorations", _("Prorate on the next invoice")),
    ("always_invoice", _("Prorate and invoice now")),
    ("none", _("No proration")),
]


class CancelForm(forms.Form):
    when = forms.ChoiceField(label=_("Cancel"), choices=WHEN, initial="period_end",
                             widget=forms.RadioSelect)
    prorate = forms.BooleanField(
        label=_("Credit the unused time to the customer's balance"), required=False,
        help_text=_("Only when canceling now."),
    )
    reason = forms.ChoiceField(label=_("Reason"),
                               choices=Subscription.CancellationReason.choices)
    feedback = forms.ChoiceField(label=_("Customer feedback"), required=False,
                                 choices=[("", "—"), *Subscription.Feedback.choices])
    comment = forms.CharField(label=_("Comment"), required=False, max_length=2000,
                              widget=forms.Textarea(attrs={"rows": 3}))


class PauseForm(forms.Form):
    behavior = forms.ChoiceField(label=_("While paused, invoices are"),
                                 choices=Subscription.PauseBehavior.choices,
                                 widget=forms.RadioSelect, initial="keep_as_draft")
    resumes_at = forms.DateTimeField(
        label=_("Resume automatically at"), required=False,
        help_text=_("UTC, e.g. 2027-01-31 09:00. Empty: resume by hand."),
    )


class ChangeForm(forms.Form):
    """Replace one item's price and/or quantity."""

    item = forms.ModelChoiceField(label=_("Item"), queryset=None, empty_label=None)
    price = forms.ModelChoiceField(label=_("New price"), queryset=None, empty_label=None)
    quantity = forms.IntegerField(label=_("New quantity"), min_value=1)
    proration_behavior = forms.ChoiceField(label=_("Proration"), choices=PRORATION,
                                           initial="create_prorations")

    def __init__(self, *args, subscription: Subscription, **kwargs):
        super().__init__(*args, **kwargs)
        items = subscription.items.select_related("price__product")
        current = [item.price_id for item in items]
        self.fields["item"].queryset = items
        self.fields["price"].queryset = (
            Price.objects.filter(currency=subscription.currency, type=Price.Type.RECURRING)
            .filter(models_active_or(current)).select_related("product")
        )

    def items(self, subscription) -> list[tuple[Price, int]]:
        """The subscription's items after the change."""
        data = self.cleaned_data
        result = []
        for item in subscription.items.select_related("price__product"):
            if item.pk == data["item"].pk:
                result.append((data["price"], data["quantity"]))
            else:
                result.append((item.price, item.quantity))
        return result


def models_active_or(price_ids):
    from django.db.models import Q

    return Q(active=True, product__active=True) | Q(pk__in=price_ids)


class SubscriptionCreateForm(forms.Form):
    customer = forms.ModelChoiceField(label=_("Customer"), queryset=Customer.objects.all(),
                                      widget=forms.NumberInput,
                                      help_text=_("The customer's id (from the customer page)."))
    price = forms.ModelChoiceField(
        label=_("Price"), queryset=Price.objects.filter(type=Price.Type.RECURRING)
        .select_related("product"), empty_label=None,
    )
    quantity = forms.IntegerField(label=_("Quantity"), initial=1)
    trial_period_days = forms.IntegerField(label=_("Trial days"), required=False)
    collection_method = forms.ChoiceField(label=_("Collection method"),
                                          choices=Invoice.CollectionMethod.choices)
    days_until_due = forms.IntegerField(label=_("Days until due"), required=False,
                                        min_value=0, max_value=365)
