"""The one registry of event types oms records in its outbox and sends to subscribers: each
type, what it means, and the fields of its ``data`` payload.

Every event goes through ``oms.outbox.service.record_event`` (or, for order placement, the
placement statement), which checks its payload against this registry with :func:`check`: an
unknown type, a missing field or an unexpected one is a bug and raises. The payloads
themselves are built next to the data they describe (``orders.events``, ``payments``,
``inventory.domain``...), one builder per type. Subscriptions are validated against this list
(``webhooks.events``) and ``GET /v1/webhooks/event-types`` shows it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class EventSpec:
    type: str
    description: str
    fields: tuple[str, ...]
    """Keys always present in ``data``."""
    optional: tuple[str, ...] = ()
    """Keys present only in some events of the type."""


ORDER_FIELDS = (
    "order_id",
    "number",
    "status",
    "channel",
    "external_reference",
    "customer_id",
    "customer_email",
    "currency",
    "total",
    "lines",
)
"""The order summary every ``order.*`` event carries."""

_TRANSITION = (*ORDER_FIELDS, "previous_status")
_SHIPMENT = ("shipment_id", "order_id", "warehouse_code", "status", "carrier", "tracking_number")
PAYMENT_FIELDS = (
    "payment_id",
    "order_id",
    "method",
    "provider",
    "provider_reference",
    "amount",
    "captured_amount",
    "refunded_amount",
    "currency",
    "status",
)
_SHIPPED = ("carrier", "tracking_number")


def _order(type_: str, description: str) -> EventSpec:
    return EventSpec(type_, description, _TRANSITION, optional=_SHIPPED)


_SPECS = (
    EventSpec(
        "order.placed",
        "An order was accepted (routed and reserved)",
        (*ORDER_FIELDS, "warehouses"),
    ),
    _order("order.paid", "Payment for an order was captured"),
    _order("order.picked", "An order's items were picked"),
    _order("order.packed", "An order was packed"),
    _order("order.shipped", "An order left the warehouse (carrier and tracking number in data)"),
    _order("order.delivered", "An order was delivered"),
    _order("order.returned", "A delivered order came back"),
    _order("order.cancelled", "An order was cancelled"),
    EventSpec(
        "order.rerouted",
        "An order's shipments were re-planned",
        (*ORDER_FIELDS, "from_warehouses", "to_warehouses"),
    ),
    EventSpec(
        "order.edited",
        "An order's unpicked units were edited (lines added, removed or re-counted, or the "
        "shipping address changed); ``changes``: the lines changed, totals and address before "
        "and after, the shipments cancelled and planned",
        (*ORDER_FIELDS, "changes"),
    ),
    EventSpec(
        "order.lines_cancelled",
        "Some units of an order's lines were cancelled (partial cancellation); ``changes`` as "
        "in ``order.edited`` (an ``order.cancelled`` follows when nothing is left)",
        (*ORDER_FIELDS, "changes"),
    ),
    EventSpec(
        "order.backorder_filled",
        "Stock arrived for an order's backordered lines: those units were reserved and routed "
        "(``fills``: line, SKU, units, warehouse, shipment; ``backordered``: units still waiting)",
        (*ORDER_FIELDS, "fills", "warehouses", "backordered"),
    ),
    EventSpec(
        "order.held",
        "A hold was placed on an order (by hand or by a hold rule): it is not picked, packed "
        "or shipped until every hold is released",
        (*ORDER_FIELDS, "hold_id", "reason", "note", "rule", "active_holds"),
    ),
    EventSpec(
        "order.hold_released",
        "A hold on an order was released (the order moves again once none stands)",
        (*ORDER_FIELDS, "hold_id", "reason", "note", "rule", "active_holds"),
    ),
    EventSpec(
        "order.expired",
        "An unpaid order passed its channel's expiry policy for its payment method and was "
        "cancelled by the worker (an order.cancelled event goes with it)",
        (*ORDER_FIELDS, "previous_status", "payment_method", "expired_after_s"),
    ),
    EventSpec("shipment.picked", "A shipment was picked", _SHIPMENT),
    EventSpec("shipment.packed", "A shipment was packed", _SHIPMENT),
    EventSpec("shipment.shipped", "A shipment left its warehouse", _SHIPMENT),
    EventSpec("shipment.delivered", "A shipment was delivered", _SHIPMENT),
    EventSpec(
        "shipment.exception",
        "A warehouse rejected units of its shipment (short pick, damaged, not found): those "
        "units were planned again without it (``replanned``: new shipments by warehouse), or "
        "backordered (``backordered``); ``lines``: line, SKU, units, reason",
        (*_SHIPMENT, "exception_id", "lines", "replanned", "backordered", "blocked_until"),
    ),
    EventSpec(
        "shipment.moved",
        "A pending shipment was moved to another warehouse: it is cancelled and its units ship "
        "from ``to_warehouse`` in ``new_shipment_id``",
        (*_SHIPMENT, "from_warehouse", "to_warehouse", "new_shipment_id"),
    ),
    EventSpec(
        "shipment.split",
        "Units of a pending shipment were split off into a new pending shipment at the same "
        "warehouse (``new_shipment_id``, ``lines``)",
        (*_SHIPMENT, "new_shipment_id", "lines"),
    ),
    EventSpec(
        "shipment.merged",
        "Two pending shipments of one order from one warehouse became one: "
        "``merged_shipment_id`` was cancelled and its units added to this shipment",
        (*_SHIPMENT, "merged_shipment_id", "lines"),
    ),
    EventSpec(
        "inventory.low_stock",
        "Available stock of a SKU fell to or below its threshold",
        ("warehouse_id", "warehouse_code", "sku", "available", "threshold"),
    ),
    EventSpec("payment.authorized", "A payment was authorized (not yet captured)", PAYMENT_FIELDS),
    EventSpec(
        "payment.captured",
        "A payment was captured (cash on delivery: at delivery)",
        PAYMENT_FIELDS,
    ),
    EventSpec("payment.failed", "A payment attempt failed", PAYMENT_FIELDS),
    EventSpec(
        "refund.issued",
        "A refund was issued (by API, on return receipt, or reported by a provider)",
        ("refund_id", "order_id", "payment_id", "return_id", "amount", "currency", "reason"),
    ),
    EventSpec(
        "return.requested",
        "A return (RMA) was requested for a delivered order",
        ("return_id", "order_id", "lines"),
    ),
    EventSpec(
        "return.received",
        "Returned units were received (restocked or discarded)",
        ("return_id", "order_id", "lines"),
    ),
    EventSpec(
        "webhook.endpoint_disabled",
        "A webhook subscription was disabled after repeated failures",
        ("subscription_id", "url", "reason"),
    ),
)

EVENTS: dict[str, EventSpec] = {spec.type: spec for spec in _SPECS}


class InvalidEvent(ValueError):
    """An event whose type is not registered or whose payload does not match its spec."""


def check(type_: str, data: dict[str, Any]) -> dict[str, Any]:
    """Return ``data`` if it is a valid payload of ``type_``; raise :class:`InvalidEvent`."""
    spec = EVENTS.get(type_)
    if spec is None:
        raise InvalidEvent(f"event type '{type_}' is not in oms.shared.events")
    keys = set(data)
    missing = set(spec.fields) - keys
    extra = keys - set(spec.fields) - set(spec.optional)
    if missing or extra:
        raise InvalidEvent(
            f"{type_} payload: missing {sorted(missing)}, unexpected {sorted(extra)}"
        )
    return data
