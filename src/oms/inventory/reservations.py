"""Reservations, used by order placement, cancellation and shipping: the routing snapshot
(what placement routes on), reserving all or nothing (the contended statement, in the database
function ``oms_reserve``), releasing and consuming (shipping) an order's allocations, and the
allocations of orders.

Locking rules (no deadlocks, short locks): stock rows are always locked in (warehouse_id, sku)
order (:func:`oms.inventory.domain.stock_lock_key`), and the contended conditional UPDATEs are
the last statements of a reservation. The database functions order placement calls are in
``inventory/sql/`` (their source of truth; migrations install frozen copies).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from oms.db import COMMITTED_BY_SERVER, driver_connection
from oms.inventory import domain
from oms.inventory.models import Allocation, InventoryMovement, StockLevel
from oms.shared.clock import utcnow


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
    """Units available per SKU (SKUs with none are left out)."""
    skus_with_level: set[str]
    """The requested SKUs this warehouse has a stock level for, whatever its quantity: a SKU
    no warehouse has a level for is unknown to oms (there is no product catalogue)."""
    blocked: set[str] = field(default_factory=set)
    """The requested SKUs blocked here now (``stock_blocks``): routing counts no stock."""


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
                skus_with_level=set(),
            )
            out.append(current)
        if r["sku"] is not None:
            current.skus_with_level.add(r["sku"])
            if r["blocked"]:
                current.blocked.add(r["sku"])
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


def _literal(value: str) -> str:
    """A SQL string literal (standard_conforming_strings is on since PostgreSQL 9.1)."""
    if "\x00" in value:
        raise ValueError("NUL in a SQL literal")
    return "'" + value.replace("'", "''") + "'"


def _uuid_array(values: Iterable[uuid.UUID | None]) -> str:
    """A uuid[] literal; each element in canonical form, so nothing in it needs quoting."""
    return (
        "'{"
        + ",".join(
            "NULL" if v is None else str(v if type(v) is uuid.UUID else uuid.UUID(str(v)))
            for v in values
        )
        + "}'::uuid[]"
    )


def _int_array(values: Iterable[int]) -> str:
    return "'{" + ",".join(str(int(v)) for v in values) + "}'::int[]"


def _text_array(values: Iterable[str]) -> str:
    return "ARRAY[" + ",".join(map(_literal, values)) + "]::text[]"


def reserve_literal_sql(reservations: Sequence[Reservation], now: datetime) -> str:
    """``SELECT oms_reserve(...)`` with :func:`reserve_args` written as SQL literals, for the
    simple query protocol (which takes no parameters)."""
    wids, skus, qtys, ids, orders, lines, ships, a_wids, a_skus, a_qtys, at, occurred = (
        reserve_args(reservations, now)
    )
    args = ", ".join(
        (
            _uuid_array(wids),
            _text_array(skus),
            _int_array(qtys),
            _uuid_array(ids),
            _uuid_array(orders),
            _uuid_array(lines),
            _uuid_array(ships),
            _uuid_array(a_wids),
            _text_array(a_skus),
            _int_array(a_qtys),
            _literal(at.isoformat()) + "::timestamptz",
            _literal(occurred),
        )
    )
    return f"SELECT oms_reserve({args})"


async def reserve_then_commit(
    session: AsyncSession, *, reservations: Sequence[Reservation]
) -> bool:
    """:func:`reserve`, and the caller's transaction committed by the server with it.

    For order placement over HTTP, where nothing follows the reservation: the stock rows stay
    locked only while the server runs the function and commits, not while the answer travels
    back, waits its turn in a busy event loop and COMMIT travels to the server (on one hot
    SKU, throughput is about 1 / lock-hold time). One simple-protocol message,
    ``SELECT oms_reserve(<literals>); COMMIT; BEGIN``
    (:meth:`oms.db.DriverConnection.execute_then_commit`); the statements inside the function
    keep their cached plans. True: committed (the session's commit then ends an empty
    transaction). False: a row no longer had the units; the transaction is aborted and
    nothing was reserved, as with :func:`reserve`.
    """
    if not reservations:
        raise ValueError("nothing to reserve")
    conn = await driver_connection(session)
    try:
        await conn.execute_then_commit(reserve_literal_sql(reservations, utcnow()))
    except DBAPIError as exc:
        if _stock_moved(exc):
            return False
        raise
    session.info[COMMITTED_BY_SERVER] = True
    return True


async def _open_allocations(
    session: AsyncSession, *, order_id: uuid.UUID, shipment_id: uuid.UUID | None
) -> list[Allocation]:
    stmt = select(Allocation).where(Allocation.order_id == order_id, Allocation.status == "open")
    if shipment_id is not None:
        stmt = stmt.where(Allocation.shipment_id == shipment_id)
    return list((await session.scalars(stmt)).all())


_LOCK_ORDER = 'ORDER BY s.warehouse_id, s.sku COLLATE "C" FOR UPDATE OF s'
_LOCK_SKUS = "SELECT 1 FROM stock_levels s WHERE s.sku = ANY($1::text[]) " + _LOCK_ORDER
_LOCK_OPEN_ALLOCATIONS = (
    "SELECT 1 FROM stock_levels s WHERE (s.warehouse_id, s.sku) IN "
    "(SELECT a.warehouse_id, a.sku FROM allocations a "
    "WHERE a.order_id = $1 AND a.status = 'open') " + _LOCK_ORDER
)


async def lock_stock_of_skus(session: AsyncSession, *, skus: Iterable[str]) -> None:
    """Lock every warehouse's stock row of ``skus``, in the fixed order, in one statement.

    For a transaction that will release some rows and reserve others it cannot know in
    advance (re-routing): taking them all first, in order, means it never waits for a row
    while holding one that sorts after it, the condition for a deadlock."""
    wanted = sorted(set(skus))
    if wanted:
        conn = await driver_connection(session)
        await conn.execute(_LOCK_SKUS, wanted)


async def lock_stock_of_order(session: AsyncSession, *, order_id: uuid.UUID) -> None:
    """Lock the stock rows of the order's open allocations, in the fixed order, in one
    statement: before consuming or releasing them shipment by shipment."""
    conn = await driver_connection(session)
    await conn.execute(_LOCK_OPEN_ALLOCATIONS, order_id)


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
