"""Inventory rules, pure: availability, the low-stock crossing and its event, the stock lock order.

Each rule is written once in Python, here; its SQL twin lives in ``inventory/sql/`` (the
database functions order placement calls): ``oms_stock_available`` for :func:`available`, and
``oms_reserve`` for :func:`low_stock_crossing` (same crossing, same payload keys) and
:func:`stock_lock_key` (it locks in ``(warehouse_id, sku COLLATE "C")`` order).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any, ClassVar

LOW_STOCK = "inventory.low_stock"
"""The event type recorded when a level's availability crosses its low-stock threshold."""


def available(on_hand: int, reserved: int, safety_stock: int) -> int:
    """Units that can be sold: on hand, less reserved, less the safety stock; never below 0."""
    return max(0, on_hand - reserved - safety_stock)


def stock_lock_key(warehouse_id: uuid.UUID, sku: str) -> tuple[str, str]:
    """The order in which every writer locks or updates stock rows (no deadlocks).

    The canonical text of a UUID sorts like its bytes (Postgres's uuid order) and Python
    compares ``str`` by code point, as ``COLLATE "C"`` does on UTF-8: the same order as
    ``ORDER BY warehouse_id, sku COLLATE "C"`` in ``oms_reserve``.
    """
    return (str(warehouse_id), sku)


@dataclass(frozen=True, slots=True)
class LowStockEvent:
    """An ``inventory.low_stock`` event to record for one stock level."""

    aggregate_id: str
    data: dict[str, Any]

    type: ClassVar[str] = LOW_STOCK
    aggregate_type: ClassVar[str] = "stock"


def low_stock_crossing(
    *,
    warehouse_id: uuid.UUID,
    warehouse_code: str,
    sku: str,
    before: int,
    after: int,
    threshold: int | None,
) -> LowStockEvent | None:
    """The low-stock event if availability went from above the threshold to at or below it.

    ``before``/``after`` are the level's availability (:func:`available`) around the change.
    Nothing while it stays above, or was already at or below (one event per crossing).
    """
    if threshold is None or not (before > threshold >= after):
        return None
    return LowStockEvent(
        aggregate_id=f"{warehouse_id}:{sku}",
        data={
            "warehouse_id": str(warehouse_id),
            "warehouse_code": warehouse_code,
            "sku": sku,
            "available": after,
            "threshold": threshold,
        },
    )
