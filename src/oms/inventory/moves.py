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

from sqlalchemy import insert, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from oms.db import driver_connection
from oms.inventory import domain
from oms.inventory.levels import MAX_ON_HAND
from oms.inventory.models import IncomingSupply, InventoryMovement, StockLevel
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
