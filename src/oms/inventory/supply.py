"""What reordering reads and what purchase orders write of inventory: per (warehouse, SKU) the
level, the units expected (``incoming_supply``) and the units sold per day (allocations by
placement time); and the expected receipts of a cancelled purchase order closed. (A purchase
order's expected receipts are written and brought down by ``moves.expect_incoming`` and
``moves.settle_incoming``.)
The decisions are made by ``oms.purchasing``."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from oms.inventory.models import Allocation, IncomingSupply, StockLevel, Warehouse


@dataclass(slots=True)
class ReorderInputs:
    """One stock level as reordering sees it."""

    warehouse_id: uuid.UUID
    warehouse_code: str
    sku: str
    on_hand: int
    reserved: int
    safety_stock: int
    reorder_point: int | None
    reorder_quantity: int | None
    incoming: int = 0
    """Units expected (sent purchase orders, other expected receipts)."""
    daily_demand: list[int] = field(default_factory=list)
    """Units placed per day over the window, oldest day first (the last is the day up to now)."""


async def reorder_inputs(
    session: AsyncSession,
    *,
    warehouse_ids: Collection[uuid.UUID],
    skus: Collection[str] | None,
    window_days: int,
    now: datetime,
    limit: int = 5000,
) -> list[ReorderInputs]:
    """The levels of these warehouses (of ``skus``, or all), each with the units expected and
    the units of allocations placed in each of the last ``window_days`` days (24-hour days
    ending at ``now``; open or shipped: units released by a cancellation or an edit are not
    demand). Three queries."""
    if not warehouse_ids:
        return []
    stmt = (
        select(Warehouse.code, StockLevel)
        .join(Warehouse, Warehouse.id == StockLevel.warehouse_id)
        .where(StockLevel.warehouse_id.in_(list(warehouse_ids)))
        .order_by(Warehouse.code, StockLevel.sku)
        .limit(limit)
    )
    if skus is not None:
        stmt = stmt.where(StockLevel.sku.in_(sorted(skus)))
    out = {
        (row.warehouse_id, row.sku): ReorderInputs(
            warehouse_id=row.warehouse_id,
            warehouse_code=code,
            sku=row.sku,
            on_hand=row.on_hand,
            reserved=row.reserved,
            safety_stock=row.safety_stock,
            reorder_point=row.reorder_point,
            reorder_quantity=row.reorder_quantity,
            daily_demand=[0] * window_days,
        )
        for code, row in (await session.execute(stmt)).all()
    }
    if not out:
        return []
    wanted = sorted({k[1] for k in out})
    incoming = await session.execute(
        select(IncomingSupply.warehouse_id, IncomingSupply.sku, func.sum(IncomingSupply.quantity))
        .where(
            IncomingSupply.status == "expected",
            IncomingSupply.warehouse_id.in_(list(warehouse_ids)),
            IncomingSupply.sku.in_(wanted),
        )
        .group_by(IncomingSupply.warehouse_id, IncomingSupply.sku)
    )
    for wid, sku, qty in incoming.all():
        if (wid, sku) in out:
            out[(wid, sku)].incoming = int(qty)
    since = now - timedelta(days=window_days)
    age = func.floor(func.extract("epoch", now - Allocation.placed_at) / 86400).label("age")
    demand = await session.execute(
        select(Allocation.warehouse_id, Allocation.sku, age, func.sum(Allocation.quantity))
        .where(
            Allocation.warehouse_id.in_(list(warehouse_ids)),
            Allocation.sku.in_(wanted),
            Allocation.status.in_(("open", "consumed")),
            Allocation.placed_at > since,
            Allocation.placed_at <= now,
        )
        .group_by(Allocation.warehouse_id, Allocation.sku, age)
    )
    for wid, sku, days_ago, qty in demand.all():
        level = out.get((wid, sku))
        if level is not None and 0 <= int(days_ago) < window_days:
            level.daily_demand[window_days - 1 - int(days_ago)] += int(qty)
    return list(out.values())


async def cancel_incoming(session: AsyncSession, *, supply_ids: Collection[uuid.UUID]) -> None:
    """The units of these expected receipts will not come (those still expected)."""
    if supply_ids:
        await session.execute(
            update(IncomingSupply)
            .where(IncomingSupply.id.in_(list(supply_ids)), IncomingSupply.status == "expected")
            .values(status="cancelled")
        )
