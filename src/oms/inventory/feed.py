"""The stock feed: what each channel can sell of each SKU, as a change feed to catch up from
(``GET /v1/inventory/changes``) and as coalesced events (``inventory.availability_changed``,
``inventory.out_of_stock``, ``inventory.back_in_stock``) computed by the worker.

Nothing here runs in order placement. Every writer of stock levels is journaled by a trigger
(``inventory/sql/oms_stock_changed.sql``: one ``stock_changes`` row naming the level, written
with the writer's transaction id); the figures are read after commit, here.

**Gap-free, ordered.** Identity values are not handed out in commit order (a transaction that
commits later can hold a smaller id), so a reader that remembers "the last id" can skip a row
committed after it read. The journal is read in ``(txid, id)`` order, and a row is handed out
only when its transaction is below the commit horizon (:mod:`oms.inventory.horizon`: the oldest
transaction of this database still in flight): every transaction older than that has
finished, so no row can appear later before the reader's cursor, and every row still to come
has a ``txid`` at or above it, after it.

**Right figures.** An entry carries the level's figures as they are when it is read (not as
they were when the row was written): a consumer that applies the entries in order and keeps
the last one per key ends with today's figures, whatever it missed (as CouchDB's ``_changes``
gives the latest revision of each document). Superseded journal rows are deleted by
:func:`compact` (the latest row of each level stays, so reading from the start lists every
level).

**A channel's sellable quantity** of a SKU: the sum of ``available`` (on hand − reserved −
safety stock, never below 0) over the warehouses the channel routes to: active ones, only
those of its routing policy's ``warehouse_codes`` when set, and not pickup stores unless the
policy allows them (the default without a policy). Blocks (``stock_blocks``) and destination
countries are left out: they depend on the order.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms.db import DriverConnection, driver_connection
from oms.inventory import domain
from oms.inventory.horizon import HORIZON
from oms.shared import events
from oms.shared.clock import utcnow
from oms.shared.errors import Unprocessable

AVAILABILITY_CHANGED = "inventory.availability_changed"
OUT_OF_STOCK = "inventory.out_of_stock"
BACK_IN_STOCK = "inventory.back_in_stock"

EVENTS_CURSOR = "availability_events"
"""The worker's place in the journal (``stock_feed_cursors.name``)."""

_FEED_LOCK = 0x0F5EED18
"""Advisory lock: one worker at a time computes the availability events."""


# ---- cursors ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class Cursor:
    """A place in the journal: the last (txid, id) handed out. ``0.0`` is the beginning."""

    txid: int = 0
    change_id: int = 0

    def encode(self) -> str:
        return f"{self.txid}.{self.change_id}"

    @staticmethod
    def decode(text: str | None) -> Cursor:
        """Parse a cursor from a client; 422 ``invalid_cursor`` if it is not one."""
        if not text:
            return Cursor()
        parts = text.split(".")
        if len(parts) != 2 or not all(p.isascii() and p.isdigit() and len(p) <= 19 for p in parts):
            raise Unprocessable(
                "cursor is not one this API handed out (expected '<txid>.<id>')",
                code="invalid_cursor",
            )
        txid, change_id = (int(p) for p in parts)
        if txid >= 2**63 or change_id >= 2**63:
            raise Unprocessable("cursor out of range", code="invalid_cursor")
        return Cursor(txid, change_id)


# ---- channels --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WarehouseInfo:
    id: uuid.UUID
    code: str
    active: bool
    is_pickup_store: bool


_WAREHOUSES = "SELECT id, code, active, is_pickup_store FROM warehouses ORDER BY code"
_POLICIES = (
    "SELECT channel, warehouse_codes, exclude_pickup_stores FROM routing_policies ORDER BY channel"
)
_POLICY = "SELECT warehouse_codes, exclude_pickup_stores FROM routing_policies WHERE channel = $1"


def channel_warehouses(
    warehouses: Iterable[WarehouseInfo],
    *,
    warehouse_codes: Sequence[str] | None,
    exclude_pickup_stores: bool,
) -> frozenset[uuid.UUID]:
    """The warehouses whose stock a channel can sell (its routing policy's view, order aside)."""
    allowed = set(warehouse_codes) if warehouse_codes else None
    return frozenset(
        w.id
        for w in warehouses
        if w.active
        and (allowed is None or w.code in allowed)
        and not (exclude_pickup_stores and w.is_pickup_store)
    )


async def _warehouses(session: AsyncSession) -> list[WarehouseInfo]:
    conn = await driver_connection(session)
    return [WarehouseInfo(**dict(r.items())) for r in await conn.fetch(_WAREHOUSES)]


async def channel_map(session: AsyncSession) -> dict[str, frozenset[uuid.UUID]]:
    """Every channel with a routing policy → the warehouses it sells from."""
    conn = await driver_connection(session)
    warehouses = await _warehouses(session)
    return {
        r["channel"]: channel_warehouses(
            warehouses,
            warehouse_codes=r["warehouse_codes"],
            exclude_pickup_stores=r["exclude_pickup_stores"],
        )
        for r in await conn.fetch(_POLICIES)
    }


async def warehouses_of_channel(session: AsyncSession, *, channel: str) -> frozenset[uuid.UUID]:
    """The warehouses a channel sells from (without a policy: every active warehouse but
    pickup stores, as routing does)."""
    conn = await driver_connection(session)
    row = await conn.fetchrow(_POLICY, channel)
    return channel_warehouses(
        await _warehouses(session),
        warehouse_codes=None if row is None else row["warehouse_codes"],
        exclude_pickup_stores=True if row is None else row["exclude_pickup_stores"],
    )


_SELLABLE = """
SELECT s.sku, s.warehouse_id,
       oms_stock_available(s.on_hand, s.reserved, s.safety_stock) AS available
FROM stock_levels s
WHERE s.sku = ANY($1::text[])
"""


async def sellable(
    session: AsyncSession, *, skus: Iterable[str], channels: dict[str, frozenset[uuid.UUID]]
) -> dict[tuple[str, str], int]:
    """(channel, sku) → the channel's sellable quantity of the SKU now, for every pair."""
    wanted = sorted(set(skus))
    per_sku: dict[str, list[tuple[uuid.UUID, int]]] = defaultdict(list)
    if wanted:
        conn = await driver_connection(session)
        for r in await conn.fetch(_SELLABLE, wanted):
            per_sku[r["sku"]].append((r["warehouse_id"], int(r["available"])))
    return {
        (channel, sku): sum(a for wid, a in per_sku[sku] if wid in wids)
        for channel, wids in channels.items()
        for sku in wanted
    }


# ---- the change feed -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LevelChange:
    """A stock level that changed, with its figures as they are now."""

    warehouse_code: str
    warehouse_active: bool
    sku: str
    on_hand: int
    reserved: int
    safety_stock: int
    available: int


@dataclass(frozen=True, slots=True)
class ChangesPage:
    levels: list[LevelChange]
    channel_available: dict[str, int] | None
    """With a channel: sku → its sellable quantity now, for the SKUs of the page."""
    cursor: Cursor
    has_more: bool


_PAGE = f"""
WITH page AS (
    SELECT c.txid, c.id, c.warehouse_id, c.sku
    FROM stock_changes c
    WHERE (c.txid, c.id) > ($1::bigint, $2::bigint) AND c.txid < {HORIZON}
    ORDER BY c.txid, c.id
    LIMIT $3
)
SELECT p.txid, p.id, p.warehouse_id, p.sku, w.code, w.active,
       coalesce(s.on_hand, 0) AS on_hand, coalesce(s.reserved, 0) AS reserved,
       coalesce(s.safety_stock, 0) AS safety_stock
FROM page p
JOIN warehouses w ON w.id = p.warehouse_id
LEFT JOIN stock_levels s ON s.warehouse_id = p.warehouse_id AND s.sku = p.sku
ORDER BY p.txid, p.id
"""


async def changes(
    session: AsyncSession,
    *,
    cursor: Cursor,
    limit: int,
    channel: str | None = None,
    scope: frozenset[uuid.UUID] | None = None,
) -> ChangesPage:
    """The levels changed after ``cursor`` (at most ``limit`` journal rows), in journal order,
    each once (at its last place in the page), with their figures now; and with ``channel``,
    that channel's sellable quantity of each SKU of the page. With ``scope`` (a scoped key's
    warehouses), only the levels of those warehouses are listed; the cursor moves on alike."""
    conn = await driver_connection(session)
    rows = await conn.fetch(_PAGE, cursor.txid, cursor.change_id, limit)
    last: dict[tuple[uuid.UUID, str], LevelChange] = {}
    for r in rows:
        if scope is not None and r["warehouse_id"] not in scope:
            continue
        key = (r["warehouse_id"], r["sku"])
        last.pop(key, None)  # keep each level once, at its last place
        last[key] = LevelChange(
            warehouse_code=r["code"],
            warehouse_active=r["active"],
            sku=r["sku"],
            on_hand=r["on_hand"],
            reserved=r["reserved"],
            safety_stock=r["safety_stock"],
            available=domain.available(r["on_hand"], r["reserved"], r["safety_stock"]),
        )
    channel_available = None
    if channel is not None:
        wids = await warehouses_of_channel(session, channel=channel)
        figures = await sellable(session, skus={sku for _, sku in last}, channels={channel: wids})
        channel_available = {sku: n for (_, sku), n in sorted(figures.items())}
    end = Cursor(rows[-1]["txid"], rows[-1]["id"]) if rows else cursor
    return ChangesPage(
        levels=list(last.values()),
        channel_available=channel_available,
        cursor=end,
        has_more=len(rows) == limit,
    )


_COMPACT = f"""
WITH old AS (
    SELECT id FROM (
        SELECT c.id, row_number() OVER (
            PARTITION BY c.warehouse_id, c.sku ORDER BY c.txid DESC, c.id DESC) AS rn
        FROM stock_changes c
        WHERE c.txid < {HORIZON}
    ) ranked
    WHERE ranked.rn > 1
    LIMIT $1
), deleted AS (
    DELETE FROM stock_changes d USING old WHERE d.id = old.id RETURNING 1
)
SELECT count(*) FROM deleted
"""


async def compact(session: AsyncSession, *, limit: int = 50_000) -> int:
    """Delete journal rows superseded by a later row of the same level (both finished): every
    cursor still sees each level changed after it, and the beginning lists each level once."""
    conn = await driver_connection(session)
    return int(await conn.fetchval(_COMPACT, limit))


# ---- the availability events (worker) --------------------------------------------------------


def availability_events(
    *, channel: str, sku: str, previous: int | None, available: int
) -> list[tuple[str, dict[str, Any]]]:
    """The events a new published figure causes (none if it did not change): always
    ``inventory.availability_changed``; ``inventory.out_of_stock`` when it falls from above 0
    to 0, ``inventory.back_in_stock`` when it rises from 0 (not on a first figure)."""
    if previous == available:
        return []
    data = {"sku": sku, "channel": channel, "available": available, "previous": previous}
    out: list[tuple[str, dict[str, Any]]] = [(AVAILABILITY_CHANGED, data)]
    if previous is not None and previous > 0 and available == 0:
        out.append((OUT_OF_STOCK, dict(data)))
    elif previous == 0 and available > 0:
        out.append((BACK_IN_STOCK, dict(data)))
    return out


_LOCK = "SELECT pg_try_advisory_xact_lock($1)"
_READ_CURSOR = "SELECT txid, change_id FROM stock_feed_cursors WHERE name = $1 FOR UPDATE"
_JOURNAL = f"""
SELECT c.txid, c.id, c.sku FROM stock_changes c
WHERE (c.txid, c.id) > ($1::bigint, $2::bigint) AND c.txid < {HORIZON}
ORDER BY c.txid, c.id
LIMIT $3
"""
_SAVE_CURSOR = """
INSERT INTO stock_feed_cursors (name, txid, change_id, updated_at) VALUES ($1, $2, $3, $4)
ON CONFLICT (name) DO UPDATE
SET txid = EXCLUDED.txid, change_id = EXCLUDED.change_id, updated_at = EXCLUDED.updated_at
"""
_MARK_PENDING = """
INSERT INTO channel_stock (channel, sku, pending_since)
SELECT c, s, $3 FROM unnest($1::text[], $2::text[]) AS u(c, s)
ORDER BY c, s COLLATE "C"
ON CONFLICT (channel, sku) DO UPDATE
SET pending_since = coalesce(channel_stock.pending_since, EXCLUDED.pending_since)
"""
_DUE = """
SELECT channel, sku, published FROM channel_stock
WHERE pending_since IS NOT NULL AND (published_at IS NULL OR published_at <= $1)
ORDER BY pending_since, channel, sku COLLATE "C"
LIMIT $2
FOR UPDATE
"""
_PUBLISHED = """
UPDATE channel_stock cs
SET published = u.available,
    published_at = CASE WHEN u.changed THEN $5 ELSE cs.published_at END,
    pending_since = NULL
FROM unnest($1::text[], $2::text[], $3::int[], $4::bool[]) AS u(channel, sku, available, changed)
WHERE cs.channel = u.channel AND cs.sku = u.sku
"""


@dataclass(slots=True)
class FeedRound:
    journal_rows: int = 0
    published: int = 0
    events: int = 0
    more: bool = False
    """A batch was full: more journal rows or due figures may be waiting."""


async def publish_availability(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    now: datetime,
    interval: timedelta,
    batch: int = 2000,
) -> FeedRound:
    """One round of the worker's availability events, in one transaction (skipped if another
    worker is at it): take the journal rows after the worker's cursor, mark their SKUs
    pending for every channel, then publish each pending (channel, SKU) whose last event is
    at least ``interval`` old (or that never had one) with its figure now: the latest value,
    one event per interval at most (coalesced), and none if the figure is what was last sent.
    """
    result = FeedRound()
    async with sessionmaker() as session, session.begin():
        conn = await driver_connection(session)
        if not await conn.fetchval(_LOCK, _FEED_LOCK):
            return result
        row = await conn.fetchrow(_READ_CURSOR, EVENTS_CURSOR)
        cursor = Cursor() if row is None else Cursor(row["txid"], row["change_id"])
        channels = await channel_map(session)
        journal = await conn.fetch(_JOURNAL, cursor.txid, cursor.change_id, batch)
        result.journal_rows = len(journal)
        result.more = len(journal) == batch
        if journal:
            skus = sorted({r["sku"] for r in journal})
            pairs = [(c, s) for c in sorted(channels) for s in skus]
            if pairs:
                await conn.execute(_MARK_PENDING, [c for c, _ in pairs], [s for _, s in pairs], now)
            await conn.execute(
                _SAVE_CURSOR, EVENTS_CURSOR, journal[-1]["txid"], journal[-1]["id"], now
            )
        due = await conn.fetch(_DUE, now - interval, batch)
        if not due:
            return result
        result.more = result.more or len(due) == batch
        skus_due = {r["sku"] for r in due if r["channel"] in channels}
        figures = await sellable(session, skus=skus_due, channels=channels)
        outbox: list[tuple[str, str, dict[str, Any]]] = []
        names: list[str] = []
        skus_: list[str] = []
        values: list[int | None] = []
        changed: list[bool] = []
        for r in due:
            key = (r["channel"], r["sku"])
            previous = r["published"]
            if key not in figures:  # the channel's policy is gone: nothing to tell it
                names.append(key[0])
                skus_.append(key[1])
                values.append(previous)
                changed.append(False)
                continue
            available = figures[key]
            caused = availability_events(
                channel=key[0], sku=key[1], previous=previous, available=available
            )
            for type_, data in caused:
                outbox.append((type_, key[1], data))
            result.events += len(caused)
            result.published += 1 if caused else 0
            names.append(key[0])
            skus_.append(key[1])
            values.append(available)
            changed.append(bool(caused))
        await conn.execute(_PUBLISHED, names, skus_, values, changed, now)
        if outbox:
            await _record(conn, outbox)
    return result


_RECORD = """
INSERT INTO outbox_events (event_id, type, aggregate_type, aggregate_id, payload, created_at)
SELECT e.id, e.type, 'sku', e.sku,
       jsonb_build_object('id', e.id::text, 'type', e.type, 'occurred_at', $5::text,
                          'data', e.data::jsonb),
       $6
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY
     AS e(id, type, sku, data, n)
ORDER BY e.n
"""


async def _record(conn: DriverConnection, rows: Sequence[tuple[str, str, dict[str, Any]]]) -> None:
    """Record the events in the outbox in one statement (a round can publish thousands), in
    the envelope :func:`oms.outbox.service.record_event` writes, each payload checked against
    the registry (``oms.shared.events``) first; the aggregate is the SKU."""
    for type_, _, data in rows:
        events.check(type_, data)
    at = utcnow()
    await conn.execute(
        _RECORD,
        [uuid.uuid4() for _ in rows],
        [t for t, _, _ in rows],
        [sku for _, sku, _ in rows],
        [json.dumps(data) for _, _, data in rows],
        at.isoformat(),
        at,
    )
