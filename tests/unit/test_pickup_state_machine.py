"""The click-and-collect edges of the pure order state machine (#19), and pickup shipments'
own steps: pending → picked → ready_for_pickup → collected, no packing, no carrier."""

from __future__ import annotations

import itertools

import pytest

from oms.orders import domain
from oms.orders.domain import OrderStatus as S
from oms.orders.domain import ShipmentStatus as Sh
from oms.shared.roles import Role

PICKUP_CARD = {
    (S.PLACED, S.PAID),
    (S.PLACED, S.CANCELLED),
    (S.PAID, S.PICKED),
    (S.PAID, S.CANCELLED),
    (S.PICKED, S.CANCELLED),
    (S.PICKED, S.READY_FOR_PICKUP),
    (S.READY_FOR_PICKUP, S.DELIVERED),
    (S.READY_FOR_PICKUP, S.CANCELLED),
    (S.PACKED, S.SHIPPED),  # (unreachable: a pickup order is never packed)
    (S.PACKED, S.CANCELLED),
    (S.SHIPPED, S.DELIVERED),
    (S.DELIVERED, S.RETURNED),
}


@pytest.mark.parametrize(("source", "target"), list(itertools.product(S, S)))
def test_every_pair_of_a_pickup_order(source: S, target: S) -> None:
    if (source, target) in PICKUP_CARD:
        edge = domain.transition(
            source,
            target,
            cash_on_delivery=False,
            role=Role.ADMIN,
            pickup=True,
            carrier="DHL",
            tracking_number="1",
        )
        assert (edge.source, edge.target) == (source, target)
    else:
        with pytest.raises(domain.IllegalTransition) as info:
            domain.transition(
                source,
                target,
                cash_on_delivery=False,
                role=Role.ADMIN,
                pickup=True,
                carrier="DHL",
                tracking_number="1",
            )
        assert set(info.value.allowed) == {t for (f, t) in PICKUP_CARD if f == source}


def test_a_shipping_order_never_waits_for_pickup() -> None:
    for source in S:
        assert S.READY_FOR_PICKUP not in domain.allowed_next(source, cash_on_delivery=True)
    assert domain.allowed_next(S.PICKED, cash_on_delivery=False) == [S.PACKED, S.CANCELLED]


def test_collecting_needs_no_carrier_and_storefront_may_not_collect() -> None:
    domain.transition(
        S.READY_FOR_PICKUP, S.DELIVERED, cash_on_delivery=False, role=Role.FULFILLMENT, pickup=True
    )
    with pytest.raises(domain.RoleNotAllowed):
        domain.transition(
            S.READY_FOR_PICKUP,
            S.DELIVERED,
            cash_on_delivery=False,
            role=Role.STOREFRONT,
            pickup=True,
        )


def test_pickup_shipment_steps() -> None:
    flow = [Sh.PENDING, Sh.PICKED, Sh.READY_FOR_PICKUP, Sh.COLLECTED]
    for a, b in itertools.product(Sh, Sh):
        ok = a in flow and b in flow and flow.index(b) == flow.index(a) + 1
        if ok:
            domain.next_shipment_status(a, b, pickup=True)
        else:
            with pytest.raises(domain.IllegalShipmentTransition):
                domain.next_shipment_status(a, b, pickup=True)
    with pytest.raises(domain.IllegalShipmentTransition) as info:
        domain.next_shipment_status(Sh.PICKED, Sh.PACKED, pickup=True)
    assert info.value.allowed == [Sh.READY_FOR_PICKUP]
    with pytest.raises(domain.IllegalShipmentTransition):
        domain.next_shipment_status(Sh.PICKED, Sh.READY_FOR_PICKUP)  # a shipping order


def test_order_follows_its_pickup_shipments() -> None:
    reached = domain.order_status_reached
    assert reached([Sh.READY_FOR_PICKUP, Sh.PICKED]) is S.PICKED
    assert reached([Sh.READY_FOR_PICKUP, Sh.READY_FOR_PICKUP]) is S.READY_FOR_PICKUP
    assert reached([Sh.COLLECTED, Sh.READY_FOR_PICKUP]) is S.READY_FOR_PICKUP
    assert reached([Sh.COLLECTED, Sh.CANCELLED]) is S.DELIVERED
    # collected counts as delivered: an order with a collected shipment cannot be cancelled
    assert domain.shipment_rank(Sh.COLLECTED) == domain.shipment_rank(Sh.DELIVERED)
