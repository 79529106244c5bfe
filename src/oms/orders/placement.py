"""Order placement, the hot path: route, write the order with everything that goes with it in
one statement, reserve the stock last. See :func:`place_order_with_shipments`."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from oms.auth.service import Principal
from oms.db import after_commit, driver_connection
from oms.inventory import service as inventory_service
from oms.orders import domain, hold_rules, holds, promising, views
from oms.orders.domain import OrderStatus
from oms.orders.events import order_summary
from oms.orders.idempotency import StoredResponse, claim_idempotency_key
from oms.orders.models import Order, OrderEvent
from oms.orders.plans import (
    NewOrder,
    NewOrderLine,
    NewShipment,
    PlanRows,
    ShipmentView,
    insufficient_stock,
    plan_rows,
    route_address,
    stock_contention,
    unknown_sku,
)
from oms.orders.schemas import OrderCreate
from oms.routing import service as routing_service
from oms.routing.domain import RouteLine
from oms.shared import events, jsonenc, metrics
from oms.shared.clock import utcnow
from oms.shared.errors import Conflict, Forbidden
from oms.shared.sqlfiles import sql_file
from oms.stores import service as stores_service

log = logging.getLogger("oms.orders")


MAX_ROUTE_ATTEMPTS = 3


class _StockMoved(Exception):
    """A reservation lost a race after routing: roll back the savepoint and route again."""


_PLACE_ORDER = sql_file("oms.orders", "place_order")
"""Everything a placement writes except the reservation, in one statement (see the file)."""


@dataclass(frozen=True, slots=True)
class IdempotentRequest:
    """The claimed key under which the response of this placement is stored (with what it
    takes to claim it again, see ``place_order_with_shipments(commit=True)``)."""

    scope: str
    key: str
    fingerprint: str
    ttl: timedelta


class IdempotentReplay(Exception):
    """The idempotency key, claimed again after a restart, now holds another request's
    committed response: answer with it."""

    def __init__(self, stored: StoredResponse) -> None:
        super().__init__("idempotent replay")
        self.stored = stored


@dataclass(frozen=True, slots=True)
class PlacedOrder:
    order: NewOrder
    shipments: list[ShipmentView]
    body: dict[str, Any] | None
    """The rendered response (when rendered for an idempotent request), number filled in."""


async def place_order(
    session: AsyncSession,
    *,
    data: OrderCreate,
    principal: Principal,
    request_id: str | None,
    risk_level: str | None = None,
) -> NewOrder:
    """Store a new order in status ``placed``, routed and reserved, in the caller's transaction.

    Not enough stock: 409 ``insufficient_stock`` naming the short lines; a SKU no warehouse has
    a stock level for: 422 ``unknown_sku`` naming its lines (also on a channel that takes
    backorders); either way nothing is stored (the request's transaction rolls back).
    """
    placed = await place_order_with_shipments(
        session, data=data, principal=principal, request_id=request_id, risk_level=risk_level
    )
    return placed.order


async def place_order_with_shipments(
    session: AsyncSession,
    *,
    data: OrderCreate,
    principal: Principal,
    request_id: str | None,
    idempotency: IdempotentRequest | None = None,
    restartable: bool = False,
    risk_level: str | None = None,
) -> PlacedOrder:
    """:func:`place_order`, also returning the shipments, and storing the idempotent response.

    The hot path of oms, in round trips: the routing snapshot and the channel policy (two
    reads, no locks), one statement writing the order and everything that goes with it
    (``sql/place_order.sql``), and last the reservation (one statement that locks the stock rows
    in a fixed order and reserves all or nothing). If the stock moved between snapshot and
    reservation, the writes are undone (releasing the row locks) and the order is routed again,
    at most MAX_ROUTE_ATTEMPTS times. With ``idempotency``, the response (``views.render``) is
    stored under the key in the same statement as the order.

    How the writes are undone: by default a savepoint around them (callers that wrote before,
    such as webhook intake, keep their work; the caller's transaction is committed by the
    request dependency). ``restartable=True`` (``POST /v1/orders``, whose transaction holds
    nothing but the idempotency claim and where nothing follows the placement) takes no
    savepoint, two round trips fewer per order: a stock move rolls the whole transaction back,
    claims the key again (`IdempotentReplay` if a concurrent request with the same key
    completed meanwhile) and routes again. And the reservation is sent with the transaction's
    COMMIT in one message (``inventory.reserve_then_commit``), so a hot stock row is locked for
    the server's time only; the request dependency's commit then ends an empty transaction.
    Nothing may be written after a successful ``restartable`` placement.

    Hold rules of the channel (``hold_rules``, from a per-process cache: no round trip) are
    evaluated on the order and ``risk_level`` (a marketplace's, at connector intake); each
    matching rule puts a hold on it, written after the order's statement, before the
    reservation (round trips only for an order that is held).
    """
    if principal.channel is not None and data.channel != principal.channel:
        raise Forbidden(
            f"this API key is bound to channel '{principal.channel}'", code="channel_not_allowed"
        )
    now = utcnow()
    order_id = uuid.uuid4()
    amounts = [
        domain.line_amounts(ln.quantity, ln.unit_price, ln.tax_rate_bps) for ln in data.lines
    ]
    totals = domain.order_totals(amounts, data.shipping_fee)
    addr = data.shipping_address
    lines = [
        NewOrderLine(
            id=uuid.uuid4(),
            order_id=order_id,
            line_no=i,
            sku=ln.sku,
            name=ln.name,
            quantity=ln.quantity,
            unit_price=ln.unit_price,
            tax_rate_bps=ln.tax_rate_bps,
            backordered=0,
            subtotal_amount=a.subtotal,
            tax_amount=a.tax,
            total_amount=a.total,
        )
        for i, (ln, a) in enumerate(zip(data.lines, amounts, strict=True), start=1)
    ]
    order = NewOrder(
        id=order_id,
        number=0,
        status=OrderStatus.PLACED.value,
        version=1,
        channel=data.channel,
        external_reference=data.external_reference,
        customer_id=data.customer.id,
        customer_email=data.customer.email.lower() if data.customer.email else None,
        customer_phone=data.customer.phone,
        customer_anonymous=data.customer.anonymous,
        currency=data.currency,
        payment_method=data.payment_method.value,
        priority=data.priority.value,
        ship_name=addr.name,
        ship_lines=addr.lines,
        ship_city=addr.city,
        ship_postal_code=addr.postal_code,
        ship_region=addr.region,
        ship_country=addr.country,
        ship_latitude=addr.latitude,
        ship_longitude=addr.longitude,
        subtotal_amount=totals.subtotal,
        tax_amount=totals.tax_total,
        shipping_fee=totals.shipping_fee,
        total_amount=totals.total,
        fulfillment="pickup" if data.pickup_store else "ship",
        pickup_warehouse_code=data.pickup_store,
        notes=data.notes,
        locale=data.locale,
        attributes=data.attributes,
        created_by=principal.actor,
        created_at=now,
        updated_at=now,
        lines=lines,
    )
    route_lines = [RouteLine(line_id=str(ln.id), sku=ln.sku, quantity=ln.quantity) for ln in lines]
    line_ids = {str(ln.id): ln.id for ln in lines}
    address = route_address(order)
    rules = hold_rules.matching(
        await hold_rules.rules_for(session, channel=data.channel),
        payment_method=order.payment_method,
        currency=order.currency,
        total=order.total_amount,
        country=order.ship_country,
        risk_level=risk_level,
    )
    for attempt in range(MAX_ROUTE_ATTEMPTS):
        plan = await routing_service.plan(
            session,
            lines=route_lines,
            address=address,
            channel=data.channel,
            pickup_code=data.pickup_store,
        )
        fulfil = None  # #19: a pickup order short at its store (only then) takes a transfer
        if data.pickup_store is not None and not plan.fully_filled and not plan.unknown_skus:
            fulfil = await stores_service.transfer_to_fulfil(
                session, plan=plan, lines=route_lines, store_code=data.pickup_store
            )
            plan = plan if fulfil is None else fulfil.plan
        if not plan.acceptable or plan.unknown_skus:
            await _raise_if_duplicate(
                session, channel=data.channel, reference=data.external_reference
            )
            if plan.unknown_skus:  # (only looked for when the plan is not fully filled)
                raise unknown_sku(
                    (ln.line_no, ln.sku, ln.quantity) for ln in lines if ln.sku in plan.unknown_skus
                )
            raise insufficient_stock(plan)
        rows = plan_rows(plan, order_id=order_id, line_ids=line_ids, first_seq=1, now=now)
        if fulfil is not None:  # the short units reserved at their sources, explained
            fulfil.apply(rows)
        for line in lines:
            line.backordered = rows.backordered[line.id]
        order.routing = rows.routing
        # ship_by, deliver_by per shipment: from cached calendars, no round trip (0019)
        await promising.promise_new_shipments(session, plan, rows.shipments, order=order)
        shipments = [ShipmentView(sh, rows.carried[sh.id]) for sh in rows.shipments]
        new_holds = holds.rule_holds(order, rules, principal)
        body = (
            views.render(order, shipments, new_holds)
            if idempotency is not None or new_holds
            else None
        )
        if not restartable:
            try:
                async with session.begin_nested():
                    number = await _write(
                        session, order, rows, body, principal, request_id, idempotency
                    )
                    if new_holds:
                        await holds.hold_new_order(
                            session, order=order, holds=new_holds, request_id=request_id
                        )
                    if fulfil is not None:
                        await _transfer_requested(session, order, fulfil, principal, request_id)
                    if not await inventory_service.reserve(session, reservations=rows.reservations):
                        raise _StockMoved
            except _StockMoved:  # the savepoint is rolled back: writes undone, row locks released
                continue
            break
        number = await _write(session, order, rows, body, principal, request_id, idempotency)
        if new_holds:
            await holds.hold_new_order(session, order=order, holds=new_holds, request_id=request_id)
        if fulfil is not None:
            await _transfer_requested(session, order, fulfil, principal, request_id)
        if not rows.reservations:  # a backorder of everything: no stock to lock
            break
        if await inventory_service.reserve_then_commit(session, reservations=rows.reservations):
            break  # committed by the server with the reservation: nothing may be written now
        if attempt == MAX_ROUTE_ATTEMPTS - 1:  # out of attempts: the aborted transaction is
            raise stock_contention()  # rolled back by the request dependency
        # the stock moved: the transaction is aborted; roll it back and claim the key again
        await session.rollback()
        if idempotency is not None:
            stored = await claim_idempotency_key(
                session,
                scope=idempotency.scope,
                key=idempotency.key,
                fingerprint=idempotency.fingerprint,
                ttl=idempotency.ttl,
            )
            if stored is not None:
                raise IdempotentReplay(stored)
    else:
        raise stock_contention()
    order.number = number
    if body is not None:
        body["number"] = number

    channel, warehouses = data.channel, len(plan.warehouses)

    def _committed() -> None:
        metrics.ORDERS_PLACED.labels(channel=channel).inc()
        log.info(
            "order placed",
            extra={
                "event": "order.placed",
                "order_id": str(order_id),
                "channel": channel,
                "shipments": warehouses,
            },
        )

    after_commit(session, _committed)
    return PlacedOrder(order, shipments, body)


async def _transfer_requested(
    session: AsyncSession,
    order: NewOrder,
    fulfil: stores_service.FulfilTransfer,
    principal: Principal,
    request_id: str | None,
) -> None:
    """#19: the draft transfers bringing a pickup order's short units to its store, and the
    history row saying so (only for such an order; written before the reservation)."""
    await fulfil.write(session, order_id=order.id, actor=principal.actor)
    await session.execute(
        insert(OrderEvent).values(
            order_id=order.id,
            kind="transfer_requested",
            from_status=order.status,
            to_status=order.status,
            actor=principal.actor,
            actor_role=principal.role.value,
            reason=f"{order.pickup_warehouse_code} lacks units: they come by transfer",
            data={"transfers": fulfil.routing_entries()},
            request_id=request_id,
            created_at=order.created_at,
        )
    )


async def _write(
    session: AsyncSession,
    order: NewOrder,
    rows: PlanRows,
    body: dict[str, Any] | None,
    principal: Principal,
    request_id: str | None,
    idempotency: IdempotentRequest | None,
) -> int:
    """Run ``place_order.sql``: the order and everything written with it, except the stock."""
    event_id = uuid.uuid4()
    event = {
        "id": str(event_id),
        "type": "order.placed",
        "occurred_at": order.created_at.isoformat(),
        "data": events.check(
            "order.placed", {**order_summary(order), "warehouses": rows.routing["warehouses"]}
        ),
    }
    conn = await driver_connection(session)
    number: int | None = await conn.fetchval(
        _PLACE_ORDER,
        *place_order_args(
            order,
            order.lines,
            rows.shipments,
            principal,
            request_id,
            event_id=event_id,
            event=jsonenc.dumps(event),
            response=None if body is None else jsonenc.dumps(body),
            idempotency=None if idempotency is None else (idempotency.scope, idempotency.key),
        ),
    )
    if number is None:
        await _raise_if_duplicate(
            session, channel=order.channel, reference=order.external_reference
        )
        raise RuntimeError("the order insert returned no row")  # pragma: no cover
    return number


def place_order_args(
    order: NewOrder,
    lines: list[NewOrderLine],
    shipments: Iterable[NewShipment],
    principal: Principal,
    request_id: str | None,
    *,
    event_id: uuid.UUID,
    event: str,
    response: str | None,
    idempotency: tuple[str, str] | None,
) -> list[Any]:
    """Every parameter of ``place_order.sql`` ($1-$54), in order (the load bench's database
    ceiling sends the same statement with these same arguments)."""
    ships = list(shipments)
    scope, key = idempotency if idempotency is not None else (None, None)
    return [
        order.id,
        order.channel,
        order.external_reference,
        order.customer_id,
        order.customer_email,
        order.currency,
        order.payment_method,
        order.priority,
        order.ship_name,
        jsonenc.dumps(order.ship_lines),
        order.ship_city,
        order.ship_postal_code,
        order.ship_region,
        order.ship_country,
        order.ship_latitude,
        order.ship_longitude,
        order.subtotal_amount,
        order.tax_amount,
        order.shipping_fee,
        order.total_amount,
        order.fulfillment,
        order.pickup_warehouse_code,
        order.notes,
        jsonenc.dumps(order.attributes),
        jsonenc.dumps(order.routing),
        order.created_by,
        order.created_at,
        [ln.id for ln in lines],
        [ln.line_no for ln in lines],
        [ln.sku for ln in lines],
        [ln.name for ln in lines],
        [ln.quantity for ln in lines],
        [ln.unit_price for ln in lines],
        [ln.tax_rate_bps for ln in lines],
        [ln.subtotal_amount for ln in lines],
        [ln.tax_amount for ln in lines],
        [ln.total_amount for ln in lines],
        [ln.backordered for ln in lines],
        principal.role.value,
        request_id,
        [sh.id for sh in ships],
        [sh.seq for sh in ships],
        [sh.warehouse_id for sh in ships],
        [sh.warehouse_code for sh in ships],
        order.customer_phone,
        order.customer_anonymous,
        event_id,  # $47
        event,
        response,
        scope,  # $50
        key,
        order.locale,  # $52
        [sh.ship_by for sh in ships],  # $53: the delivery promise (0019)
        [sh.deliver_by for sh in ships],  # $54
    ]


async def _raise_if_duplicate(
    session: AsyncSession, *, channel: str, reference: str | None
) -> None:
    """409 ``duplicate_external_reference`` if the channel already has this reference."""
    if reference is None:
        return
    existing = await session.scalar(
        select(Order.id).where(Order.channel == channel, Order.external_reference == reference)
    )
    if existing is not None:
        raise Conflict(
            f"channel '{channel}' already has an order with external reference '{reference}'",
            code="duplicate_external_reference",
            order_id=str(existing),
        )
