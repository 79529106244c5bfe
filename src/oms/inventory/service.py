"""The inventory context's public service functions: what routers, flows and other contexts call.

Where things are: warehouses (``warehouses``), stock levels and the ledger: adjustments, level
settings, the bulk load, returned units put back, the listings (``levels``), availability,
replenishment and expected receipts (``availability``), the routing snapshot and reservations:
reserve, release, consume (``reservations``), the rules: availability, the low-stock crossing,
the lock order (``domain``), and the database functions order placement calls (``sql/``, their
source of truth; migrations install frozen copies). Every function takes the request's session
and never commits.

Locking rules (no deadlocks, short locks): stock rows are always locked in (warehouse_id, sku)
order (:func:`oms.inventory.domain.stock_lock_key`), and the contended conditional UPDATEs are
the last statements of a reservation.
"""

from __future__ import annotations

from oms.inventory.asof import levels_as_of
from oms.inventory.availability import (
    AVAILABLE,
    SkuAvailability,
    add_incoming,
    availability,
    close_incoming,
    replenishment,
)
from oms.inventory.levels import (
    MAX_ON_HAND,
    AdjustmentKind,
    BulkLoadError,
    BulkRow,
    LevelView,
    adjust_stock,
    bulk_load,
    list_levels,
    list_movements,
    restock,
    update_level_settings,
)
from oms.inventory.moves import (  # transfers and till sales (#19)
    ReservedOut,
    Taken,
    Units,
    expect_incoming,
    put_in,
    reserve_arrived,
    settle_incoming,
    take_out,
    take_out_reserved,
)
from oms.inventory.rejections import (
    ShipmentUnits,
    block,
    move_units,
    release_units,
    shipment_units,
    write_off,
)
from oms.inventory.reservations import (
    RESERVE_SQL,
    ROUTING_SNAPSHOT_SQL,
    STOCK_MOVED,
    Reservation,
    WarehouseStock,
    allocations_for_orders,
    consume,
    lock_stock_of_order,
    lock_stock_of_skus,
    release,
    reserve,
    reserve_args,
    reserve_then_commit,
    routing_snapshot,
)
from oms.inventory.supply import (  # purchase orders and reordering (issue 18)
    ReorderInputs,
    cancel_incoming,
    reorder_inputs,
)
from oms.inventory.warehouses import (
    create_warehouse,
    get_warehouse,
    list_warehouses,
    update_warehouse,
    warehouse_codes,
    warehouse_ids_by_code,
)

__all__ = [
    "AVAILABLE",
    "MAX_ON_HAND",
    "RESERVE_SQL",
    "ReorderInputs",
    "ROUTING_SNAPSHOT_SQL",
    "STOCK_MOVED",
    "AdjustmentKind",
    "BulkLoadError",
    "BulkRow",
    "LevelView",
    "Reservation",
    "ShipmentUnits",
    "SkuAvailability",
    "WarehouseStock",
    "add_incoming",
    "adjust_stock",
    "allocations_for_orders",
    "availability",
    "block",
    "cancel_incoming",
    "bulk_load",
    "close_incoming",
    "consume",
    "lock_stock_of_order",
    "lock_stock_of_skus",
    "create_warehouse",
    "get_warehouse",
    "levels_as_of",
    "list_levels",
    "list_movements",
    "list_warehouses",
    "move_units",
    "release",
    "release_units",
    "reorder_inputs",
    "replenishment",
    "reserve",
    "reserve_then_commit",
    "reserve_args",
    "restock",
    "routing_snapshot",
    "shipment_units",
    "update_level_settings",
    "update_warehouse",
    "warehouse_codes",
    "warehouse_ids_by_code",
    "write_off",
    "Taken",
    "Units",
    "expect_incoming",
    "put_in",
    "settle_incoming",
    "take_out",
    "ReservedOut",
    "reserve_arrived",
    "take_out_reserved",
]
