"""Changing the shipments of an order after placement: a warehouse's exception (units it
rejects: short pick, damaged, not found), a move to another warehouse, a split, a merge.

Each takes THE order lock first (:func:`oms.orders.locking.lock_order_of_shipment`) and checks
the order and the shipment only after it. Moves, splits and merges need the order placed or
paid and the shipment pending. An exception may also be raised on a **picked** shipment (a
short pick noticed after the pick, a damaged unit found at the packing table): the order
placed, paid or picked. A **packed** (or later) shipment takes no exception: its parcel is
sealed and labelled; what the carrier gets is a return or a claim, not a re-plan.

Rules:

* **Exception**: the rejected units leave the shipment (their reservation there is released),
  the units found stay in it, and only the rejected ones are planned again by the router,
  without that warehouse (reason ``excluded``). What no warehouse can give is backordered on
  its line when the channel's policy allows backorders; otherwise the exception is refused
  (409 ``insufficient_stock``, nothing changes). ``not_found`` and ``damaged`` units are
  written off the shelf through the inventory ledger (a ``correction`` referencing the
  exception); ``short_pick`` ones of a pending shipment are not (a count decides), but of a
  picked shipment they are: the pick was the count. ``block_for_hours`` blocks each rejected
  (warehouse, SKU) for routing meanwhile. A shipment left with no units is cancelled. New
  parcels get new pending shipments (merge them if you like). A picked order whose shipments
  are no longer all picked (a new pending parcel, or nothing live left) steps back to paid (or
  placed, for unpaid cash on delivery): the history row of the exception records the move,
  the event carries ``order_status`` and ``previous_order_status``, and the new parcel goes
  through the pick queue like any other.
* **Move**: the shipment's units are planned with only the target warehouse allowed; when it
  cannot take them all the move is refused (409 ``move_not_possible`` with the explanation),
  else the shipment is cancelled and a new pending one at the target carries its units.
* **Split**: some units go to a new pending shipment at the same warehouse (the shipment
  keeps at least one). **Merge**: two pending shipments of the order at one warehouse become
  one; the other is cancelled. Neither touches stock: the same units stay reserved.

Each of them rewrites the order's stored routing decision to its plan as it is now
(:func:`oms.orders.plans.store_current_routing`): the placement's plan stays readable under
``placement``.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from oms.auth.service import Principal
from oms.inventory import service as inventory_service
from oms.orders import domain, promising, views
from oms.orders.domain import OrderStatus, ShipmentStatus
from oms.orders.events import shipment_payload
from oms.orders.exception_models import EXCEPTION_REASONS, ShipmentException
from oms.orders.locking import lock_order_of_shipment, not_found, visible
from oms.orders.models import Order, OrderEvent, OrderLine, Shipment
from oms.orders.plans import (
    NewShipment,
    PlanRows,
    insert_shipments,
    plan_rows,
    route_address,
    stock_contention,
    store_current_routing,
)
from oms.orders.queries import read_after_change
from oms.orders.schemas import OrderRead
from oms.outbox.service import record_event
from oms.routing import service as routing_service
from oms.routing.domain import RouteLine, RoutePlan
from oms.shared.clock import utcnow
from oms.shared.errors import Conflict, NotFound, Unprocessable

MAX_ROUTE_ATTEMPTS = 3
WRITE_OFF_REASONS = frozenset({"damaged", "not_found"})
"""Reasons whose units are written off the shelf of a pending shipment (of a picked one: all)."""
EXCEPTION_ORDER_STATUSES = (
    OrderStatus.PLACED.value,
    OrderStatus.PAID.value,
    OrderStatus.PICKED.value,
)
EXCEPTION_SHIPMENT_STATUSES = (ShipmentStatus.PENDING.value, ShipmentStatus.PICKED.value)


@dataclass(frozen=True, slots=True)
class RejectedUnits:
    order_line_id: uuid.UUID
    quantity: int
    reason: str


@dataclass(frozen=True, slots=True)
class UnitsOfLine:
    order_line_id: uuid.UUID
    quantity: int


class _StockMoved(Exception):
    """A reservation lost a race after routing: roll back the savepoint and plan again."""


# ---- shared steps ------------------------------------------------------------------------------


async def _lock_pending(
    session: AsyncSession, *, shipment_id: uuid.UUID, principal: Principal, action: str
) -> tuple[Order, Shipment]:
    """THE order lock, then: the order placed or paid, the shipment pending."""
    order, shipment = await lock_order_of_shipment(
        session, shipment_id=shipment_id, principal=principal
    )
    if order.status not in (OrderStatus.PLACED.value, OrderStatus.PAID.value):
        raise Conflict(
            f"shipments can be changed ({action}) only while the order is placed or paid; "
            f"this one is '{order.status}'",
            code="shipment_change_not_allowed",
            current_status=order.status,
        )
    if shipment.status != ShipmentStatus.PENDING.value:
        raise Conflict(
            f"only a pending shipment can be changed ({action}); this one is '{shipment.status}'",
            code="shipment_not_pending",
            current_status=shipment.status,
        )
    return order, shipment


async def _lock_for_exception(
    session: AsyncSession, *, shipment_id: uuid.UUID, principal: Principal
) -> tuple[Order, Shipment]:
    """THE order lock, then: the order placed, paid or picked, the shipment pending or picked."""
    order, shipment = await lock_order_of_shipment(
        session, shipment_id=shipment_id, principal=principal
    )
    if order.status not in EXCEPTION_ORDER_STATUSES:
        raise Conflict(
            "units of a shipment can be rejected only while the order is placed, paid or "
            f"picked; this one is '{order.status}'",
            code="shipment_change_not_allowed",
            current_status=order.status,
        )
    if shipment.status not in EXCEPTION_SHIPMENT_STATUSES:
        raise Conflict(
            "units can be rejected only from a pending or picked shipment; this one is "
            f"'{shipment.status}' (a packed parcel is sealed and labelled: what it carries ships)",
            code="shipment_past_picking",
            current_status=shipment.status,
        )
    return order, shipment


def _units_by_line(
    requested: Sequence[UnitsOfLine | RejectedUnits],
    held: dict[uuid.UUID, inventory_service.ShipmentUnits],
) -> dict[uuid.UUID, int]:
    """Requested units per order line, each within what the shipment carries (else 422)."""
    units: dict[uuid.UUID, int] = defaultdict(int)
    for r in requested:
        units[r.order_line_id] += r.quantity
    bad = [
        {
            "order_line_id": str(lid),
            "requested": q,
            "in_shipment": held[lid].quantity if lid in held else 0,
        }
        for lid, q in units.items()
        if lid not in held or q > held[lid].quantity
    ]
    if bad:
        raise Unprocessable(
            "the shipment does not carry these units: "
            + ", ".join(
                f"line {b['order_line_id']} ({b['requested']} asked, {b['in_shipment']} in it)"
                for b in bad
            ),
            code="shipment_lines_invalid",
            title="Units not in the shipment",
            invalid_lines=bad,
        )
    return dict(units)


async def _touch(session: AsyncSession, order: Order) -> None:
    now = utcnow()
    await session.execute(
        update(Order)
        .where(Order.id == order.id)
        .values(version=Order.version + 1, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    set_committed_value(order, "version", order.version + 1)
    set_committed_value(order, "updated_at", now)


async def _next_seq(session: AsyncSession, order_id: uuid.UUID) -> int:
    top = await session.scalar(
        select(func.coalesce(func.max(Shipment.seq), 0)).where(Shipment.order_id == order_id)
    )
    return 1 + int(top or 0)


async def _add_live(session: AsyncSession, order: Order, delta: int) -> None:
    if delta:
        await session.execute(
            update(Order)
            .where(Order.id == order.id)
            .values(live_shipments=Order.live_shipments + delta)
            .execution_options(synchronize_session=False)
        )
        set_committed_value(order, "live_shipments", order.live_shipments + delta)


async def _cancel_shipment(session: AsyncSession, shipment: Shipment) -> None:
    now = utcnow()
    await session.execute(
        update(Shipment)
        .where(Shipment.id == shipment.id)
        .values(status=ShipmentStatus.CANCELLED.value, cancelled_at=now, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    set_committed_value(shipment, "status", ShipmentStatus.CANCELLED.value)
    set_committed_value(shipment, "cancelled_at", now)


async def _plan_and_reserve(
    session: AsyncSession,
    *,
    order: Order,
    units: dict[uuid.UUID, int],
    excluded: Sequence[uuid.UUID],
    refuse: Any,
) -> tuple[RoutePlan, PlanRows]:
    """Plan ``units`` (per order line) without the ``excluded`` warehouses, write the new
    shipments and reserve; ``refuse(plan)`` returns the problem to raise for a plan that is
    not acceptable, or None. Plans again when stock moved (at most MAX_ROUTE_ATTEMPTS)."""
    lines = {ln.id: ln for ln in order.lines}
    route_lines = [
        RouteLine(line_id=str(lid), sku=lines[lid].sku, quantity=q) for lid, q in units.items()
    ]
    line_ids = {str(lid): lid for lid in units}
    first_seq = await _next_seq(session, order.id)
    for _attempt in range(MAX_ROUTE_ATTEMPTS):
        plan = await routing_service.plan(
            session,
            lines=route_lines,
            address=route_address(order),
            channel=order.channel,
            pickup_code=order.pickup_warehouse_code,
            excluded_warehouse_ids=excluded,
        )
        problem = refuse(plan)
        if problem is not None:
            raise problem
        rows = plan_rows(
            plan, order_id=order.id, line_ids=line_ids, first_seq=first_seq, now=utcnow()
        )
        # a re-planned parcel gets a fresh promise, from now (README: Delivery promises)
        await promising.promise_new_shipments(
            session, plan, rows.shipments, order=order, at=utcnow()
        )
        try:
            async with session.begin_nested():
                await insert_shipments(session, rows.shipments)
                if not await inventory_service.reserve(session, reservations=rows.reservations):
                    raise _StockMoved
        except _StockMoved:
            continue
        return plan, rows
    raise stock_contention()


def _short_lines(plan: RoutePlan) -> list[dict[str, Any]]:
    return [
        {"line_id": s.line_id, "sku": s.sku, "requested": s.requested, "available": s.available}
        for s in plan.shortages
    ]


async def _history(
    session: AsyncSession,
    *,
    order: Order,
    kind: str,
    principal: Principal,
    reason: str | None,
    data: dict[str, Any],
    request_id: str | None,
    from_status: str | None = None,
) -> None:
    session.add(
        OrderEvent(
            order_id=order.id,
            kind=kind,
            from_status=from_status or order.status,
            to_status=order.status,
            actor=principal.actor,
            actor_role=principal.role.value,
            reason=reason,
            data=data,
            request_id=request_id,
            created_at=utcnow(),
        )
    )


async def step_back_if_behind(session: AsyncSession, order: Order) -> str | None:
    """A picked (or packed) order whose live shipments are no longer all that far (a new
    pending parcel, or none left) goes back to paid (placed: cash on delivery not yet paid);
    returns the status it left, or None. Shipment exceptions and backorder fills call it.
    Not a transition of the state machine: the order's status follows its shipments, as it
    does forward (``transitions.transition_shipment``)."""
    current = OrderStatus(order.status)
    if current not in domain.FULFILMENT_STATUSES:
        return None
    statuses = [
        ShipmentStatus(s)
        for s in (
            await session.scalars(
                select(Shipment.status).where(
                    Shipment.order_id == order.id,
                    Shipment.status != ShipmentStatus.CANCELLED.value,
                )
            )
        ).all()
    ]
    reached = domain.order_status_reached(statuses)
    if reached is not None and domain.order_fulfilment_rank(
        reached
    ) >= domain.order_fulfilment_rank(current):
        return None
    target = OrderStatus.PAID if order.paid_at is not None else OrderStatus.PLACED
    now = utcnow()
    await session.execute(
        update(Order)
        .where(Order.id == order.id)
        .values(status=target.value, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    set_committed_value(order, "status", target.value)
    set_committed_value(order, "updated_at", now)
    return current.value


def _lines_json(units: dict[uuid.UUID, int], order: Order) -> list[dict[str, Any]]:
    skus = {ln.id: ln.sku for ln in order.lines}
    return [
        {"order_line_id": str(lid), "sku": skus[lid], "quantity": q} for lid, q in units.items()
    ]


async def order_read(session: AsyncSession, *, order: Order) -> OrderRead:
    """The order as the API shows it after a change of its shipments."""
    doc = await read_after_change(session, order_id=order.id)
    return views.to_read(doc.order, doc.shipments, doc.holds)


async def list_exceptions(
    session: AsyncSession, *, order_id: uuid.UUID, principal: Principal
) -> list[ShipmentException]:
    """The shipment exceptions of an order, oldest first (404 outside the caller's channel)."""
    channel = await session.scalar(select(Order.channel).where(Order.id == order_id))
    if channel is None or not visible(principal, channel):
        raise not_found(order_id)
    return list(
        (
            await session.scalars(
                select(ShipmentException)
                .where(ShipmentException.order_id == order_id)
                .order_by(ShipmentException.created_at, ShipmentException.id)
            )
        ).all()
    )


# ---- the operations ----------------------------------------------------------------------------


async def report_exception(
    session: AsyncSession,
    *,
    shipment_id: uuid.UUID,
    lines: Sequence[RejectedUnits],
    block_for_hours: int | None,
    note: str | None,
    principal: Principal,
    request_id: str | None,
) -> tuple[Order, ShipmentException]:
    """A warehouse rejects units of its pending or picked shipment: only those units are
    planned again without it (or backordered, when the channel allows), the units found stay
    in the shipment, the rest of the order untouched."""
    order, shipment = await _lock_for_exception(
        session, shipment_id=shipment_id, principal=principal
    )
    rejected_from = shipment.status
    picked = rejected_from == ShipmentStatus.PICKED.value
    write_off_reasons = frozenset(EXCEPTION_REASONS) if picked else WRITE_OFF_REASONS
    held = await inventory_service.shipment_units(session, shipment_id=shipment.id)
    units = _units_by_line(lines, held)
    reasons: dict[uuid.UUID, list[str]] = defaultdict(list)
    per_reason: dict[tuple[uuid.UUID, str], int] = defaultdict(int)
    for r in lines:
        if r.reason not in reasons[r.order_line_id]:
            reasons[r.order_line_id].append(r.reason)
        per_reason[(r.order_line_id, r.reason)] += r.quantity

    def refuse(plan: RoutePlan) -> Conflict | None:
        if plan.acceptable:
            return None
        return Conflict(
            f"the rejected units cannot be placed in another warehouse and channel "
            f"'{order.channel}' takes no backorders: "
            + ", ".join(
                f"{s.sku} ({s.requested} rejected, {s.available} available elsewhere)"
                for s in plan.shortages
            ),
            code="insufficient_stock",
            title="Insufficient stock",
            short_lines=_short_lines(plan),
            explanation=plan.explanation.to_dict(),
        )

    await _touch(session, order)
    exception_id = uuid.uuid4()
    now = utcnow()
    # the rows it releases and may reserve, locked first in the fixed order (no deadlock)
    await inventory_service.lock_stock_of_skus(session, skus={held[lid].sku for lid in units})
    await inventory_service.release_units(session, shipment_id=shipment.id, units=units)
    written_off: dict[uuid.UUID, int] = {}
    for (lid, why), q in sorted(per_reason.items(), key=lambda kv: (held[kv[0][0]].sku, kv[0][1])):
        if why in write_off_reasons:
            written_off[lid] = written_off.get(lid, 0) + await inventory_service.write_off(
                session,
                warehouse_id=shipment.warehouse_id,
                sku=held[lid].sku,
                quantity=q,
                reason=f"shipment exception: {why}",
                reference_id=str(exception_id),
                actor=principal.actor,
            )
    blocked_until = None
    if block_for_hours:
        blocked_until = now + timedelta(hours=block_for_hours)
        for sku in sorted({held[lid].sku for lid in units}):
            await inventory_service.block(
                session,
                warehouse_id=shipment.warehouse_id,
                sku=sku,
                until=blocked_until,
                reason="shipment_exception",
                reference_id=str(exception_id),
            )
    # the contended reservation last
    _plan, rows = await _plan_and_reserve(
        session, order=order, units=units, excluded=[shipment.warehouse_id], refuse=refuse
    )
    backordered = {lid: q for lid, q in rows.backordered.items() if q}
    if backordered:
        waiting = {
            ln.id: ln.backordered + backordered[ln.id] for ln in order.lines if ln.id in backordered
        }
        await session.execute(
            update(OrderLine), [{"id": lid, "backordered": q} for lid, q in waiting.items()]
        )
        for ln in order.lines:
            if ln.id in waiting:
                set_committed_value(ln, "backordered", waiting[ln.id])
    emptied = sum(h.quantity for h in held.values()) == sum(units.values())
    if emptied:
        await _cancel_shipment(session, shipment)
    await _add_live(session, order, len(rows.shipments) - int(emptied))
    stepped_back = await step_back_if_behind(session, order)
    await store_current_routing(
        session,
        order=order,
        kind="shipment_exception",
        at=now,
        explanation=rows.routing["explanation"],
    )

    skus = {ln.id: ln.sku for ln in order.lines}
    line_rows = [
        {
            "order_line_id": str(lid),
            "sku": skus[lid],
            "quantity": q,
            "reason": why,
            "written_off": why in write_off_reasons,
        }
        for (lid, why), q in per_reason.items()
    ]
    replanned = [
        {
            "shipment_id": str(sh.id),
            "seq": sh.seq,
            "warehouse": sh.warehouse_code,
            "lines": [{**c, "order_line_id": str(c["order_line_id"])} for c in rows.carried[sh.id]],
        }
        for sh in rows.shipments
    ]
    backorders = [
        {"order_line_id": str(lid), "sku": skus[lid], "quantity": q}
        for lid, q in backordered.items()
    ]
    replan = {
        "shipments": replanned,
        "backordered": backorders,
        "written_off": [
            {"order_line_id": str(lid), "sku": skus[lid], "quantity": q}
            for lid, q in written_off.items()
            if q
        ],
        "shipment_status": rejected_from,
        "shipment_cancelled": emptied,
        "routing": rows.routing,
    }
    row = ShipmentException(
        id=exception_id,
        order_id=order.id,
        shipment_id=shipment.id,
        warehouse_id=shipment.warehouse_id,
        warehouse_code=shipment.warehouse_code,
        lines=line_rows,
        replan=replan,
        blocked_until=blocked_until,
        note=note,
        actor=principal.actor,
        request_id=request_id,
        created_at=now,
    )
    session.add(row)
    summary: dict[str, Any] = {
        "exception_id": str(exception_id),
        "shipment_id": str(shipment.id),
        "warehouse": shipment.warehouse_code,
        "lines": line_rows,
        "replanned": [
            {"warehouse": r["warehouse"], "shipment_id": r["shipment_id"]} for r in replanned
        ],
        "backordered": backorders,
        "shipment_status": rejected_from,
    }
    if stepped_back is not None:
        summary["order_status"] = {"from": stepped_back, "to": order.status}
    await _history(
        session,
        order=order,
        kind="shipment_exception",
        principal=principal,
        reason=note,
        data=summary,
        request_id=request_id,
        from_status=stepped_back,
    )
    await promising.announce_promise_changes(
        session,
        order=order,
        before=[shipment],
        shipments=rows.shipments,
        cause="shipment_exception",
        actor=principal.actor,
        request_id=request_id,
    )
    await record_event(
        session,
        type="shipment.exception",
        aggregate_type="order",
        aggregate_id=str(order.id),
        data={
            **shipment_payload(shipment),
            "exception_id": str(exception_id),
            "lines": line_rows,
            "replanned": replanned,
            "backordered": backorders,
            "blocked_until": None if blocked_until is None else blocked_until.isoformat(),
            "written_off": replan["written_off"],
            "order_status": order.status,
            **({} if stepped_back is None else {"previous_order_status": stepped_back}),
        },
    )
    return order, row


async def move_shipment(
    session: AsyncSession,
    *,
    shipment_id: uuid.UUID,
    warehouse_code: str,
    reason: str | None,
    principal: Principal,
    request_id: str | None,
) -> tuple[Order, uuid.UUID]:
    """Move a pending shipment to another warehouse: its units are planned with only that
    warehouse allowed (or the move is refused with the reason); returns the new shipment."""
    order, shipment = await _lock_pending(
        session, shipment_id=shipment_id, principal=principal, action="move"
    )
    ids = await inventory_service.warehouse_ids_by_code(session, codes=[warehouse_code])
    if warehouse_code not in ids:
        raise NotFound(f"warehouse '{warehouse_code}' does not exist", code="warehouse_not_found")
    target = ids[warehouse_code]
    if target == shipment.warehouse_id:
        raise Conflict(
            f"the shipment already ships from {warehouse_code}", code="move_not_possible"
        )
    held = await inventory_service.shipment_units(session, shipment_id=shipment.id)
    units = {lid: h.quantity for lid, h in held.items()}
    others = [w.id for w in await inventory_service.list_warehouses(session) if w.id != target]

    def refuse(plan: RoutePlan) -> Conflict | None:
        if plan.fully_filled:
            return None
        why = next(
            (
                c.reason.value
                for c in plan.explanation.candidates
                if c.code == warehouse_code and c.reason
            ),
            None,
        )
        return Conflict(
            f"{warehouse_code} cannot take this shipment"
            + (f" ({why})" if why else "")
            + ": "
            + ", ".join(
                f"{s.sku} ({s.requested} needed, {s.available} available)" for s in plan.shortages
            ),
            code="move_not_possible",
            title="Move not possible",
            warehouse=warehouse_code,
            reason=why,
            short_lines=_short_lines(plan),
            explanation=plan.explanation.to_dict(),
        )

    await _touch(session, order)
    # the rows it releases and reserves, locked first in the fixed order (no deadlock)
    await inventory_service.lock_stock_of_skus(session, skus={h.sku for h in held.values()})
    await inventory_service.release(session, order_id=order.id, shipment_id=shipment.id)
    await _cancel_shipment(session, shipment)
    _plan, rows = await _plan_and_reserve(
        session, order=order, units=units, excluded=others, refuse=refuse
    )
    new = rows.shipments[0]
    await store_current_routing(
        session,
        order=order,
        kind="shipment_moved",
        at=utcnow(),
        explanation=rows.routing["explanation"],
    )
    data = {
        "shipment_id": str(shipment.id),
        "from_warehouse": shipment.warehouse_code,
        "to_warehouse": warehouse_code,
        "new_shipment_id": str(new.id),
        "explanation": rows.routing["explanation"],
    }
    await _history(
        session,
        order=order,
        kind="shipment_moved",
        principal=principal,
        reason=reason,
        data=data,
        request_id=request_id,
    )
    await promising.announce_promise_changes(
        session,
        order=order,
        before=[shipment],
        shipments=rows.shipments,
        cause="shipment_moved",
        actor=principal.actor,
        request_id=request_id,
    )
    await record_event(
        session,
        type="shipment.moved",
        aggregate_type="order",
        aggregate_id=str(order.id),
        data={
            **shipment_payload(shipment),
            "from_warehouse": shipment.warehouse_code,
            "to_warehouse": warehouse_code,
            "new_shipment_id": str(new.id),
        },
    )
    return order, new.id


async def split_shipment(
    session: AsyncSession,
    *,
    shipment_id: uuid.UUID,
    lines: Sequence[UnitsOfLine],
    reason: str | None,
    principal: Principal,
    request_id: str | None,
) -> tuple[Order, uuid.UUID]:
    """Some units of a pending shipment go to a new pending shipment at the same warehouse;
    returns the new shipment."""
    order, shipment = await _lock_pending(
        session, shipment_id=shipment_id, principal=principal, action="split"
    )
    held = await inventory_service.shipment_units(session, shipment_id=shipment.id)
    units = _units_by_line(lines, held)
    if sum(units.values()) >= sum(h.quantity for h in held.values()):
        raise Unprocessable(
            "a split must leave at least one unit in the shipment", code="split_takes_everything"
        )
    await _touch(session, order)
    now = utcnow()
    new_id = uuid.uuid4()
    parcel = NewShipment(
        id=new_id,
        order_id=order.id,
        seq=await _next_seq(session, order.id),
        warehouse_id=shipment.warehouse_id,
        warehouse_code=shipment.warehouse_code,
        created_at=now,
    )
    promising.keep_promise([parcel], of=[shipment])  # the date the customer was promised
    await insert_shipments(session, [parcel])
    await inventory_service.move_units(
        session, from_shipment_id=shipment.id, to_shipment_id=new_id, units=units
    )
    await _add_live(session, order, 1)
    await store_current_routing(
        session, order=order, kind="shipment_split", at=now, explanation=None
    )
    moved = _lines_json(units, order)
    await _history(
        session,
        order=order,
        kind="shipment_split",
        principal=principal,
        reason=reason,
        data={"shipment_id": str(shipment.id), "new_shipment_id": str(new_id), "lines": moved},
        request_id=request_id,
    )
    await record_event(
        session,
        type="shipment.split",
        aggregate_type="order",
        aggregate_id=str(order.id),
        data={**shipment_payload(shipment), "new_shipment_id": str(new_id), "lines": moved},
    )
    return order, new_id


async def merge_shipments(
    session: AsyncSession,
    *,
    shipment_id: uuid.UUID,
    other_shipment_id: uuid.UUID,
    reason: str | None,
    principal: Principal,
    request_id: str | None,
) -> Order:
    """The units of ``other_shipment_id`` join ``shipment_id`` (same order, same warehouse,
    both pending); the other shipment is cancelled."""
    if other_shipment_id == shipment_id:
        raise Unprocessable("a shipment cannot be merged into itself", code="merge_not_possible")
    order, shipment = await _lock_pending(
        session, shipment_id=shipment_id, principal=principal, action="merge"
    )
    other = await session.scalar(
        select(Shipment)
        .where(Shipment.id == other_shipment_id)
        .execution_options(populate_existing=True)
    )
    if other is None or other.order_id != order.id:
        raise NotFound(
            f"shipment {other_shipment_id} does not exist in this order",
            code="shipment_not_found",
        )
    if other.status != ShipmentStatus.PENDING.value:
        raise Conflict(
            f"only a pending shipment can be merged; {other_shipment_id} is '{other.status}'",
            code="shipment_not_pending",
            current_status=other.status,
        )
    if other.warehouse_id != shipment.warehouse_id:
        raise Conflict(
            f"shipments of different warehouses cannot be merged ({shipment.warehouse_code}, "
            f"{other.warehouse_code}); move one first",
            code="merge_not_possible",
        )
    held = await inventory_service.shipment_units(session, shipment_id=other.id)
    await _touch(session, order)
    await inventory_service.move_units(
        session, from_shipment_id=other.id, to_shipment_id=shipment.id
    )
    await _cancel_shipment(session, other)
    await promising.merge_promise(session, into=shipment, other=other)
    await _add_live(session, order, -1)
    await store_current_routing(
        session, order=order, kind="shipment_merged", at=utcnow(), explanation=None
    )
    moved = _lines_json({lid: h.quantity for lid, h in held.items()}, order)
    await _history(
        session,
        order=order,
        kind="shipment_merged",
        principal=principal,
        reason=reason,
        data={"shipment_id": str(shipment.id), "merged_shipment_id": str(other.id), "lines": moved},
        request_id=request_id,
    )
    await record_event(
        session,
        type="shipment.merged",
        aggregate_type="order",
        aggregate_id=str(order.id),
        data={**shipment_payload(shipment), "merged_shipment_id": str(other.id), "lines": moved},
    )
    return order
