"""The promises context's public service: warehouse calendars and the transit table (set and
read by admins), and the tables promises are computed from, cached per process.

Placement asks :func:`tables` for every order: it answers from a per-process cache (reloaded
every :data:`CACHE_TTL_S` seconds, and at once after this process's own changes, when they
commit), so a promise costs no round trip; the dates themselves are pure
(:mod:`oms.promises.domain`)."""

from __future__ import annotations

import re
import time as monotonic
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from oms.db import after_commit
from oms.inventory import service as inventory_service
from oms.promises import domain
from oms.promises.models import TransitTimeRow, WarehouseCalendar
from oms.shared.clock import utcnow
from oms.shared.errors import NotFound, Unprocessable

CACHE_TTL_S = 5.0
"""How long a process reuses the calendars and transit table it loaded."""


class _Cache:
    def __init__(self) -> None:
        self.loaded_at = -1e18
        self.tables = domain.PromiseTables()

    def clear(self) -> None:
        self.loaded_at = -1e18


CACHE = _Cache()


def _calendar(row: WarehouseCalendar) -> domain.WarehouseCalendar:
    return domain.WarehouseCalendar(
        timezone=row.timezone,
        cutoff=row.cutoff,
        handling_days=row.handling_days,
        working_days=frozenset(row.working_days),
        holidays=frozenset(row.holidays),
    )


async def tables(session: AsyncSession) -> domain.PromiseTables:
    """Every warehouse's calendar (by warehouse code) and the transit table, from the
    process's cache (two small queries at most every :data:`CACHE_TTL_S` seconds)."""
    now = monotonic.monotonic()
    if now - CACHE.loaded_at > CACHE_TTL_S:
        rows = (await session.scalars(select(WarehouseCalendar))).all()
        codes = await inventory_service.warehouse_codes(session, ids=[r.warehouse_id for r in rows])
        transit = (await session.scalars(select(TransitTimeRow))).all()
        CACHE.tables = domain.PromiseTables(
            calendars={codes[r.warehouse_id]: _calendar(r) for r in rows},
            transit=tuple(
                domain.TransitRow(
                    r.country, r.from_band, domain.TransitTime(r.min_days, r.max_days)
                )
                for r in transit
            ),
        )
        CACHE.loaded_at = now
    return CACHE.tables


def _changed(session: AsyncSession) -> None:
    CACHE.clear()
    after_commit(session, CACHE.clear)  # and once committed (a load in between saw the old)


@dataclass(frozen=True, slots=True)
class CalendarView:
    warehouse: str
    timezone: str
    cutoff: time
    handling_days: int
    working_days: list[int]
    holidays: list[date]
    updated_at: datetime | None
    default: bool


def _view(code: str, cal: domain.WarehouseCalendar, updated_at: datetime | None) -> CalendarView:
    return CalendarView(
        warehouse=code,
        timezone=cal.timezone,
        cutoff=cal.cutoff,
        handling_days=cal.handling_days,
        working_days=sorted(cal.working_days),
        holidays=sorted(cal.holidays),
        updated_at=updated_at,
        default=updated_at is None,
    )


async def put_calendar(
    session: AsyncSession,
    *,
    warehouse_code: str,
    timezone: str,
    cutoff: time,
    handling_days: int,
    working_days: Sequence[int],
    holidays: Sequence[date],
) -> CalendarView:
    """Set a warehouse's calendar (422 ``invalid_calendar`` for an unknown zone...)."""
    wh = await inventory_service.get_warehouse(session, code=warehouse_code)
    try:
        cal = domain.WarehouseCalendar(
            timezone=timezone,
            cutoff=cutoff,
            handling_days=handling_days,
            working_days=frozenset(working_days),
            holidays=frozenset(holidays),
        )
    except domain.CalendarError as exc:
        raise Unprocessable(str(exc), code="invalid_calendar") from exc
    now = utcnow()
    values = {
        "timezone": cal.timezone,
        "cutoff": cal.cutoff,
        "handling_days": cal.handling_days,
        "working_days": sorted(cal.working_days),
        "holidays": sorted(cal.holidays),
        "updated_at": now,
    }
    await session.execute(
        insert(WarehouseCalendar)
        .values(warehouse_id=wh.id, **values)
        .on_conflict_do_update(index_elements=[WarehouseCalendar.warehouse_id], set_=values)
    )
    _changed(session)
    return _view(wh.code, cal, now)


async def get_calendar(session: AsyncSession, *, warehouse_code: str) -> CalendarView:
    """A warehouse's calendar, or the default one (``default: true``) when it has none."""
    wh = await inventory_service.get_warehouse(session, code=warehouse_code)
    row = await session.get(WarehouseCalendar, wh.id, populate_existing=True)
    if row is None:
        return _view(wh.code, domain.DEFAULT_CALENDAR, None)
    return _view(wh.code, _calendar(row), row.updated_at)


async def delete_calendar(session: AsyncSession, *, warehouse_code: str) -> None:
    """Back to the default calendar."""
    wh = await inventory_service.get_warehouse(session, code=warehouse_code)
    result = await session.execute(
        delete(WarehouseCalendar)
        .where(WarehouseCalendar.warehouse_id == wh.id)
        .returning(WarehouseCalendar.warehouse_id)
    )
    if result.first() is None:
        raise NotFound(
            f"warehouse '{warehouse_code}' has no calendar of its own", code="calendar_not_found"
        )
    _changed(session)


@dataclass(frozen=True, slots=True)
class TransitBand:
    from_band: int
    min_days: int
    max_days: int


async def put_transit(
    session: AsyncSession, *, country: str, bands: Sequence[TransitBand]
) -> list[TransitTimeRow]:
    """Replace the transit times to ``country`` (``*``: every country without its own)."""
    if not (country == domain.ANY_COUNTRY or re.fullmatch(r"[A-Z]{2}", country)):
        raise Unprocessable(
            f"'{country}' is not a country code (two capital letters) or '*'",
            code="invalid_country",
        )
    seen: set[int] = set()
    for i, b in enumerate(bands):
        if b.from_band in seen:
            raise Unprocessable(
                f"bands[{i}]: from_band {b.from_band} appears twice", code="invalid_transit"
            )
        if b.min_days > b.max_days:
            raise Unprocessable(f"bands[{i}]: min_days is above max_days", code="invalid_transit")
        seen.add(b.from_band)
    await session.execute(delete(TransitTimeRow).where(TransitTimeRow.country == country))
    now = utcnow()
    rows = [
        TransitTimeRow(
            country=country,
            from_band=b.from_band,
            min_days=b.min_days,
            max_days=b.max_days,
            updated_at=now,
        )
        for b in sorted(bands, key=lambda b: b.from_band)
    ]
    session.add_all(rows)
    await session.flush()
    _changed(session)
    return rows


async def list_transit(session: AsyncSession) -> list[TransitTimeRow]:
    """The whole transit table, by country then band."""
    return list(
        (
            await session.scalars(
                select(TransitTimeRow).order_by(TransitTimeRow.country, TransitTimeRow.from_band)
            )
        ).all()
    )


async def delete_transit(session: AsyncSession, *, country: str) -> None:
    result = await session.execute(
        delete(TransitTimeRow)
        .where(TransitTimeRow.country == country)
        .returning(TransitTimeRow.country)
    )
    if result.first() is None:
        raise NotFound(f"no transit times to '{country}'", code="transit_not_found")
    _changed(session)


__all__ = [
    "CACHE",
    "CalendarView",
    "TransitBand",
    "delete_calendar",
    "delete_transit",
    "get_calendar",
    "list_transit",
    "put_calendar",
    "put_transit",
    "tables",
]
