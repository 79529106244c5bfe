"""Fan-out: newly committed outbox events turned into one delivery per matching subscription.

Crash-safe and idempotent: deliveries are unique per (outbox event, subscription), inserted with
ON CONFLICT DO NOTHING together with the relay's bookkeeping in one transaction. The cursor over
the outbox only passes an id gap (a transaction that may still commit) after
``outbox_gap_grace_s``; events past a gap are fanned out right away and remembered in
``webhook_dispatched``, so nothing is skipped and nothing is fanned out twice.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from oms.outbox.models import OutboxEvent
from oms.shared.clock import utcnow
from oms.webhooks.events import matches
from oms.webhooks.outbound.models import Delivery, DispatchedEvent, RelayState, Subscription


def _ordering_key(aggregate_type: str, aggregate_id: str, order_ref: str | None) -> str:
    """Events that carry an order id are ordered per order; others per aggregate."""
    return f"order:{order_ref}" if order_ref else f"{aggregate_type}:{aggregate_id}"[:128]


async def fan_out(
    session: AsyncSession, *, batch: int, grace: timedelta, now: datetime | None = None
) -> int:
    """Turn newly committed outbox events into deliveries; returns how many events it read.

    Only one worker fans out at a time (the relay-state row is taken with SKIP LOCKED); the
    others return 0 and go on delivering.
    """
    now = now or utcnow()
    await session.execute(
        pg_insert(RelayState).values(id=1, outbox_cursor=0).on_conflict_do_nothing()
    )
    state = (
        await session.execute(
            select(RelayState).where(RelayState.id == 1).with_for_update(skip_locked=True)
        )
    ).scalar_one_or_none()
    if state is None:
        return 0
    cursor = state.outbox_cursor
    done = select(DispatchedEvent.outbox_id).where(DispatchedEvent.outbox_id == OutboxEvent.id)
    events = (
        await session.execute(
            select(
                OutboxEvent.id,
                OutboxEvent.event_id,
                OutboxEvent.type,
                OutboxEvent.aggregate_type,
                OutboxEvent.aggregate_id,
                OutboxEvent.payload["data"]["order_id"].astext.label("order_ref"),
                OutboxEvent.created_at,
            )
            .where(OutboxEvent.id > cursor, ~done.exists())
            .order_by(OutboxEvent.id)
            .limit(batch)
        )
    ).all()
    if events:
        subs = (
            await session.execute(
                select(Subscription.id, Subscription.event_types, Subscription.created_at).where(
                    Subscription.enabled.is_(True)
                )
            )
        ).all()
        rows = [
            {
                "outbox_id": ev.id,
                "event_id": ev.event_id,
                "event_type": ev.type,
                "subscription_id": sub.id,
                "ordering_key": _ordering_key(ev.aggregate_type, ev.aggregate_id, ev.order_ref),
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
                "updated_at": now,
            }
            for ev in events
            for sub in subs
            if ev.created_at >= sub.created_at and matches(sub.event_types, ev.type)
        ]
        if rows:
            await session.execute(
                pg_insert(Delivery).on_conflict_do_nothing(
                    index_elements=["outbox_id", "subscription_id"]
                ),
                rows,
            )
        await session.execute(
            pg_insert(DispatchedEvent).on_conflict_do_nothing(),
            [{"outbox_id": ev.id, "dispatched_at": now} for ev in events],
        )
    await _advance_cursor(session, cursor=cursor, grace=grace, now=now)
    return len(events)


async def _advance_cursor(
    session: AsyncSession, *, cursor: int, grace: timedelta, now: datetime
) -> None:
    """Move the cursor over dispatched events, stopping at a gap younger than ``grace``."""
    marks = (
        await session.execute(
            select(OutboxEvent.id, OutboxEvent.created_at)
            .join(DispatchedEvent, DispatchedEvent.outbox_id == OutboxEvent.id)
            .where(OutboxEvent.id > cursor)
            .order_by(OutboxEvent.id)
            .limit(10_000)
        )
    ).all()
    new_cursor = cursor
    for event_id, created_at in marks:
        # an id below this one was taken earlier; after ``grace`` its transaction is over
        if event_id == new_cursor + 1 or created_at < now - grace:
            new_cursor = event_id
        else:
            break
    if new_cursor > cursor:
        await session.execute(
            update(RelayState)
            .where(RelayState.id == 1)
            .values(outbox_cursor=new_cursor, updated_at=now)
        )
        await session.execute(
            delete(DispatchedEvent).where(DispatchedEvent.outbox_id <= new_cursor)
        )
