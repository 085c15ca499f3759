"""The customer changes an automation may make (metadata, segment): a conditional
UPDATE and its event, as staff edits leave theirs."""

from datetime import datetime

from django.db import transaction

from customers.actors import Actor
from customers.models import Customer
from invoices.events import event_record


def customer_metadata_set(customer: Customer, *, key: str, value: str, now: datetime,
                          actor: Actor) -> Customer:
    with transaction.atomic():
        locked = Customer.objects.select_for_update().get(pk=customer.pk)
        metadata = {**locked.metadata, key: value}
        Customer.objects.filter(pk=locked.pk).update(metadata=metadata)
        customer.metadata = metadata
        event_record("customer.updated", now=now, actor=actor, customer=customer,
                     data={"fields": ["metadata"], "key": key})
    return customer


def customer_segment_set(customer: Customer, *, segment: str, now: datetime,
                         actor: Actor) -> Customer:
    with transaction.atomic():
        previous = Customer.objects.filter(pk=customer.pk).values_list("segment", flat=True).first()
        Customer.objects.filter(pk=customer.pk).update(segment=segment)
        customer.segment = segment
        event_record("customer.updated", now=now, actor=actor, customer=customer,
                     data={"fields": ["segment"], "previous": previous, "segment": segment})
    return customer
