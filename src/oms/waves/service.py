"""The waves context's public service functions: wave policies per channel, which orders wait
for a wave (a SQL condition the pick queue uses), and reading waves. Running a wave spans
contexts: ``oms.flows.waves``. Every function takes the request's session and never commits.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, time, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, exists, func, or_, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import QueryableAttribute

from oms.shared.clock import utcnow
from oms.shared.errors import NotFound
from oms.waves.models import Wave, WaveOrder, WavePolicy

EXPRESS = "express"


def waiting_for_wave(
    *,
    order_id: QueryableAttribute[Any] | ColumnElement[Any],
    channel: QueryableAttribute[Any] | ColumnElement[Any],
    priority: QueryableAttribute[Any] | ColumnElement[Any],
    created_at: QueryableAttribute[Any] | ColumnElement[Any],
) -> ColumnElement[bool]:
    """A SQL condition: the order waits for its channel's next wave (its channel's policy is
    enabled, it was placed since, it is not an express order that skips waves, and no wave
    has released it yet)."""
    return and_(
        exists().where(
            WavePolicy.channel == channel,
            WavePolicy.enabled.is_(True),
            WavePolicy.enabled_at <= created_at,
            or_(WavePolicy.express_skips.is_(False), priority != EXPRESS),
        ),
        ~exists().where(WaveOrder.order_id == order_id),
    )


def not_waiting_for_wave(
    *,
    order_id: QueryableAttribute[Any] | ColumnElement[Any],
    channel: QueryableAttribute[Any] | ColumnElement[Any],
    priority: QueryableAttribute[Any] | ColumnElement[Any],
    created_at: QueryableAttribute[Any] | ColumnElement[Any],
) -> ColumnElement[bool]:
    """A SQL condition: the order is not waiting for a wave (the pick queue shows it)."""
    return ~waiting_for_wave(
        order_id=order_id, channel=channel, priority=priority, created_at=created_at
    )


async def waits_for(
    session: AsyncSession,
    *,
    order_id: uuid.UUID,
    channel: str,
    priority: str,
    created_at: datetime,
) -> WavePolicy | None:
    """The policy an order (placed or paid) waits under for its channel's next wave, or None
    when it does not wait (the rules of :func:`waiting_for_wave`, for one order)."""
    policy = await get_policy(session, channel=channel)
    if policy is None or not policy.enabled or policy.enabled_at > created_at:
        return None
    if policy.express_skips and priority == EXPRESS:
        return None
    released = await session.scalar(select(exists().where(WaveOrder.order_id == order_id)))
    return None if released else policy


async def get_policy(session: AsyncSession, *, channel: str) -> WavePolicy | None:
    """The channel's wave policy as committed now, if any."""
    return await session.scalar(
        select(WavePolicy)
        .where(WavePolicy.channel == channel)
        .execution_options(populate_existing=True)
    )


async def put_policy(session: AsyncSession, *, channel: str, values: dict[str, Any]) -> WavePolicy:
    """Create or replace a channel's wave policy. Enabling it (again) starts holding the
    orders placed from now on; disabling it releases every waiting order at once."""
    now = utcnow()
    before = await get_policy(session, channel=channel)
    enabled_at = now
    if before is not None and before.enabled and values["enabled"]:
        enabled_at = before.enabled_at  # still enabled: the waiting orders keep waiting
    row = {"channel": channel, "updated_at": now, "enabled_at": enabled_at, **values}
    stmt = pg_insert(WavePolicy).values(**row)
    await session.execute(stmt.on_conflict_do_update(index_elements=["channel"], set_=row))
    policy = await get_policy(session, channel=channel)
    assert policy is not None
    return policy


async def list_policies(session: AsyncSession) -> list[WavePolicy]:
    """Every channel's wave policy."""
    return list((await session.scalars(select(WavePolicy).order_by(WavePolicy.channel))).all())


async def enabled_policies(session: AsyncSession) -> list[WavePolicy]:
    """The enabled wave policies (the worker checks which are due)."""
    return list(
        (
            await session.scalars(
                select(WavePolicy).where(WavePolicy.enabled.is_(True)).order_by(WavePolicy.channel)
            )
        ).all()
    )


async def last_wave_at(session: AsyncSession, *, channel: str) -> datetime | None:
    """When the channel's last wave started."""
    return await session.scalar(select(func.max(Wave.started_at)).where(Wave.channel == channel))


def cutoff_times(policy: WavePolicy, since: datetime, until: datetime) -> list[datetime]:
    """The policy's daily cut-offs ("HH:MM" UTC) from ``since``'s day to ``until``'s."""
    out: list[datetime] = []
    day = since.astimezone(UTC).date()
    last = until.astimezone(UTC).date()
    while day <= last and len(out) < 10_000:
        for c in policy.cutoffs or []:
            hh, mm = (int(x) for x in c.split(":"))
            out.append(datetime.combine(day, time(hh, mm), tzinfo=UTC))
        day += timedelta(days=1)
    return out


async def list_waves(
    session: AsyncSession, *, channel: str | None, limit: int, before: datetime | None
) -> list[Wave]:
    """Waves, newest first (optionally of one channel, started before ``before``)."""
    stmt = select(Wave)
    if channel is not None:
        stmt = stmt.where(Wave.channel == channel)
    if before is not None:
        stmt = stmt.where(Wave.started_at < before)
    stmt = stmt.order_by(Wave.started_at.desc(), Wave.id.desc()).limit(limit)
    return list((await session.scalars(stmt)).all())


async def get_wave(session: AsyncSession, *, wave_id: uuid.UUID) -> tuple[Wave, list[WaveOrder]]:
    """One wave and the orders it released (moved first); 404 ``wave_not_found``."""
    wave = await session.get(Wave, wave_id)
    if wave is None:
        raise NotFound(f"wave {wave_id} does not exist", code="wave_not_found")
    rows = (
        await session.scalars(
            select(WaveOrder)
            .where(WaveOrder.wave_id == wave_id)
            .order_by(WaveOrder.outcome != "moved", WaveOrder.order_id)
        )
    ).all()
    return wave, list(rows)
