"""Returns (RMAs): requested → approved/rejected → received → closed.

Receiving records each unit's disposition: restocked (to the warehouse it shipped from unless
another is named; back into available stock through the ledger) or discarded. A refund can be
issued on receipt or separately: restocking and refunding are independent.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from oms.auth.service import Principal
from oms.inventory import service as inventory_service
from oms.orders import service as orders_service
from oms.orders.domain import OrderStatus
from oms.outbox.service import record_event
from oms.returns.models import Return, ReturnLine
from oms.shared.clock import utcnow
from oms.shared.errors import Conflict, NotFound, Unprocessable

REASON_CODES = (
    "damaged",
    "defective",
    "wrong_item",
    "not_as_described",
    "size_or_fit",
    "no_longer_needed",
    "other",
)
OPEN_OR_DONE = ("requested", "approved", "received", "closed")


@dataclass(frozen=True, slots=True)
class LineRequest:
    order_line_id: uuid.UUID
    quantity: int
    reason_code: str
    comment: str | None = None


@dataclass(frozen=True, slots=True)
class LineReceipt:
    return_line_id: uuid.UUID
    restock: int
    discard: int
    warehouse_code: str | None = None


async def _delivered_by_line(
    session: AsyncSession, order_id: uuid.UUID
) -> tuple[dict[uuid.UUID, int], dict[uuid.UUID, uuid.UUID]]:
    """Units shipped per order line, and the warehouse that shipped most of each line."""
    allocs = await inventory_service.allocations_for_orders(session, order_ids=[order_id])
    delivered: dict[uuid.UUID, int] = defaultdict(int)
    by_wh: dict[uuid.UUID, dict[uuid.UUID, int]] = defaultdict(lambda: defaultdict(int))
    for a in allocs:
        if a.status == "consumed":
            delivered[a.order_line_id] += a.quantity
            by_wh[a.order_line_id][a.warehouse_id] += a.quantity
    origin = {line: max(whs.items(), key=lambda kv: kv[1])[0] for line, whs in by_wh.items()}
    return delivered, origin


async def _returned_by_line(
    session: AsyncSession, order_id: uuid.UUID, statuses: tuple[str, ...]
) -> dict[uuid.UUID, int]:
    rows = await session.execute(
        select(ReturnLine.order_line_id, func.sum(ReturnLine.quantity))
        .join(Return, Return.id == ReturnLine.return_id)
        .where(Return.order_id == order_id, Return.status.in_(statuses))
        .group_by(ReturnLine.order_line_id)
    )
    return {line: int(qty) for line, qty in rows.all()}


async def request_return(
    session: AsyncSession,
    *,
    order_id: uuid.UUID,
    lines: list[LineRequest],
    note: str | None,
    principal: Principal,
) -> Return:
    """Open an RMA for a delivered order; never more than delivered minus already returned.

    The order row stays locked from the check to the commit, so concurrent requests for the
    same order are checked one after the other (each sees the returns committed before it)."""
    order = await orders_service.lock_order(session, order_id=order_id, principal=principal)
    status = order.status
    if status != OrderStatus.DELIVERED.value:
        raise Conflict(
            f"only delivered orders can be returned; this one is '{status}'",
            code="order_not_delivered",
            current_status=status,
        )
    skus = {ln.id: ln.sku for ln in order.lines}
    delivered, _ = await _delivered_by_line(session, order_id)
    already = await _returned_by_line(session, order_id, OPEN_OR_DONE)
    asked: dict[uuid.UUID, int] = defaultdict(int)
    for i, ln in enumerate(lines):
        if ln.order_line_id not in skus:
            raise Unprocessable(
                f"lines[{i}]: {ln.order_line_id} is not a line of this order", code="unknown_line"
            )
        if ln.reason_code not in REASON_CODES:
            raise Unprocessable(f"lines[{i}]: unknown reason code", code="validation_error")
        asked[ln.order_line_id] += ln.quantity
    for line_id, qty in asked.items():
        returnable = delivered.get(line_id, 0) - already.get(line_id, 0)
        if qty > returnable:
            raise Conflict(
                f"line {skus[line_id]}: {qty} requested, only {returnable} can still be returned",
                code="return_exceeds_delivered",
                order_line_id=str(line_id),
                returnable=returnable,
            )
    now = utcnow()
    rma = Return(
        id=uuid.uuid4(),
        order_id=order_id,
        status="requested",
        note=note,
        created_by=principal.actor,
        created_at=now,
        updated_at=now,
    )
    session.add(rma)
    await session.flush()
    session.add_all(
        ReturnLine(
            id=uuid.uuid4(),
            return_id=rma.id,
            order_line_id=ln.order_line_id,
            sku=skus[ln.order_line_id],
            quantity=ln.quantity,
            reason_code=ln.reason_code,
            comment=ln.comment,
            restocked_quantity=0,
            discarded_quantity=0,
        )
        for ln in lines
    )
    await session.flush()
    await orders_service.add_returned_units(
        session, order_id=order_id, units=sum(ln.quantity for ln in lines)
    )
    await record_event(
        session,
        type="return.requested",
        aggregate_type="order",
        aggregate_id=str(order_id),
        data={
            "return_id": str(rma.id),
            "order_id": str(order_id),
            "lines": [
                {
                    "sku": skus[ln.order_line_id],
                    "quantity": ln.quantity,
                    "reason_code": ln.reason_code,
                }
                for ln in lines
            ],
        },
    )
    return rma


async def get_return(
    session: AsyncSession, *, return_id: uuid.UUID, principal: Principal
) -> Return:
    """One return (404 when missing or not visible to the caller's channel)."""
    rma = await session.get(Return, return_id)
    if rma is None:
        raise NotFound(f"return {return_id} does not exist", code="return_not_found")
    await orders_service.get_order(session, order_id=rma.order_id, principal=principal)
    return rma


async def _lock(session: AsyncSession, *, return_id: uuid.UUID, principal: Principal) -> Return:
    """THE order lock of the return's order, then the return as committed now: every change of
    a return is a change of its order, one at a time with the order's other changes."""
    order_id = await session.scalar(select(Return.order_id).where(Return.id == return_id))
    if order_id is None:
        raise NotFound(f"return {return_id} does not exist", code="return_not_found")
    await orders_service.lock_order(session, order_id=order_id, principal=principal)
    rma = await session.scalar(
        select(Return).where(Return.id == return_id).execution_options(populate_existing=True)
    )
    assert rma is not None  # returns are never deleted
    return rma


async def lines_of(
    session: AsyncSession, *, return_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[ReturnLine]]:
    out: dict[uuid.UUID, list[ReturnLine]] = {rid: [] for rid in return_ids}
    rows = await session.scalars(
        select(ReturnLine).where(ReturnLine.return_id.in_(return_ids)).order_by(ReturnLine.id)
    )
    for row in rows.all():
        out[row.return_id].append(row)
    return out


async def returns_of(
    session: AsyncSession, *, order_id: uuid.UUID, principal: Principal
) -> list[Return]:
    await orders_service.get_order(session, order_id=order_id, principal=principal)
    rows = await session.scalars(
        select(Return).where(Return.order_id == order_id).order_by(Return.created_at)
    )
    return list(rows.all())


async def _move(rma: Return, source: tuple[str, ...], target: str) -> None:
    if rma.status not in source:
        raise Conflict(
            f"the return is '{rma.status}'; it must be {' or '.join(source)} to become {target}",
            code="illegal_return_transition",
            current_status=rma.status,
        )
    rma.status = target
    rma.updated_at = utcnow()


async def decide(
    session: AsyncSession, *, return_id: uuid.UUID, approve: bool, principal: Principal
) -> Return:
    """Approve or reject a requested return."""
    rma = await _lock(session, return_id=return_id, principal=principal)
    await _move(rma, ("requested",), "approved" if approve else "rejected")
    await session.flush()
    if not approve:  # a rejected return's units no longer count as returned
        lines = (await lines_of(session, return_ids=[rma.id]))[rma.id]
        await orders_service.add_returned_units(
            session, order_id=rma.order_id, units=-sum(ln.quantity for ln in lines)
        )
    return rma


@dataclass(frozen=True, slots=True)
class Restock:
    """Units of a received return that go back on a warehouse's shelf."""

    warehouse_id: uuid.UUID
    sku: str
    quantity: int


async def receive(
    session: AsyncSession,
    *,
    return_id: uuid.UUID,
    receipts: list[LineReceipt],
    principal: Principal,
) -> tuple[Return, list[Restock]]:
    """Record what came back and what happens to each unit (under the order lock); returns the
    units to put back on the shelves (``flows.returns`` restocks and refunds)."""
    rma = await _lock(session, return_id=return_id, principal=principal)
    await _move(rma, ("approved",), "received")
    lines = {ln.id: ln for ln in (await lines_of(session, return_ids=[rma.id]))[rma.id]}
    _, origin = await _delivered_by_line(session, rma.order_id)
    given = {r.return_line_id for r in receipts}
    unknown = given - set(lines)
    if unknown:
        raise Unprocessable("receipt for a line not in this return", code="unknown_line")
    codes = [r.warehouse_code for r in receipts if r.warehouse_code]
    warehouses = await inventory_service.warehouse_ids_by_code(session, codes=codes)
    restocks: list[Restock] = []
    for r in receipts:
        line = lines[r.return_line_id]
        if r.restock + r.discard > line.quantity:
            raise Unprocessable(
                f"{line.sku}: {r.restock} restocked + {r.discard} discarded exceeds the "
                f"{line.quantity} returned",
                code="disposition_exceeds_quantity",
            )
        if r.warehouse_code and r.warehouse_code not in warehouses:
            raise NotFound(
                f"warehouse '{r.warehouse_code}' does not exist", code="warehouse_not_found"
            )
        line.restocked_quantity, line.discarded_quantity = r.restock, r.discard
        if r.restock:
            wid = warehouses[r.warehouse_code] if r.warehouse_code else origin[line.order_line_id]
            line.restock_warehouse_id = wid
            restocks.append(Restock(wid, line.sku, r.restock))
    rma.received_at = utcnow()
    await session.flush()
    await record_event(
        session,
        type="return.received",
        aggregate_type="order",
        aggregate_id=str(rma.order_id),
        data={
            "return_id": str(rma.id),
            "order_id": str(rma.order_id),
            "lines": [
                {
                    "sku": ln.sku,
                    "quantity": ln.quantity,
                    "restocked": ln.restocked_quantity,
                    "discarded": ln.discarded_quantity,
                }
                for ln in lines.values()
            ],
        },
    )
    return rma, restocks


async def everything_back(session: AsyncSession, *, order_id: uuid.UUID) -> bool:
    """Whether every delivered unit of the order is on a received (or closed) return."""
    delivered, _ = await _delivered_by_line(session, order_id)
    back = await _returned_by_line(session, order_id, ("received", "closed"))
    return bool(delivered) and all(back.get(line, 0) >= qty for line, qty in delivered.items())


async def close(session: AsyncSession, *, return_id: uuid.UUID, principal: Principal) -> Return:
    """Close a received return (nothing more will happen to it)."""
    rma = await _lock(session, return_id=return_id, principal=principal)
    await _move(rma, ("received",), "closed")
    await session.flush()
    return rma
