"""The delivery log (deliveries with their attempts) and manual redelivery: one delivery, or
every event of a subscription's types in a time range (events that never had a delivery get
one)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, case, false, func, literal, or_, select, true, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from oms.outbox.models import OutboxEvent
from oms.shared.clock import utcnow
from oms.shared.errors import Conflict, NotFound, ProblemError
from oms.webhooks.outbound.models import Attempt, Delivery
from oms.webhooks.outbound.schemas import RedeliverRequest
from oms.webhooks.outbound.subscriptions import get_subscription


@dataclass(frozen=True, slots=True)
class DeliveryFilter:
    subscription_id: uuid.UUID | None = None
    status: Sequence[str] | None = None
    event_type: str | None = None
    event_id: uuid.UUID | None = None
    order_id: uuid.UUID | None = None


async def list_deliveries(
    session: AsyncSession, *, filters: DeliveryFilter, limit: int, cursor: str | None
) -> tuple[list[Delivery], str | None]:
    """Deliveries newest first; the cursor is the last id seen."""
    stmt = select(Delivery)
    if filters.subscription_id:
        stmt = stmt.where(Delivery.subscription_id == filters.subscription_id)
    if filters.status:
        stmt = stmt.where(Delivery.status.in_(list(filters.status)))
    if filters.event_type:
        stmt = stmt.where(Delivery.event_type == filters.event_type)
    if filters.event_id:
        stmt = stmt.where(Delivery.event_id == filters.event_id)
    if filters.order_id:
        stmt = stmt.where(Delivery.ordering_key == f"order:{filters.order_id}")
    if cursor:
        try:
            before = int(cursor)
            if not 0 < before < 2**63:
                raise ValueError(cursor)
            stmt = stmt.where(Delivery.id < before)
        except ValueError as exc:
            raise ProblemError("the cursor is not valid", code="invalid_cursor") from exc
    rows = list((await session.scalars(stmt.order_by(Delivery.id.desc()).limit(limit + 1))).all())
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = str(rows[-1].id)
    return rows, next_cursor


async def get_delivery(
    session: AsyncSession, *, delivery_id: int
) -> tuple[Delivery, dict[str, Any], list[Attempt]]:
    """A delivery with the event body it sends and its attempt log (oldest first)."""
    delivery = await session.get(Delivery, delivery_id, populate_existing=True)
    if delivery is None:
        raise NotFound(f"delivery {delivery_id} does not exist", code="delivery_not_found")
    payload = await session.scalar(
        select(OutboxEvent.payload).where(OutboxEvent.id == delivery.outbox_id)
    )
    attempts = (
        await session.scalars(
            select(Attempt).where(Attempt.delivery_id == delivery_id).order_by(Attempt.id)
        )
    ).all()
    return delivery, payload or {}, list(attempts)


_REQUEUE: dict[str, Any] = {
    "status": "pending",
    "attempts": 0,
    "lease_token": None,
    "finished_at": None,
}


async def redeliver(session: AsyncSession, *, delivery_id: int) -> Delivery:
    """Queue one delivery again now, with a fresh attempt budget (its log is kept)."""
    now = utcnow()
    moved = (
        await session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id, Delivery.status != "delivering")
            .values(**_REQUEUE, next_attempt_at=now, updated_at=now)
            .returning(Delivery.id)
        )
    ).first()
    if moved is None:
        await get_delivery(session, delivery_id=delivery_id)  # 404 if missing
        raise Conflict(
            "the delivery is being sent right now; retry in a moment",
            code="delivery_in_progress",
        )
    delivery, _, _ = await get_delivery(session, delivery_id=delivery_id)
    return delivery


def _type_filter(patterns: list[str]) -> ColumnElement[bool]:
    clauses: list[ColumnElement[bool]] = []
    for pattern in patterns:
        if pattern == "*":
            return true()
        if pattern.endswith(".*"):
            clauses.append(OutboxEvent.type.startswith(pattern[:-1], autoescape=True))
        else:
            clauses.append(OutboxEvent.type == pattern)
    return or_(*clauses) if clauses else false()


async def redeliver_since(
    session: AsyncSession, *, subscription_id: uuid.UUID, request: RedeliverRequest
) -> int:
    """Queue again every event of the subscription's types recorded in [since, until).

    Events that never had a delivery (e.g. while the endpoint was disabled) get one; existing
    deliveries are reset (unless being sent right now). Order per order is preserved.
    """
    sub = await get_subscription(session, subscription_id=subscription_id)
    now = utcnow()
    conditions = [OutboxEvent.created_at >= request.since, _type_filter(sub.event_types)]
    if request.until is not None:
        conditions.append(OutboxEvent.created_at < request.until)
    order_ref = OutboxEvent.payload["data"]["order_id"].astext
    ordering_key = case(
        (order_ref.is_not(None), literal("order:") + order_ref),
        else_=func.left(OutboxEvent.aggregate_type + literal(":") + OutboxEvent.aggregate_id, 128),
    )
    source = select(
        OutboxEvent.id,
        OutboxEvent.event_id,
        OutboxEvent.type,
        literal(subscription_id),
        ordering_key,
        literal("pending"),
        literal(0),
        literal(now),
        literal(now),
        literal(now),
    ).where(*conditions)
    stmt = pg_insert(Delivery).from_select(
        [
            "outbox_id",
            "event_id",
            "event_type",
            "subscription_id",
            "ordering_key",
            "status",
            "attempts",
            "next_attempt_at",
            "created_at",
            "updated_at",
        ],
        source,
    )
    where = Delivery.status != "delivering"
    if request.only_failed:
        where = Delivery.status.in_(["failed", "dead"])
    upsert = stmt.on_conflict_do_update(
        index_elements=["outbox_id", "subscription_id"],
        set_={**_REQUEUE, "next_attempt_at": now, "updated_at": now},
        where=where,
    ).returning(Delivery.id)
    return len((await session.execute(upsert)).all())
