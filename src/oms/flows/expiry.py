"""Unpaid orders expire: the worker cancels each placed, unpaid order past its channel's
expiry policy for its payment method (``orders.expiry``), one transaction per order. Each takes
THE order lock first and checks again after it (skipping orders paid, cancelled or partly
captured meanwhile), then cancels the order (releasing its stock; the history row and
``order.cancelled`` as any cancellation) and records ``order.expired``."""

from __future__ import annotations

import logging
import uuid
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms.auth.service import Principal
from oms.orders import service as orders_service
from oms.orders.domain import OrderStatus
from oms.orders.schemas import TransitionRequest
from oms.outbox.service import record_event
from oms.payments import service as payments_service
from oms.shared.roles import Role

log = logging.getLogger("oms.orders")

EXPIRY = Principal(key_id=uuid.UUID(int=0), name="expiry", role=Role.ADMIN, channel=None)
"""Who cancels expired orders (the history's actor: ``apikey:expiry``)."""


async def expire_order(session: AsyncSession, *, order_id: uuid.UUID, now: datetime) -> bool:
    """Cancel one order as expired if it still is (under its lock); False when it is not."""
    await orders_service.lock_order(session, order_id=order_id)
    after_s = await orders_service.expiry_due(session, order_id=order_id, now=now)
    if after_s is None:
        return False  # paid, cancelled or moved meanwhile, or its policy changed
    _, payments, _ = await payments_service.payments_of(
        session, order_id=order_id, principal=EXPIRY
    )
    if any(p.captured_amount for p in payments):
        return False  # partly paid: a person decides (refund or wait)
    wait = orders_service.describe_expiry(after_s)
    order = await orders_service.transition_order(
        session,
        order_id=order_id,
        change=TransitionRequest(
            to=OrderStatus.CANCELLED, reason=f"expired: unpaid after {wait} (expiry policy)"
        ),
        principal=EXPIRY,
        request_id=None,
    )
    await record_event(
        session,
        type="order.expired",
        aggregate_type="order",
        aggregate_id=str(order_id),
        data={
            **orders_service.order_summary(order),
            "previous_status": OrderStatus.PLACED.value,
            "payment_method": order.payment_method,
            "expired_after_s": after_s,
        },
    )
    log.info(
        "order expired",
        extra={"event": "order.expired", "order_id": str(order_id), "after_s": after_s},
    )
    return True


async def expire_unpaid(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    now: datetime,
    limit: int = 100,
    order_ids: list[uuid.UUID] | None = None,
) -> int:
    """Cancel up to ``limit`` expired unpaid orders (each in a transaction of its own);
    returns how many expired."""
    async with sessionmaker() as session:
        due = await orders_service.expired_candidates(
            session, now=now, limit=limit, order_ids=order_ids
        )
    expired = 0
    for order_id in due:
        async with sessionmaker() as session, session.begin():
            expired += await expire_order(session, order_id=order_id, now=now)
    return expired
