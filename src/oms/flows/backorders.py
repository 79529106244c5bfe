"""Backorders filled as stock arrives, across contexts: stock went up (``inventory``: a receipt,
a count, a restock from a return, a bulk load), so the orders waiting for those SKUs (``orders``)
are filled, first in, first out (the rules are in ``oms.orders.backorders``).

Inline, right after the stock change, in the same request, but not in its transaction: the
stock change is committed first (it holds its stock row locks until then, and the lock order is
the order lock first, stock rows after), then each waiting order is filled in a transaction of
its own: its lock, its reservation (conditional, stock rows in the fixed order), commit. A
request fills at most :data:`INLINE_ORDER_LIMIT` orders; the rest (and anything a crash between
the two commits left behind) is filled by the worker's periodic sweep (:func:`sweep`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection

from sqlalchemy.ext.asyncio import AsyncSession

from oms.inventory import service as inventory_service
from oms.orders import service as orders_service

log = logging.getLogger("oms.backorders")

INLINE_ORDER_LIMIT = 20
"""Orders one stock change fills in its own request at most (the sweep does the rest)."""

SWEEP_SKU_LIMIT = 500
"""SKUs one sweep looks at (those waited for longest first)."""

SWEEP_ORDER_LIMIT = 200
"""Orders one sweep fills at most."""


async def _available_skus(session: AsyncSession, skus: Collection[str]) -> frozenset[str]:
    """The SKUs with units available in some active warehouse now (one snapshot query)."""
    if not skus:
        return frozenset()
    snapshot = await inventory_service.routing_snapshot(session, skus=skus)
    return frozenset(sku for w in snapshot if w.active for sku in w.available)


async def fill_waiting(
    session: AsyncSession,
    *,
    skus: Collection[str],
    actor: str,
    actor_role: str | None,
    request_id: str | None,
    limit: int,
) -> int:
    """Fill the orders waiting for ``skus``, oldest (express first) first, each in its own
    transaction (committed here); the units filled. Call it holding no locks."""
    available = await _available_skus(session, skus)
    order_ids = await orders_service.waiting_orders(session, skus=available, limit=limit)
    await session.commit()  # nothing held while the orders are filled one by one
    units = 0
    left = set(available)
    for order_id in order_ids:
        if not left:
            break
        filled = await _fill_in_turn(
            session,
            order_id=order_id,
            skus=left,
            actor=actor,
            actor_role=actor_role,
            request_id=request_id,
        )
        if filled:
            log.info(
                "backorder filled",
                extra={"order_id": str(order_id), "units": filled, "request_id": request_id},
            )
        units += filled
    return units


async def _fill_in_turn(
    session: AsyncSession,
    *,
    order_id: uuid.UUID,
    skus: set[str],
    actor: str,
    actor_role: str | None,
    request_id: str | None,
) -> int:
    """Fill one order in its turn; the units filled. First in, first out under concurrent
    stock changes: when nothing could be filled, the stock is looked at again: SKUs with
    nothing available now leave this pass (``skus`` shrinks: a later order must not take
    units that arrive meanwhile ahead of this one; the pass of the change that brings them
    starts again from the oldest order), and if units did arrive meanwhile the same order is
    tried once more before the pass moves on (it may simply not be able to use them)."""
    for attempt in range(2):
        filled = await orders_service.fill_order(
            session,
            order_id=order_id,
            skus=skus,
            actor=actor,
            actor_role=actor_role,
            request_id=request_id,
        )
        await session.commit()
        if filled:
            return filled
        now = await _available_skus(session, skus)
        await session.commit()
        skus.intersection_update(now)
        if not skus or attempt:
            return 0
    return 0


async def fill_after_stock_change(
    session: AsyncSession,
    *,
    skus: Collection[str],
    actor: str,
    actor_role: str | None,
    request_id: str | None,
) -> int:
    """Commit the request's stock change, then fill up to :data:`INLINE_ORDER_LIMIT` orders
    waiting for ``skus``. The caller's transaction is committed here: call it last."""
    await session.commit()
    return await fill_waiting(
        session,
        skus=skus,
        actor=actor,
        actor_role=actor_role,
        request_id=request_id,
        limit=INLINE_ORDER_LIMIT,
    )


async def sweep(session: AsyncSession) -> int:
    """The worker's periodic pass: fill what stock changes left for later (over the inline
    limit, or a crash between the stock change and its fills); the units filled."""
    skus = await orders_service.backordered_skus(session, limit=SWEEP_SKU_LIMIT)
    return await fill_waiting(
        session,
        skus=skus,
        actor="oms-worker",
        actor_role=None,
        request_id=None,
        limit=SWEEP_ORDER_LIMIT,
    )
