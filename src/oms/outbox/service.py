"""Record domain events in the outbox, inside the caller's transaction."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncSession

from oms.outbox.models import OutboxEvent
from oms.shared import events
from oms.shared.clock import utcnow


async def record_event(
    session: AsyncSession,
    *,
    type: str,
    aggregate_type: str,
    aggregate_id: str,
    data: dict[str, Any],
) -> uuid.UUID:
    """Add one event (``order.placed``, ``order.shipped``...) to the outbox; never commits.
    The payload is checked against the registry (``oms.shared.events``) first."""
    events.check(type, data)
    event_id = uuid.uuid4()
    now = utcnow()
    payload = {"id": str(event_id), "type": type, "occurred_at": now.isoformat(), "data": data}
    await session.execute(
        insert(OutboxEvent).values(
            event_id=event_id,
            type=type,
            aggregate_type=aggregate_type,
            aggregate_id=aggregate_id,
            payload=payload,
            created_at=now,
        )
    )
    return event_id
