"""The inbox after receipt: events waiting for their order (``pending``, applied when it appears,
by the order's own intake or the worker's sweep), the inbox API's listing, and replay of a
failed or pending delivery. Pending events are listed, never dropped.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from oms.orders import service as orders_service
from oms.shared.errors import Conflict, NotFound, ProblemError
from oms.webhooks.inbound.models import Connector, InboxMessage
from oms.webhooks.inbound.processing import Applier, Reply, process


async def _connector_for(session: AsyncSession, row: InboxMessage) -> Connector | None:
    if row.connector_id is not None:
        found = await session.get(Connector, row.connector_id)
        if found is not None:
            return found
    return await session.scalar(select(Connector).where(Connector.name == row.connector_name))


async def _reprocess(
    session: AsyncSession, row: InboxMessage, request_id: str | None, apply: Applier
) -> Reply:
    connector = await _connector_for(session, row)
    if connector is None:
        problem = Conflict(
            f"connector '{row.connector_name}' no longer exists; create it again to replay",
            code="connector_not_found",
        )
        return Reply(problem.status, problem.to_dict(), problem=True)
    return await process(
        session,
        inbox_id=row.id,
        body=row.body,
        headers=row.headers,
        connector=connector,
        request_id=request_id,
        apply=apply,
    )


async def apply_pending(
    session: AsyncSession,
    *,
    channel: str,
    external_reference: str,
    request_id: str | None,
    apply: Applier,
) -> int:
    """Apply the pending events waiting for this order (oldest first); returns how many."""
    rows = (
        await session.scalars(
            select(InboxMessage)
            .where(
                InboxMessage.status == "pending",
                InboxMessage.channel == channel,
                InboxMessage.external_reference == external_reference,
            )
            .order_by(InboxMessage.id)
            .with_for_update(skip_locked=True)
        )
    ).all()
    applied = 0
    for row in rows:
        reply = await _reprocess(session, row, request_id, apply)
        applied += int(reply.status < 400 and reply.status != 202)
    return applied


async def sweep_pending(session: AsyncSession, *, apply: Applier, limit: int = 100) -> int:
    """Apply pending events whose order now exists (e.g. it was placed through the API)."""
    has_order = orders_service.order_exists(
        channel=InboxMessage.channel, external_reference=InboxMessage.external_reference
    )
    rows = (
        await session.scalars(
            select(InboxMessage)
            .where(InboxMessage.status == "pending", has_order)
            .order_by(InboxMessage.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    ).all()
    done = 0
    for row in rows:
        reply = await _reprocess(session, row, None, apply)
        done += int(reply.status != 202)
    return done


async def pending_report(session: AsyncSession, *, older_than: datetime) -> int:
    """How many events have waited for their order since before ``older_than``."""
    return int(
        await session.scalar(
            select(func.count())
            .select_from(InboxMessage)
            .where(InboxMessage.status == "pending", InboxMessage.received_at < older_than)
        )
        or 0
    )


@dataclass(frozen=True, slots=True)
class InboxFilter:
    status: list[str] | None = None
    connector: str | None = None
    type: str | None = None
    external_reference: str | None = None
    order_id: uuid.UUID | None = None
    received_from: datetime | None = None
    received_to: datetime | None = None


async def list_inbox(
    session: AsyncSession, *, filters: InboxFilter, limit: int, cursor: str | None
) -> tuple[list[InboxMessage], str | None]:
    """Inbox messages newest first; the cursor is the last id seen."""
    stmt = select(InboxMessage)
    if filters.status:
        stmt = stmt.where(InboxMessage.status.in_(filters.status))
    if filters.connector:
        stmt = stmt.where(InboxMessage.connector_name == filters.connector)
    if filters.type:
        stmt = stmt.where(InboxMessage.type == filters.type)
    if filters.external_reference:
        stmt = stmt.where(InboxMessage.external_reference == filters.external_reference)
    if filters.order_id:
        stmt = stmt.where(InboxMessage.order_id == filters.order_id)
    if filters.received_from:
        stmt = stmt.where(InboxMessage.received_at >= filters.received_from)
    if filters.received_to:
        stmt = stmt.where(InboxMessage.received_at < filters.received_to)
    if cursor:
        try:
            before = int(cursor)
            if not 0 < before < 2**63:
                raise ValueError(cursor)
        except ValueError as exc:
            raise ProblemError("the cursor is not valid", code="invalid_cursor") from exc
        stmt = stmt.where(InboxMessage.id < before)
    rows = list(
        (await session.scalars(stmt.order_by(InboxMessage.id.desc()).limit(limit + 1))).all()
    )
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = str(rows[-1].id)
    return rows, next_cursor


async def get_inbox_message(session: AsyncSession, *, inbox_id: int) -> InboxMessage:
    row = await session.get(InboxMessage, inbox_id, populate_existing=True)
    if row is None:
        raise NotFound(f"inbox message {inbox_id} does not exist", code="inbox_message_not_found")
    return row


async def replay(
    session: AsyncSession, *, inbox_id: int, request_id: str | None, apply: Applier
) -> InboxMessage:
    """Run a failed or pending delivery through its connector's adapter again (no signature
    check: it was verified when it arrived)."""
    row = (
        await session.execute(
            select(InboxMessage).where(InboxMessage.id == inbox_id).with_for_update()
        )
    ).scalar_one_or_none()
    if row is None:
        raise NotFound(f"inbox message {inbox_id} does not exist", code="inbox_message_not_found")
    if row.status not in ("failed", "pending"):
        raise Conflict(
            f"inbox message {inbox_id} is '{row.status}'; only failed or pending ones replay",
            code="inbox_not_replayable",
            current_status=row.status,
        )
    reply = await _reprocess(session, row, request_id, apply)
    if reply.problem and reply.body.get("code") == "connector_not_found":
        raise Conflict(str(reply.body.get("detail")), code="connector_not_found")
    return await get_inbox_message(session, inbox_id=inbox_id)
