"""Purchase order receipts across contexts: units received (``purchasing``, through the
inventory ledger) fill the orders waiting for those SKUs (``orders``' backorders), the same
path as any receipt (``flows.backorders``): the receipt is committed first, then up to
``backorders.INLINE_ORDER_LIMIT`` waiting orders are filled, each in its own transaction under
its order lock; the worker's sweep fills the rest. And the worker's reorder job: automatic
draft purchase orders where a reorder point was crossed."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms.flows import backorders
from oms.purchasing import service as purchasing_service

log = logging.getLogger("oms.purchasing")


async def receive(
    session: AsyncSession,
    *,
    po_id: uuid.UUID,
    reference: str,
    lines: Sequence[tuple[str, int]],
    actor: str,
    actor_role: str | None,
    request_id: str | None,
    now: datetime,
    scope: frozenset[uuid.UUID] | None = None,
) -> tuple[purchasing_service.ReceiptResult, int]:
    """Record the receipt (idempotent by ``reference``), commit it, then fill the backorders
    of its SKUs; the receipt and the units filled. Commits: call it last. ``scope``: the
    warehouses a scoped key works at (an order for another is 404)."""
    result = await purchasing_service.receive(
        session, po_id=po_id, reference=reference, lines=lines, actor=actor, now=now, scope=scope
    )
    filled = 0
    if result.skus:
        filled = await backorders.fill_after_stock_change(
            session,
            skus=result.skus,
            actor=actor,
            actor_role=actor_role,
            request_id=request_id,
        )
    log.info(
        "purchase order received",
        extra={
            "purchase_order_id": str(po_id),
            "reference": reference,
            "replayed": result.replayed,
            "backorder_units_filled": filled,
            "request_id": request_id,
        },
    )
    return result, filled


async def draft_where_crossed(
    sessionmaker: async_sessionmaker[AsyncSession], *, now: datetime
) -> int:
    """The worker's reorder job: one transaction drafting a purchase order for every level of
    an ``auto_draft`` policy past its reorder point (none twice: see
    ``purchasing.service.create_auto_drafts``); how many were drafted."""
    async with sessionmaker() as session, session.begin():
        created = await purchasing_service.create_auto_drafts(session, now=now)
    if created:
        log.info("purchase orders drafted", extra={"count": len(created)})
    return len(created)
