"""Inventory use cases: warehouses, adjustments with a ledger, availability, reservations.

Locking rules (no deadlocks, short locks): stock rows are always locked in (warehouse_id, sku)
order (:func:`oms.inventory.domain.stock_lock_key`), and the contended conditional UPDATEs are
the last statements of a reservation. The rules themselves (availability, the low-stock
crossing) are in :mod:`oms.inventory.domain`; the database functions order placement calls are
in ``inventory/sql/`` (their source of truth; migrations install frozen copies).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any, Literal

from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from oms.db import driver_connection
from oms.inventory import domain
from oms.inventory.models import (
    Allocation,
    IncomingSupply,
    InventoryMovement,
    StockLevel,
    Warehouse,
)
from oms.outbox.service import record_event
from oms.shared.clock import utcnow
from oms.shared.errors import Conflict, NotFound, Unprocessable

MAX_ON_HAND = 2**31 - 1  # stock_levels.on_hand is an integer column

_AVAILABLE = func.oms_stock_available(
    StockLevel.on_hand, StockLevel.reserved, StockLevel.safety_stock
)
"""Availability in a query: the database function ``oms_stock_available``
(``inventory/sql/oms_stock_available.sql``, inlined by the planner), the SQL twin of
:func:`oms.inventory.domain.available`."""

AVAILABLE = _AVAILABLE.label("available")


# ---- warehouses -------------------------------------------------------------------------


async def get_warehouse(session: AsyncSession, *, code: str) -> Warehouse:
    """The warehouse with this code, or 404 ``warehouse_not_found``."""
    wh = await session.scalar(select(Warehouse).where(Warehouse.code == code))
    if wh is None:
        raise NotFound(f"warehouse '{code}' does not exist", code="warehouse_not_found")
    return wh


async def create_warehouse(session: AsyncSession, *, values: dict[str, Any]) -> Warehouse:
    """Add a warehouse; its code must be new."""
    now = utcnow()
    stmt = (
        pg_insert(Warehouse)
        .values(id=uuid.uuid4(), created_at=now, updated_at=now, active=True, **values)
        .on_conflict_do_nothing(index_elements=["code"])
        .returning(Warehouse.id)
    )
    if (await session.execute(stmt)).first() is None:
        raise Conflict(f"warehouse '{values['code']}' already exists", code="warehouse_exists")
    return await get_warehouse(session, code=values["code"])


async def update_warehouse(
    session: AsyncSession, *, code: str, values: dict[str, Any]
) -> Warehouse:
    """Change a warehouse's attributes (not its code)."""
    wh = await get_warehouse(session, code=code)
    for key, value in values.items():
        setattr(wh, key, value)
    wh.updated_at = utcnow()
    if "active" in values:
        wh.deactivated_at = None if values["active"] else utcnow()
    await session.flush()
    return wh


async def list_warehouses(
    session: AsyncSession, *, include_inactive: bool = True
) -> list[Warehouse]:
    """Warehouses by priority rank, then code."""
    stmt = select(Warehouse).order_by(Warehouse.priority, Warehouse.code)
    if not include_inactive:
        stmt = stmt.where(Warehouse.active.is_(True))
    return list((await session.scalars(stmt)).all())


# ---- levels and the ledger --------------------------------------------------------------


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


# ---- incoming supply --------------------------------------------------------------------


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


# ---- availability -----------------------------------------------------------------------


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


# ---- reservations (used by order placement, cancellation and shipping) ------------------


@dataclass(frozen=True, slots=True)
class WarehouseStock:
    """A warehouse and the available units of the requested SKUs: the routing snapshot."""

    id: uuid.UUID
    code: str
    country: str
    latitude: float | None
    longitude: float | None
    priority: int
    active: bool
    ships_to: frozenset[str] | None
    is_pickup_store: bool
    available: dict[str, int]


ROUTING_SNAPSHOT_SQL = "SELECT * FROM oms_routing_snapshot($1::text[]) ORDER BY code"
"""Every warehouse (by code), LEFT JOINed to the stock rows of the SKUs, with their available
units: the database function ``oms_routing_snapshot`` (``inventory/sql/oms_routing_snapshot.sql``),
which plans its query once per connection (as a plain prepared statement Postgres re-planned it
on every order: the SKU array changes its estimates). The load benchmark's ceiling sends this
same statement."""


async def routing_snapshot(session: AsyncSession, *, skus: Iterable[str]) -> list[WarehouseStock]:
    """Every warehouse with the available units of ``skus`` (no locks taken).

    One query on the hot path of order placement (prepared once per connection). Warehouses
    are read every time, not cached: a deactivated warehouse stops receiving orders at once.
    """
    conn = await driver_connection(session)
    rows = await conn.fetch(ROUTING_SNAPSHOT_SQL, sorted(set(skus)))
    out: list[WarehouseStock] = []
    current: WarehouseStock | None = None
    for r in rows:
        if current is None or current.id != r["id"]:
            ships_to = r["ships_to"]
            current = WarehouseStock(
                id=r["id"],
                code=r["code"],
                country=r["country"],
                latitude=r["latitude"],
                longitude=r["longitude"],
                priority=r["priority"],
                active=r["active"],
                ships_to=frozenset(ships_to) if ships_to else None,
                is_pickup_store=r["is_pickup_store"],
                available={},
            )
            out.append(current)
        available = r["available"]
        if available is not None and available > 0:
            current.available[r["sku"]] = int(available)
    return out


@dataclass(frozen=True, slots=True)
class Reservation:
    order_id: uuid.UUID
    order_line_id: uuid.UUID
    shipment_id: uuid.UUID | None
    warehouse_id: uuid.UUID
    sku: str
    quantity: int


RESERVE_SQL = "SELECT oms_reserve($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
"""The reservation, in the database function ``oms_reserve`` (``inventory/sql/oms_reserve.sql``),
whose statements are planned once per connection, not once per order; its arguments are
:func:`reserve_args`. The load benchmark's ceiling sends this same statement."""

STOCK_MOVED = "OMS01"
"""SQLSTATE of the error ``oms_reserve`` raises when a row no longer has the units."""


def _stock_moved(exc: DBAPIError) -> bool:
    return getattr(exc.orig, "sqlstate", None) == STOCK_MOVED


def reserve_args(reservations: Sequence[Reservation], now: datetime) -> list[Any]:
    """The 12 arguments of ``oms_reserve``: the units per (warehouse, sku), the allocation
    rows, and the time (as a timestamp, and as the events' ``occurred_at`` text)."""
    totals: dict[tuple[uuid.UUID, str], int] = defaultdict(int)
    for r in reservations:
        totals[(r.warehouse_id, r.sku)] += r.quantity
    return [
        [k[0] for k in totals],
        [k[1] for k in totals],
        list(totals.values()),
        [uuid.uuid4() for _ in reservations],
        [r.order_id for r in reservations],
        [r.order_line_id for r in reservations],
        [r.shipment_id for r in reservations],
        [r.warehouse_id for r in reservations],
        [r.sku for r in reservations],
        [r.quantity for r in reservations],
        now,
        now.isoformat(),
    ]


async def reserve(session: AsyncSession, *, reservations: Sequence[Reservation]) -> bool:
    """Reserve the units, or return False (reserving nothing) if any (warehouse, sku) no
    longer has them.

    One call of ``oms_reserve``, all or nothing: it writes the allocation rows, locks the
    stock rows in (warehouse_id, sku) order (the order every other writer of stock rows uses,
    so no deadlocks), checks that each still has the units, raises ``reserved`` and records
    ``inventory.low_stock`` for each level that crosses its threshold. It is the contended
    statement, so callers send it last before commit. False: the function raised, the
    transaction is aborted, and the caller must roll back to a savepoint taken before it
    (which also releases the row locks).
    """
    if not reservations:
        return True
    conn = await driver_connection(session)
    try:
        await conn.execute(RESERVE_SQL, *reserve_args(reservations, utcnow()))
    except DBAPIError as exc:
        if _stock_moved(exc):
            return False
        raise
    return True


async def _open_allocations(
    session: AsyncSession, *, order_id: uuid.UUID, shipment_id: uuid.UUID | None
) -> list[Allocation]:
    stmt = select(Allocation).where(Allocation.order_id == order_id, Allocation.status == "open")
    if shipment_id is not None:
        stmt = stmt.where(Allocation.shipment_id == shipment_id)
    return list((await session.scalars(stmt)).all())


def _grouped(allocs: Sequence[Allocation]) -> list[tuple[tuple[uuid.UUID, str], int]]:
    totals: dict[tuple[uuid.UUID, str], int] = defaultdict(int)
    for a in allocs:
        totals[(a.warehouse_id, a.sku)] += a.quantity
    return sorted(totals.items(), key=lambda kv: domain.stock_lock_key(*kv[0]))


async def release(
    session: AsyncSession, *, order_id: uuid.UUID, shipment_id: uuid.UUID | None = None
) -> int:
    """Give back the reserved units of an order's open allocations (or one shipment's)."""
    allocs = await _open_allocations(session, order_id=order_id, shipment_id=shipment_id)
    if not allocs:
        return 0
    now = utcnow()
    await session.execute(
        update(Allocation)
        .where(Allocation.id.in_([a.id for a in allocs]))
        .values(status="released", closed_at=now)
    )
    for (wid, sku), qty in _grouped(allocs):
        await session.execute(
            update(StockLevel)
            .where(StockLevel.warehouse_id == wid, StockLevel.sku == sku)
            .values(reserved=StockLevel.reserved - qty, updated_at=now)
        )
    return sum(a.quantity for a in allocs)


async def consume(
    session: AsyncSession, *, order_id: uuid.UUID, shipment_id: uuid.UUID | None, actor: str
) -> int:
    """Ship: the reserved units leave the building (on hand and reserved both go down)."""
    allocs = await _open_allocations(session, order_id=order_id, shipment_id=shipment_id)
    if not allocs:
        return 0
    now = utcnow()
    await session.execute(
        update(Allocation)
        .where(Allocation.id.in_([a.id for a in allocs]))
        .values(status="consumed", closed_at=now)
    )
    for (wid, sku), qty in _grouped(allocs):
        on_hand_after = (
            await session.execute(
                update(StockLevel)
                .where(StockLevel.warehouse_id == wid, StockLevel.sku == sku)
                .values(
                    on_hand=StockLevel.on_hand - qty,
                    reserved=StockLevel.reserved - qty,
                    updated_at=now,
                )
                .returning(StockLevel.on_hand)
            )
        ).scalar_one()
        await session.execute(
            insert(InventoryMovement).values(
                warehouse_id=wid,
                sku=sku,
                movement_type="shipment",
                quantity=-qty,
                on_hand_after=on_hand_after,
                reason=None,
                reference_type="shipment" if shipment_id else "order",
                reference_id=str(shipment_id or order_id),
                actor=actor,
                created_at=now,
            )
        )
    return sum(a.quantity for a in allocs)


async def allocations_for_orders(
    session: AsyncSession, *, order_ids: Sequence[uuid.UUID]
) -> list[Allocation]:
    """Every allocation of the orders (open, consumed and released)."""
    stmt = (
        select(Allocation)
        .where(Allocation.order_id.in_(list(order_ids)))
        .order_by(Allocation.created_at)
    )
    return list((await session.scalars(stmt)).all())


async def warehouse_codes(
    session: AsyncSession, *, ids: Iterable[uuid.UUID]
) -> dict[uuid.UUID, str]:
    """Codes for warehouse ids."""
    wanted = list(set(ids))
    if not wanted:
        return {}
    rows = await session.execute(
        select(Warehouse.id, Warehouse.code).where(Warehouse.id.in_(wanted))
    )
    return {wid: code for wid, code in rows.all()}


async def warehouse_ids_by_code(
    session: AsyncSession, *, codes: Iterable[str]
) -> dict[str, uuid.UUID]:
    """Ids for warehouse codes (unknown codes are absent)."""
    rows = await session.execute(
        select(Warehouse.code, Warehouse.id).where(Warehouse.code.in_(list(codes)))
    )
    return {code: wid for code, wid in rows.all()}


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
