"""Pure pieces: money to minor units, exact discount splitting, event-type patterns, the retry
classification and backoff. (The directory's autouse stock fixture still runs; it is cheap.)"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oms.webhooks.events import matches, validate_pattern
from oms.webhooks.inbound.adapters.base import InvalidPayload, payment_method, split_line
from oms.webhooks.inbound.money import AmountError, to_minor
from oms.webhooks.outbound.sender import _retry_after, backoff_s, classify, encode


@pytest.mark.parametrize(
    ("value", "currency", "minor"),
    [
        ("19.99", "EUR", 1999),
        (Decimal("19.99"), "USD", 1999),
        ("0.1", "EUR", 10),
        (3, "USD", 300),
        ("1000", "JPY", 1000),
        ("1.234", "KWD", 1234),
        ("19.990000", "EUR", 1999),
        ("199.00", "usd", 19900),
    ],
)
def test_to_minor(value: object, currency: str, minor: int) -> None:
    assert to_minor(value, currency) == minor


@pytest.mark.parametrize("value", ["19.999", "1.5 ", "abc", None, True, "NaN", "Infinity"])
def test_to_minor_rejects(value: object) -> None:
    currency = "JPY" if value == "1.5 " else "EUR"
    with pytest.raises(AmountError):
        to_minor(value, currency)


@given(
    quantity=st.integers(min_value=1, max_value=1000),
    unit=st.integers(min_value=0, max_value=10**7),
    data=st.data(),
)
def test_split_line_keeps_every_cent(quantity: int, unit: int, data: st.DataObject) -> None:
    discount = data.draw(st.integers(min_value=0, max_value=quantity * unit))
    net = quantity * unit - discount
    lines = split_line(sku="S", name=None, quantity=quantity, net_total=net, tax_rate_bps=0)
    assert sum(ln["quantity"] * ln["unit_price"] for ln in lines) == net
    assert sum(ln["quantity"] for ln in lines) == quantity
    assert len(lines) <= 2
    prices = [ln["unit_price"] for ln in lines]
    assert max(prices) - min(prices) <= 1


def test_split_line_example_and_errors() -> None:
    lines = split_line(sku="S", name="n", quantity=3, net_total=3 * 19900 - 500, tax_rate_bps=0)
    assert [(ln["quantity"], ln["unit_price"]) for ln in lines] == [(2, 19733), (1, 19734)]
    with pytest.raises(InvalidPayload):
        split_line(sku="S", name=None, quantity=1, net_total=-1, tax_rate_bps=0)


def test_payment_method_mapping() -> None:
    assert payment_method(["Cash on Delivery (COD)"]) == "cash_on_delivery"
    assert payment_method(["cod"]) == "cash_on_delivery"
    assert payment_method(["bacs"]) == "bank_transfer"
    assert payment_method(["ppcp-gateway"]) == "paypal"
    assert payment_method(["shopify_payments"]) == "card"
    assert payment_method(["visa", "bogus"]) == "card"
    assert payment_method(["gift_card"]) == "gift_card"
    assert payment_method(["something new"]) == "other"
    assert payment_method([]) == "other"


def test_event_patterns() -> None:
    for ok in ("order.shipped", "order.*", "shipment.*", "*", "inventory.low_stock"):
        assert validate_pattern(ok) == ok
    for bad in ("order.exploded", "nope.*", "order", "ORDER.*", "order.**", ""):
        with pytest.raises(ValueError, match="."):
            validate_pattern(bad)
    assert matches(["order.*"], "order.paid")
    assert not matches(["order.*"], "orders.paid")
    assert matches(["shipment.*"], "shipment.returned_to_sender")  # new types in a family
    assert matches(["*"], "anything.at_all")
    assert not matches(["order.paid"], "order.placed")


def test_retry_classification_and_backoff() -> None:
    assert classify(200) == (True, False)
    assert classify(204) == (True, False)
    for status in (408, 429, 500, 502, 503, 504):
        assert classify(status) == (False, True), status
    for status in (301, 302, 400, 401, 403, 404, 410, 422):
        assert classify(status) == (False, False), status
    rng = random.Random(7)
    for attempt in range(1, 30):
        delay = backoff_s(attempt, base=5, cap=3600, rng=rng)
        assert 0 <= delay <= min(3600, 5 * 2 ** (attempt - 1))
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert _retry_after("120", now) == 120
    later = (now + timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert _retry_after(later, now) == 30
    assert _retry_after("soon", now) is None


def test_encode_puts_the_envelope_first() -> None:
    body = encode({"data": {"b": 1}, "type": "order.paid", "occurred_at": "t", "id": "e"})
    assert body == b'{"id":"e","type":"order.paid","occurred_at":"t","data":{"b":1}}'
