"""Reading orders: one order, lists (keyset-paginated), history, shipments with the units
they carry, the pick queue, and routing previews. Nothing here locks or writes."""

from __future__ import annotations

import base64
import binascii
import logging
import uuid
from collections import defaultdict
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, or_, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import QueryableAttribute, selectinload

from oms.auth.service import Principal, may_see_warehouse, visible_warehouses
from oms.db import driver_connection
from oms.inventory import service as inventory_service
from oms.orders import holds
from oms.orders.domain import OrderStatus, PaymentMethod, ShipmentStatus
from oms.orders.hold_models import OrderHold
from oms.orders.locking import not_found, refuse_outside_scope, visible
from oms.orders.models import Order, OrderEvent, OrderLine, Shipment
from oms.orders.plans import (
    NewOrder,
    NewOrderLine,
    NewShipment,
    ShipmentView,
    unknown_sku,
)
from oms.routing import service as routing_service
from oms.routing.domain import RouteLine, RoutePlan
from oms.shared.errors import NotFound, ProblemError
from oms.shared.sqlfiles import sql_file
from oms.shared.timestamps import in_range
from oms.waves import service as waves_service

log = logging.getLogger("oms.orders")


async def get_order(session: AsyncSession, *, order_id: uuid.UUID, principal: Principal) -> Order:
    """One order with its lines; 404 when missing or outside the caller's channel."""
    order = await session.scalar(
        select(Order).options(selectinload(Order.lines)).where(Order.id == order_id)
    )
    if order is None or not visible(principal, order.channel):
        raise not_found(order_id)
    await refuse_outside_scope(session, order_id=order_id, principal=principal, every=False)
    return order


_ORDER_FIELDS = tuple(f.name for f in fields(NewOrder) if f.name != "lines")
_LINE_FIELDS = tuple(f.name for f in fields(NewOrderLine))
_SHIPMENT_FIELDS = tuple(f.name for f in fields(NewShipment))
_HOLD_FIELDS = tuple(c.key for c in OrderHold.__table__.columns)
_ORDER_DOCUMENTS = sql_file("oms.orders", "order_documents").format(
    order_columns=", ".join(f"o.{f}" for f in _ORDER_FIELDS),
    line_columns=", ".join(f"l.{f}" for f in _LINE_FIELDS),
    shipment_columns=", ".join(f"s.{f}" for f in _SHIPMENT_FIELDS),
    hold_columns=", ".join(f"h.{f}" for f in _HOLD_FIELDS),
)


@dataclass(frozen=True, slots=True)
class OrderDocument:
    """An order as the API shows it (``views.to_read``): its row and lines, its shipments with
    the units they carry, its standing holds; read in one statement, so in one snapshot."""

    order: NewOrder
    shipments: list[ShipmentView]
    holds: list[OrderHold]


async def order_documents(
    session: AsyncSession, *, order_ids: list[uuid.UUID]
) -> list[OrderDocument]:
    """The orders of ``order_ids`` that exist, in that order, each read whole in one round
    trip for all of them (``sql/order_documents.sql``; no ORM objects but the rare hold). For
    reads only: changes pending in the session are not flushed, so they are not seen."""
    if not order_ids:
        return []
    conn = await driver_connection(session)
    rows = {r["id"]: r for r in await conn.fetch(_ORDER_DOCUMENTS, order_ids)}
    out: list[OrderDocument] = []
    for oid in order_ids:
        r = rows.get(oid)
        if r is None:
            continue
        lines = [NewOrderLine(*ln) for ln in r["doc_lines"]]  # (the columns, in field order)
        carried: dict[uuid.UUID, list[dict[str, Any]]] = defaultdict(list)
        for shipment_id, line_id, sku, quantity in r["doc_units"]:
            carried[shipment_id].append(
                {"order_line_id": line_id, "sku": sku, "quantity": quantity}
            )
        out.append(
            OrderDocument(
                order=NewOrder(**{f: r[f] for f in _ORDER_FIELDS}, lines=lines),
                shipments=[
                    ShipmentView(NewShipment(*sh), carried.get(sh[0], []))  # sh[0]: its id
                    for sh in r["doc_shipments"]
                ],
                holds=[
                    OrderHold(**dict(zip(_HOLD_FIELDS, h, strict=True))) for h in r["doc_holds"]
                ],
            )
        )
    return out


async def get_order_document(
    session: AsyncSession, *, order_id: uuid.UUID, principal: Principal
) -> OrderDocument:
    """:func:`get_order` as the API shows it (:func:`order_documents`): 404 when missing or
    outside the caller's channel or warehouses."""
    found = await order_documents(session, order_ids=[order_id])
    if not found or not visible(principal, found[0].order.channel):
        raise not_found(order_id)
    await refuse_outside_scope(session, order_id=order_id, principal=principal, every=False)
    return found[0]


async def read_after_change(session: AsyncSession, *, order_id: uuid.UUID) -> OrderDocument:
    """An order this request changed, as the API shows it: the session's pending changes are
    flushed (sent now rather than at commit), then the order is read whole in one statement
    inside the request's transaction (:func:`order_documents`)."""
    await session.flush()
    return (await order_documents(session, order_ids=[order_id]))[0]


def _encode_cursor(created_at: datetime, order_id: uuid.UUID) -> str:
    raw = f"{created_at.isoformat()}|{order_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        ts, oid = raw.split("|", 1)
        created_at = in_range(datetime.fromisoformat(ts))  # ours are in range and in UTC
        if created_at.tzinfo is None:
            raise ValueError("a cursor's time has a UTC offset")
        return created_at, uuid.UUID(oid)
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise ProblemError("the cursor is not valid", code="invalid_cursor") from exc


@dataclass(frozen=True, slots=True)
class OrderFilter:
    status: list[OrderStatus] | None = None
    channel: str | None = None
    customer_id: str | None = None
    customer_email: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    blocked_by: str | None = None
    """``hold``, ``payment``, ``backorder`` or ``wave`` (see :func:`blocked_by`)."""
    number: int | None = None
    """The order number (exact)."""
    external_reference: str | None = None
    """The channel's own reference of the order (exact)."""


_UNSHIPPED = [
    s.value for s in (OrderStatus.PLACED, OrderStatus.PAID, OrderStatus.PICKED, OrderStatus.PACKED)
]


def blocked_by(kind: str) -> ColumnElement[bool]:
    """A SQL condition: an order not yet shipped is stopped by a blocker of ``kind`` (the same
    rules as ``GET /v1/orders/{id}/blockers``)."""
    unshipped = Order.status.in_(_UNSHIPPED)
    if kind == "hold":
        return and_(unshipped, holds.held(Order.id))
    if kind == "payment":
        return and_(
            unshipped,
            Order.paid_at.is_(None),
            Order.payment_method != PaymentMethod.CASH_ON_DELIVERY.value,
        )
    if kind == "backorder":
        return and_(
            unshipped,
            exists().where(OrderLine.order_id == Order.id, OrderLine.backordered > 0),
        )
    if kind == "wave":  # held out of the pick queue for its channel's next wave (#20)
        return and_(
            Order.status.in_([OrderStatus.PLACED.value, OrderStatus.PAID.value]),
            waves_service.waiting_for_wave(
                order_id=Order.id,
                channel=Order.channel,
                priority=Order.priority,
                created_at=Order.created_at,
            ),
        )
    raise ProblemError(f"unknown blocker kind '{kind}'", code="invalid_blocker")  # pragma: no cover


async def list_orders(
    session: AsyncSession,
    *,
    principal: Principal,
    filters: OrderFilter,
    limit: int,
    cursor: str | None,
) -> tuple[list[Order], str | None]:
    """Orders newest first, filtered, keyset-paginated by (created_at, id); their rows only
    (the API shows each one whole with :func:`order_documents`)."""
    stmt = select(Order)
    if principal.channel is not None:
        if filters.channel is not None and filters.channel != principal.channel:
            return [], None
        stmt = stmt.where(Order.channel == principal.channel)
    scope = visible_warehouses(principal)
    if scope is not None:  # store staff: orders with a live shipment at their locations (#19)
        stmt = stmt.where(
            select(Shipment.id)
            .where(
                Shipment.order_id == Order.id,
                Shipment.warehouse_id.in_(list(scope)),
                Shipment.status != ShipmentStatus.CANCELLED.value,
            )
            .exists()
        )
    if filters.status:
        stmt = stmt.where(Order.status.in_([s.value for s in filters.status]))
    if filters.channel:
        stmt = stmt.where(Order.channel == filters.channel)
    if filters.customer_id:
        stmt = stmt.where(Order.customer_id == filters.customer_id)
    if filters.customer_email:
        stmt = stmt.where(Order.customer_email == filters.customer_email.lower())
    if filters.created_from:
        stmt = stmt.where(Order.created_at >= filters.created_from)
    if filters.created_to:
        stmt = stmt.where(Order.created_at < filters.created_to)
    if filters.blocked_by:
        stmt = stmt.where(blocked_by(filters.blocked_by))
    if filters.number is not None:
        stmt = stmt.where(Order.number == filters.number)
    if filters.external_reference:
        stmt = stmt.where(Order.external_reference == filters.external_reference)
    if cursor:
        ts, oid = _decode_cursor(cursor)
        stmt = stmt.where(or_(Order.created_at < ts, and_(Order.created_at == ts, Order.id < oid)))
    stmt = stmt.order_by(Order.created_at.desc(), Order.id.desc()).limit(limit + 1)
    rows = list((await session.scalars(stmt)).all())
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = _encode_cursor(rows[-1].created_at, rows[-1].id)
    return rows, next_cursor


async def order_history(
    session: AsyncSession, *, order_id: uuid.UUID, principal: Principal
) -> list[OrderEvent]:
    """Every recorded event of the order, oldest first."""
    channel = await session.scalar(select(Order.channel).where(Order.id == order_id))
    if channel is None or not visible(principal, channel):
        raise not_found(order_id)
    await refuse_outside_scope(session, order_id=order_id, principal=principal, every=False)
    rows = await session.scalars(
        select(OrderEvent).where(OrderEvent.order_id == order_id).order_by(OrderEvent.id)
    )
    return list(rows.all())


async def shipments_for(
    session: AsyncSession, *, order_ids: list[uuid.UUID]
) -> dict[uuid.UUID, list[ShipmentView]]:
    """Shipments of several orders (two queries), each with the lines and units it carries."""
    out: dict[uuid.UUID, list[ShipmentView]] = {oid: [] for oid in order_ids}
    if not order_ids:
        return out
    shipments = (
        await session.scalars(
            select(Shipment)
            .where(Shipment.order_id.in_(order_ids))
            .order_by(Shipment.order_id, Shipment.seq)
        )
    ).all()
    if not shipments:
        return out
    allocs = await inventory_service.allocations_for_orders(session, order_ids=order_ids)
    by_shipment: dict[uuid.UUID, list[dict[str, Any]]] = defaultdict(list)
    for a in allocs:
        if a.shipment_id is not None and a.status != "released":
            by_shipment[a.shipment_id].append(
                {"order_line_id": a.order_line_id, "sku": a.sku, "quantity": a.quantity}
            )
    for sh in shipments:
        out[sh.order_id].append(ShipmentView(sh, by_shipment.get(sh.id, [])))
    return out


async def preview_route(
    session: AsyncSession,
    *,
    lines: list[tuple[str, int]],
    address: routing_service.Address,
    channel: str,
    pickup_code: str | None,
) -> RoutePlan:
    """Route without reserving: where an order would ship from, and why (422 ``unknown_sku``
    for lines whose SKU no warehouse has a stock level for, as placing the order would)."""
    route_lines = [
        RouteLine(line_id=str(i), sku=sku, quantity=q) for i, (sku, q) in enumerate(lines, 1)
    ]
    plan = await routing_service.plan(
        session, lines=route_lines, address=address, channel=channel, pickup_code=pickup_code
    )
    if plan.unknown_skus:
        unknown = plan.unknown_skus
        raise unknown_sku((i, sku, q) for i, (sku, q) in enumerate(lines, 1) if sku in unknown)
    return plan


async def pick_queue(
    session: AsyncSession,
    *,
    warehouse_code: str,
    limit: int,
    principal: Principal | None = None,
) -> list[tuple[Shipment, Order, list[dict[str, Any]]]]:
    """Shipments of a warehouse ready to pick: express first, then oldest first (404 for a
    key scoped to other warehouses)."""
    wid = (await inventory_service.warehouse_ids_by_code(session, codes=[warehouse_code])).get(
        warehouse_code
    )
    if wid is None or not may_see_warehouse(principal, wid):
        raise NotFound(f"warehouse '{warehouse_code}' does not exist", code="warehouse_not_found")
    ready = or_(
        Order.status == OrderStatus.PAID.value,
        and_(
            Order.status == OrderStatus.PLACED.value,
            Order.payment_method == PaymentMethod.CASH_ON_DELIVERY.value,
        ),
        Order.status == OrderStatus.PICKED.value,
    )
    rows = (
        await session.execute(
            select(Shipment, Order)
            .join(Order, Order.id == Shipment.order_id)
            .where(
                Shipment.warehouse_id == wid,
                Shipment.status == ShipmentStatus.PENDING.value,
                ready,
                holds.not_held(Order.id),  # a held order leaves the queue
                waves_service.not_waiting_for_wave(  # so does one waiting for its wave (#20)
                    order_id=Order.id,
                    channel=Order.channel,
                    priority=Order.priority,
                    created_at=Order.created_at,
                ),
            )
            .order_by(
                (Order.priority == "express").desc(), Order.created_at, Order.id, Shipment.seq
            )
            .limit(limit)
        )
    ).all()
    allocs = await inventory_service.allocations_for_orders(
        session, order_ids=list({order.id for _, order in rows})
    )
    by_shipment: dict[uuid.UUID, list[dict[str, Any]]] = defaultdict(list)
    for a in allocs:
        if a.shipment_id is not None and a.status == "open":
            by_shipment[a.shipment_id].append(
                {"order_line_id": a.order_line_id, "sku": a.sku, "quantity": a.quantity}
            )
    return [(sh, order, by_shipment.get(sh.id, [])) for sh, order in rows]


@dataclass(frozen=True, slots=True)
class OrderRef:
    """What a connector's event needs to know of the order it is about."""

    id: uuid.UUID
    status: str
    currency: str
    total_amount: int
    channel: str
    payment_method: str


async def find_order(
    session: AsyncSession,
    *,
    channel: str,
    order_id: uuid.UUID | None = None,
    external_reference: str | None = None,
) -> OrderRef | None:
    """The order of ``channel`` with this id, or else with this external reference."""
    stmt = select(
        Order.id,
        Order.status,
        Order.currency,
        Order.total_amount,
        Order.channel,
        Order.payment_method,
    ).where(Order.channel == channel)
    if order_id is not None:
        stmt = stmt.where(Order.id == order_id)
    elif external_reference is not None:
        stmt = stmt.where(Order.external_reference == external_reference)
    else:
        return None
    row = (await session.execute(stmt)).first()
    return None if row is None else OrderRef(*row)


def order_exists(
    *, channel: QueryableAttribute[Any], external_reference: QueryableAttribute[Any]
) -> ColumnElement[bool]:
    """A SQL condition: an order of ``channel`` with ``external_reference`` exists (for other
    contexts' queries that wait for an order, e.g. pending inbound events)."""
    return exists().where(Order.channel == channel, Order.external_reference == external_reference)
