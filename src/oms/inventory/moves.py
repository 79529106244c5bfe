"""Units that leave or enter a location other than by an order's reservation: transfers between
locations (out at the source, in at the destination, their discrepancies) and sales at a
store's till. Each change writes its ledger row (``inventory_movements``), so per (warehouse,
SKU) the ledger still sums to on hand.

Stock rows are locked in (warehouse_id, sku COLLATE "C") order, the order every writer uses
(:func:`oms.inventory.domain.stock_lock_key`), in one statement, before any is changed.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from sqlalchemy import insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from oms.db import driver_connection
from oms.inventory import domain
from oms.inventory.levels import MAX_ON_HAND
from oms.inventory.models import Allocation, IncomingSupply, InventoryMovement, StockLevel
from oms.shared.clock import utcnow
from oms.shared.errors import Conflict

_LOCK = """
SELECT s.sku, s.on_hand, s.reserved FROM stock_levels s
WHERE s.warehouse_id = $1 AND s.sku = ANY($2::text[])
ORDER BY s.warehouse_id, s.sku COLLATE "C"
FOR UPDATE OF s
"""


@dataclass(frozen=True, slots=True)
class Units:
    sku: str
    quantity: int


@dataclass(frozen=True, slots=True)
class Taken:
    """What a take-out moved per SKU, and what it could not (``uncovered``)."""

    sku: str
    taken: int
    uncovered: int


async def _lock_levels(
    session: AsyncSession, *, warehouse_id: uuid.UUID, skus: Sequence[str]
) -> dict[str, tuple[int, int]]:
    """Create missing levels empty, then lock the rows in the fixed order: sku → (on hand,
    reserved)."""
    wanted = sorted(set(skus), key=lambda s: domain.stock_lock_key(warehouse_id, s))
    for sku in wanted:
        await session.execute(
            pg_insert(StockLevel)
            .values(warehouse_id=warehouse_id, sku=sku, on_hand=0, reserved=0, safety_stock=0)
            .on_conflict_do_nothing()
        )
    conn = await driver_connection(session)
    rows = await conn.fetch(_LOCK, warehouse_id, wanted)
    return {r["sku"]: (int(r["on_hand"]), int(r["reserved"])) for r in rows}


async def _write(
    session: AsyncSession,
    *,
    warehouse_id: uuid.UUID,
    sku: str,
    delta: int,
    movement_type: str,
    reference_type: str,
    reference_id: str,
    reason: str | None,
    actor: str,
) -> int:
    now = utcnow()
    on_hand = (
        await session.execute(
            update(StockLevel)
            .where(StockLevel.warehouse_id == warehouse_id, StockLevel.sku == sku)
            .values(on_hand=StockLevel.on_hand + delta, updated_at=now)
            .returning(StockLevel.on_hand)
            .execution_options(synchronize_session=False)
        )
    ).scalar_one()
    await session.execute(
        insert(InventoryMovement).values(
            warehouse_id=warehouse_id,
            sku=sku,
            movement_type=movement_type,
            quantity=delta,
            on_hand_after=on_hand,
            reason=reason,
            reference_type=reference_type,
            reference_id=reference_id,
            actor=actor,
            created_at=now,
        )
    )
    return int(on_hand)


async def take_out(
    session: AsyncSession,
    *,
    warehouse_id: uuid.UUID,
    units: Sequence[Units],
    movement_type: str,
    reference_type: str,
    reference_id: str,
    actor: str,
    partial: bool = False,
) -> list[Taken]:
    """Units leave ``warehouse_id``'s on hand (never its reserved units: they belong to open
    orders). All or nothing (409 ``insufficient_stock`` naming the short SKUs), or with
    ``partial`` as many as it holds unreserved, the rest reported ``uncovered`` (a till sale:
    the goods already left). One ledger row per SKU moved."""
    totals: dict[str, int] = {}
    for u in units:
        totals[u.sku] = totals.get(u.sku, 0) + u.quantity
    levels = await _lock_levels(session, warehouse_id=warehouse_id, skus=list(totals))
    plan: list[Taken] = []
    short: list[dict[str, int | str]] = []
    for sku in sorted(totals, key=lambda s: domain.stock_lock_key(warehouse_id, s)):
        on_hand, reserved = levels[sku]
        free = max(0, on_hand - reserved)
        want = totals[sku]
        if want > free and not partial:
            short.append({"line_id": sku, "sku": sku, "requested": want, "available": free})
        plan.append(Taken(sku, min(want, free), max(0, want - free)))
    if short:
        raise Conflict(
            "the source does not hold these units unreserved: "
            + ", ".join(f"{s['sku']} ({s['available']} of {s['requested']})" for s in short),
            code="insufficient_stock",
            short_lines=short,
        )
    for t in plan:
        if t.taken:
            await _write(
                session,
                warehouse_id=warehouse_id,
                sku=t.sku,
                delta=-t.taken,
                movement_type=movement_type,
                reference_type=reference_type,
                reference_id=reference_id,
                reason=None,
                actor=actor,
            )
    return plan


async def put_in(
    session: AsyncSession,
    *,
    warehouse_id: uuid.UUID,
    units: Sequence[Units],
    movement_type: str,
    reference_type: str,
    reference_id: str,
    actor: str,
    reason: str | None = None,
) -> None:
    """Units arrive at ``warehouse_id`` (one ledger row per entry, in lock order). A zero
    quantity writes a row that moves nothing: a fact for the ledger (units that never came)."""
    await _lock_levels(session, warehouse_id=warehouse_id, skus=[u.sku for u in units])
    for u in sorted(units, key=lambda u: domain.stock_lock_key(warehouse_id, u.sku)):
        on_hand = await _write(
            session,
            warehouse_id=warehouse_id,
            sku=u.sku,
            delta=u.quantity,
            movement_type=movement_type,
            reference_type=reference_type,
            reference_id=reference_id,
            reason=reason,
            actor=actor,
        )
        if on_hand > MAX_ON_HAND:  # pragma: no cover - the integer column refuses it first
            raise Conflict("on hand would exceed its limit", code="on_hand_limit")


async def expect_incoming(
    session: AsyncSession,
    *,
    warehouse_id: uuid.UUID,
    sku: str,
    quantity: int,
    expected_on: date,
    reference: str,
) -> uuid.UUID:
    """An expected receipt at ``warehouse_id`` (shown beside availability as incoming)."""
    supply_id = uuid.uuid4()
    await session.execute(
        insert(IncomingSupply).values(
            id=supply_id,
            warehouse_id=warehouse_id,
            sku=sku,
            quantity=quantity,
            expected_on=expected_on,
            reference=reference,
            status="expected",
            created_at=utcnow(),
        )
    )
    return supply_id


async def settle_incoming(session: AsyncSession, *, supply_id: uuid.UUID, remaining: int) -> None:
    """What is still expected of a receipt: fewer units, or none (closed as received)."""
    values: dict[str, object] = {"quantity": remaining} if remaining > 0 else {"status": "received"}
    await session.execute(
        update(IncomingSupply)
        .where(IncomingSupply.id == supply_id, IncomingSupply.status == "expected")
        .values(**values)
    )


@dataclass(frozen=True, slots=True)
class ReservedOut:
    """Units of an order line that left ``warehouse_id`` reserved for it (a transfer to fulfil)."""

    order_line_id: uuid.UUID
    sku: str
    quantity: int


async def take_out_reserved(
    session: AsyncSession,
    *,
    warehouse_id: uuid.UUID,
    order_id: uuid.UUID,
    shipment_id: uuid.UUID,
    skus: Sequence[str],
    movement_type: str,
    reference_type: str,
    reference_id: str,
    actor: str,
) -> list[ReservedOut]:
    """The units reserved at ``warehouse_id`` for a shipment of an order (``skus``) leave that
    location: its open allocations there are closed (``released``, detached from the shipment:
    the units are on their way, not the shipment's any more) and on hand and reserved both go
    down, one ledger row per SKU. The stock rows are locked in the fixed order first. Returns
    what left, per order line (nothing when the order no longer reserves units there)."""
    levels = await _lock_levels(session, warehouse_id=warehouse_id, skus=skus)
    allocs = list(
        (
            await session.scalars(
                select(Allocation)
                .where(
                    Allocation.order_id == order_id,
                    Allocation.shipment_id == shipment_id,
                    Allocation.warehouse_id == warehouse_id,
                    Allocation.sku.in_(list(levels)),
                    Allocation.status == "open",
                )
                .order_by(Allocation.created_at, Allocation.id)
            )
        ).all()
    )
    if not allocs:
        return []
    now = utcnow()
    await session.execute(
        update(Allocation)
        .where(Allocation.id.in_([a.id for a in allocs]))
        .values(status="released", closed_at=now, shipment_id=None)
        .execution_options(synchronize_session=False)
    )
    per_sku: dict[str, int] = {}
    per_line: dict[tuple[uuid.UUID, str], int] = {}
    for a in allocs:
        per_sku[a.sku] = per_sku.get(a.sku, 0) + a.quantity
        per_line[(a.order_line_id, a.sku)] = per_line.get((a.order_line_id, a.sku), 0) + a.quantity
    for sku in sorted(per_sku, key=lambda s: domain.stock_lock_key(warehouse_id, s)):
        qty = per_sku[sku]
        await session.execute(
            update(StockLevel)
            .where(StockLevel.warehouse_id == warehouse_id, StockLevel.sku == sku)
            .values(reserved=StockLevel.reserved - qty)
            .execution_options(synchronize_session=False)
        )
        await _write(
            session,
            warehouse_id=warehouse_id,
            sku=sku,
            delta=-qty,
            movement_type=movement_type,
            reference_type=reference_type,
            reference_id=reference_id,
            reason=f"reserved for order {order_id}",
            actor=actor,
        )
    return [ReservedOut(line, sku, q) for (line, sku), q in per_line.items()]


async def reserve_arrived(
    session: AsyncSession,
    *,
    warehouse_id: uuid.UUID,
    order_id: uuid.UUID,
    shipment_id: uuid.UUID,
    units: Sequence[ReservedOut],
) -> None:
    """Reserve units that have just been booked in at ``warehouse_id`` (its stock rows are
    locked by that booking) for a shipment of an order: open allocations (with the order's
    placement time, channel and currency) and ``reserved`` raised. Safety stock does not hold
    them back: they came for this order."""
    wanted = [u for u in units if u.quantity > 0]
    if not wanted:
        return
    now = utcnow()
    conn = await driver_connection(session)
    await conn.execute(
        """
        INSERT INTO allocations (id, order_id, order_line_id, shipment_id, warehouse_id, sku,
                                 quantity, status, created_at, placed_at, channel, currency)
        SELECT a.id, o.id, a.line_id, $2, $3, a.sku, a.qty, 'open', $4, o.created_at,
               o.channel, o.currency
        FROM unnest($5::uuid[], $6::uuid[], $7::text[], $8::int[]) AS a(id, line_id, sku, qty)
        JOIN orders o ON o.id = $1
        """,
        order_id,
        shipment_id,
        warehouse_id,
        now,
        [uuid.uuid4() for _ in wanted],
        [u.order_line_id for u in wanted],
        [u.sku for u in wanted],
        [u.quantity for u in wanted],
    )
    per_sku: dict[str, int] = {}
    for u in wanted:
        per_sku[u.sku] = per_sku.get(u.sku, 0) + u.quantity
    for sku in sorted(per_sku, key=lambda s: domain.stock_lock_key(warehouse_id, s)):
        await session.execute(
            update(StockLevel)
            .where(StockLevel.warehouse_id == warehouse_id, StockLevel.sku == sku)
            .values(reserved=StockLevel.reserved + per_sku[sku], updated_at=now)
            .execution_options(synchronize_session=False)
        )
