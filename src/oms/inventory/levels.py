"""Stock levels and the ledger: adjustments (receive, count, correct) and returned units put
back on hand, each writing one ``inventory_movements`` row; level settings; the bulk load; and
the listings of levels and movements.

A level's row is locked only for its own statement pair, and a bulk load takes the rows in
(warehouse_id, sku) order (:func:`oms.inventory.domain.stock_lock_key`), the order every writer
of stock rows uses. The low-stock rule is :func:`oms.inventory.domain.low_stock_crossing`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from oms.inventory import domain
from oms.inventory.models import InventoryMovement, StockLevel, Warehouse
from oms.inventory.warehouses import get_warehouse
from oms.outbox.service import record_event
from oms.shared.clock import utcnow
from oms.shared.errors import Conflict, NotFound, Unprocessable

MAX_ON_HAND = 2**31 - 1  # stock_levels.on_hand is an integer column


@dataclass(frozen=True, slots=True)
class LevelView:
    warehouse_code: str
    sku: str
    on_hand: int
    reserved: int
    safety_stock: int
    available: int
    low_stock_threshold: int | None
    reorder_point: int | None
    reorder_quantity: int | None


def _view(code: str, row: StockLevel) -> LevelView:
    return LevelView(
        warehouse_code=code,
        sku=row.sku,
        on_hand=row.on_hand,
        reserved=row.reserved,
        safety_stock=row.safety_stock,
        available=domain.available(row.on_hand, row.reserved, row.safety_stock),
        low_stock_threshold=row.low_stock_threshold,
        reorder_point=row.reorder_point,
        reorder_quantity=row.reorder_quantity,
    )


async def _maybe_low_stock(
    session: AsyncSession,
    *,
    warehouse_id: uuid.UUID,
    warehouse_code: str,
    sku: str,
    before: int,
    after: int,
    threshold: int | None,
) -> None:
    """Record inventory.low_stock when availability crosses the threshold downwards (the
    rule and payload of :func:`oms.inventory.domain.low_stock_crossing`; ``oms_reserve``
    records the same event for reservations)."""
    event = domain.low_stock_crossing(
        warehouse_id=warehouse_id,
        warehouse_code=warehouse_code,
        sku=sku,
        before=before,
        after=after,
        threshold=threshold,
    )
    if event is not None:
        await record_event(
            session,
            type=event.type,
            aggregate_type=event.aggregate_type,
            aggregate_id=event.aggregate_id,
            data=event.data,
        )


AdjustmentKind = Literal["receive", "count", "correct"]


async def adjust_stock(
    session: AsyncSession,
    *,
    warehouse_code: str,
    sku: str,
    kind: AdjustmentKind,
    quantity: int,
    expected_on_hand: int | None = None,
    reason: str | None = None,
    reference: str | None = None,
    actor: str,
) -> LevelView:
    """Receive units, set a counted quantity (optionally guarded), or correct by a delta.

    Every change writes one ledger row; the row lock is held only for this statement pair.
    """
    wh = await get_warehouse(session, code=warehouse_code)
    if kind == "receive" and quantity <= 0:
        raise Unprocessable("receive needs a positive quantity", code="invalid_quantity")
    if kind == "count" and quantity < 0:
        raise Unprocessable("a count cannot be negative", code="invalid_quantity")
    if kind == "correct" and (quantity == 0 or not reason):
        raise Unprocessable(
            "a correction needs a non-zero quantity and a reason", code="invalid_quantity"
        )
    if kind != "correct":
        await session.execute(
            pg_insert(StockLevel)
            .values(warehouse_id=wh.id, sku=sku, on_hand=0, reserved=0, safety_stock=0)
            .on_conflict_do_nothing()
        )
    row = await session.scalar(
        select(StockLevel)
        .where(StockLevel.warehouse_id == wh.id, StockLevel.sku == sku)
        .with_for_update()
    )
    if row is None:
        raise NotFound(f"SKU '{sku}' has no stock in '{warehouse_code}'", code="sku_not_found")
    if expected_on_hand is not None and row.on_hand != expected_on_hand:
        raise Conflict(
            f"on hand is {row.on_hand}, not the expected {expected_on_hand}",
            code="count_guard_mismatch",
            on_hand=row.on_hand,
        )
    before_avail = domain.available(row.on_hand, row.reserved, row.safety_stock)
    new_on_hand = {
        "receive": row.on_hand + quantity,
        "count": quantity,
        "correct": row.on_hand + quantity,
    }[kind]
    if new_on_hand < row.reserved:
        raise Conflict(
            f"on hand would become {new_on_hand}, below the {row.reserved} units reserved for "
            "open orders; cancel or re-route them first",
            code="below_reserved",
            reserved=row.reserved,
        )
    if new_on_hand > MAX_ON_HAND:
        raise Conflict(
            f"on hand would become {new_on_hand}, above the limit of {MAX_ON_HAND} units",
            code="on_hand_limit",
            on_hand=row.on_hand,
        )
    delta = new_on_hand - row.on_hand
    row.on_hand = new_on_hand
    row.updated_at = utcnow()
    await session.flush()
    if delta != 0 or kind == "count":
        await session.execute(
            insert(InventoryMovement).values(
                warehouse_id=wh.id,
                sku=sku,
                movement_type={"receive": "receipt", "count": "count", "correct": "correction"}[
                    kind
                ],
                quantity=delta,
                on_hand_after=new_on_hand,
                reason=reason,
                reference_type="adjustment" if reference is None else "external",
                reference_id=reference,
                actor=actor,
                created_at=utcnow(),
            )
        )
    after_avail = domain.available(row.on_hand, row.reserved, row.safety_stock)
    await _maybe_low_stock(
        session,
        warehouse_id=wh.id,
        warehouse_code=wh.code,
        sku=sku,
        before=before_avail,
        after=after_avail,
        threshold=row.low_stock_threshold,
    )
    return _view(wh.code, row)


async def update_level_settings(
    session: AsyncSession, *, warehouse_code: str, sku: str, values: dict[str, Any]
) -> LevelView:
    """Set safety stock, low-stock threshold and reorder point/quantity of one level."""
    wh = await get_warehouse(session, code=warehouse_code)
    row = await session.scalar(
        select(StockLevel)
        .where(StockLevel.warehouse_id == wh.id, StockLevel.sku == sku)
        .with_for_update()
    )
    if row is None:
        raise NotFound(f"SKU '{sku}' has no stock in '{warehouse_code}'", code="sku_not_found")
    for key, value in values.items():
        setattr(row, key, value)
    row.updated_at = utcnow()
    await session.flush()
    return _view(wh.code, row)


@dataclass(frozen=True, slots=True)
class BulkRow:
    warehouse: str
    sku: str
    on_hand: int
    safety_stock: int | None = None
    low_stock_threshold: int | None = None
    reorder_point: int | None = None
    reorder_quantity: int | None = None


class BulkLoadError(Unprocessable):
    code = "bulk_row_invalid"


async def bulk_load(
    session: AsyncSession, *, rows: Sequence[BulkRow], actor: str, reason: str
) -> int:
    """Set absolute on-hand quantities (and settings) for many rows, all or nothing."""
    codes = {r.warehouse for r in rows}
    whs = {
        w.code: w.id
        for w in (await session.scalars(select(Warehouse).where(Warehouse.code.in_(codes)))).all()
    }
    seen: set[tuple[str, str]] = set()
    for i, r in enumerate(rows, start=1):
        if r.warehouse not in whs:
            raise BulkLoadError(
                f"row {i}: warehouse '{r.warehouse}' does not exist", row=i, column="warehouse"
            )
        if (r.warehouse, r.sku) in seen:
            raise BulkLoadError(f"row {i}: duplicate ({r.warehouse}, {r.sku})", row=i, column="sku")
        seen.add((r.warehouse, r.sku))
    for r in sorted(rows, key=lambda r: domain.stock_lock_key(whs[r.warehouse], r.sku)):
        await adjust_stock(
            session,
            warehouse_code=r.warehouse,
            sku=r.sku,
            kind="count",
            quantity=r.on_hand,
            reason=reason,
            actor=actor,
        )
        settings = {
            k: getattr(r, k)
            for k in ("safety_stock", "low_stock_threshold", "reorder_point", "reorder_quantity")
            if getattr(r, k) is not None
        }
        if settings:
            await update_level_settings(
                session, warehouse_code=r.warehouse, sku=r.sku, values=settings
            )
    return len(rows)


async def list_levels(
    session: AsyncSession, *, warehouse_code: str | None, sku: str | None, limit: int, offset: int
) -> list[LevelView]:
    """Stock levels, optionally for one warehouse and/or SKU."""
    stmt = select(Warehouse.code, StockLevel).join(
        Warehouse, Warehouse.id == StockLevel.warehouse_id
    )
    if warehouse_code:
        stmt = stmt.where(Warehouse.code == warehouse_code)
    if sku:
        stmt = stmt.where(StockLevel.sku == sku)
    stmt = stmt.order_by(StockLevel.sku, Warehouse.code).limit(limit).offset(offset)
    return [_view(code, row) for code, row in (await session.execute(stmt)).all()]


async def list_movements(
    session: AsyncSession,
    *,
    warehouse_code: str | None,
    sku: str | None,
    reference_id: str | None,
    limit: int,
    before_id: int | None,
) -> list[tuple[str, InventoryMovement]]:
    """Ledger rows newest first."""
    stmt = select(Warehouse.code, InventoryMovement).join(
        Warehouse, Warehouse.id == InventoryMovement.warehouse_id
    )
    if warehouse_code:
        stmt = stmt.where(Warehouse.code == warehouse_code)
    if sku:
        stmt = stmt.where(InventoryMovement.sku == sku)
    if reference_id:
        stmt = stmt.where(InventoryMovement.reference_id == reference_id)
    if before_id:
        stmt = stmt.where(InventoryMovement.id < before_id)
    stmt = stmt.order_by(InventoryMovement.id.desc()).limit(limit)
    return [(code, mv) for code, mv in (await session.execute(stmt)).all()]


async def restock(
    session: AsyncSession,
    *,
    warehouse_id: uuid.UUID,
    sku: str,
    quantity: int,
    reference_type: str,
    reference_id: str,
    actor: str,
) -> int:
    """Put returned units back on hand (ledger movement ``return``); returns on hand after."""
    now = utcnow()
    await session.execute(
        pg_insert(StockLevel)
        .values(warehouse_id=warehouse_id, sku=sku, on_hand=0, reserved=0, safety_stock=0)
        .on_conflict_do_nothing()
    )
    on_hand = (
        await session.execute(
            update(StockLevel)
            .where(StockLevel.warehouse_id == warehouse_id, StockLevel.sku == sku)
            .values(on_hand=StockLevel.on_hand + quantity, updated_at=now)
            .returning(StockLevel.on_hand)
        )
    ).scalar_one()
    await session.execute(
        insert(InventoryMovement).values(
            warehouse_id=warehouse_id,
            sku=sku,
            movement_type="return",
            quantity=quantity,
            on_hand_after=on_hand,
            reason=None,
            reference_type=reference_type,
            reference_id=reference_id,
            actor=actor,
            created_at=now,
        )
    )
    return int(on_hand)
