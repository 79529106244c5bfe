"""Holds on orders: placed and released one by one, each under THE order lock
(``locking.lock_order``), each with its history row and its event (``order.held``,
``order.hold_released``).

A held order keeps its reservation and can be cancelled, but is not picked, packed or shipped
(:func:`refuse_if_held`, asked by ``transitions`` after the lock) and leaves the pick queue
(:func:`not_held`, a SQL condition)."""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any

from sqlalchemy import ColumnElement, exists, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import QueryableAttribute

from oms.auth.service import Principal
from oms.orders.domain import OrderStatus
from oms.orders.events import order_summary
from oms.orders.hold_models import OrderHold
from oms.orders.hold_rules import HoldRuleView
from oms.orders.locking import lock_order, not_found, visible
from oms.orders.models import Order, OrderEvent
from oms.orders.plans import NewOrder
from oms.outbox.service import record_event
from oms.shared.clock import utcnow
from oms.shared.errors import Conflict, NotFound

CLOSED = (OrderStatus.SHIPPED, OrderStatus.DELIVERED, OrderStatus.RETURNED, OrderStatus.CANCELLED)
"""An order in one of these statuses takes no new hold: nothing of it is left to stop."""


def not_held(order_id: QueryableAttribute[Any] | ColumnElement[Any]) -> ColumnElement[bool]:
    """A SQL condition: no hold stands on the order ``order_id`` (uses the partial index)."""
    return ~exists().where(OrderHold.order_id == order_id, OrderHold.released_at.is_(None))


def held(order_id: QueryableAttribute[Any] | ColumnElement[Any]) -> ColumnElement[bool]:
    """A SQL condition: at least one hold stands on the order ``order_id``."""
    return exists().where(OrderHold.order_id == order_id, OrderHold.released_at.is_(None))


async def active_holds(session: AsyncSession, *, order_id: uuid.UUID) -> list[OrderHold]:
    """The holds standing on an order, oldest first (read as committed now)."""
    rows = await session.scalars(
        select(OrderHold)
        .where(OrderHold.order_id == order_id, OrderHold.released_at.is_(None))
        .order_by(OrderHold.placed_at, OrderHold.id)
        .execution_options(populate_existing=True)
    )
    return list(rows.all())


def on_hold(order: Order, holds: list[OrderHold]) -> Conflict:
    """409 ``order_on_hold`` naming the standing holds."""
    return Conflict(
        f"order {order.id} is on hold ({', '.join(h.reason for h in holds)}); release its "
        "holds before picking, packing or shipping it (it can still be cancelled)",
        code="order_on_hold",
        current_status=order.status,
        holds=[
            {"id": str(h.id), "reason": h.reason, "rule": h.rule, "note": h.note} for h in holds
        ],
    )


async def refuse_if_held(session: AsyncSession, *, order: Order) -> None:
    """Raise 409 ``order_on_hold`` if a hold stands on ``order`` (call after its lock)."""
    holds = await active_holds(session, order_id=order.id)
    if holds:
        raise on_hold(order, holds)


async def holds_for(
    session: AsyncSession, *, order_ids: list[uuid.UUID], active_only: bool = True
) -> dict[uuid.UUID, list[OrderHold]]:
    """Holds of several orders in one query, oldest first."""
    out: dict[uuid.UUID, list[OrderHold]] = defaultdict(list)
    if not order_ids:
        return out
    stmt = select(OrderHold).where(OrderHold.order_id.in_(order_ids))
    if active_only:
        stmt = stmt.where(OrderHold.released_at.is_(None))
    for h in (await session.scalars(stmt.order_by(OrderHold.placed_at, OrderHold.id))).all():
        out[h.order_id].append(h)
    return out


async def list_holds(
    session: AsyncSession, *, order_id: uuid.UUID, principal: Principal
) -> list[OrderHold]:
    """Every hold ever placed on an order (standing and released), oldest first."""
    channel = await session.scalar(select(Order.channel).where(Order.id == order_id))
    if channel is None or not visible(principal, channel):
        raise not_found(order_id)
    return (await holds_for(session, order_ids=[order_id], active_only=False))[order_id]


async def _standing(session: AsyncSession, order_id: uuid.UUID) -> int:
    count = await session.scalar(
        select(func.count())
        .select_from(OrderHold)
        .where(OrderHold.order_id == order_id, OrderHold.released_at.is_(None))
    )
    return int(count or 0)


async def _announce(
    session: AsyncSession,
    *,
    order: Order | NewOrder,
    hold: OrderHold,
    kind: str,
    actor: str,
    role: str | None,
    reason: str | None,
    request_id: str | None,
    standing: int,
) -> None:
    data = {"hold_id": str(hold.id), "reason": hold.reason, "note": hold.note, "rule": hold.rule}
    session.add(
        OrderEvent(
            order_id=order.id,
            kind=kind,
            from_status=order.status,
            to_status=order.status,
            actor=actor,
            actor_role=role,
            reason=reason,
            data=data,
            request_id=request_id,
            created_at=utcnow(),
        )
    )
    await record_event(
        session,
        type="order.held" if kind == "hold_placed" else "order.hold_released",
        aggregate_type="order",
        aggregate_id=str(order.id),
        data={**order_summary(order), **data, "active_holds": standing},
    )


async def place_hold(
    session: AsyncSession,
    *,
    order_id: uuid.UUID,
    reason: str,
    note: str | None,
    principal: Principal,
    request_id: str | None,
    rule: str | None = None,
) -> OrderHold:
    """Put a hold on an order (409 ``order_closed`` once it has shipped or was cancelled)."""
    order = await lock_order(session, order_id=order_id, principal=principal)
    if OrderStatus(order.status) in CLOSED:
        raise Conflict(
            f"order {order_id} is '{order.status}': there is nothing left to hold",
            code="order_closed",
            current_status=order.status,
        )
    hold = OrderHold(
        id=uuid.uuid4(),
        order_id=order_id,
        reason=reason,
        note=note,
        rule=rule,
        placed_by=principal.actor,
        placed_at=utcnow(),
    )
    session.add(hold)
    await session.flush()
    await _announce(
        session,
        order=order,
        hold=hold,
        kind="hold_placed",
        actor=principal.actor,
        role=principal.role.value,
        reason=note,
        request_id=request_id,
        standing=await _standing(session, order_id),
    )
    return hold


def rule_holds(order: NewOrder, rules: list[HoldRuleView], principal: Principal) -> list[OrderHold]:
    """The holds the matching ``rules`` put on the order being placed (not yet added)."""
    return [
        OrderHold(
            id=uuid.uuid4(),
            order_id=order.id,
            reason=rule.reason,
            note=rule.note,
            rule=rule.name,
            placed_by=principal.actor,
            placed_at=order.created_at,
            released_by=None,
            released_at=None,
            release_note=None,
        )
        for rule in rules
    ]


async def hold_new_order(
    session: AsyncSession, *, order: NewOrder, holds: list[OrderHold], request_id: str | None
) -> None:
    """Store :func:`rule_holds` with their history rows and events, in placement's
    transaction after the order's own statement (the order is not visible to anyone else yet,
    so no lock is needed)."""
    session.add_all(holds)
    for n, hold in enumerate(holds, start=1):
        await _announce(
            session,
            order=order,
            hold=hold,
            kind="hold_placed",
            actor=hold.placed_by,
            role=None,
            reason=f"hold rule '{hold.rule}'",
            request_id=request_id,
            standing=n,
        )
    await session.flush()


async def release_hold(
    session: AsyncSession,
    *,
    order_id: uuid.UUID,
    hold_id: uuid.UUID,
    note: str | None,
    principal: Principal,
    request_id: str | None,
) -> OrderHold:
    """Release one hold (409 ``hold_already_released`` the second time)."""
    order = await lock_order(session, order_id=order_id, principal=principal)
    hold = await session.scalar(
        select(OrderHold)
        .where(OrderHold.id == hold_id, OrderHold.order_id == order_id)
        .execution_options(populate_existing=True)
    )
    if hold is None:
        raise NotFound(f"order {order_id} has no hold {hold_id}", code="hold_not_found")
    if hold.released_at is not None:
        raise Conflict(
            f"hold {hold_id} was already released by {hold.released_by}",
            code="hold_already_released",
            current_status=order.status,
        )
    hold.released_by, hold.released_at, hold.release_note = principal.actor, utcnow(), note
    await session.flush()
    await _announce(
        session,
        order=order,
        hold=hold,
        kind="hold_released",
        actor=principal.actor,
        role=principal.role.value,
        reason=note,
        request_id=request_id,
        standing=await _standing(session, order_id),
    )
    return hold
