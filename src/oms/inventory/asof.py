"""Stock levels as of a past moment, rebuilt from the ledger and the allocations.

On hand at ``T`` is the sum of the level's ledger movements stamped at or before ``T`` (the
ledger's invariant: per level, the movements sum to on hand). Reserved at ``T`` is the sum of
the allocations created at or before ``T`` and not closed (released or consumed) by then: an
allocation keeps ``created_at`` and ``closed_at``, and a partial release splits the row (the
released part keeps the original ``created_at``), so the past stays readable. Safety stock and
the thresholds are not historised: the level's current settings are shown, and ``available``
uses the current safety stock.

A change is counted at the time it was stamped, by the service that made it; a transaction
still in flight at ``T`` that commits later is counted from its stamp, so "as of T" read
later can include what a read at ``T`` did not see yet.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession

from oms.db import driver_connection
from oms.inventory import domain
from oms.inventory.levels import LevelView

_AS_OF = """
WITH lv AS (
    SELECT s.warehouse_id, s.sku, w.code, s.safety_stock, s.low_stock_threshold,
           s.reorder_point, s.reorder_quantity
    FROM stock_levels s JOIN warehouses w ON w.id = s.warehouse_id
    WHERE ($2::text IS NULL OR w.code = $2) AND ($3::text IS NULL OR s.sku = $3)
      AND ($6::uuid[] IS NULL OR s.warehouse_id = ANY($6::uuid[]))
    ORDER BY s.sku, w.code
    LIMIT $4 OFFSET $5
)
SELECT lv.*,
       coalesce((SELECT sum(m.quantity) FROM inventory_movements m
                 WHERE m.warehouse_id = lv.warehouse_id AND m.sku = lv.sku
                   AND m.created_at <= $1), 0)::bigint AS on_hand,
       coalesce((SELECT sum(a.quantity) FROM allocations a
                 WHERE a.sku = lv.sku AND a.warehouse_id = lv.warehouse_id
                   AND a.created_at <= $1 AND (a.closed_at IS NULL OR a.closed_at > $1)),
                0)::bigint AS reserved
FROM lv
ORDER BY lv.sku, lv.code
"""


async def levels_as_of(
    session: AsyncSession,
    *,
    at: datetime,
    warehouse_code: str | None,
    sku: str | None,
    limit: int,
    offset: int,
    scope: frozenset[uuid.UUID] | None = None,
) -> list[LevelView]:
    """The levels (as :func:`oms.inventory.levels.list_levels` pages them) with on hand and
    reserved as they were at ``at``; only those of the warehouses in ``scope``, when given (a
    scoped key's, ``auth.service.visible_warehouses``)."""
    conn = await driver_connection(session)
    ids = None if scope is None else list(scope)
    rows = await conn.fetch(_AS_OF, at, warehouse_code, sku, limit, offset, ids)
    return [
        LevelView(
            warehouse_code=r["code"],
            sku=r["sku"],
            on_hand=int(r["on_hand"]),
            reserved=int(r["reserved"]),
            safety_stock=r["safety_stock"],
            available=domain.available(int(r["on_hand"]), int(r["reserved"]), r["safety_stock"]),
            low_stock_threshold=r["low_stock_threshold"],
            reorder_point=r["reorder_point"],
            reorder_quantity=r["reorder_quantity"],
        )
        for r in rows
    ]
