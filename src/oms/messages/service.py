"""The messages context's public service functions (admin API and the worker job's pieces).

Templates (saved ones override the packaged defaults), rules per sales channel, providers with
write-only secrets, opt-outs per channel and address, an order's message log, and previews of a
template against a real order. Every function takes the request's session as a keyword argument
and never commits.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from oms.config import Settings
from oms.messages import context as contexts
from oms.messages import rendering, templates
from oms.messages.defaults import DEFAULT_RULES, DEFAULT_TEMPLATES
from oms.messages.models import Message, MessageAttempt, MessageOptOut, MessageRule, MessageTemplate
from oms.messages.producer import READER
from oms.messages.providers_config import ProviderView, describe, put
from oms.messages.rendering import Rendered, TemplateRefused, TemplateSource
from oms.orders import service as orders_service
from oms.shared import events
from oms.shared.errors import NotFound, Unprocessable
from oms.tracking import service as tracking

__all__ = [
    "ProviderView",
    "delete_template",
    "describe_provider",
    "get_opt_out",
    "get_rule",
    "list_templates",
    "messages_of",
    "opt_in",
    "opt_out",
    "preview",
    "put_provider",
    "put_rule",
    "put_template",
]

describe_provider = describe
put_provider = put


def check_event_type(event_type: str) -> None:
    """422 ``unknown_event_type`` unless the type is registered and about an order."""
    spec = events.EVENTS.get(event_type)
    if spec is None or "order_id" not in spec.fields:
        raise Unprocessable(
            f"'{event_type}' is not a registered event type about an order "
            "(GET /v1/webhooks/event-types lists them)",
            code="unknown_event_type",
        )


def template_invalid(exc: TemplateRefused) -> Unprocessable:
    return Unprocessable(
        f"the template cannot be used: {exc}",
        code="template_invalid",
        title="The template is not valid",
        part=exc.part,
        reason=exc.reason,
    )


def _row_dict(row: MessageTemplate) -> dict[str, Any]:
    return {
        "event_type": row.event_type,
        "channel": row.channel,
        "language": row.language,
        "source": "saved",
        "subject": row.subject,
        "body_text": row.body_text,
        "body_html": row.body_html,
        "updated_at": row.updated_at,
    }


async def list_templates(
    session: AsyncSession,
    *,
    event_type: str | None,
    channel: str | None,
    language: str | None,
) -> list[dict[str, Any]]:
    """Every template in effect (saved over default), optionally filtered."""
    saved = {
        (r.event_type, r.channel, r.language): _row_dict(r)
        for r in (await session.scalars(select(MessageTemplate))).all()
    }
    out: dict[tuple[str, str, str], dict[str, Any]] = {
        key: {
            "event_type": key[0],
            "channel": key[1],
            "language": key[2],
            "source": "default",
            "subject": t.subject,
            "body_text": t.body_text,
            "body_html": t.body_html,
            "updated_at": None,
        }
        for key, t in DEFAULT_TEMPLATES.items()
    }
    out |= saved
    lang = templates.normalise_language(language) if language else None
    return [
        v
        for k, v in sorted(out.items())
        if (event_type is None or k[0] == event_type)
        and (channel is None or k[1] == channel)
        and (lang is None or k[2] == lang)
    ]


async def put_template(
    session: AsyncSession,
    *,
    event_type: str,
    channel: str,
    language: str,
    source: TemplateSource,
    actor: str,
    now: datetime,
) -> dict[str, Any]:
    """Save a template after checking it renders safely; 422 ``template_invalid`` if not."""
    check_event_type(event_type)
    try:
        rendering.check(source, contexts.sample(event_type), channel=channel)
    except TemplateRefused as exc:
        raise template_invalid(exc) from None
    lang = templates.normalise_language(language)
    values = {
        "event_type": event_type,
        "channel": channel,
        "language": lang,
        "subject": source.subject,
        "body_text": source.body_text,
        "body_html": source.body_html,
        "updated_by": actor[:64],
        "created_at": now,
        "updated_at": now,
    }
    stmt = pg_insert(MessageTemplate).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=["event_type", "channel", "language"],
        set_={k: stmt.excluded[k] for k in ("subject", "body_text", "body_html", "updated_by")}
        | {"updated_at": now},
    )
    await session.execute(stmt)
    row = await templates.saved_template(
        session, event_type=event_type, channel=channel, language=lang
    )
    assert row is not None
    return _row_dict(row)


async def delete_template(
    session: AsyncSession, *, event_type: str, channel: str, language: str
) -> None:
    """Remove a saved template (the packaged default, if any, applies again)."""
    result = await session.execute(
        delete(MessageTemplate)
        .where(
            MessageTemplate.event_type == event_type,
            MessageTemplate.channel == channel,
            MessageTemplate.language == templates.normalise_language(language),
        )
        .returning(MessageTemplate.id)
    )
    if result.first() is None:
        raise NotFound(
            "no saved template for this event, channel and language", code="template_not_found"
        )


async def get_rule(session: AsyncSession, *, sales_channel: str) -> dict[str, Any]:
    row = await session.get(MessageRule, sales_channel)
    if row is None:
        return {
            "sales_channel": sales_channel,
            "source": "default",
            "default_language": None,
            "events": DEFAULT_RULES,
        }
    return {
        "sales_channel": sales_channel,
        "source": "saved",
        "default_language": row.default_language,
        "events": row.events,
    }


async def put_rule(
    session: AsyncSession,
    *,
    sales_channel: str,
    default_language: str,
    rules: dict[str, dict[str, bool]],
    now: datetime,
) -> dict[str, Any]:
    """Replace the channel's rules (events not listed send nothing)."""
    for event_type in rules:
        check_event_type(event_type)
    lang = templates.normalise_language(default_language)
    stmt = pg_insert(MessageRule).values(
        sales_channel=sales_channel, default_language=lang, events=rules, updated_at=now
    )
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=["sales_channel"],
            set_={"default_language": lang, "events": rules, "updated_at": now},
        )
    )
    return {
        "sales_channel": sales_channel,
        "source": "saved",
        "default_language": lang,
        "events": rules,
    }


def normalise_address(channel: str, address: str) -> str:
    address = address.strip()
    return address.lower() if channel == "email" else address


async def opt_out(
    session: AsyncSession, *, channel: str, address: str, now: datetime
) -> dict[str, Any]:
    """The address receives no message on ``channel`` from now on (idempotent)."""
    addr = normalise_address(channel, address)
    await session.execute(
        pg_insert(MessageOptOut)
        .values(channel=channel, address=addr, created_at=now)
        .on_conflict_do_nothing()
    )
    return await get_opt_out(session, channel=channel, address=addr)


async def opt_in(session: AsyncSession, *, channel: str, address: str) -> dict[str, Any]:
    """Undo an opt-out (idempotent)."""
    addr = normalise_address(channel, address)
    await session.execute(
        delete(MessageOptOut).where(MessageOptOut.channel == channel, MessageOptOut.address == addr)
    )
    return {"channel": channel, "address": addr, "opted_out": False, "since": None}


async def get_opt_out(session: AsyncSession, *, channel: str, address: str) -> dict[str, Any]:
    addr = normalise_address(channel, address)
    row = await session.get(MessageOptOut, (channel, addr))
    return {
        "channel": channel,
        "address": addr,
        "opted_out": row is not None,
        "since": row.created_at if row else None,
    }


async def messages_of(session: AsyncSession, *, order_id: uuid.UUID) -> list[dict[str, Any]]:
    """An order's messages, oldest first, each with its attempts."""
    await orders_service.get_order(session, order_id=order_id, principal=READER)
    rows = (
        await session.scalars(
            select(Message)
            .where(Message.order_id == order_id)
            .order_by(Message.outbox_id, Message.id)
        )
    ).all()
    attempts: dict[int, list[dict[str, Any]]] = {r.id: [] for r in rows}
    if rows:
        for a in (
            await session.scalars(
                select(MessageAttempt)
                .where(MessageAttempt.message_id.in_(list(attempts)))
                .order_by(MessageAttempt.id)
            )
        ).all():
            attempts[a.message_id].append(
                {
                    "attempt": a.attempt,
                    "outcome": a.outcome,
                    "provider_message_id": a.provider_message_id,
                    "error": a.error,
                    "duration_ms": a.duration_ms,
                    "at": a.created_at,
                }
            )
    return [
        {
            "id": r.id,
            "event_type": r.event_type,
            "channel": r.channel,
            "recipient": r.recipient,
            "language": r.language,
            "status": r.status,
            "subject": r.subject,
            "attempts": attempts[r.id],
            "provider_message_id": r.provider_message_id,
            "last_error": r.last_error,
            "created_at": r.created_at,
            "sent_at": r.sent_at,
        }
        for r in rows
    ]


async def preview(
    session: AsyncSession,
    *,
    settings: Settings,
    order_id: uuid.UUID,
    event_type: str,
    channel: str,
    language: str | None,
    source: TemplateSource | None,
    now: datetime,
) -> tuple[str, str | None, Rendered]:
    """Render a template against a real order, as the event would (its latest shipment for a
    shipment event, its total for a refund); nothing is saved or sent."""
    check_event_type(event_type)
    order = await orders_service.get_order(session, order_id=order_id, principal=READER)
    views = (await orders_service.shipments_for(session, order_ids=[order.id]))[order.id]
    shipment = views[-1].shipment if views else None
    data = {"amount": order.total_amount, "currency": order.currency, "reason": "preview"}
    link = await tracking.link_for(session, settings=settings, order_id=order.id, now=now)
    context = contexts.build(
        order=order,
        items=[(ln.name or ln.sku, ln.quantity) for ln in order.lines if ln.quantity > 0],
        event_type=event_type,
        data=data,
        shipment=shipment,
        tracking_url=link,
    )
    _, channel_language = await templates.rule_for(session, sales_channel=order.channel)
    if language:
        languages = [templates.normalise_language(language)]
    else:
        languages = templates.language_candidates(
            order.locale, channel_language, settings.message_fallback_language
        )
    recipient = order.customer_email if channel == "email" else order.customer_phone
    if source is None:
        found = await templates.effective_template(
            session, event_type=event_type, channel=channel, languages=languages
        )
        if found is None:
            raise NotFound(
                f"no {channel} template for {event_type} in {', '.join(languages)}",
                code="template_not_found",
            )
        lang, source = found
    else:
        lang = languages[0]
    try:
        rendered = rendering.check(source, context, channel=channel)
    except TemplateRefused as exc:
        raise template_invalid(exc) from None
    return lang, recipient, rendered
