"""Templates, rules and opt-outs as the producer reads them: a saved template or rule wins over
the packaged default; the language falls back order -> base language -> channel -> fallback."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from oms.messages.defaults import DEFAULT_RULES, DEFAULT_TEMPLATES
from oms.messages.models import MessageOptOut, MessageRule, MessageTemplate
from oms.messages.rendering import TemplateSource


def normalise_language(tag: str) -> str:
    """``en_GB`` / ``EN-gb`` -> ``en-gb``: templates are looked up case-insensitively."""
    return tag.strip().replace("_", "-").lower()


def language_candidates(
    order_locale: str | None, channel_default: str | None, fallback: str
) -> list[str]:
    """The languages to try, best first, without repeats: ``it-CH`` -> it-ch, it, ..."""
    out: list[str] = []
    for tag in (order_locale, channel_default, fallback):
        if not tag:
            continue
        tag = normalise_language(tag)
        for candidate in (tag, tag.split("-")[0]):
            if candidate not in out:
                out.append(candidate)
    return out


async def saved_template(
    session: AsyncSession, *, event_type: str, channel: str, language: str
) -> MessageTemplate | None:
    return await session.scalar(
        select(MessageTemplate).where(
            MessageTemplate.event_type == event_type,
            MessageTemplate.channel == channel,
            MessageTemplate.language == language,
        )
    )


async def effective_template(
    session: AsyncSession, *, event_type: str, channel: str, languages: list[str]
) -> tuple[str, TemplateSource] | None:
    """The first language of ``languages`` with a template (saved, else packaged)."""
    saved = {
        row.language: row
        for row in (
            await session.scalars(
                select(MessageTemplate).where(
                    MessageTemplate.event_type == event_type,
                    MessageTemplate.channel == channel,
                    MessageTemplate.language.in_(languages),
                )
            )
        ).all()
    }
    for lang in languages:
        if lang in saved:
            row = saved[lang]
            return lang, TemplateSource(row.subject, row.body_text, row.body_html)
        default = DEFAULT_TEMPLATES.get((event_type, channel, lang))
        if default is not None:
            return lang, default
    return None


async def rule_for(
    session: AsyncSession, *, sales_channel: str
) -> tuple[dict[str, Any], str | None]:
    """(event type -> {email, sms}, default language) of a sales channel."""
    row = await session.get(MessageRule, sales_channel)
    if row is None:
        return DEFAULT_RULES, None
    return row.events, row.default_language


async def rule_event_types(session: AsyncSession) -> set[str]:
    """Every event type some channel's rule (saved or default) sends a message for."""
    types = {t for t, ch in DEFAULT_RULES.items() if any(ch.values())}
    for events in (await session.scalars(select(MessageRule.events))).all():
        types |= {t for t, ch in events.items() if any(ch.values())}
    return types


async def opted_out(session: AsyncSession, *, pairs: list[tuple[str, str]]) -> set[tuple[str, str]]:
    """The (channel, address) pairs that opted out."""
    if not pairs:
        return set()
    rows = await session.execute(
        select(MessageOptOut.channel, MessageOptOut.address).where(
            tuple_(MessageOptOut.channel, MessageOptOut.address).in_(pairs)
        )
    )
    return {(c, a) for c, a in rows.all()}
