"""What can be sold and what is coming: availability per SKU (per warehouse, with the
expected receipts), the replenishment list, and the expected receipts themselves."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any, Literal

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from oms.inventory.models import IncomingSupply, StockLevel, Warehouse
from oms.inventory.warehouses import get_warehouse
from oms.shared.clock import utcnow
from oms.shared.errors import NotFound

_AVAILABLE = func.oms_stock_available(
    StockLevel.on_hand, StockLevel.reserved, StockLevel.safety_stock
)
"""Availability in a query: the database function ``oms_stock_available``
(``inventory/sql/oms_stock_available.sql``, inlined by the planner), the SQL twin of
:func:`oms.inventory.domain.available`."""

AVAILABLE = _AVAILABLE.label("available")


async def add_incoming(
    session: AsyncSession,
    *,
    warehouse_code: str,
    sku: str,
    quantity: int,
    expected_on: date,
    reference: str | None,
) -> tuple[str, IncomingSupply]:
    """Record an expected receipt (shown beside availability until received)."""
    wh = await get_warehouse(session, code=warehouse_code)
    supply = IncomingSupply(
        id=uuid.uuid4(),
        warehouse_id=wh.id,
        sku=sku,
        quantity=quantity,
        expected_on=expected_on,
        reference=reference,
        status="expected",
        created_at=utcnow(),
    )
    session.add(supply)
    await session.flush()
    return wh.code, supply


async def close_incoming(
    session: AsyncSession, *, supply_id: uuid.UUID, status: Literal["received", "cancelled"]
) -> None:
    """Mark an expected receipt received or cancelled."""
    result = await session.execute(
        update(IncomingSupply)
        .where(IncomingSupply.id == supply_id, IncomingSupply.status == "expected")
        .values(status=status)
        .returning(IncomingSupply.id)
    )
    if result.first() is None:
        raise NotFound("no expected receipt with that id", code="incoming_not_found")


@dataclass(slots=True)
class SkuAvailability:
    sku: str
    on_hand: int = 0
    reserved: int = 0
    available: int = 0
    incoming: int = 0
    warehouses: list[dict[str, Any]] = field(default_factory=list)
    incoming_supply: list[dict[str, Any]] = field(default_factory=list)


async def availability(
    session: AsyncSession, *, skus: Sequence[str], warehouse_code: str | None = None
) -> list[SkuAvailability]:
    """Per SKU: totals and the per-warehouse breakdown (active warehouses), plus incoming."""
    out = {sku: SkuAvailability(sku=sku) for sku in skus}
    stmt = (
        select(Warehouse.code, Warehouse.active, StockLevel, AVAILABLE)
        .join(Warehouse, Warehouse.id == StockLevel.warehouse_id)
        .where(StockLevel.sku.in_(list(skus)))
        .order_by(StockLevel.sku, Warehouse.priority, Warehouse.code)
    )
    if warehouse_code:
        stmt = stmt.where(Warehouse.code == warehouse_code)
    for code, active, row, avail in (await session.execute(stmt)).all():
        agg = out[row.sku]
        sellable = avail if active else 0
        agg.warehouses.append(
            {
                "warehouse": code,
                "active": active,
                "on_hand": row.on_hand,
                "reserved": row.reserved,
                "safety_stock": row.safety_stock,
                "available": sellable,
            }
        )
        agg.on_hand += row.on_hand
        agg.reserved += row.reserved
        agg.available += sellable
    incoming = (
        select(Warehouse.code, IncomingSupply)
        .join(Warehouse, Warehouse.id == IncomingSupply.warehouse_id)
        .where(IncomingSupply.sku.in_(list(skus)), IncomingSupply.status == "expected")
        .order_by(IncomingSupply.expected_on)
    )
    for code, supply in (await session.execute(incoming)).all():
        agg = out[supply.sku]
        agg.incoming += supply.quantity
        agg.incoming_supply.append(
            {
                "id": str(supply.id),
                "warehouse": code,
                "quantity": supply.quantity,
                "expected_on": supply.expected_on.isoformat(),
                "reference": supply.reference,
            }
        )
    return list(out.values())


async def replenishment(session: AsyncSession, *, limit: int) -> list[dict[str, Any]]:
    """Levels at or below their reorder point, with a suggested order quantity."""
    stmt = (
        select(Warehouse.code, StockLevel, AVAILABLE)
        .join(Warehouse, Warehouse.id == StockLevel.warehouse_id)
        .where(
            StockLevel.reorder_point.is_not(None),
            Warehouse.active.is_(True),
            _AVAILABLE <= StockLevel.reorder_point,
        )
        .order_by(Warehouse.code, StockLevel.sku)
        .limit(limit)
    )
    rows = (await session.execute(stmt)).all()
    incoming: dict[tuple[str, str], int] = defaultdict(int)
    if rows:
        inc = await session.execute(
            select(Warehouse.code, IncomingSupply.sku, func.sum(IncomingSupply.quantity))
            .join(Warehouse, Warehouse.id == IncomingSupply.warehouse_id)
            .where(IncomingSupply.status == "expected")
            .group_by(Warehouse.code, IncomingSupply.sku)
        )
        for code, sku, qty in inc.all():
            incoming[(code, sku)] = int(qty)
    out = []
    for code, row, avail in rows:
        point = row.reorder_point or 0
        coming = incoming[(code, row.sku)]
        # bring availability back above the reorder point: to point + reorder quantity
        target = point + (row.reorder_quantity or max(point, 1))
        suggested = max(0, target - avail - coming)
        out.append(
            {
                "warehouse": code,
                "sku": row.sku,
                "on_hand": row.on_hand,
                "reserved": row.reserved,
                "available": avail,
                "reorder_point": point,
                "reorder_quantity": row.reorder_quantity,
                "incoming": coming,
                "suggested_quantity": suggested,
            }
        )
    return out
