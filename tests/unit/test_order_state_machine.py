"""The pure order state machine: every (from, to) pair, with and without cash on delivery."""

from __future__ import annotations

import itertools

import pytest

from oms.orders import domain
from oms.orders.domain import OrderStatus as S
from oms.shared.roles import Role

EXPECTED_CARD = {
    (S.PLACED, S.PAID),
    (S.PLACED, S.CANCELLED),
    (S.PAID, S.PICKED),
    (S.PAID, S.CANCELLED),
    (S.PICKED, S.PACKED),
    (S.PICKED, S.CANCELLED),
    (S.PACKED, S.SHIPPED),
    (S.PACKED, S.CANCELLED),
    (S.SHIPPED, S.DELIVERED),
    (S.DELIVERED, S.RETURNED),
}
EXPECTED_COD = EXPECTED_CARD | {(S.PLACED, S.PICKED)}


@pytest.mark.parametrize(("source", "target"), list(itertools.product(S, S)))
@pytest.mark.parametrize("cod", [False, True])
def test_every_pair(source: S, target: S, cod: bool) -> None:
    expected = EXPECTED_COD if cod else EXPECTED_CARD
    kwargs = {"carrier": "DHL", "tracking_number": "1"}
    if (source, target) in expected:
        edge = domain.transition(source, target, cash_on_delivery=cod, role=Role.ADMIN, **kwargs)
        assert (edge.source, edge.target) == (source, target)
    else:
        with pytest.raises(domain.IllegalTransition) as info:
            domain.transition(source, target, cash_on_delivery=cod, role=Role.ADMIN, **kwargs)
        assert info.value.current == source
        assert info.value.allowed == domain.allowed_next(source, cash_on_delivery=cod)
        assert set(info.value.allowed) == {t for (f, t) in expected if f == source}


def test_terminal_states() -> None:
    assert domain.TERMINAL == {S.RETURNED, S.CANCELLED}
    for status in domain.TERMINAL:
        assert domain.allowed_next(status, cash_on_delivery=True) == []


def test_cancel_is_possible_until_shipped() -> None:
    cancellable = {f for (f, t) in EXPECTED_CARD if t == S.CANCELLED}
    assert cancellable == {S.PLACED, S.PAID, S.PICKED, S.PACKED}


@pytest.mark.parametrize(
    ("carrier", "tracking"), [(None, None), ("DHL", None), (None, "1"), ("  ", "1"), ("DHL", " ")]
)
def test_shipping_needs_carrier_and_tracking(carrier: str | None, tracking: str | None) -> None:
    with pytest.raises(domain.MissingShippingDetails):
        domain.transition(
            S.PACKED,
            S.SHIPPED,
            cash_on_delivery=False,
            role=Role.FULFILLMENT,
            carrier=carrier,
            tracking_number=tracking,
        )


@pytest.mark.parametrize(
    ("target", "role", "allowed"),
    [
        (S.PAID, Role.FULFILLMENT, False),
        (S.PAID, Role.STOREFRONT, False),
        (S.CANCELLED, Role.STOREFRONT, True),
        (S.CANCELLED, Role.FULFILLMENT, False),
        (S.CANCELLED, Role.CONNECTOR, False),
    ],
)
def test_roles_per_transition(target: S, role: Role, allowed: bool) -> None:
    if allowed:
        domain.transition(S.PLACED, target, cash_on_delivery=False, role=role)
    else:
        with pytest.raises(domain.RoleNotAllowed):
            domain.transition(S.PLACED, target, cash_on_delivery=False, role=role)


@pytest.mark.parametrize(
    ("subtotal", "bps", "tax"),
    [
        (3998, 1900, 760),
        (850, 700, 60),
        (1, 5000, 1),
        (1, 4999, 0),
        (0, 2000, 0),
        (10**12, 10_000, 10**12),
    ],
)
def test_line_tax_rounds_half_up_in_integers(subtotal: int, bps: int, tax: int) -> None:
    assert domain.line_tax(subtotal, bps) == tax


def test_order_totals() -> None:
    lines = [domain.line_amounts(2, 1999, 1900), domain.line_amounts(1, 850, 700)]
    assert domain.order_totals(lines, 495) == domain.OrderTotals(4848, 820, 495, 6163)


def test_the_event_registry_refuses_unknown_types_and_payloads_that_differ() -> None:
    from oms.shared.events import EVENTS, ORDER_FIELDS, InvalidEvent, check

    summary = dict.fromkeys(ORDER_FIELDS)
    assert check("order.paid", {**summary, "previous_status": "placed"})
    assert check(
        "order.shipped",
        {**summary, "previous_status": "packed", "carrier": "DHL", "tracking_number": "1"},
    )
    with pytest.raises(InvalidEvent, match="not in"):
        check("order.teleported", summary)
    with pytest.raises(InvalidEvent, match="missing"):
        check("order.paid", summary)
    with pytest.raises(InvalidEvent, match="unexpected"):
        check("order.paid", {**summary, "previous_status": "placed", "colour": "red"})
    assert all(spec.description and spec.fields for spec in EVENTS.values())
