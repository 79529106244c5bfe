"""Backorders filled as stock arrives, the order side: which orders wait for a SKU (first in,
first out) and filling one of them under its lock. The trigger (a receipt, a count, a restock,
a bulk load, the worker's sweep) is ``oms.flows.backorders``.

Rules:

* Orders not yet shipped whole are filled: **placed**, **paid**, **picked** and **packed**
  (the statuses ``GET /v1/orders?blocked_by=backorder`` counts), whatever their other parcels
  are doing (picked, packed, or some already shipped while others are not). A picked or packed
  order that gets a new pending parcel steps back to paid (placed: unpaid cash on delivery),
  as after a shipment exception (:func:`oms.orders.shipments.step_back_if_behind`): the new
  parcel goes through the pick queue and the order moves forward again once it catches up.
  A cancelled order waits for nothing; a **shipped** (every live parcel left), delivered,
  returned or ready-for-pickup order is closed for fulfilment: units still backordered on it
  are not reserved (a shipped order holds no reservation).
* Order: **express before standard, then placement time** (then id): first in, first out.
* Each fill is routed like a placement, by the pure router, for the missing units only: the
  channel's current policy (warehouse list, line splitting, shipment cap), the warehouses that
  serve the destination country, active warehouses, the click-and-collect store. A partial fill
  is fine (what is still missing stays backordered) whatever the policy's ``allow_backorder``
  says now: the order was accepted with its backorders.
* Units from a warehouse where the order already has a **pending** shipment join that shipment;
  otherwise a new pending shipment is created (the next ``seq``).
* The line's ``backordered`` count goes down by the units reserved; ``orders.routing`` becomes
  the order's plan as it is now (``change.kind`` ``backorder_filled``, the fill's explanation,
  the placement plan kept under ``placement``: :func:`oms.orders.plans.store_current_routing`);
  the history row (kind ``backorder_filled``, from and to status) and
  ``order.backorder_filled`` (with ``previous_status`` when the order stepped back) record it.

Locks: the order lock first (:func:`oms.orders.locking.lock_order`), state checked after it,
then the stock rows through ``inventory.reserve`` (conditional on the units being available,
locked in the fixed order, last): two receipts never fill the same units twice, and a fill
never deadlocks with a cancel or a pick of the same order. The caller must not hold stock row
locks when it calls :func:`fill_order` (the lock order is order first, stock after).
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from oms.inventory import service as inventory_service
from oms.orders import promising
from oms.orders.domain import OrderStatus, Priority, ShipmentStatus
from oms.orders.events import order_summary
from oms.orders.locking import lock_order
from oms.orders.models import Order, OrderEvent, OrderLine, Shipment
from oms.orders.plans import route_address, store_current_routing
from oms.orders.shipments import step_back_if_behind
from oms.outbox.service import record_event
from oms.routing import service as routing_service
from oms.routing.domain import RouteLine, RoutePlan
from oms.shared.clock import utcnow

FILLABLE = (
    OrderStatus.PLACED.value,
    OrderStatus.PAID.value,
    OrderStatus.PICKED.value,
    OrderStatus.PACKED.value,
)
"""The statuses whose backorders are filled: not yet shipped whole."""

MAX_FILL_ATTEMPTS = 3
"""Re-plans of one order when the stock moved between its plan and its reservation."""


class _StockMoved(Exception):
    """The reservation lost a race after planning: roll back the savepoint and plan again."""


async def waiting_orders(
    session: AsyncSession, *, skus: Collection[str], limit: int
) -> list[uuid.UUID]:
    """Orders not yet shipped whole with a backordered line of one of ``skus``, in fill order:
    express first, then by placement time (no locks: each is locked when it is filled)."""
    if not skus:
        return []
    lines = select(OrderLine.order_id).where(
        OrderLine.backordered > 0, OrderLine.sku.in_(sorted(skus))
    )
    stmt = (
        select(Order.id)
        .where(Order.status.in_(FILLABLE), Order.id.in_(lines))
        .order_by((Order.priority == Priority.EXPRESS.value).desc(), Order.created_at, Order.id)
        .limit(limit)
    )
    return list((await session.scalars(stmt)).all())


async def backordered_skus(session: AsyncSession, *, limit: int) -> list[str]:
    """SKUs some order not yet shipped whole waits for (what the worker's sweep looks at)."""
    stmt = (
        select(OrderLine.sku)
        .join(Order, Order.id == OrderLine.order_id)
        .where(OrderLine.backordered > 0, Order.status.in_(FILLABLE))
        .group_by(OrderLine.sku)
        .order_by(func.min(Order.created_at))
        .limit(limit)
    )
    return list((await session.scalars(stmt)).all())


async def fill_order(
    session: AsyncSession,
    *,
    order_id: uuid.UUID,
    skus: Collection[str] | None,
    actor: str,
    actor_role: str | None,
    request_id: str | None,
) -> int:
    """Fill what the stock of now allows of one order's backordered lines (of ``skus``, or all
    of them); the units reserved (0: nothing to fill, or not fillable now). Takes the order
    lock first; the stock rows are reserved last."""
    for _attempt in range(MAX_FILL_ATTEMPTS):
        # (re-)read under the lock: after a lost reservation the savepoint was rolled back
        order = await lock_order(session, order_id=order_id)
        if order.status not in FILLABLE:
            return 0
        waiting = [
            ln for ln in order.lines if ln.backordered > 0 and (skus is None or ln.sku in skus)
        ]
        if not waiting:
            return 0
        shipments = (
            await session.scalars(
                select(Shipment)
                .where(Shipment.order_id == order_id)
                .execution_options(populate_existing=True)
            )
        ).all()
        plan = await routing_service.plan(
            session,
            lines=[
                RouteLine(line_id=str(ln.id), sku=ln.sku, quantity=ln.backordered) for ln in waiting
            ],
            address=route_address(order),
            channel=order.channel,
            pickup_code=order.pickup_warehouse_code,
        )
        if not plan.allocations:
            return 0
        try:
            async with session.begin_nested():
                return await _write_fill(
                    session,
                    order=order,
                    plan=plan,
                    shipments=shipments,
                    actor=actor,
                    actor_role=actor_role,
                    request_id=request_id,
                )
        except _StockMoved:
            continue
    return 0  # the stock kept moving: the next receipt or the worker's sweep tries again


async def record_fill(
    session: AsyncSession,
    *,
    order: Order,
    fills: list[dict[str, Any]],
    warehouses: list[str],
    reason: str,
    actor: str,
    actor_role: str | None,
    request_id: str | None,
    now: datetime,
    explanation: dict[str, Any] | None = None,
    stepped_back: str | None = None,
) -> None:
    """Record a fill of backordered units (``order.lines`` already show what still waits):
    the history row ``backorder_filled`` and ``order.backorder_filled``, with the fills, the
    warehouses and the units still backordered per SKU. Used by the backorder fill here and
    by a wave that fills backordered units (``oms.flows.waves``)."""
    waiting: dict[str, int] = defaultdict(int)
    for ln in order.lines:
        if ln.backordered > 0:
            waiting[ln.sku] += ln.backordered
    backordered = dict(waiting)
    data: dict[str, Any] = {"fills": fills, "warehouses": warehouses, "backordered": backordered}
    if explanation is not None:
        data["explanation"] = explanation
    if stepped_back is not None:
        data["order_status"] = {"from": stepped_back, "to": order.status}
    session.add(
        OrderEvent(
            order_id=order.id,
            kind="backorder_filled",
            from_status=stepped_back or order.status,
            to_status=order.status,
            actor=actor,
            actor_role=actor_role,
            reason=reason,
            data=data,
            request_id=request_id,
            created_at=now,
        )
    )
    await session.flush()
    await record_event(
        session,
        type="order.backorder_filled",
        aggregate_type="order",
        aggregate_id=str(order.id),
        data={
            **order_summary(order),
            "fills": fills,
            "warehouses": warehouses,
            "backordered": backordered,
            **({} if stepped_back is None else {"previous_status": stepped_back}),
        },
    )


async def _write_fill(
    session: AsyncSession,
    *,
    order: Order,
    plan: RoutePlan,
    shipments: Sequence[Shipment],
    actor: str,
    actor_role: str | None,
    request_id: str | None,
) -> int:
    now = utcnow()
    codes = {c.warehouse_id: c.code for c in plan.explanation.candidates}
    pending = {sh.warehouse_id: sh for sh in shipments if sh.status == ShipmentStatus.PENDING.value}
    next_seq = 1 + max((sh.seq for sh in shipments), default=0)
    target: dict[str, tuple[uuid.UUID, bool]] = {}  # warehouse id -> (shipment id, new?)
    new_rows: list[dict[str, Any]] = []
    for wid in plan.warehouses:
        existing = pending.get(uuid.UUID(wid))
        if existing is not None:
            target[wid] = (existing.id, False)
            continue
        shipment_id = uuid.uuid4()
        target[wid] = (shipment_id, True)
        new_rows.append(
            {
                "id": shipment_id,
                "order_id": order.id,
                "seq": next_seq,
                "warehouse_id": uuid.UUID(wid),
                "warehouse_code": codes[wid],
                "status": ShipmentStatus.PENDING.value,
                "version": 1,
                "created_at": now,
                "updated_at": now,
            }
        )
        next_seq += 1
    lines = {str(ln.id): ln for ln in order.lines}
    filled: dict[uuid.UUID, int] = defaultdict(int)
    reservations: list[inventory_service.Reservation] = []
    fills: list[dict[str, Any]] = []
    for a in plan.allocations:
        line = lines[a.line_id]
        shipment_id, created = target[a.warehouse_id]
        filled[line.id] += a.quantity
        reservations.append(
            inventory_service.Reservation(
                order_id=order.id,
                order_line_id=line.id,
                shipment_id=shipment_id,
                warehouse_id=uuid.UUID(a.warehouse_id),
                sku=a.sku,
                quantity=a.quantity,
            )
        )
        fills.append(
            {
                "line_id": str(line.id),
                "sku": a.sku,
                "quantity": a.quantity,
                "warehouse": codes[a.warehouse_id],
                "shipment_id": str(shipment_id),
                "new_shipment": created,
            }
        )
    remaining = {ln.id: ln.backordered - filled.get(ln.id, 0) for ln in order.lines}
    if new_rows:
        # the new parcels' delivery promise, from now (ship_by, deliver_by; issue 18)
        await promising.promise_rows(session, plan, new_rows, order=order, at=now)
        await session.execute(insert(Shipment), new_rows)
    await session.execute(
        update(OrderLine),
        [{"id": line_id, "backordered": remaining[line_id]} for line_id in filled],
    )
    live = order.live_shipments + len(new_rows)
    await session.execute(
        update(Order)
        .where(Order.id == order.id)
        .values(live_shipments=live, version=order.version + 1, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    for line in order.lines:
        set_committed_value(line, "backordered", remaining[line.id])
    set_committed_value(order, "live_shipments", live)
    set_committed_value(order, "version", order.version + 1)
    # a picked or packed order with a new pending parcel is paid again (placed: unpaid COD)
    stepped_back = await step_back_if_behind(session, order)
    explanation = plan.explanation.to_dict()
    await store_current_routing(
        session, order=order, kind="backorder_filled", at=now, explanation=explanation
    )
    await record_fill(
        session,
        order=order,
        fills=fills,
        warehouses=[codes[w] for w in plan.warehouses],
        reason="stock arrived for backordered lines",
        actor=actor,
        actor_role=actor_role,
        request_id=request_id,
        now=now,
        explanation=explanation,
        stepped_back=stepped_back,
    )
    # the contended stock rows last: their locks are held only until the commit
    if not await inventory_service.reserve(session, reservations=reservations):
        raise _StockMoved
    return sum(filled.values())
