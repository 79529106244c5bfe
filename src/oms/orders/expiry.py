"""Expiry policies of unpaid orders (per channel and payment method) and which orders are due:
the worker cancels them through ``oms.flows.expiry`` (order lock first, state checked after)."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, delete, func, literal_column, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import ReturningInsert

from oms.orders.domain import OrderStatus
from oms.orders.hold_models import ExpiryPolicy
from oms.orders.models import Order
from oms.shared.clock import utcnow
from oms.shared.errors import NotFound


async def put_policy(
    session: AsyncSession, *, channel: str, payment_method: str, after_s: int
) -> tuple[ExpiryPolicy, bool]:
    """Create or replace the policy of (channel, payment method) in one statement; True when
    created."""
    now = utcnow()
    stmt: ReturningInsert[Any, Any] = (
        insert(ExpiryPolicy)
        .values(channel=channel, payment_method=payment_method, after_s=after_s, updated_at=now)
        .on_conflict_do_update(
            index_elements=[ExpiryPolicy.channel, ExpiryPolicy.payment_method],
            set_={"after_s": after_s, "updated_at": now},
        )
        .returning(ExpiryPolicy, literal_column("xmax = 0"))
        .execution_options(populate_existing=True)
    )
    row, created = (await session.execute(stmt)).one()
    return row, bool(created)


async def list_policies(session: AsyncSession) -> list[ExpiryPolicy]:
    stmt = select(ExpiryPolicy).order_by(ExpiryPolicy.channel, ExpiryPolicy.payment_method)
    return list((await session.scalars(stmt)).all())


async def delete_policy(session: AsyncSession, *, channel: str, payment_method: str) -> None:
    result = await session.execute(
        delete(ExpiryPolicy)
        .where(ExpiryPolicy.channel == channel, ExpiryPolicy.payment_method == payment_method)
        .returning(ExpiryPolicy.channel)
    )
    if result.first() is None:
        raise NotFound(
            f"no expiry policy for channel '{channel}' and payment method '{payment_method}'",
            code="expiry_policy_not_found",
        )


def _due(now: datetime) -> Select[uuid.UUID, int]:
    deadline = Order.created_at + func.make_interval(0, 0, 0, 0, 0, 0, ExpiryPolicy.after_s)
    return (
        select(Order.id, ExpiryPolicy.after_s)
        .join(
            ExpiryPolicy,
            (ExpiryPolicy.channel == Order.channel)
            & (ExpiryPolicy.payment_method == Order.payment_method),
        )
        .where(
            Order.status == OrderStatus.PLACED.value,
            Order.paid_at.is_(None),
            deadline <= now,
        )
    )


async def expired_candidates(
    session: AsyncSession,
    *,
    now: datetime,
    limit: int,
    order_ids: list[uuid.UUID] | None = None,
) -> list[uuid.UUID]:
    """Unpaid placed orders past their policy's deadline, oldest first (read without locks:
    each is checked again under its lock by :func:`expiry_due`)."""
    stmt = _due(now).order_by(Order.created_at).limit(limit)
    if order_ids is not None:
        stmt = stmt.where(Order.id.in_(order_ids))
    return [row[0] for row in (await session.execute(stmt)).all()]


async def expiry_due(session: AsyncSession, *, order_id: uuid.UUID, now: datetime) -> int | None:
    """Under the order lock: the policy's seconds if the order is (still) unpaid, placed and
    past its deadline; None otherwise (paid or cancelled meanwhile, policy changed)."""
    row = (await session.execute(_due(now).where(Order.id == order_id))).first()
    return None if row is None else int(row[1])


def describe(after_s: int) -> str:
    """``7 days`` / ``36 h`` / ``90 s``: a policy's wait in words."""
    wait = timedelta(seconds=after_s)
    if after_s % 86400 == 0:
        return f"{wait.days} days"
    if after_s % 3600 == 0:
        return f"{after_s // 3600} h"
    return f"{after_s} s"
