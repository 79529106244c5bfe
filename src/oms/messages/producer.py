"""Producing messages: committed outbox events turned into rendered messages, in outbox order.

Runs in the worker, in a transaction of its own after the events' transactions committed (never
inside the one that placed or moved the order). For each event with an order and a rule that
sends it, one message per channel: the recipient from the order (email, phone), the language
from the order (then the channel's default, then the fallback), rendered now, so that every
attempt sends the same text. Messages are unique per (event, recipient, channel) and inserted
with ON CONFLICT DO NOTHING: producing an event twice (two workers, a crash before the cursor
moved) makes no second message. An opted-out address gets a ``skipped`` message (logged, never
sent). The cursor over the outbox only passes an id gap (a transaction that may still commit)
after ``grace``; events past a gap are produced at once and remembered in ``message_produced``,
as the webhook fan-out does. Only channels with a provider at that moment get messages: events
read while no provider was configured are not kept back to be sent, stale, once one is.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from oms.auth.service import Principal
from oms.config import Settings
from oms.messages import context as contexts
from oms.messages import metrics, templates
from oms.messages.models import Message, MessageRelayState, ProducedEvent
from oms.messages.rendering import TemplateRefused, TemplateSource, render
from oms.orders import service as orders_service
from oms.outbox.models import OutboxEvent
from oms.shared.errors import NotFound
from oms.shared.roles import Role
from oms.stores import service as stores_service
from oms.tracking import service as tracking

log = logging.getLogger("oms.messages")

READER = Principal(key_id=uuid.UUID(int=0), name="messages", role=Role.ADMIN, channel=None)


def idempotency_key(event_id: uuid.UUID, channel: str, recipient: str) -> str:
    """The same for every attempt of one message: ``oms-<event>-<channel>-<hash of to>``."""
    digest = hashlib.sha256(recipient.encode()).hexdigest()[:16]
    return f"oms-{event_id}-{channel}-{digest}"


async def produce(
    session: AsyncSession,
    *,
    settings: Settings,
    channels: frozenset[str],
    batch: int,
    grace: timedelta,
    now: datetime,
) -> int:
    """Turn newly committed outbox events into messages of ``channels`` (those that have a
    provider now); returns how many events it read.

    One producer at a time (the state row is taken with SKIP LOCKED); others return 0."""
    await session.execute(
        pg_insert(MessageRelayState).values(id=1, outbox_cursor=0).on_conflict_do_nothing()
    )
    state = (
        await session.execute(
            select(MessageRelayState)
            .where(MessageRelayState.id == 1)
            .with_for_update(skip_locked=True)
        )
    ).scalar_one_or_none()
    if state is None:
        return 0
    cursor = state.outbox_cursor
    done = select(ProducedEvent.outbox_id).where(ProducedEvent.outbox_id == OutboxEvent.id)
    events = (
        await session.execute(
            select(OutboxEvent.id, OutboxEvent.event_id, OutboxEvent.type, OutboxEvent.payload)
            .where(OutboxEvent.id > cursor, ~done.exists())
            .order_by(OutboxEvent.id)
            .limit(batch)
        )
    ).all()
    if events:
        wanted = await templates.rule_event_types(session) if channels else set()
        batch_cache = _BatchCache()
        for ev in events:
            if ev.type in wanted:
                await _produce_one(
                    session,
                    cache=batch_cache,
                    settings=settings,
                    channels=channels,
                    outbox_id=ev.id,
                    event_id=ev.event_id,
                    event_type=ev.type,
                    data=ev.payload.get("data") or {},
                    now=now,
                )
        await session.execute(
            pg_insert(ProducedEvent).on_conflict_do_nothing(),
            [{"outbox_id": ev.id, "produced_at": now} for ev in events],
        )
    await _advance_cursor(session, cursor=cursor, grace=grace, now=now)
    return len(events)


@dataclass
class _BatchCache:
    """What every event of one batch shares: read once per batch, not once per event."""

    key: bytes | None = None
    rules: dict[str, tuple[dict[str, Any], str | None]] = field(default_factory=dict)
    templates: dict[tuple[str, str, tuple[str, ...]], tuple[str, TemplateSource] | None] = field(
        default_factory=dict
    )


async def _produce_one(
    session: AsyncSession,
    *,
    cache: _BatchCache,
    settings: Settings,
    channels: frozenset[str],
    outbox_id: int,
    event_id: uuid.UUID,
    event_type: str,
    data: dict[str, Any],
    now: datetime,
) -> None:
    raw_order_id = data.get("order_id")
    if not raw_order_id:
        return
    try:
        order = await orders_service.get_order(
            session, order_id=uuid.UUID(str(raw_order_id)), principal=READER
        )
    except (NotFound, ValueError):
        return
    if order.channel not in cache.rules:
        cache.rules[order.channel] = await templates.rule_for(session, sales_channel=order.channel)
    rules, channel_language = cache.rules[order.channel]
    wanted = rules.get(event_type) or {}
    recipients = {
        "email": order.customer_email if wanted.get("email") else None,
        "sms": order.customer_phone if wanted.get("sms") else None,
    }
    pairs = [(ch, addr) for ch, addr in recipients.items() if addr and ch in channels]
    if not pairs:
        return
    out = await templates.opted_out(session, pairs=pairs)
    shipment = None
    if event_type.startswith("shipment.") and data.get("shipment_id"):
        views = (await orders_service.shipments_for(session, order_ids=[order.id]))[order.id]
        shipment = next(
            (v.shipment for v in views if str(v.shipment.id) == str(data["shipment_id"])), None
        )
    pickup = None
    if event_type == "shipment.ready_for_pickup" and data.get("shipment_id"):
        try:
            pickup = await stores_service.get_pickup(
                session, shipment_id=uuid.UUID(str(data["shipment_id"]))
            )
        except (NotFound, ValueError):
            pickup = None
    if cache.key is None:
        cache.key = await tracking.signing_key(session, settings=settings)
    link = await tracking.link_for(
        session, settings=settings, order_id=order.id, now=now, key=cache.key
    )
    context = contexts.build(
        pickup=pickup,
        order=order,
        items=[(ln.name or ln.sku, ln.quantity) for ln in order.lines if ln.quantity > 0],
        event_type=event_type,
        data=data,
        shipment=shipment,
        tracking_url=link,
    )
    languages = templates.language_candidates(
        order.locale, channel_language, settings.message_fallback_language
    )
    rows: list[dict[str, Any]] = []
    for channel, address in pairs:
        row: dict[str, Any] = {
            "outbox_id": outbox_id,
            "event_id": event_id,
            "event_type": event_type,
            "order_id": order.id,
            "channel": channel,
            "recipient": address,
            "language": languages[0] if languages else "",
            "subject": None,
            "body_text": "",
            "body_html": None,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "idempotency_key": idempotency_key(event_id, channel, address),
            "last_error": None,
            "created_at": now,
            "updated_at": now,
        }
        wanted_template = (event_type, channel, tuple(languages))
        if wanted_template not in cache.templates:
            cache.templates[wanted_template] = await templates.effective_template(
                session, event_type=event_type, channel=channel, languages=languages
            )
        found = cache.templates[wanted_template]
        if (channel, address) in out:
            row |= {"status": "skipped", "last_error": "the customer opted out of " + channel}
        elif found is None:
            row |= {"status": "skipped", "last_error": f"no {channel} template for {event_type}"}
        else:
            row["language"], source = found
            try:
                rendered = render(source, context, channel=channel)
            except TemplateRefused as exc:
                row |= {"status": "dead", "last_error": f"template did not render: {exc}"}
            else:
                row |= {
                    "subject": rendered.subject,
                    "body_text": rendered.body_text,
                    "body_html": rendered.body_html,
                }
        rows.append(row)
    for row in rows:  # (one or two: email, SMS)
        inserted = await session.scalar(
            pg_insert(Message)
            .values(**row)
            .on_conflict_do_nothing(index_elements=["event_id", "recipient", "channel"])
            .returning(Message.id)
        )
        if inserted is None:  # produced before (another worker, or before a crash)
            continue
        metrics.PRODUCED.labels(row["channel"], row["status"]).inc()
        if row["status"] != "pending":
            log.info(
                "customer message not sent",
                extra={
                    "event": "message." + row["status"],
                    "order_id": str(order.id),
                    "event_type": event_type,
                    "channel": row["channel"],
                    "reason": row.get("last_error"),
                },
            )


async def _advance_cursor(
    session: AsyncSession, *, cursor: int, grace: timedelta, now: datetime
) -> None:
    """Move the cursor over produced events, stopping at a gap younger than ``grace``."""
    marks = (
        await session.execute(
            select(OutboxEvent.id, OutboxEvent.created_at)
            .join(ProducedEvent, ProducedEvent.outbox_id == OutboxEvent.id)
            .where(OutboxEvent.id > cursor)
            .order_by(OutboxEvent.id)
            .limit(10_000)
        )
    ).all()
    new_cursor = cursor
    for event_id, created_at in marks:
        if event_id == new_cursor + 1 or created_at < now - grace:
            new_cursor = event_id
        else:
            break
    if new_cursor > cursor:
        await session.execute(
            update(MessageRelayState)
            .where(MessageRelayState.id == 1)
            .values(outbox_cursor=new_cursor, updated_at=now)
        )
        await session.execute(delete(ProducedEvent).where(ProducedEvent.outbox_id <= new_cursor))
