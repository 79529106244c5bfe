"""Order use cases. Every function takes the request's session and never commits."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, insert, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from oms.auth.service import Principal
from oms.db import after_commit
from oms.orders import domain
from oms.orders.domain import OrderStatus, PaymentMethod
from oms.orders.models import IdempotencyKey, Order, OrderEvent, OrderLine
from oms.orders.schemas import OrderCreate, TransitionRequest
from oms.outbox.service import record_event
from oms.shared import metrics
from oms.shared.clock import utcnow
from oms.shared.errors import Conflict, Forbidden, NotFound, ProblemError, Unprocessable

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


async def claim_idempotency_key(
    session: AsyncSession, *, scope: str, key: str, fingerprint: str, ttl: timedelta
) -> StoredResponse | None:
    """Claim ``key`` for this request, or return the committed response of its first use.

    The INSERT waits for a concurrent request holding the same key to finish, so exactly one
    of them proceeds; the others replay its response (or proceed if it rolled back).
    """
    claimed = await session.execute(
        pg_insert(IdempotencyKey)
        .values(scope=scope, key=key, request_hash=fingerprint)
        .on_conflict_do_nothing(index_elements=["scope", "key"])
        .returning(IdempotencyKey.id)
    )
    if claimed.first() is not None:
        return None
    row = (
        await session.execute(
            select(IdempotencyKey)
            .where(IdempotencyKey.scope == scope, IdempotencyKey.key == key)
            .with_for_update()
        )
    ).scalar_one()
    if row.created_at < utcnow() - ttl:
        row.request_hash, row.created_at = fingerprint, utcnow()
        row.response_status, row.response_body, row.order_id = None, None, None
        return None
    if row.request_hash != fingerprint:
        raise Unprocessable(
            "this Idempotency-Key was already used with a different request body",
            code="idempotency_key_reused",
        )
    if row.response_status is None or row.response_body is None:
        raise Conflict(
            "a request with this Idempotency-Key is in progress", code="idempotency_in_progress"
        )
    return StoredResponse(row.response_status, row.response_body)


async def store_idempotent_response(
    session: AsyncSession,
    *,
    scope: str,
    key: str,
    status: int,
    body: dict[str, Any],
    order_id: uuid.UUID,
) -> None:
    """Save the response so a retry with the same key gets it back."""
    await session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.scope == scope, IdempotencyKey.key == key)
        .values(response_status=status, response_body=body, order_id=order_id)
    )


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


def order_summary(order: Order) -> dict[str, Any]:
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


async def place_order(
    session: AsyncSession, *, data: OrderCreate, principal: Principal, request_id: str | None
) -> Order:
    """Store a new order in status ``placed`` with its history and its order.placed event."""
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
    values = {
        "id": order_id,
        "status": OrderStatus.PLACED.value,
        "version": 1,
        "channel": data.channel,
        "external_reference": data.external_reference,
        "customer_id": data.customer.id,
        "customer_email": data.customer.email.lower() if data.customer.email else None,
        "currency": data.currency,
        "payment_method": data.payment_method.value,
        "priority": data.priority.value,
        "ship_name": addr.name,
        "ship_lines": addr.lines,
        "ship_city": addr.city,
        "ship_postal_code": addr.postal_code,
        "ship_region": addr.region,
        "ship_country": addr.country,
        "ship_latitude": addr.latitude,
        "ship_longitude": addr.longitude,
        "subtotal_amount": totals.subtotal,
        "tax_amount": totals.tax_total,
        "shipping_fee": totals.shipping_fee,
        "total_amount": totals.total,
        "notes": data.notes,
        "attributes": data.attributes,
        "created_by": principal.actor,
        "created_at": now,
        "updated_at": now,
    }
    stmt = pg_insert(Order).values(**values)
    if data.external_reference is not None:
        stmt = stmt.on_conflict_do_nothing(
            index_elements=["channel", "external_reference"],
            index_where=Order.external_reference.is_not(None),
        )
    inserted = (await session.execute(stmt.returning(Order.id))).scalar_one_or_none()
    if inserted is None:
        existing = await session.scalar(
            select(Order.id).where(
                Order.channel == data.channel, Order.external_reference == data.external_reference
            )
        )
        raise Conflict(
            f"channel '{data.channel}' already has an order with external reference "
            f"'{data.external_reference}'",
            code="duplicate_external_reference",
            order_id=str(existing),
        )
    await session.execute(
        insert(OrderLine),
        [
            {
                "id": uuid.uuid4(),
                "order_id": order_id,
                "line_no": i,
                "sku": ln.sku,
                "name": ln.name,
                "quantity": ln.quantity,
                "unit_price": ln.unit_price,
                "tax_rate_bps": ln.tax_rate_bps,
                "subtotal_amount": a.subtotal,
                "tax_amount": a.tax,
                "total_amount": a.total,
            }
            for i, (ln, a) in enumerate(zip(data.lines, amounts, strict=True), start=1)
        ],
    )
    await session.execute(
        insert(OrderEvent).values(
            order_id=order_id,
            kind="transition",
            from_status=None,
            to_status=OrderStatus.PLACED.value,
            actor=principal.actor,
            actor_role=principal.role.value,
            data={},
            request_id=request_id,
            created_at=now,
        )
    )
    order = await get_order(session, order_id=order_id, principal=principal)
    await record_event(
        session,
        type="order.placed",
        aggregate_type="order",
        aggregate_id=str(order_id),
        data=order_summary(order),
    )

    def _committed() -> None:
        metrics.ORDERS_PLACED.labels(channel=data.channel).inc()
        log.info(
            "order placed",
            extra={"event": "order.placed", "order_id": str(order_id), "channel": data.channel},
        )

    after_commit(session, _committed)
    return order


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
    if isinstance(exc, domain.RoleNotAllowed):
        return Forbidden(str(exc), code="role_not_allowed")
    return Unprocessable(str(exc), code="shipping_details_required")


_TIMESTAMP_FOR = {
    OrderStatus.PAID: "paid_at",
    OrderStatus.SHIPPED: "shipped_at",
    OrderStatus.DELIVERED: "delivered_at",
    OrderStatus.CANCELLED: "cancelled_at",
}


async def transition_order(
    session: AsyncSession,
    *,
    order_id: uuid.UUID,
    change: TransitionRequest,
    principal: Principal,
    request_id: str | None,
) -> Order:
    """Move the order to ``change.to`` if the state machine allows it; record who and why.

    The UPDATE is conditional on the version read, so of two concurrent transitions only one
    wins; the other gets a 409 naming the status it lost to.
    """
    order = await get_order(session, order_id=order_id, principal=principal)
    current = OrderStatus(order.status)
    if change.expected_version is not None and change.expected_version != order.version:
        raise Conflict(
            f"order is at version {order.version}, not {change.expected_version}",
            code="version_conflict",
            current_status=current.value,
            current_version=order.version,
        )
    try:
        domain.transition(
            current,
            change.to,
            cash_on_delivery=order.payment_method == PaymentMethod.CASH_ON_DELIVERY,
            role=principal.role,
            carrier=change.carrier,
            tracking_number=change.tracking_number,
        )
    except (domain.IllegalTransition, domain.RoleNotAllowed, domain.MissingShippingDetails) as exc:
        raise _problem_for(exc) from exc
    now = utcnow()
    values: dict[str, Any] = {
        "status": change.to.value,
        "version": order.version + 1,
        "updated_at": now,
    }
    if change.to in _TIMESTAMP_FOR:
        values[_TIMESTAMP_FOR[change.to]] = now
    if change.to is OrderStatus.SHIPPED:
        values["carrier"], values["tracking_number"] = change.carrier, change.tracking_number
    result = await session.execute(
        update(Order)
        .where(Order.id == order_id, Order.version == order.version)
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
    if change.carrier:
        data = {"carrier": change.carrier, "tracking_number": change.tracking_number}
    session.add(
        OrderEvent(
            order_id=order_id,
            kind="transition",
            from_status=current.value,
            to_status=change.to.value,
            actor=principal.actor,
            actor_role=principal.role.value,
            reason=change.reason,
            data=data,
            request_id=request_id,
            created_at=now,
        )
    )
    await record_event(
        session,
        type=f"order.{change.to.value}",
        aggregate_type="order",
        aggregate_id=str(order_id),
        data={**order_summary(order), "previous_status": current.value, **data},
    )

    def _committed() -> None:
        metrics.ORDER_TRANSITIONS.labels(from_status=current.value, to_status=change.to.value).inc()
        log.info(
            "order transition",
            extra={
                "event": f"order.{change.to.value}",
                "order_id": str(order_id),
                "from_status": current.value,
                "to_status": change.to.value,
                "actor": principal.actor,
            },
        )

    after_commit(session, _committed)
    return order
