"""Products, prices and subscriptions built through the domain functions."""

from subscriptions.services import price_create, product_create, subscription_create

from .factories import NOW, STAFF, add_card, make_customer


def make_price(amount=1000, currency="EUR", interval="month", count=1, name="Pro", **fields):
    product = fields.pop("product", None) or product_create(name=name, now=NOW, actor=STAFF)
    return price_create(
        product=product, currency=currency, unit_amount=amount, interval=interval,
        interval_count=count, now=NOW, actor=STAFF, **fields,
    )


def make_subscription(price=None, quantity=1, customer=None, now=NOW, token="sim_4242",
                      **fields):
    price = price or make_price()
    if customer is None:
        customer = make_customer(currency=price.currency)
        if token:
            add_card(customer, token, now=now)
    return subscription_create(
        customer=customer, items=[(price, quantity)], now=now, actor=STAFF, **fields
    )
