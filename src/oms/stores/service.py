"""The stores context's public service functions (#19): what routers, flows and the worker call.

Where things are: click and collect, each store's pickup terms and the pickups waiting at a
store (``pickups``; the order moves are ``oms.flows.pickup``'s), transfers of stock between
locations (``transfers``), a pickup order's short units brought by transfer
(``fulfil``), the tables (``models``). Every function takes the request's session
and never commits.
"""

from __future__ import annotations

from oms.stores.fulfil import (
    FulfilTransfer,
    awaited_transfers,
    linked_order,
    transfer_to_fulfil,
)
from oms.stores.keys import key_scope, scope_key
from oms.stores.pickups import (
    PickupTerms,
    UncollectedAction,
    close_pickup,
    code_matches,
    count_wrong_attempt,
    due_pickups,
    get_pickup,
    new_code,
    open_pickup,
    pickup_for_update,
    pickup_payload,
    put_terms,
    terms_for,
)
from oms.stores.transfers import (
    TransferView,
    cancel_transfer,
    create_transfer,
    get_transfer,
    in_transit,
    list_transfers,
    order_cancelled,
    receive_transfer,
    ship_transfer,
    transfer_payload,
)

__all__ = [
    "FulfilTransfer",
    "awaited_transfers",
    "linked_order",
    "order_cancelled",
    "transfer_to_fulfil",
    "PickupTerms",
    "TransferView",
    "UncollectedAction",
    "cancel_transfer",
    "close_pickup",
    "code_matches",
    "count_wrong_attempt",
    "create_transfer",
    "due_pickups",
    "get_pickup",
    "get_transfer",
    "in_transit",
    "key_scope",
    "scope_key",
    "list_transfers",
    "new_code",
    "open_pickup",
    "pickup_for_update",
    "pickup_payload",
    "put_terms",
    "receive_transfer",
    "ship_transfer",
    "terms_for",
    "transfer_payload",
]
