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
_PURCHASE_ORDER = (
    "purchase_order_id",
    "number",
    "status",
    "supplier",
    "warehouse",
    "expected_on",
    "lines",
)
_PICKUP = ("shipment_id", "order_id", "store", "status", "collect_by")
_TRANSFER = (
    "transfer_id",
    "from_warehouse",
    "to_warehouse",
    "status",
    "expected_on",
    "lines",
    "order_id",  # a transfer to fulfil a pickup order: the order and its shipment, else null
    "shipment_id",
)


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
        "(``fills``: line, SKU, units, warehouse, shipment; ``backordered``: units still waiting; "
        "``previous_status`` when a picked or packed order stepped back to paid because of a "
        "new pending parcel)",
        (*ORDER_FIELDS, "fills", "warehouses", "backordered"),
        optional=("previous_status",),
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
        "backordered (``backordered``); ``lines``: line, SKU, units, reason; ``written_off``: "
        "units taken off the warehouse's stock; ``order_status`` (and ``previous_order_status`` "
        "when a picked order stepped back to paid because of a new pending parcel)",
        (*_SHIPMENT, "exception_id", "lines", "replanned", "backordered", "blocked_until"),
        optional=("written_off", "order_status", "previous_order_status"),
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
    # -- stores (#19): click and collect, transfers, till sales --
    _order(
        "order.ready_for_pickup",
        "A click-and-collect order is ready at its store (``pickup.ready`` carries the code)",
    ),
    EventSpec("shipment.ready_for_pickup", "A pickup shipment is ready at its store", _SHIPMENT),
    EventSpec("shipment.collected", "A pickup shipment was collected at its store", _SHIPMENT),
    EventSpec(
        "pickup.ready",
        "A click-and-collect order is ready at ``store``: what the customer's message needs "
        "(``collection_code`` to show at the counter, ``collect_by`` the deadline)",
        (
            *_PICKUP,
            "collection_code",
            "order_number",
            "customer_name",
            "customer_email",
            "customer_phone",
        ),
    ),
    EventSpec("pickup.collected", "A click-and-collect order was collected at its store", _PICKUP),
    EventSpec(
        "pickup.uncollected",
        "A click-and-collect order was not collected by ``collect_by``: the worker cancelled "
        "it (its units are sellable again at the store), and refunded ``refunded`` minor units "
        "when the store's ``action`` is ``refund``",
        (*_PICKUP, "action", "refunded"),
    ),
    EventSpec(
        "transfer.shipped",
        "A transfer left its source: units out of its on hand, in transit to the destination",
        _TRANSFER,
    ),
    EventSpec(
        "transfer.received",
        "Units of a transfer arrived at its destination (``lines``: received, short, over)",
        _TRANSFER,
    ),
    EventSpec("transfer.cancelled", "A transfer was cancelled before it shipped", _TRANSFER),
    EventSpec(
        "transfer.requested",
        "A pickup order's store lacked units: this draft transfer (``order_id``, "
        "``shipment_id``) brings them from another location, reserved there for the order",
        _TRANSFER,
    ),
    EventSpec(
        "store.stock_discrepancy",
        "A till sale sold units the store's stock did not hold (``uncovered`` per SKU): the "
        "sale stands, the store's stock needs a count",
        ("store", "receipt_id", "order_id", "uncovered"),
    ),
    # -- delivery promises and purchasing (#18) --
    EventSpec(
        "shipment.at_risk",
        "A shipment not shipped yet will miss its promise soon: ``ship_by`` is less than "
        "``OMS_SLA_AT_RISK_HOURS`` away (once per shipment)",
        (*_SHIPMENT, "ship_by", "deliver_by"),
    ),
    EventSpec(
        "shipment.late",
        "A shipment was not shipped by its ``ship_by`` (the promise made at placement; once "
        "per shipment)",
        (*_SHIPMENT, "ship_by", "deliver_by"),
    ),
    EventSpec(
        "shipment.promise_changed",
        "A parcel made by a re-plan (``cause``: a shipment exception or move, an order edit, a "
        "re-route) is promised later than the parcel(s) it replaces: the new ``ship_by`` and "
        "``deliver_by`` beside the previous ones (``deliver_by`` compared; ``ship_by`` when "
        "neither has a delivery date)",
        (
            *_SHIPMENT,
            "ship_by",
            "deliver_by",
            "previous_ship_by",
            "previous_deliver_by",
            "cause",
        ),
    ),
    EventSpec(
        "purchase_order.drafted",
        "A purchase order was drafted (by hand, or by the reorder job when a reorder point was "
        "crossed)",
        _PURCHASE_ORDER,
    ),
    EventSpec(
        "purchase_order.sent",
        "A purchase order was sent: its lines are incoming supply expected on ``expected_on``",
        _PURCHASE_ORDER,
    ),
    EventSpec(
        "purchase_order.received",
        "Units of a purchase order were received into stock (``received_lines``, under "
        "``receipt_reference``); ``status`` is partially_received or received",
        (*_PURCHASE_ORDER, "receipt_reference", "received_lines"),
    ),
    EventSpec(
        "purchase_order.cancelled",
        "A purchase order was cancelled: what it still expected will not come",
        _PURCHASE_ORDER,
    ),
    EventSpec(
        "inventory.low_stock",
        "Available stock of a SKU fell to or below its threshold",
        ("warehouse_id", "warehouse_code", "sku", "available", "threshold"),
    ),
    # the stock feed (#18, oms.inventory.feed.availability_events): per channel and SKU,
    # coalesced (at most one per OMS_STOCK_FEED_INTERVAL_S, carrying the latest figure)
    EventSpec(
        "inventory.availability_changed",
        "The quantity of a SKU a channel can sell changed (summed over the warehouses the "
        "channel ships from, after safety stock); ``previous``: the figure last sent (null "
        "the first time)",
        ("sku", "channel", "available", "previous"),
    ),
    EventSpec(
        "inventory.out_of_stock",
        "A SKU a channel could sell is no longer sellable there (``available`` fell to 0)",
        ("sku", "channel", "available", "previous"),
    ),
    EventSpec(
        "inventory.back_in_stock",
        "A SKU a channel could not sell is sellable there again (``available`` rose from 0)",
        ("sku", "channel", "available", "previous"),
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
    # -- waves (#20): payload built by oms.flows.waves.wave_payload --
    EventSpec(
        "wave.completed",
        "A wave re-optimised a channel's waiting orders together and released them to the pick "
        "queue: ``pool_size`` orders, ``moved`` given a cheaper plan, ``skipped`` because they "
        "changed while it was solving; objective (parcel cost) before and after, the solver's "
        "status and time",
        (
            "wave_id",
            "channel",
            "trigger",
            "pool_size",
            "moved",
            "skipped",
            "applied",
            "solver_status",
            "objective_before",
            "objective_after",
            "solve_seconds",
        ),
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
