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

from oms.db import driver_connection
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
    scope: frozenset[uuid.UUID] | None = None,
) -> LevelView:
    """Receive units, set a counted quantity (optionally guarded), or correct by a delta.

    Every change writes one ledger row; the row lock is held only for this statement pair.
    ``scope``: the warehouses a scoped key works at (``auth.service.visible_warehouses``);
    any other is 404.
    """
    wh = await get_warehouse(session, code=warehouse_code)
    if scope is not None and wh.id not in scope:
        raise NotFound(f"warehouse '{warehouse_code}' does not exist", code="warehouse_not_found")
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


BULK_CHUNK_ROWS = 1000
"""Rows per statement of a bulk load's apply (two statements per chunk: lock, write)."""

_BULK_SETTINGS = ("safety_stock", "low_stock_threshold", "reorder_point", "reorder_quantity")
_SKU_MAX = 64  # stock_levels.sku is varchar(64)

# Levels the load names that do not exist yet, created empty before any lock is taken (nobody
# else sees them before the commit); in lock order, so two loads cannot deadlock on them.
_BULK_CREATE_SQL = """
INSERT INTO stock_levels (warehouse_id, sku, on_hand, reserved, safety_stock, updated_at)
SELECT i.warehouse_id, i.sku, 0, 0, 0, $3
FROM unnest($1::uuid[], $2::text[]) AS i(warehouse_id, sku)
ORDER BY i.warehouse_id, i.sku COLLATE "C"
ON CONFLICT (warehouse_id, sku) DO NOTHING
"""

# One chunk's stock rows, locked in (warehouse_id, sku COLLATE "C") order: the order every
# writer of stock rows uses (oms.inventory.domain.stock_lock_key; oms_reserve), so no deadlocks.
_BULK_LOCK_SQL = """
SELECT s.warehouse_id, s.sku, s.on_hand, s.reserved, s.safety_stock, s.low_stock_threshold
FROM stock_levels s
JOIN unnest($1::uuid[], $2::text[]) AS i(warehouse_id, sku)
  ON i.warehouse_id = s.warehouse_id AND i.sku = s.sku
ORDER BY s.warehouse_id, s.sku COLLATE "C"
FOR UPDATE OF s
"""

# One chunk's new levels and their ledger rows (one 'count' movement per row, as a count
# adjustment writes), in one statement; the rows are already locked by _BULK_LOCK_SQL.
_BULK_WRITE_SQL = """
WITH input AS (
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::int[], $4::int[], $5::int[], $6::int[],
                         $7::int[], $8::int[])
        AS i(warehouse_id, sku, on_hand, safety_stock, low_stock_threshold, reorder_point,
             reorder_quantity, old_on_hand)
), updated AS (
    UPDATE stock_levels s
    SET on_hand = i.on_hand,
        safety_stock = coalesce(i.safety_stock, s.safety_stock),
        low_stock_threshold = coalesce(i.low_stock_threshold, s.low_stock_threshold),
        reorder_point = coalesce(i.reorder_point, s.reorder_point),
        reorder_quantity = coalesce(i.reorder_quantity, s.reorder_quantity),
        updated_at = $9
    FROM input i
    WHERE s.warehouse_id = i.warehouse_id AND s.sku = i.sku
    RETURNING s.warehouse_id, s.sku, s.on_hand, i.old_on_hand
)
INSERT INTO inventory_movements (warehouse_id, sku, movement_type, quantity, on_hand_after,
                                 reason, reference_type, reference_id, actor, created_at)
SELECT u.warehouse_id, u.sku, 'count', u.on_hand - u.old_on_hand, u.on_hand, $10, 'adjustment',
       NULL, $11, $9
FROM updated u
ORDER BY u.warehouse_id, u.sku COLLATE "C"
"""


def _check_bulk_rows(rows: Sequence[BulkRow], warehouses: dict[str, uuid.UUID]) -> None:
    """Reject the load at its first bad row (1-based), before anything is written."""
    seen: set[tuple[str, str]] = set()
    for i, r in enumerate(rows, start=1):
        if r.warehouse not in warehouses:
            raise BulkLoadError(
                f"row {i}: warehouse '{r.warehouse}' does not exist", row=i, column="warehouse"
            )
        if not r.sku or len(r.sku) > _SKU_MAX:
            raise BulkLoadError(
                f"row {i}: a SKU has 1 to {_SKU_MAX} characters", row=i, column="sku"
            )
        if (r.warehouse, r.sku) in seen:
            raise BulkLoadError(f"row {i}: duplicate ({r.warehouse}, {r.sku})", row=i, column="sku")
        seen.add((r.warehouse, r.sku))
        for column in ("on_hand", *_BULK_SETTINGS):
            value = getattr(r, column)
            if value is not None and not 0 <= value <= MAX_ON_HAND:
                raise BulkLoadError(
                    f"row {i}: {column} must be between 0 and {MAX_ON_HAND}", row=i, column=column
                )


async def bulk_load(
    session: AsyncSession, *, rows: Sequence[BulkRow], actor: str, reason: str
) -> int:
    """Set absolute on-hand quantities (and settings) for many rows, all or nothing.

    Every row is checked first (its warehouse exists, no (warehouse, sku) twice, numbers in
    range: 422 ``bulk_row_invalid`` naming the row and column), and levels that do not exist
    yet are created empty, before any stock row is locked. Then the rows are applied
    set-based, :data:`BULK_CHUNK_ROWS` at a time in the lock order
    (:func:`oms.inventory.domain.stock_lock_key`): per chunk one statement locks its stock rows
    and one writes them with their ledger rows (a ``count`` movement each). A count below the
    units reserved for open orders rejects the whole load (409 ``below_reserved`` naming the
    row). The caller's one transaction makes it all or nothing; the stock rows it touches stay
    locked from their chunk until the commit, so order placement on them waits for the apply
    only, never for the checks. ``inventory.low_stock`` is recorded for each level whose
    availability the new count and settings take from above its threshold to at or below it.
    """
    codes = {r.warehouse for r in rows}
    warehouses = {
        w.code: w.id
        for w in (await session.scalars(select(Warehouse).where(Warehouse.code.in_(codes)))).all()
    }
    _check_bulk_rows(rows, warehouses)
    numbered = sorted(
        enumerate(rows, start=1),
        key=lambda item: domain.stock_lock_key(warehouses[item[1].warehouse], item[1].sku),
    )
    code_of = {wid: code for code, wid in warehouses.items()}
    conn = await driver_connection(session)
    now = utcnow()
    await conn.execute(
        _BULK_CREATE_SQL,
        [warehouses[r.warehouse] for _, r in numbered],
        [r.sku for _, r in numbered],
        now,
    )
    low_stock: list[domain.LowStockEvent] = []
    for start in range(0, len(numbered), BULK_CHUNK_ROWS):
        chunk = numbered[start : start + BULK_CHUNK_ROWS]
        wids = [warehouses[r.warehouse] for _, r in chunk]
        skus = [r.sku for _, r in chunk]
        current = {
            (rec["warehouse_id"], rec["sku"]): rec
            for rec in await conn.fetch(_BULK_LOCK_SQL, wids, skus)
        }
        old_on_hand: list[int] = []
        for (i, r), wid in zip(chunk, wids, strict=True):
            level = current[(wid, r.sku)]
            if r.on_hand < level["reserved"]:
                raise Conflict(
                    f"row {i}: on hand would become {r.on_hand}, below the {level['reserved']} "
                    f"units of {r.sku} in {r.warehouse} reserved for open orders; cancel or "
                    "re-route them first",
                    code="below_reserved",
                    reserved=level["reserved"],
                    row=i,
                )
            old_on_hand.append(level["on_hand"])
            safety = level["safety_stock"] if r.safety_stock is None else r.safety_stock
            threshold = (
                level["low_stock_threshold"]
                if r.low_stock_threshold is None
                else r.low_stock_threshold
            )
            event = domain.low_stock_crossing(
                warehouse_id=wid,
                warehouse_code=code_of[wid],
                sku=r.sku,
                before=domain.available(level["on_hand"], level["reserved"], level["safety_stock"]),
                after=domain.available(r.on_hand, level["reserved"], safety),
                threshold=threshold,
            )
            if event is not None:
                low_stock.append(event)
        await conn.execute(
            _BULK_WRITE_SQL,
            wids,
            skus,
            [r.on_hand for _, r in chunk],
            *([getattr(r, column) for _, r in chunk] for column in _BULK_SETTINGS),
            old_on_hand,
            now,
            reason,
            actor,
        )
    for event in low_stock:
        await record_event(
            session,
            type=event.type,
            aggregate_type=event.aggregate_type,
            aggregate_id=event.aggregate_id,
            data=event.data,
        )
    return len(rows)


async def list_levels(
    session: AsyncSession,
    *,
    warehouse_code: str | None,
    sku: str | None,
    limit: int,
    offset: int,
    scope: frozenset[uuid.UUID] | None = None,
) -> list[LevelView]:
    """Stock levels, optionally for one warehouse and/or SKU (and within ``scope``)."""
    stmt = select(Warehouse.code, StockLevel).join(
        Warehouse, Warehouse.id == StockLevel.warehouse_id
    )
    if scope is not None:
        stmt = stmt.where(StockLevel.warehouse_id.in_(list(scope)))
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
    scope: frozenset[uuid.UUID] | None = None,
) -> list[tuple[str, InventoryMovement]]:
    """Ledger rows newest first (within ``scope``, when given)."""
    stmt = select(Warehouse.code, InventoryMovement).join(
        Warehouse, Warehouse.id == InventoryMovement.warehouse_id
    )
    if scope is not None:
        stmt = stmt.where(InventoryMovement.warehouse_id.in_(list(scope)))
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
