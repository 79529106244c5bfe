"""Stock side of shipment exceptions and shipment moves: the units of one shipment released
one line at a time, written off the shelf through the ledger, moved between shipments of an
order, and (warehouse, SKU) blocks that routing consults.

Locking rules as everywhere in inventory: stock rows are updated in (warehouse_id, sku) order.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from oms.inventory import domain
from oms.inventory.block_models import StockBlock
from oms.inventory.models import Allocation, InventoryMovement, StockLevel
from oms.shared.clock import utcnow


@dataclass(frozen=True, slots=True)
class ShipmentUnits:
    """The open (reserved, not shipped) units of one order line in one shipment."""

    order_line_id: uuid.UUID
    sku: str
    warehouse_id: uuid.UUID
    quantity: int


async def shipment_units(
    session: AsyncSession, *, shipment_id: uuid.UUID
) -> dict[uuid.UUID, ShipmentUnits]:
    """Per order line: the units a shipment reserves now."""
    allocs = (
        await session.scalars(
            select(Allocation).where(
                Allocation.shipment_id == shipment_id, Allocation.status == "open"
            )
        )
    ).all()
    out: dict[uuid.UUID, ShipmentUnits] = {}
    for a in allocs:
        held = out.get(a.order_line_id)
        out[a.order_line_id] = ShipmentUnits(
            a.order_line_id, a.sku, a.warehouse_id, a.quantity + (held.quantity if held else 0)
        )
    return out


async def _take_units(
    session: AsyncSession,
    *,
    shipment_id: uuid.UUID,
    units: Mapping[uuid.UUID, int],
    now: datetime,
) -> list[tuple[Allocation, int]]:
    """Lower the shipment's open allocations by ``units`` per order line; returns each
    allocation touched (as it was) with the units taken from it."""
    allocs = (
        await session.scalars(
            select(Allocation)
            .where(
                Allocation.shipment_id == shipment_id,
                Allocation.status == "open",
                Allocation.order_line_id.in_(list(units)),
            )
            .order_by(Allocation.created_at, Allocation.id)
        )
    ).all()
    left = dict(units)
    taken: list[tuple[Allocation, int]] = []
    for a in allocs:
        want = left.get(a.order_line_id, 0)
        if want <= 0:
            continue
        q = min(want, a.quantity)
        left[a.order_line_id] = want - q
        taken.append((a, q))
    if any(v > 0 for v in left.values()):
        raise ValueError(f"shipment {shipment_id} does not reserve {dict(units)}")
    return taken


def _copy(a: Allocation, **values: object) -> dict[str, object]:
    return {
        "id": uuid.uuid4(),
        "order_id": a.order_id,
        "order_line_id": a.order_line_id,
        "shipment_id": a.shipment_id,
        "warehouse_id": a.warehouse_id,
        "sku": a.sku,
        "quantity": a.quantity,
        "status": a.status,
        "created_at": a.created_at,
        "closed_at": a.closed_at,
        "placed_at": a.placed_at,
        "channel": a.channel,
        "currency": a.currency,
        **values,
    }


async def release_units(
    session: AsyncSession, *, shipment_id: uuid.UUID, units: Mapping[uuid.UUID, int]
) -> None:
    """Give back ``units`` (per order line) of a shipment's reservation. The released units
    leave the shipment (their allocation row keeps the order and line, not the shipment):
    the shipment carries what it still reserves."""
    now = utcnow()
    taken = await _take_units(session, shipment_id=shipment_id, units=units, now=now)
    per_level: dict[tuple[uuid.UUID, str], int] = defaultdict(int)
    for a, q in taken:
        per_level[(a.warehouse_id, a.sku)] += q
        if q == a.quantity:
            await session.execute(
                update(Allocation)
                .where(Allocation.id == a.id)
                .values(status="released", shipment_id=None, closed_at=now)
            )
        else:
            await session.execute(
                update(Allocation).where(Allocation.id == a.id).values(quantity=a.quantity - q)
            )
            await session.execute(
                insert(Allocation).values(
                    _copy(a, quantity=q, status="released", shipment_id=None, closed_at=now)
                )
            )
    for (wid, sku), qty in sorted(per_level.items(), key=lambda kv: domain.stock_lock_key(*kv[0])):
        await session.execute(
            update(StockLevel)
            .where(StockLevel.warehouse_id == wid, StockLevel.sku == sku)
            .values(reserved=StockLevel.reserved - qty, updated_at=now)
        )


async def move_units(
    session: AsyncSession,
    *,
    from_shipment_id: uuid.UUID,
    to_shipment_id: uuid.UUID,
    units: Mapping[uuid.UUID, int] | None = None,
) -> None:
    """Move reserved units from one shipment to another of the same warehouse (``None``: all
    of them). Stock does not change: the same units stay reserved."""
    if units is None:
        await session.execute(
            update(Allocation)
            .where(Allocation.shipment_id == from_shipment_id, Allocation.status == "open")
            .values(shipment_id=to_shipment_id)
        )
        return
    taken = await _take_units(session, shipment_id=from_shipment_id, units=units, now=utcnow())
    for a, q in taken:
        if q == a.quantity:
            await session.execute(
                update(Allocation).where(Allocation.id == a.id).values(shipment_id=to_shipment_id)
            )
        else:
            await session.execute(
                update(Allocation).where(Allocation.id == a.id).values(quantity=a.quantity - q)
            )
            await session.execute(
                insert(Allocation).values(_copy(a, quantity=q, shipment_id=to_shipment_id))
            )


async def write_off(
    session: AsyncSession,
    *,
    warehouse_id: uuid.UUID,
    sku: str,
    quantity: int,
    reason: str,
    reference_id: str,
    actor: str,
) -> int:
    """Take units the shelf does not have off on-hand stock: a ``correction`` in the ledger
    referencing the shipment exception. At most the unreserved units are written off (units
    reserved for other orders are theirs until a count says otherwise); returns how many."""
    level = await session.scalar(
        select(StockLevel)
        .where(StockLevel.warehouse_id == warehouse_id, StockLevel.sku == sku)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if level is None:
        return 0
    q = max(0, min(quantity, level.on_hand - level.reserved))
    if q == 0:
        return 0
    now = utcnow()
    on_hand_after = (
        await session.execute(
            update(StockLevel)
            .where(StockLevel.warehouse_id == warehouse_id, StockLevel.sku == sku)
            .values(on_hand=StockLevel.on_hand - q, updated_at=now)
            .returning(StockLevel.on_hand)
        )
    ).scalar_one()
    await session.execute(
        insert(InventoryMovement).values(
            warehouse_id=warehouse_id,
            sku=sku,
            movement_type="correction",
            quantity=-q,
            on_hand_after=on_hand_after,
            reason=reason,
            reference_type="shipment_exception",
            reference_id=reference_id,
            actor=actor,
            created_at=now,
        )
    )
    return q


async def block(
    session: AsyncSession,
    *,
    warehouse_id: uuid.UUID,
    sku: str,
    until: datetime,
    reason: str,
    reference_id: str,
) -> None:
    """Routing does not count the stock of ``sku`` in the warehouse until ``until`` (a later
    block extends an earlier one, never shortens it)."""
    stmt = pg_insert(StockBlock).values(
        warehouse_id=warehouse_id,
        sku=sku,
        blocked_until=until,
        reason=reason,
        reference_id=reference_id,
        created_at=utcnow(),
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=["warehouse_id", "sku"],
        set_={
            "blocked_until": stmt.excluded.blocked_until,
            "reason": stmt.excluded.reason,
            "reference_id": stmt.excluded.reference_id,
        },
        where=StockBlock.blocked_until < stmt.excluded.blocked_until,
    )
    await session.execute(stmt)
