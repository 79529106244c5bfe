"""Order use cases. Every function takes the request's session and never commits, with one
exception: ``place_order_with_shipments(commit=True)``, used by ``POST /v1/orders``, commits in
the same round trip as the stock reservation (see there)."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload
from sqlalchemy.orm.attributes import set_committed_value

from oms.auth.service import Principal
from oms.db import after_commit, driver_connection
from oms.inventory import service as inventory_service
from oms.orders import domain
from oms.orders.domain import OrderStatus, PaymentMethod, ShipmentStatus
from oms.orders.models import Order, OrderEvent, OrderLine, Shipment
from oms.orders.schemas import OrderCreate, ShipmentTransitionRequest, TransitionRequest
from oms.outbox.service import record_event
from oms.routing import service as routing_service
from oms.routing.domain import RouteLine, RoutePlan
from oms.shared import metrics
from oms.shared.clock import utcnow
from oms.shared.errors import Conflict, Forbidden, NotFound, ProblemError, Unprocessable
from oms.shared.roles import Role

log = logging.getLogger("oms.orders")


# ---- idempotency ------------------------------------------------------------------------


def request_fingerprint(data: OrderCreate) -> str:
    """SHA-256 of the validated body in canonical JSON (formatting differences don't count)."""
    canonical = json.dumps(data.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status: int
    body: dict[str, Any]


_CLAIM = """INSERT INTO idempotency_keys (scope, key, request_hash) VALUES ($1, $2, $3)
ON CONFLICT (scope, key) DO NOTHING RETURNING id"""
_CLAIMED = """SELECT request_hash, response_status, response_body, created_at
FROM idempotency_keys WHERE scope = $1 AND key = $2 FOR UPDATE"""
_RECLAIM = """UPDATE idempotency_keys
SET request_hash = $3, created_at = $4, response_status = NULL, response_body = NULL,
    order_id = NULL
WHERE scope = $1 AND key = $2"""


async def claim_idempotency_key(
    session: AsyncSession, *, scope: str, key: str, fingerprint: str, ttl: timedelta
) -> StoredResponse | None:
    """Claim ``key`` for this request, or return the committed response of its first use.

    The INSERT waits for a concurrent request holding the same key to finish, so exactly one
    of them proceeds; the others replay its response (or proceed if it rolled back).
    """
    conn = await driver_connection(session)
    if await conn.fetchval(_CLAIM, scope, key, fingerprint) is not None:
        return None
    row = await conn.fetchrow(_CLAIMED, scope, key)
    if row is None:  # pragma: no cover - deleted (pruned) between the two statements
        raise Conflict(
            "a request with this Idempotency-Key is in progress", code="idempotency_in_progress"
        )
    now = utcnow()
    if row["created_at"] < now - ttl:
        await conn.execute(_RECLAIM, scope, key, fingerprint, now)
        return None
    if row["request_hash"] != fingerprint:
        raise Unprocessable(
            "this Idempotency-Key was already used with a different request body",
            code="idempotency_key_reused",
        )
    if row["response_status"] is None or row["response_body"] is None:
        raise Conflict(
            "a request with this Idempotency-Key is in progress", code="idempotency_in_progress"
        )
    return StoredResponse(row["response_status"], row["response_body"])


# ---- reading ----------------------------------------------------------------------------


def _visible(principal: Principal, order_channel: str) -> bool:
    return principal.channel is None or principal.channel == order_channel


async def get_order(session: AsyncSession, *, order_id: uuid.UUID, principal: Principal) -> Order:
    """One order with its lines; 404 when missing or outside the caller's channel."""
    order = await session.scalar(
        select(Order).options(selectinload(Order.lines)).where(Order.id == order_id)
    )
    if order is None or not _visible(principal, order.channel):
        raise NotFound(f"order {order_id} does not exist", code="order_not_found")
    return order


def _encode_cursor(created_at: datetime, order_id: uuid.UUID) -> str:
    raw = f"{created_at.isoformat()}|{order_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        ts, oid = raw.split("|", 1)
        return datetime.fromisoformat(ts), uuid.UUID(oid)
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


async def list_orders(
    session: AsyncSession,
    *,
    principal: Principal,
    filters: OrderFilter,
    limit: int,
    cursor: str | None,
) -> tuple[list[Order], str | None]:
    """Orders newest first, filtered, keyset-paginated by (created_at, id)."""
    stmt = select(Order).options(selectinload(Order.lines))
    if principal.channel is not None:
        if filters.channel is not None and filters.channel != principal.channel:
            return [], None
        stmt = stmt.where(Order.channel == principal.channel)
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
    if channel is None or not _visible(principal, channel):
        raise NotFound(f"order {order_id} does not exist", code="order_not_found")
    rows = await session.scalars(
        select(OrderEvent).where(OrderEvent.order_id == order_id).order_by(OrderEvent.id)
    )
    return list(rows.all())


# ---- placing ----------------------------------------------------------------------------

MAX_ROUTE_ATTEMPTS = 3


class _StockMoved(Exception):
    """A reservation lost a race after routing: roll back the savepoint and route again."""


def order_summary(order: Order | NewOrder) -> dict[str, Any]:
    """The data carried by order.* events."""
    return {
        "order_id": str(order.id),
        "number": order.number,
        "status": order.status,
        "channel": order.channel,
        "external_reference": order.external_reference,
        "customer_id": order.customer_id,
        "customer_email": order.customer_email,
        "currency": order.currency,
        "total": order.total_amount,
        "lines": [{"sku": ln.sku, "quantity": ln.quantity} for ln in order.lines],
    }


def _address(order: Order | NewOrder) -> routing_service.Address:
    return routing_service.Address(
        country=order.ship_country,
        postal_code=order.ship_postal_code,
        city=order.ship_city,
        latitude=order.ship_latitude,
        longitude=order.ship_longitude,
    )


def insufficient_stock(plan: RoutePlan) -> Conflict:
    """409 naming each short line: requested, and how many could be placed."""
    short = [
        {"line_id": s.line_id, "sku": s.sku, "requested": s.requested, "available": s.available}
        for s in plan.shortages
    ]
    return Conflict(
        "not enough stock for: "
        + ", ".join(
            f"{s['sku']} (requested {s['requested']}, available {s['available']})" for s in short
        ),
        code="insufficient_stock",
        title="Insufficient stock",
        short_lines=short,
    )


async def _route_and_reserve(
    session: AsyncSession, *, order: Order, lines: list[OrderLine]
) -> RoutePlan:
    """Plan against a fresh snapshot, create shipments and reserve; re-route if stock moved.

    Shipments and allocations are written inside a savepoint; the conditional stock UPDATEs
    come last. If one finds the stock gone (a concurrent order took it), the savepoint is
    rolled back and the order is routed again, at most MAX_ROUTE_ATTEMPTS times.
    """
    route_lines = [RouteLine(line_id=str(ln.id), sku=ln.sku, quantity=ln.quantity) for ln in lines]
    line_ids = {str(ln.id): ln.id for ln in lines}
    for _attempt in range(MAX_ROUTE_ATTEMPTS):
        plan = await routing_service.plan(
            session,
            lines=route_lines,
            address=_address(order),
            channel=order.channel,
            pickup_code=order.pickup_warehouse_code,
        )
        if not plan.acceptable:
            raise insufficient_stock(plan)
        try:
            async with session.begin_nested():
                await _write_plan(session, order=order, plan=plan, line_ids=line_ids)
        except _StockMoved:
            continue
        return plan
    raise _stock_contention()


async def _write_plan(
    session: AsyncSession, *, order: Order, plan: RoutePlan, line_ids: dict[str, uuid.UUID]
) -> None:
    codes = {c.warehouse_id: c.code for c in plan.explanation.candidates}
    now = utcnow()
    seq_start = (
        await session.scalar(
            select(func.coalesce(func.max(Shipment.seq), 0)).where(Shipment.order_id == order.id)
        )
        if order.routing is not None
        else 0
    ) or 0
    shipment_ids: dict[str, uuid.UUID] = {}
    for i, wid in enumerate(plan.warehouses, start=seq_start + 1):
        shipment_ids[wid] = uuid.uuid4()
        session.add(
            Shipment(
                id=shipment_ids[wid],
                order_id=order.id,
                seq=i,
                warehouse_id=uuid.UUID(wid),
                warehouse_code=codes[wid],
                status=ShipmentStatus.PENDING.value,
                version=1,
                created_at=now,
                updated_at=now,
            )
        )
    await session.flush()
    reservations = [
        inventory_service.Reservation(
            order_id=order.id,
            order_line_id=line_ids[a.line_id],
            shipment_id=shipment_ids[a.warehouse_id],
            warehouse_id=uuid.UUID(a.warehouse_id),
            sku=a.sku,
            quantity=a.quantity,
        )
        for a in plan.allocations
    ]
    backordered: dict[uuid.UUID, int] = defaultdict(int)
    for s in plan.backorders:
        backordered[line_ids[s.line_id]] += s.missing
    await session.execute(
        update(OrderLine),
        [{"id": line_id, "backordered": backordered[line_id]} for line_id in line_ids.values()],
    )
    routing = {
        "warehouses": [codes[w] for w in plan.warehouses],
        "fully_filled": plan.fully_filled,
        "backorders": [
            {"line_id": s.line_id, "sku": s.sku, "quantity": s.missing} for s in plan.backorders
        ],
        "explanation": plan.explanation.to_dict(),
    }
    await session.execute(
        update(Order)
        .where(Order.id == order.id)
        .values(routing=routing, live_shipments=len(plan.warehouses))
        .execution_options(synchronize_session=False)
    )
    set_committed_value(order, "routing", routing)
    set_committed_value(order, "live_shipments", len(plan.warehouses))
    # the contended stock rows last: their locks are held only until the commit
    if reservations and not await inventory_service.reserve(session, reservations=reservations):
        raise _StockMoved


@dataclass(slots=True)
class NewOrderLine:
    """A line of an order being placed (plain data: what responses and events read)."""

    id: uuid.UUID
    order_id: uuid.UUID
    line_no: int
    sku: str
    name: str | None
    quantity: int
    unit_price: int
    tax_rate_bps: int
    backordered: int
    subtotal_amount: int
    tax_amount: int
    total_amount: int


@dataclass(slots=True)
class NewOrder:
    """An order as :func:`place_order` wrote it, with the attributes of the `Order` row.

    Order placement builds these instead of ORM objects: nothing goes through the session's
    unit of work, and a plain dataclass costs a fraction of an instrumented instance.
    """

    id: uuid.UUID
    number: int
    status: str
    version: int
    channel: str
    external_reference: str | None
    customer_id: str | None
    customer_email: str | None
    currency: str
    payment_method: str
    priority: str
    ship_name: str | None
    ship_lines: list[str]
    ship_city: str
    ship_postal_code: str | None
    ship_region: str | None
    ship_country: str
    ship_latitude: float | None
    ship_longitude: float | None
    subtotal_amount: int
    tax_amount: int
    shipping_fee: int
    total_amount: int
    fulfillment: str
    pickup_warehouse_code: str | None
    notes: str | None
    attributes: dict[str, Any]
    created_by: str | None
    created_at: datetime
    updated_at: datetime
    lines: list[NewOrderLine]
    routing: dict[str, Any] | None = None
    carrier: str | None = None
    tracking_number: str | None = None
    paid_at: datetime | None = None
    shipped_at: datetime | None = None
    delivered_at: datetime | None = None
    cancelled_at: datetime | None = None


@dataclass(slots=True)
class NewShipment:
    """A shipment of an order being placed (the attributes of the `Shipment` row)."""

    id: uuid.UUID
    order_id: uuid.UUID
    seq: int
    warehouse_id: uuid.UUID
    warehouse_code: str
    created_at: datetime
    status: str = ShipmentStatus.PENDING.value
    version: int = 1
    carrier: str | None = None
    tracking_number: str | None = None
    picked_at: datetime | None = None
    packed_at: datetime | None = None
    shipped_at: datetime | None = None
    delivered_at: datetime | None = None
    cancelled_at: datetime | None = None


_PLACE_ORDER = """WITH o AS (
  INSERT INTO orders (id, status, version, channel, external_reference, customer_id,
    customer_email, currency, payment_method, priority, ship_name, ship_lines, ship_city,
    ship_postal_code, ship_region, ship_country, ship_latitude, ship_longitude, subtotal_amount,
    tax_amount, shipping_fee, total_amount, fulfillment, pickup_warehouse_code, notes,
    attributes, routing, created_by, created_at, updated_at, units_ordered, live_shipments)
  VALUES ($1, 'placed', 1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11, $12, $13, $14, $15,
    $16, $17, $18, $19, $20, $21, $22, $23, $24::jsonb, $25::jsonb, $26, $27, $27,
    (SELECT coalesce(sum(q), 0) FROM unnest($32::int[]) AS q), cardinality($41::uuid[]))
  ON CONFLICT (channel, external_reference) WHERE external_reference IS NOT NULL DO NOTHING
  RETURNING id, number
), lines AS (
  INSERT INTO order_lines (id, order_id, line_no, sku, name, quantity, unit_price, tax_rate_bps,
    subtotal_amount, tax_amount, total_amount, backordered, placed_at, channel, currency)
  SELECT u.id, o.id, u.line_no, u.sku, u.name, u.quantity, u.unit_price, u.tax_rate_bps,
    u.subtotal, u.tax, u.total, u.backordered, $27, $2, $6
  FROM o, unnest($28::uuid[], $29::int[], $30::text[], $31::text[], $32::int[], $33::bigint[],
                 $34::int[], $35::bigint[], $36::bigint[], $37::bigint[], $38::int[])
    AS u(id, line_no, sku, name, quantity, unit_price, tax_rate_bps, subtotal, tax, total,
         backordered)
), history AS (
  INSERT INTO order_events (order_id, kind, from_status, to_status, actor, actor_role, data,
    request_id, created_at)
  SELECT o.id, 'transition', NULL, 'placed', $26, $39, '{}'::jsonb, $40, $27 FROM o
), shipments AS (
  INSERT INTO shipments (id, order_id, seq, warehouse_id, warehouse_code, status, version,
    created_at, updated_at)
  SELECT u.id, o.id, u.seq, u.warehouse_id, u.code, 'pending', 1, $27, $27
  FROM o, unnest($41::uuid[], $42::int[], $43::uuid[], $44::text[])
    AS u(id, seq, warehouse_id, code)
), outbox AS (
  INSERT INTO outbox_events (event_id, type, aggregate_type, aggregate_id, payload, created_at)
  SELECT $45, 'order.placed', 'order', o.id::text,
         jsonb_set($46::jsonb, '{data,number}', to_jsonb(o.number)), $27
  FROM o
), replay AS (
  UPDATE idempotency_keys
  SET response_status = 201, order_id = o.id,
      response_body = jsonb_set($47::jsonb, '{number}', to_jsonb(o.number))
  FROM o
  WHERE $48::text IS NOT NULL AND scope = $48 AND key = $49
), customer AS (
  INSERT INTO customer_order_totals AS t (currency, guest, customer_key, orders, amount)
  SELECT $6, $4::text IS NULL, coalesce($4, $5), 1, $20 FROM o
  ON CONFLICT (currency, guest, customer_key)
  DO UPDATE SET orders = t.orders + 1, amount = t.amount + excluded.amount
)
SELECT number FROM o"""
"""Everything an order placement writes except the reservation, in one round trip: the order
(routing and fulfilment counts included), its lines (backorders included), the ``placed``
history row, the shipments, the ``order.placed`` outbox event and the stored idempotent
response, and the customer's placed-order totals (``customer_order_totals``, which the
top-customers report reads). The order number is an identity assigned by the INSERT, so it is
patched into the two JSON documents in SQL."""

_SAVEPOINT = "SAVEPOINT oms_place_order"
_ROLLBACK_TO_SAVEPOINT = "ROLLBACK TO SAVEPOINT oms_place_order"
_RESTART = "ROLLBACK;\nBEGIN"


def _stock_contention() -> Conflict:
    return Conflict(
        "stock kept moving while this order was being routed; retry",
        code="stock_contention",
        headers={"Retry-After": "1"},
    )


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


Render = Callable[[NewOrder, "list[ShipmentView]"], dict[str, Any]]


async def place_order(
    session: AsyncSession, *, data: OrderCreate, principal: Principal, request_id: str | None
) -> NewOrder:
    """Store a new order in status ``placed``, routed and reserved, in the caller's transaction.

    Not enough stock: 409 ``insufficient_stock`` naming the short lines, and nothing is stored
    (the request's transaction rolls back).
    """
    placed = await place_order_with_shipments(
        session, data=data, principal=principal, request_id=request_id
    )
    return placed.order


async def place_order_with_shipments(
    session: AsyncSession,
    *,
    data: OrderCreate,
    principal: Principal,
    request_id: str | None,
    idempotency: IdempotentRequest | None = None,
    render: Render | None = None,
    commit: bool = False,
) -> PlacedOrder:
    """:func:`place_order`, also returning the shipments, and storing the idempotent response.

    The hot path of oms, in round trips: the routing snapshot and the channel policy (two
    reads, no locks), a savepoint, one statement writing the order and everything that goes
    with it, and last the reservation (one statement that locks the stock rows in a fixed
    order and reserves all or nothing). If the stock moved between snapshot and reservation,
    it rolls back to the savepoint (releasing the locks) and routes again, at most
    MAX_ROUTE_ATTEMPTS times. With ``idempotency`` and ``render``, the response rendered from
    the new order is stored under the key in the same statement as the order.

    ``commit=True`` (the HTTP route, where nothing follows) commits the request's transaction
    in the same round trip as the reservation (see `inventory_service.reserve_and_commit`):
    the only place a service commits, to keep hot stock rows locked for the server's time
    only. Callers that write more afterwards (webhook intake) leave it False. With
    ``commit=True`` the transaction must hold nothing but the idempotency claim, and no
    savepoint is taken (one round trip and one subtransaction less per order): when the stock
    moved, the whole transaction is rolled back and a new one begun, the key claimed again
    (`IdempotentReplay` if a concurrent request with the same key completed meanwhile), and
    the order routed again.
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
        attributes=data.attributes,
        created_by=principal.actor,
        created_at=now,
        updated_at=now,
        lines=lines,
    )
    route_lines = [RouteLine(line_id=str(ln.id), sku=ln.sku, quantity=ln.quantity) for ln in lines]
    line_ids = {str(ln.id): ln for ln in lines}
    address = _address(order)
    conn = await driver_connection(session)
    savepoint = False
    for attempt in range(MAX_ROUTE_ATTEMPTS):
        plan = await routing_service.plan(
            session,
            lines=route_lines,
            address=address,
            channel=data.channel,
            pickup_code=data.pickup_store,
        )
        if not plan.acceptable:
            await _raise_if_duplicate(session, data=data)
            raise insufficient_stock(plan)
        codes = {c.warehouse_id: c.code for c in plan.explanation.candidates}
        shipments = {
            wid: NewShipment(
                id=uuid.uuid4(),
                order_id=order_id,
                seq=seq,
                warehouse_id=uuid.UUID(wid),
                warehouse_code=codes[wid],
                created_at=now,
            )
            for seq, wid in enumerate(plan.warehouses, start=1)
        }
        backordered: dict[str, int] = defaultdict(int)
        for short in plan.backorders:
            backordered[short.line_id] += short.missing
        for line_id, line in line_ids.items():
            line.backordered = backordered[line_id]
        order.routing = {
            "warehouses": [codes[w] for w in plan.warehouses],
            "fully_filled": plan.fully_filled,
            "backorders": [
                {"line_id": s.line_id, "sku": s.sku, "quantity": s.missing} for s in plan.backorders
            ],
            "explanation": plan.explanation.to_dict(),
        }
        carried: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for a in plan.allocations:
            carried[a.warehouse_id].append(
                {"order_line_id": line_ids[a.line_id].id, "sku": a.sku, "quantity": a.quantity}
            )
        views = [ShipmentView(sh, carried[wid]) for wid, sh in shipments.items()]
        body = render(order, views) if render is not None and idempotency is not None else None
        if not commit and not savepoint:
            await conn.execute(_SAVEPOINT)
            savepoint = True
        event_id = uuid.uuid4()
        number = await conn.fetchval(
            _PLACE_ORDER,
            *_order_params(order, lines, shipments.values(), principal, request_id),
            event_id,
            json.dumps(
                {
                    "id": str(event_id),
                    "type": "order.placed",
                    "occurred_at": now.isoformat(),
                    "data": {**order_summary(order), "warehouses": order.routing["warehouses"]},
                },
                default=str,
            ),
            None if body is None else json.dumps(body),
            idempotency.scope if idempotency is not None else None,
            idempotency.key if idempotency is not None else None,
        )
        if number is None:
            await _raise_if_duplicate(session, data=data)
            raise RuntimeError("the order insert returned no row")  # pragma: no cover
        reservations = [
            inventory_service.Reservation(
                order_id=order_id,
                order_line_id=line_ids[a.line_id].id,
                shipment_id=shipments[a.warehouse_id].id,
                warehouse_id=uuid.UUID(a.warehouse_id),
                sku=a.sku,
                quantity=a.quantity,
            )
            for a in plan.allocations
        ]
        if not reservations:  # a backorder of everything: nothing to lock
            break
        if not commit:
            if await inventory_service.reserve(session, reservations=reservations):
                break
            await conn.execute(_ROLLBACK_TO_SAVEPOINT)  # undo the writes, release the row locks
            continue
        if await inventory_service.reserve_and_commit(session, reservations=reservations):
            break
        if attempt == MAX_ROUTE_ATTEMPTS - 1:  # out of attempts: no restart, the session rolls
            raise _stock_contention()  # the aborted transaction back
        # the stock moved: the transaction is aborted; start a new one and claim the key again
        await conn.execute(_RESTART)
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
        raise _stock_contention()
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
    return PlacedOrder(order, views, body)


def _order_params(
    order: NewOrder,
    lines: list[NewOrderLine],
    shipments: Iterable[NewShipment],
    principal: Principal,
    request_id: str | None,
) -> list[Any]:
    """Parameters $1-$44 of _PLACE_ORDER."""
    ships = list(shipments)
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
        json.dumps(order.ship_lines),
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
        json.dumps(order.attributes),
        json.dumps(order.routing),
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
    ]


async def _raise_if_duplicate(session: AsyncSession, *, data: OrderCreate) -> None:
    """409 ``duplicate_external_reference`` if the channel already has this reference."""
    if data.external_reference is None:
        return
    existing = await session.scalar(
        select(Order.id).where(
            Order.channel == data.channel, Order.external_reference == data.external_reference
        )
    )
    if existing is not None:
        raise Conflict(
            f"channel '{data.channel}' already has an order with external reference "
            f"'{data.external_reference}'",
            code="duplicate_external_reference",
            order_id=str(existing),
        )


# ---- shipments --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ShipmentView:
    shipment: Shipment | NewShipment
    lines: list[dict[str, Any]]


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


async def reroute_order(
    session: AsyncSession,
    *,
    order_id: uuid.UUID,
    principal: Principal,
    reason: str | None,
    request_id: str | None,
) -> Order:
    """Release the order's reservations and route it again (before any shipment is picked)."""
    order = await get_order(session, order_id=order_id, principal=principal)
    status = OrderStatus(order.status)
    if status not in (OrderStatus.PLACED, OrderStatus.PAID):
        raise Conflict(
            f"only placed or paid orders can be re-routed; this one is '{status}'",
            code="reroute_not_allowed",
            current_status=status.value,
        )
    active = (
        await session.scalars(
            select(Shipment).where(
                Shipment.order_id == order_id, Shipment.status != ShipmentStatus.CANCELLED.value
            )
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
    await inventory_service.release(session, order_id=order_id)
    now = utcnow()
    await session.execute(
        update(Shipment)
        .where(Shipment.order_id == order_id, Shipment.status == ShipmentStatus.PENDING.value)
        .values(status=ShipmentStatus.CANCELLED.value, cancelled_at=now, updated_at=now)
    )
    await _route_and_reserve(session, order=order, lines=list(order.lines))
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


async def preview_route(
    session: AsyncSession,
    *,
    lines: list[tuple[str, int]],
    address: routing_service.Address,
    channel: str,
    pickup_code: str | None,
) -> RoutePlan:
    """Route without reserving: where an order would ship from, and why."""
    route_lines = [
        RouteLine(line_id=str(i), sku=sku, quantity=q) for i, (sku, q) in enumerate(lines, 1)
    ]
    return await routing_service.plan(
        session, lines=route_lines, address=address, channel=channel, pickup_code=pickup_code
    )


async def pick_queue(
    session: AsyncSession, *, warehouse_code: str, limit: int
) -> list[tuple[Shipment, Order, list[dict[str, Any]]]]:
    """Shipments of a warehouse ready to pick: express first, then oldest first."""
    wid = (await inventory_service.warehouse_ids_by_code(session, codes=[warehouse_code])).get(
        warehouse_code
    )
    if wid is None:
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


# ---- transitions ------------------------------------------------------------------------


def _problem_for(exc: Exception) -> ProblemError:
    if isinstance(exc, domain.IllegalTransition):
        return Conflict(
            str(exc),
            code="illegal_transition",
            current_status=exc.current.value,
            requested_status=exc.target.value,
            allowed_transitions=[s.value for s in exc.allowed],
        )
    if isinstance(exc, domain.IllegalShipmentTransition):
        return Conflict(
            str(exc),
            code="illegal_shipment_transition",
            current_status=exc.current.value,
            requested_status=exc.target.value,
            allowed_transitions=[s.value for s in exc.allowed],
        )
    if isinstance(exc, domain.RoleNotAllowed):
        return Forbidden(str(exc), code="role_not_allowed")
    return Unprocessable(str(exc), code="shipping_details_required")


_TIMESTAMP_FOR = {
    OrderStatus.PAID: "paid_at",
    OrderStatus.SHIPPED: "shipped_at",
    OrderStatus.DELIVERED: "delivered_at",
    OrderStatus.CANCELLED: "cancelled_at",
}


async def _apply_order_transition(
    session: AsyncSession,
    *,
    order: Order,
    target: OrderStatus,
    principal: Principal,
    reason: str | None,
    carrier: str | None,
    tracking_number: str | None,
    request_id: str | None,
) -> None:
    """Check one move with the state machine, write it (version-guarded), history and event."""
    current = OrderStatus(order.status)
    try:
        domain.transition(
            current,
            target,
            cash_on_delivery=order.payment_method == PaymentMethod.CASH_ON_DELIVERY,
            role=principal.role,
            carrier=carrier,
            tracking_number=tracking_number,
        )
    except (domain.IllegalTransition, domain.RoleNotAllowed, domain.MissingShippingDetails) as exc:
        raise _problem_for(exc) from exc
    now = utcnow()
    values: dict[str, Any] = {
        "status": target.value,
        "version": order.version + 1,
        "updated_at": now,
    }
    if target in _TIMESTAMP_FOR:
        values[_TIMESTAMP_FOR[target]] = now
    if target is OrderStatus.SHIPPED:
        values["carrier"], values["tracking_number"] = carrier, tracking_number
    result = await session.execute(
        update(Order)
        .where(Order.id == order.id, Order.version == order.version)
        .values(**values)
        .returning(Order.id)
    )
    if result.first() is None:
        raise Conflict(
            "the order was changed by another request at the same time; read it and retry",
            code="concurrent_modification",
            current_status=current.value,
        )
    for key, value in values.items():
        setattr(order, key, value)
    data: dict[str, Any] = {}
    if carrier:
        data = {"carrier": carrier, "tracking_number": tracking_number}
    session.add(
        OrderEvent(
            order_id=order.id,
            kind="transition",
            from_status=current.value,
            to_status=target.value,
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
        type=f"order.{target.value}",
        aggregate_type="order",
        aggregate_id=str(order.id),
        data={**order_summary(order), "previous_status": current.value, **data},
    )
    if target is OrderStatus.DELIVERED and order.payment_method == PaymentMethod.CASH_ON_DELIVERY:
        # cash is collected at the door: record it (imported here: payments builds on orders)
        from oms.payments import service as payments_service

        await payments_service.record_cash_on_delivery(session, order=order, actor=principal.actor)
        await mark_paid(session, order_id=order.id, actor=principal.actor)
    order_id = order.id

    def _committed() -> None:
        metrics.ORDER_TRANSITIONS.labels(from_status=current.value, to_status=target.value).inc()
        log.info(
            "order transition",
            extra={
                "event": f"order.{target.value}",
                "order_id": str(order_id),
                "from_status": current.value,
                "to_status": target.value,
                "actor": principal.actor,
            },
        )

    after_commit(session, _committed)


async def _move_shipment(
    session: AsyncSession,
    *,
    shipment: Shipment,
    target: ShipmentStatus,
    principal: Principal,
    carrier: str | None,
    tracking_number: str | None,
) -> None:
    now = utcnow()
    values: dict[str, Any] = {
        "status": target.value,
        "version": shipment.version + 1,
        "updated_at": now,
        f"{target.value}_at": now,
    }
    if target is ShipmentStatus.SHIPPED:
        values["carrier"], values["tracking_number"] = carrier, tracking_number
    result = await session.execute(
        update(Shipment)
        .where(Shipment.id == shipment.id, Shipment.version == shipment.version)
        .values(**values)
        .returning(Shipment.id)
    )
    if result.first() is None:
        raise Conflict(
            "the shipment was changed by another request at the same time; retry",
            code="concurrent_modification",
        )
    for key, value in values.items():
        setattr(shipment, key, value)
    if target is ShipmentStatus.SHIPPED:
        units = await inventory_service.consume(
            session, order_id=shipment.order_id, shipment_id=shipment.id, actor=principal.actor
        )
        if units:
            await session.execute(
                update(Order)
                .where(Order.id == shipment.order_id)
                .values(units_shipped=Order.units_shipped + units)
                .execution_options(synchronize_session=False)
            )
    await record_event(
        session,
        type=f"shipment.{target.value}",
        aggregate_type="order",
        aggregate_id=str(shipment.order_id),
        data={
            "shipment_id": str(shipment.id),
            "order_id": str(shipment.order_id),
            "warehouse_code": shipment.warehouse_code,
            "status": target.value,
            "carrier": shipment.carrier,
            "tracking_number": shipment.tracking_number,
        },
    )


async def transition_order(
    session: AsyncSession,
    *,
    order_id: uuid.UUID,
    change: TransitionRequest,
    principal: Principal,
    request_id: str | None,
) -> Order:
    """Move the order to ``change.to`` if the state machine allows it; record who and why.

    Fulfilment moves (picked, packed, shipped, delivered) carry every shipment that is behind
    along; shipping consumes the reserved stock; cancelling releases it. The UPDATE is
    conditional on the version read, so of two concurrent transitions only one wins.
    """
    order = await get_order(session, order_id=order_id, principal=principal)
    if change.expected_version is not None and change.expected_version != order.version:
        raise Conflict(
            f"order is at version {order.version}, not {change.expected_version}",
            code="version_conflict",
            current_status=order.status,
            current_version=order.version,
        )
    shipments = list(
        (
            await session.scalars(
                select(Shipment)
                .where(
                    Shipment.order_id == order_id,
                    Shipment.status != ShipmentStatus.CANCELLED.value,
                )
                .order_by(Shipment.seq)
            )
        ).all()
    )
    cod = order.payment_method == PaymentMethod.CASH_ON_DELIVERY
    allowed = domain.allowed_next(OrderStatus(order.status), cash_on_delivery=cod)
    shipped = domain.shipment_rank(ShipmentStatus.SHIPPED)
    if (
        change.to is OrderStatus.CANCELLED
        and change.to in allowed
        and any(domain.shipment_rank(ShipmentStatus(sh.status)) >= shipped for sh in shipments)
    ):
        raise Conflict(
            "part of this order has already shipped; it can no longer be cancelled",
            code="partially_shipped",
            current_status=order.status,
            allowed_transitions=[s.value for s in allowed if s is not OrderStatus.CANCELLED],
        )
    await _apply_order_transition(
        session,
        order=order,
        target=change.to,
        principal=principal,
        reason=change.reason,
        carrier=change.carrier,
        tracking_number=change.tracking_number,
        request_id=request_id,
    )
    if change.to in domain.FULFILMENT_STATUSES:
        target = domain.FULFILMENT_STATUSES[change.to]
        for sh in shipments:
            if domain.shipment_rank(ShipmentStatus(sh.status)) < domain.shipment_rank(target):
                await _move_shipment(
                    session,
                    shipment=sh,
                    target=target,
                    principal=principal,
                    carrier=change.carrier,
                    tracking_number=change.tracking_number,
                )
    elif change.to is OrderStatus.CANCELLED:
        await inventory_service.release(session, order_id=order_id)
        now = utcnow()
        await session.execute(
            update(Shipment)
            .where(Shipment.order_id == order_id, Shipment.status != ShipmentStatus.CANCELLED.value)
            .values(status=ShipmentStatus.CANCELLED.value, cancelled_at=now, updated_at=now)
        )
        await session.execute(
            update(Order)
            .where(Order.id == order_id)
            .values(live_shipments=0)
            .execution_options(synchronize_session=False)
        )
        set_committed_value(order, "live_shipments", 0)
    return order


async def lock_order(session: AsyncSession, *, order_id: uuid.UUID) -> str:
    """Lock the order row until the end of the transaction (``FOR NO KEY UPDATE``, as order and
    shipment moves do) and return its status as of now, committed changes included."""
    status: str = (
        await session.execute(
            select(Order.status).where(Order.id == order_id).with_for_update(key_share=True)
        )
    ).scalar_one()
    return status


async def add_returned_units(session: AsyncSession, *, order_id: uuid.UUID, units: int) -> None:
    """Keep the order's count of units on returns that are not rejected (for the reports)."""
    await session.execute(
        update(Order)
        .where(Order.id == order_id)
        .values(units_returned=Order.units_returned + units)
        .execution_options(synchronize_session=False)
    )


async def transition_shipment(
    session: AsyncSession,
    *,
    shipment_id: uuid.UUID,
    change: ShipmentTransitionRequest,
    principal: Principal,
    request_id: str | None,
) -> Shipment:
    """Move one shipment one step; the order follows once all its shipments have."""
    shipment = await session.get(Shipment, shipment_id)
    if shipment is None:
        raise NotFound(f"shipment {shipment_id} does not exist", code="shipment_not_found")
    # the order row first, as transition_order does (its version-guarded UPDATE comes before
    # its shipments'): one lock order, so a shipment move (which may move the order and adds the
    # shipped units to the order's count) and an order move never deadlock
    await lock_order(session, order_id=shipment.order_id)
    order = await get_order(session, order_id=shipment.order_id, principal=principal)
    if principal.role not in (Role.ADMIN, Role.FULFILLMENT):
        raise Forbidden("only fulfillment or admin keys move shipments", code="role_not_allowed")
    current = ShipmentStatus(shipment.status)
    try:
        domain.next_shipment_status(current, change.to)
    except domain.IllegalShipmentTransition as exc:
        raise _problem_for(exc) from exc
    if change.to is ShipmentStatus.SHIPPED and not (change.carrier and change.tracking_number):
        raise Unprocessable(
            "shipping requires a carrier and a tracking number", code="shipping_details_required"
        )
    order_status = OrderStatus(order.status)
    if change.to is ShipmentStatus.PICKED:
        cod = order.payment_method == PaymentMethod.CASH_ON_DELIVERY
        ready = order_status is OrderStatus.PAID or (cod and order_status is OrderStatus.PLACED)
        if not ready and domain.order_fulfilment_rank(order_status) < 1:
            raise Conflict(
                f"the order is '{order_status}'; it must be paid (or cash on delivery) "
                "before picking",
                code="order_not_ready",
                current_status=order_status.value,
            )
    await _move_shipment(
        session,
        shipment=shipment,
        target=change.to,
        principal=principal,
        carrier=change.carrier,
        tracking_number=change.tracking_number,
    )
    statuses = [
        ShipmentStatus(s)
        for s in (
            await session.scalars(select(Shipment.status).where(Shipment.order_id == order.id))
        ).all()
    ]
    reached = domain.order_status_reached(statuses)
    while reached is not None and domain.order_fulfilment_rank(
        OrderStatus(order.status)
    ) < domain.order_fulfilment_rank(reached):
        nxt = domain.FULFILMENT_ORDER[domain.order_fulfilment_rank(OrderStatus(order.status))]
        await _apply_order_transition(
            session,
            order=order,
            target=nxt,
            principal=principal,
            reason="all shipments reached " + nxt.value,
            carrier=change.carrier or shipment.carrier,
            tracking_number=change.tracking_number or shipment.tracking_number,
            request_id=request_id,
        )
    return shipment


async def mark_paid(session: AsyncSession, *, order_id: uuid.UUID, actor: str) -> None:
    """Record that an order past `placed` (e.g. cash on delivery) is now fully paid."""
    now = utcnow()
    result = await session.execute(
        update(Order)
        .where(Order.id == order_id, Order.paid_at.is_(None))
        .values(paid_at=now, updated_at=now)
        .returning(Order.status)
        .execution_options(synchronize_session=False)
    )
    status = result.scalar_one_or_none()
    loaded = session.identity_map.get(session.identity_key(Order, order_id))
    if isinstance(loaded, Order) and status is not None:
        set_committed_value(loaded, "paid_at", now)
        set_committed_value(loaded, "updated_at", now)
    if status is not None:
        session.add(
            OrderEvent(
                order_id=order_id,
                kind="payment_settled",
                from_status=status,
                to_status=status,
                actor=actor,
                reason="captured payments cover the total",
                data={},
                created_at=utcnow(),
            )
        )
