"""The orders context's public service functions: what routers, flows and other contexts call.

Where things are: placing an order (``placement``), reading (``queries``), THE order lock and the
lock order (``locking``), order and shipment moves (``transitions``), re-routing (``reroute``),
a routing plan turned into rows (``plans``), idempotency keys (``idempotency``), event payloads
(``events``), response mapping (``views``), the state machine (``domain``). Every function takes
the request's session as a keyword argument and never commits.
"""

from __future__ import annotations

from oms.orders.events import order_summary, shipment_payload
from oms.orders.idempotency import StoredResponse, claim_idempotency_key, request_fingerprint
from oms.orders.locking import lock_order, lock_order_of_shipment
from oms.orders.placement import (
    IdempotentReplay,
    IdempotentRequest,
    PlacedOrder,
    place_order,
    place_order_with_shipments,
)
from oms.orders.plans import NewOrder, ShipmentView
from oms.orders.queries import (
    OrderFilter,
    OrderRef,
    find_order,
    get_order,
    list_orders,
    order_exists,
    order_history,
    pick_queue,
    preview_route,
    shipments_for,
)
from oms.orders.reroute import reroute_order
from oms.orders.transitions import (
    add_returned_units,
    mark_paid,
    transition_order,
    transition_shipment,
)

__all__ = [
    "IdempotentReplay",
    "IdempotentRequest",
    "NewOrder",
    "OrderFilter",
    "OrderRef",
    "PlacedOrder",
    "ShipmentView",
    "StoredResponse",
    "add_returned_units",
    "claim_idempotency_key",
    "find_order",
    "get_order",
    "list_orders",
    "lock_order",
    "lock_order_of_shipment",
    "mark_paid",
    "order_exists",
    "order_history",
    "order_summary",
    "pick_queue",
    "place_order",
    "place_order_with_shipments",
    "preview_route",
    "request_fingerprint",
    "reroute_order",
    "shipment_payload",
    "shipments_for",
    "transition_order",
    "transition_shipment",
]
