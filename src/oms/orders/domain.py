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
    Transition(S.PICKED, S.PACKED, _FULFIL),
    Transition(S.PICKED, S.CANCELLED, _CANCEL),
    Transition(S.PACKED, S.SHIPPED, _FULFIL, frozenset({Condition.CARRIER_AND_TRACKING})),
    Transition(S.PACKED, S.CANCELLED, _CANCEL),
    Transition(S.SHIPPED, S.DELIVERED, _FULFIL),
    Transition(S.DELIVERED, S.RETURNED, _ADMIN),
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


def allowed_next(current: OrderStatus, *, cash_on_delivery: bool) -> list[OrderStatus]:
    """Statuses that may follow ``current`` (ignoring roles and shipping details)."""
    return [
        t.target
        for t in TRANSITIONS
        if t.source == current
        and (Condition.CASH_ON_DELIVERY not in t.conditions or cash_on_delivery)
    ]


def transition(
    current: OrderStatus,
    target: OrderStatus,
    *,
    cash_on_delivery: bool,
    role: Role,
    carrier: str | None = None,
    tracking_number: str | None = None,
) -> Transition:
    """Check one move; return the matching transition or raise why it is not allowed."""
    edge = _BY_PAIR.get((current, target))
    if edge is None or (Condition.CASH_ON_DELIVERY in edge.conditions and not cash_on_delivery):
        allowed = allowed_next(current, cash_on_delivery=cash_on_delivery)
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


SHIPMENT_FLOW: tuple[ShipmentStatus, ...] = (
    ShipmentStatus.PENDING,
    ShipmentStatus.PICKED,
    ShipmentStatus.PACKED,
    ShipmentStatus.SHIPPED,
    ShipmentStatus.DELIVERED,
)
FULFILMENT_STATUSES: dict[OrderStatus, ShipmentStatus] = {
    OrderStatus.PICKED: ShipmentStatus.PICKED,
    OrderStatus.PACKED: ShipmentStatus.PACKED,
    OrderStatus.SHIPPED: ShipmentStatus.SHIPPED,
    OrderStatus.DELIVERED: ShipmentStatus.DELIVERED,
}
_ORDER_FOR_SHIPMENT = {v: k for k, v in FULFILMENT_STATUSES.items()}


def shipment_rank(status: ShipmentStatus) -> int:
    return SHIPMENT_FLOW.index(status) if status in SHIPMENT_FLOW else -1


def order_fulfilment_rank(status: OrderStatus) -> int:
    """0 before picking; 1..4 for picked..delivered; -1 for cancelled/returned."""
    if status in (OrderStatus.PLACED, OrderStatus.PAID):
        return 0
    if status in FULFILMENT_STATUSES:
        return shipment_rank(FULFILMENT_STATUSES[status])
    return -1


def next_shipment_status(current: ShipmentStatus, target: ShipmentStatus) -> None:
    """Shipments only move one step forward along pending→picked→packed→shipped→delivered."""
    if (
        current not in SHIPMENT_FLOW
        or target not in SHIPMENT_FLOW
        or shipment_rank(target) != shipment_rank(current) + 1
    ):
        nxt = (
            [] if current not in SHIPMENT_FLOW[:-1] else [SHIPMENT_FLOW[shipment_rank(current) + 1]]
        )
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
