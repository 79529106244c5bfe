"""The order state machine: pure data and functions, no I/O.

The transition table below is the only authority on which status may follow which; the API,
the docs (GET /v1/order-state-machine) and the README diagram are all generated from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from oms.shared.roles import Role


class OrderStatus(StrEnum):
    PLACED = "placed"
    PAID = "paid"
    PICKED = "picked"
    PACKED = "packed"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    RETURNED = "returned"
    CANCELLED = "cancelled"
    READY_FOR_PICKUP = "ready_for_pickup"  # click and collect: waiting at the store (#19)


class PaymentMethod(StrEnum):
    CARD = "card"
    PAYPAL = "paypal"
    BANK_TRANSFER = "bank_transfer"
    CASH_ON_DELIVERY = "cash_on_delivery"
    GIFT_CARD = "gift_card"
    INVOICE = "invoice"
    OTHER = "other"


class Priority(StrEnum):
    STANDARD = "standard"
    EXPRESS = "express"


class Condition(StrEnum):
    """Extra facts a transition needs besides the current status."""

    CASH_ON_DELIVERY = "cash_on_delivery"  # only for cash-on-delivery orders
    CARRIER_AND_TRACKING = "carrier_and_tracking"  # a carrier and tracking number are given
    PICKUP = "pickup"  # only for click-and-collect orders (collected at the store, #19)
    SHIPPING = "shipping"  # only for orders that ship (not click and collect)
    COUNTER_SALE = "counter_sale"  # only for a sale at a store's till (handed over at once)


@dataclass(frozen=True, slots=True)
class Transition:
    source: OrderStatus
    target: OrderStatus
    roles: frozenset[Role]
    conditions: frozenset[Condition] = frozenset()


S = OrderStatus
_ADMIN = frozenset({Role.ADMIN})
_FULFIL = frozenset({Role.ADMIN, Role.FULFILLMENT})
_CANCEL = frozenset({Role.ADMIN, Role.STOREFRONT})

TRANSITIONS: tuple[Transition, ...] = (
    Transition(S.PLACED, S.PAID, _ADMIN),
    Transition(S.PLACED, S.PICKED, _FULFIL, frozenset({Condition.CASH_ON_DELIVERY})),
    Transition(S.PLACED, S.CANCELLED, _CANCEL),
    Transition(S.PAID, S.PICKED, _FULFIL),
    Transition(S.PAID, S.CANCELLED, _CANCEL),
    Transition(S.PICKED, S.PACKED, _FULFIL, frozenset({Condition.SHIPPING})),
    Transition(S.PICKED, S.CANCELLED, _CANCEL),
    Transition(S.PACKED, S.SHIPPED, _FULFIL, frozenset({Condition.CARRIER_AND_TRACKING})),
    Transition(S.PACKED, S.CANCELLED, _CANCEL),
    Transition(S.SHIPPED, S.DELIVERED, _FULFIL),
    Transition(S.DELIVERED, S.RETURNED, _ADMIN),
    # click and collect (#19): ready at the store, then collected (delivered) or not
    Transition(S.PICKED, S.READY_FOR_PICKUP, _FULFIL, frozenset({Condition.PICKUP})),
    Transition(S.READY_FOR_PICKUP, S.DELIVERED, _FULFIL, frozenset({Condition.PICKUP})),
    Transition(S.READY_FOR_PICKUP, S.CANCELLED, _CANCEL, frozenset({Condition.PICKUP})),
    # a till sale (#19): paid and handed over at the counter in one go
    Transition(S.PAID, S.DELIVERED, _FULFIL, frozenset({Condition.COUNTER_SALE})),
)

_BY_PAIR: dict[tuple[OrderStatus, OrderStatus], Transition] = {
    (t.source, t.target): t for t in TRANSITIONS
}
TERMINAL: frozenset[OrderStatus] = frozenset(
    s for s in OrderStatus if not any(t.source == s for t in TRANSITIONS)
)


class IllegalTransition(Exception):
    """``target`` may not follow ``current`` for this order."""

    def __init__(self, current: OrderStatus, target: OrderStatus, allowed: list[OrderStatus]):
        self.current = current
        self.target = target
        self.allowed = allowed
        allowed_txt = ", ".join(allowed) if allowed else "none (terminal state)"
        super().__init__(
            f"cannot move an order from '{current}' to '{target}'; allowed next: {allowed_txt}"
        )


class MissingShippingDetails(Exception):
    """Shipping needs a carrier and a tracking number."""


class RoleNotAllowed(Exception):
    def __init__(self, role: Role, target: OrderStatus, roles: frozenset[Role]):
        self.role = role
        self.target = target
        self.roles = roles
        super().__init__(
            f"role '{role}' may not move an order to '{target}'; needs one of: "
            + ", ".join(sorted(roles))
        )


def _applies(edge: Transition, *, cash_on_delivery: bool, pickup: bool, counter_sale: bool) -> bool:
    """Whether the edge is one this kind of order has (cash on delivery, click and collect,
    a till sale)."""
    c = edge.conditions
    return (
        (Condition.CASH_ON_DELIVERY not in c or cash_on_delivery)
        and (Condition.PICKUP not in c or pickup)
        and (Condition.SHIPPING not in c or not pickup)
        and (Condition.COUNTER_SALE not in c or counter_sale)
    )


def allowed_next(
    current: OrderStatus,
    *,
    cash_on_delivery: bool,
    pickup: bool = False,
    counter_sale: bool = False,
) -> list[OrderStatus]:
    """Statuses that may follow ``current`` (ignoring roles and shipping details); ``pickup``:
    a click-and-collect order (``fulfillment`` ``pickup``); ``counter_sale``: a till sale
    (``fulfillment`` ``counter``)."""
    return [
        t.target
        for t in TRANSITIONS
        if t.source == current
        and _applies(t, cash_on_delivery=cash_on_delivery, pickup=pickup, counter_sale=counter_sale)
    ]


def transition(
    current: OrderStatus,
    target: OrderStatus,
    *,
    cash_on_delivery: bool,
    role: Role,
    carrier: str | None = None,
    tracking_number: str | None = None,
    pickup: bool = False,
    counter_sale: bool = False,
) -> Transition:
    """Check one move; return the matching transition or raise why it is not allowed."""
    kind = {"pickup": pickup, "counter_sale": counter_sale}
    edge = _BY_PAIR.get((current, target))
    if edge is None or not _applies(edge, cash_on_delivery=cash_on_delivery, **kind):
        allowed = allowed_next(current, cash_on_delivery=cash_on_delivery, **kind)
        raise IllegalTransition(current, target, allowed)
    if role not in edge.roles:
        raise RoleNotAllowed(role, target, edge.roles)
    if Condition.CARRIER_AND_TRACKING in edge.conditions and not (
        carrier and carrier.strip() and tracking_number and tracking_number.strip()
    ):
        raise MissingShippingDetails("shipping requires a carrier and a tracking number")
    return edge


def mermaid() -> str:
    """The transition table as a Mermaid state diagram (used in the README)."""
    lines = ["stateDiagram-v2", "    [*] --> placed"]
    for t in TRANSITIONS:
        label = ", ".join(sorted(t.roles))
        if t.conditions:
            label += " [" + ", ".join(sorted(t.conditions)) + "]"
        lines.append(f"    {t.source} --> {t.target}: {label}")
    for s in sorted(TERMINAL):
        lines.append(f"    {s} --> [*]")
    return "\n".join(lines)


# ---- money -------------------------------------------------------------------------------


def line_tax(subtotal: int, tax_rate_bps: int) -> int:
    """Tax in minor units for a line, rounding half up, in integers only."""
    return (subtotal * tax_rate_bps + 5_000) // 10_000


@dataclass(frozen=True, slots=True)
class LineAmounts:
    subtotal: int
    tax: int
    total: int


@dataclass(frozen=True, slots=True)
class OrderTotals:
    subtotal: int
    tax_total: int
    shipping_fee: int
    total: int


def line_amounts(quantity: int, unit_price: int, tax_rate_bps: int) -> LineAmounts:
    subtotal = quantity * unit_price
    tax = line_tax(subtotal, tax_rate_bps)
    return LineAmounts(subtotal=subtotal, tax=tax, total=subtotal + tax)


def order_totals(lines: list[LineAmounts], shipping_fee: int) -> OrderTotals:
    subtotal = sum(line.subtotal for line in lines)
    tax = sum(line.tax for line in lines)
    return OrderTotals(subtotal, tax, shipping_fee, subtotal + tax + shipping_fee)


# ---- shipments ---------------------------------------------------------------------------


class ShipmentStatus(StrEnum):
    PENDING = "pending"
    PICKED = "picked"
    PACKED = "packed"
    SHIPPED = "shipped"
    DELIVERED = "delivered"
    CANCELLED = "cancelled"
    READY_FOR_PICKUP = "ready_for_pickup"  # click and collect (#19): waiting at the store
    COLLECTED = "collected"  # ... and collected by the customer (its units left the store)


SHIPMENT_FLOW: tuple[ShipmentStatus, ...] = (
    ShipmentStatus.PENDING,
    ShipmentStatus.PICKED,
    ShipmentStatus.PACKED,
    ShipmentStatus.SHIPPED,
    ShipmentStatus.DELIVERED,
)
PICKUP_FLOW: tuple[ShipmentStatus, ...] = (
    ShipmentStatus.PENDING,
    ShipmentStatus.PICKED,
    ShipmentStatus.READY_FOR_PICKUP,
    ShipmentStatus.COLLECTED,
)
"""A click-and-collect shipment's steps (no packing, no carrier): ready at the store, collected."""
_PICKUP_RANK = {ShipmentStatus.READY_FOR_PICKUP: 2, ShipmentStatus.COLLECTED: 4}
"""Pickup steps ranked beside the shipping ones: ready ~ packed (waiting to leave), collected ~
delivered (in the customer's hands)."""
FULFILMENT_STATUSES: dict[OrderStatus, ShipmentStatus] = {
    OrderStatus.PICKED: ShipmentStatus.PICKED,
    OrderStatus.PACKED: ShipmentStatus.PACKED,
    OrderStatus.SHIPPED: ShipmentStatus.SHIPPED,
    OrderStatus.DELIVERED: ShipmentStatus.DELIVERED,
}
_ORDER_FOR_SHIPMENT = {v: k for k, v in FULFILMENT_STATUSES.items()} | {
    ShipmentStatus.READY_FOR_PICKUP: OrderStatus.READY_FOR_PICKUP,
    ShipmentStatus.COLLECTED: OrderStatus.DELIVERED,
}


def shipment_rank(status: ShipmentStatus) -> int:
    """0 pending .. 4 delivered (or collected); -1 cancelled."""
    if status in SHIPMENT_FLOW:
        return SHIPMENT_FLOW.index(status)
    return _PICKUP_RANK.get(status, -1)


def order_fulfilment_rank(status: OrderStatus) -> int:
    """0 before picking; 1..4 for picked..delivered; -1 for cancelled/returned."""
    if status in (OrderStatus.PLACED, OrderStatus.PAID):
        return 0
    if status in FULFILMENT_STATUSES:
        return shipment_rank(FULFILMENT_STATUSES[status])
    if status is OrderStatus.READY_FOR_PICKUP:
        return shipment_rank(ShipmentStatus.READY_FOR_PICKUP)
    return -1


def next_shipment_status(
    current: ShipmentStatus, target: ShipmentStatus, *, pickup: bool = False
) -> None:
    """Shipments only move one step forward along pending→picked→packed→shipped→delivered
    (click and collect, ``pickup``: pending→picked→ready_for_pickup→collected)."""
    flow = PICKUP_FLOW if pickup else SHIPMENT_FLOW
    if current not in flow or target not in flow or flow.index(target) != flow.index(current) + 1:
        nxt = [] if current not in flow[:-1] else [flow[flow.index(current) + 1]]
        raise IllegalShipmentTransition(current, target, nxt)


class IllegalShipmentTransition(Exception):
    def __init__(
        self, current: ShipmentStatus, target: ShipmentStatus, allowed: list[ShipmentStatus]
    ):
        self.current = current
        self.target = target
        self.allowed = allowed
        super().__init__(
            f"cannot move a shipment from '{current}' to '{target}'; allowed next: "
            + (", ".join(allowed) or "none")
        )


def order_status_reached(shipments: list[ShipmentStatus]) -> OrderStatus | None:
    """The fulfilment status every active shipment has reached (None if not yet picked)."""
    active = [s for s in shipments if s is not ShipmentStatus.CANCELLED]
    if not active:
        return None
    lowest = min(active, key=shipment_rank)
    return _ORDER_FOR_SHIPMENT.get(lowest)


FULFILMENT_ORDER: tuple[OrderStatus, ...] = (
    OrderStatus.PICKED,
    OrderStatus.PACKED,
    OrderStatus.SHIPPED,
    OrderStatus.DELIVERED,
)
"""FULFILMENT_ORDER[rank] is the order status that follows fulfilment rank ``rank``."""
