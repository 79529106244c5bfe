"""The orders context's public service functions: what routers, flows and other contexts call.

Where things are: placing an order (``placement``), reading (``queries``), THE order lock and the
lock order (``locking``), order and shipment moves (``transitions``), re-routing (``reroute``),
a routing plan turned into rows (``plans``), backorders filled as stock arrives
(``backorders``), shipment exceptions, moves, splits and merges (``shipments``),
idempotency keys (``idempotency``), event payloads
(``events``), response mapping (``views``), the state machine (``domain``). Every function takes
the request's session as a keyword argument and never commits.
"""

from __future__ import annotations

from oms.orders.backorders import backordered_skus, fill_order, waiting_orders
from oms.orders.edits import (
    EditResult,
    EditSpec,
    address_of,
    cancel_lines,
    edit_order,
    record_channel_update,
    saturating_total,
    set_external_line_ids,
    store_response,
)
from oms.orders.events import order_summary, shipment_payload
from oms.orders.expiry import delete_policy as delete_expiry_policy
from oms.orders.expiry import describe as describe_expiry
from oms.orders.expiry import expired_candidates, expiry_due
from oms.orders.expiry import list_policies as list_expiry_policies
from oms.orders.expiry import put_policy as put_expiry_policy
from oms.orders.hold_rules import delete_rule, get_rule, list_rules, put_rule
from oms.orders.holds import (
    active_holds,
    held,
    holds_for,
    list_holds,
    not_held,
    place_hold,
    refuse_if_held,
    release_hold,
)
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
    OrderDocument,
    OrderFilter,
    OrderRef,
    find_order,
    get_order,
    get_order_document,
    list_orders,
    order_documents,
    order_exists,
    order_history,
    pick_queue,
    preview_route,
    read_after_change,
    shipments_for,
)
from oms.orders.reroute import reroute_order
from oms.orders.shipments import (
    RejectedUnits,
    UnitsOfLine,
    list_exceptions,
    merge_shipments,
    move_shipment,
    order_read,
    report_exception,
    split_shipment,
)
from oms.orders.transitions import (
    add_returned_units,
    advance_pickup,
    mark_paid,
    transition_order,
    transition_shipment,
)

__all__ = [
    "saturating_total",
    "put_expiry_policy",
    "list_expiry_policies",
    "expiry_due",
    "expired_candidates",
    "describe_expiry",
    "delete_expiry_policy",
    "delete_rule",
    "get_rule",
    "list_rules",
    "put_rule",
    "RejectedUnits",
    "UnitsOfLine",
    "list_exceptions",
    "merge_shipments",
    "move_shipment",
    "order_read",
    "report_exception",
    "split_shipment",
    "EditResult",
    "EditSpec",
    "address_of",
    "cancel_lines",
    "edit_order",
    "record_channel_update",
    "set_external_line_ids",
    "store_response",
    "backordered_skus",
    "fill_order",
    "waiting_orders",
    "release_hold",
    "refuse_if_held",
    "place_hold",
    "not_held",
    "list_holds",
    "holds_for",
    "held",
    "active_holds",
    "IdempotentReplay",
    "IdempotentRequest",
    "NewOrder",
    "OrderFilter",
    "OrderRef",
    "PlacedOrder",
    "ShipmentView",
    "StoredResponse",
    "add_returned_units",
    "advance_pickup",
    "claim_idempotency_key",
    "find_order",
    "get_order",
    "list_orders",
    "get_order_document",
    "order_documents",
    "read_after_change",
    "OrderDocument",
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
