"""Re-routing a placed or paid order: its pending shipments are cancelled, its reservations
released, and the order routed and reserved again from the stock of now.

The stored routing decision becomes the re-route's plan (``change.kind`` ``rerouted``); the plan
decided at placement stays readable under ``placement`` (:func:`oms.orders.plans.changed_routing`),
as after a shipment exception, move or edit."""

from __future__ import annotations

import logging
import uuid

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from oms.auth.service import Principal
from oms.inventory import service as inventory_service
from oms.orders import promising
from oms.orders.domain import OrderStatus, ShipmentStatus
from oms.orders.events import order_summary
from oms.orders.locking import lock_order
from oms.orders.models import Order, OrderEvent, OrderLine, Shipment
from oms.orders.plans import (
    PlanRows,
    changed_routing,
    insert_shipments,
    insufficient_stock,
    plan_rows,
    route_address,
    stock_contention,
)
from oms.outbox.service import record_event
from oms.routing import service as routing_service
from oms.routing.domain import RouteLine
from oms.shared.clock import utcnow
from oms.shared.errors import Conflict

log = logging.getLogger("oms.orders")


MAX_ROUTE_ATTEMPTS = 3


class _StockMoved(Exception):
    """A reservation lost a race after routing: roll back the savepoint and route again."""


async def _route_and_reserve(session: AsyncSession, *, order: Order) -> PlanRows:
    """Plan against a fresh snapshot, write the plan's rows and reserve; re-route if the stock
    moved (a concurrent order took it): the savepoint is rolled back and the order routed
    again, at most MAX_ROUTE_ATTEMPTS times."""
    # a line cancelled whole stays on the order with 0 units: nothing of it to route
    live_lines = [ln for ln in order.lines if ln.quantity > 0]
    route_lines = [
        RouteLine(line_id=str(ln.id), sku=ln.sku, quantity=ln.quantity) for ln in live_lines
    ]
    line_ids = {str(ln.id): ln.id for ln in live_lines}
    first_seq = 1 + (
        await session.scalar(
            select(func.coalesce(func.max(Shipment.seq), 0)).where(Shipment.order_id == order.id)
        )
        or 0
    )
    for _attempt in range(MAX_ROUTE_ATTEMPTS):
        plan = await routing_service.plan(
            session,
            lines=route_lines,
            address=route_address(order),
            channel=order.channel,
            pickup_code=order.pickup_warehouse_code,
        )
        if not plan.acceptable:
            raise insufficient_stock(plan)
        rows = plan_rows(
            plan, order_id=order.id, line_ids=line_ids, first_seq=first_seq, now=utcnow()
        )
        # the new parcels' delivery promise, from now (issue 18)
        await promising.promise_new_shipments(
            session, plan, rows.shipments, order=order, at=utcnow()
        )
        try:
            async with session.begin_nested():
                await _write_rows(session, order=order, rows=rows)
        except _StockMoved:
            continue
        return rows
    raise stock_contention()


async def _write_rows(session: AsyncSession, *, order: Order, rows: PlanRows) -> None:
    routing = changed_routing(
        order.routing,
        kind="rerouted",
        at=utcnow(),
        warehouses=rows.routing["warehouses"],
        backorders=rows.routing["backorders"],
        explanation=rows.routing["explanation"],
    )
    await insert_shipments(session, rows.shipments)
    await session.execute(
        update(OrderLine),
        [{"id": line_id, "backordered": units} for line_id, units in rows.backordered.items()],
    )
    for line in order.lines:
        set_committed_value(line, "backordered", rows.backordered.get(line.id, 0))
    await session.execute(
        update(Order)
        .where(Order.id == order.id)
        .values(routing=routing, live_shipments=len(rows.shipments))
        .execution_options(synchronize_session=False)
    )
    set_committed_value(order, "routing", routing)
    set_committed_value(order, "live_shipments", len(rows.shipments))
    # the contended stock rows last: their locks are held only until the commit
    if not await inventory_service.reserve(session, reservations=rows.reservations):
        raise _StockMoved


async def reroute_order(
    session: AsyncSession,
    *,
    order_id: uuid.UUID,
    principal: Principal,
    reason: str | None,
    request_id: str | None,
) -> Order:
    """Release the order's reservations and route it again (before any shipment is picked).
    Takes the order lock first: a shipment being picked at the same time either comes first
    (and the re-route is refused) or after (and picks a shipment of the new plan)."""
    order = await lock_order(session, order_id=order_id, principal=principal)
    status = OrderStatus(order.status)
    if status not in (OrderStatus.PLACED, OrderStatus.PAID):
        raise Conflict(
            f"only placed or paid orders can be re-routed; this one is '{status}'",
            code="reroute_not_allowed",
            current_status=status.value,
        )
    active = (
        await session.scalars(
            select(Shipment)
            .where(Shipment.order_id == order_id, Shipment.status != ShipmentStatus.CANCELLED.value)
            .execution_options(populate_existing=True)
        )
    ).all()
    if any(sh.status != ShipmentStatus.PENDING.value for sh in active):
        raise Conflict(
            "a shipment of this order is already being picked", code="reroute_not_allowed"
        )
    bumped = await session.execute(
        update(Order)
        .where(Order.id == order_id, Order.version == order.version)
        .values(version=order.version + 1, updated_at=utcnow())
        .returning(Order.id)
    )
    if bumped.first() is None:
        raise Conflict("the order changed concurrently; retry", code="concurrent_modification")
    order.version += 1
    before = list(order.routing["warehouses"]) if order.routing else []
    # every stock row it may release or reserve, locked first in the fixed order (releasing
    # and then reserving row by row could wait for a row while holding one that sorts after)
    await inventory_service.lock_stock_of_skus(session, skus=[ln.sku for ln in order.lines])
    await inventory_service.release(session, order_id=order_id)
    now = utcnow()
    await session.execute(
        update(Shipment)
        .where(Shipment.order_id == order_id, Shipment.status == ShipmentStatus.PENDING.value)
        .values(status=ShipmentStatus.CANCELLED.value, cancelled_at=now, updated_at=now)
    )
    rows = await _route_and_reserve(session, order=order)
    await promising.announce_promise_changes(
        session,
        order=order,
        before=active,
        shipments=rows.shipments,
        cause="rerouted",
        actor=principal.actor,
        request_id=request_id,
    )
    after = list(order.routing["warehouses"]) if order.routing else []
    data = {"from_warehouses": before, "to_warehouses": after}
    session.add(
        OrderEvent(
            order_id=order_id,
            kind="rerouted",
            from_status=status.value,
            to_status=status.value,
            actor=principal.actor,
            actor_role=principal.role.value,
            reason=reason,
            data=data,
            request_id=request_id,
            created_at=now,
        )
    )
    await record_event(
        session,
        type="order.rerouted",
        aggregate_type="order",
        aggregate_id=str(order_id),
        data={**order_summary(order), **data},
    )
    return order
