"""The ledger an ERP can reconcile: every stock movement with a gap-free sequence number and a
running hash chain, exported page by page, and verified.

**Sealing after commit.** Numbering movements as they are written would serialise every writer
of stock on one counter (and identity values are not gap-free anyway: rolled-back inserts burn
them, and a later commit can hold a smaller id). Instead one sealer at a time (an advisory
lock), in the worker and before every export page, takes the movements not sealed yet whose
writing transaction is below the commit horizon (:mod:`oms.inventory.horizon`: older than
every transaction of this database still in flight, so nothing older can still appear), in id
order, and gives each the next ``seq`` and ``chain_hash = sha256(previous chain_hash +
canonical row)``. A movement is therefore exported a moment after its commit, never before,
and never skipped. ``seq`` is the order of sealing; the order in which one level's movements
were applied is their ``id`` order (each writer inserts its movement after locking the stock
row), which ``seq`` follows except when an older transaction commits after a newer one.

**Canonical row** (what the hash covers): the JSON array, without spaces, ensure_ascii off,
``[seq, id, warehouse_id, sku, movement_type, quantity, on_hand_after, reason, reference_type,
reference_id, actor, created_at]`` with ``created_at`` in ISO 8601 UTC with microseconds
(``2026-12-05T11:22:33.123456+00:00``). The hash of seq 1 chains from 64 zeros. A client
recomputes the chain over the pages it holds and compares the last hash with ours: equal
means it holds every movement up to that seq, unaltered.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from oms.db import driver_connection
from oms.inventory.horizon import HORIZON

GENESIS = "0" * 64
"""The previous hash of seq 1."""

_SEAL_LOCK = 0x1ED6E518
"""Advisory lock: one sealer at a time."""


@dataclass(frozen=True, slots=True)
class LedgerRow:
    seq: int
    chain_hash: str
    id: int
    warehouse_id: uuid.UUID
    warehouse_code: str
    sku: str
    movement_type: str
    quantity: int
    on_hand_after: int
    reason: str | None
    reference_type: str | None
    reference_id: str | None
    actor: str
    created_at: datetime


def canonical(seq: int, row: Any) -> str:
    """The canonical text of a movement at ``seq`` (see the module's docstring)."""
    created: datetime = row["created_at"]
    return json.dumps(
        [
            seq,
            row["id"],
            str(row["warehouse_id"]),
            row["sku"],
            row["movement_type"],
            row["quantity"],
            row["on_hand_after"],
            row["reason"],
            row["reference_type"],
            row["reference_id"],
            row["actor"],
            created.astimezone(UTC).isoformat(timespec="microseconds"),
        ],
        separators=(",", ":"),
        ensure_ascii=False,
    )


def chain(previous: str, text: str) -> str:
    """The next link: sha256 of the previous hash (hex) followed by the canonical row."""
    return hashlib.sha256((previous + text).encode("utf-8")).hexdigest()


_COLUMNS = (
    "m.id, m.warehouse_id, m.sku, m.movement_type, m.quantity, m.on_hand_after, m.reason, "
    "m.reference_type, m.reference_id, m.actor, m.created_at"
)
_LAST = (
    "SELECT seq, chain_hash FROM inventory_movements WHERE seq IS NOT NULL "
    "ORDER BY seq DESC LIMIT 1"
)
_UNSEALED = f"""
SELECT {_COLUMNS} FROM inventory_movements m
WHERE m.seq IS NULL AND (m.txid IS NULL OR m.txid < {HORIZON})
ORDER BY m.id
LIMIT $1
"""
_SEAL = """
UPDATE inventory_movements m SET seq = u.seq, chain_hash = u.chain_hash
FROM unnest($1::bigint[], $2::bigint[], $3::text[]) AS u(id, seq, chain_hash)
WHERE m.id = u.id
"""


async def seal(session: AsyncSession, *, batch: int = 5000, max_rows: int = 100_000) -> int:
    """Number and chain the finished movements not sealed yet (at most ``max_rows``); waits
    for a sealer already at work. Returns how many were sealed."""
    conn = await driver_connection(session)
    await conn.execute("SELECT pg_advisory_xact_lock($1)", _SEAL_LOCK)
    last = await conn.fetchrow(_LAST)
    seq, previous = (0, GENESIS) if last is None else (last["seq"], last["chain_hash"])
    sealed = 0
    while sealed < max_rows:
        rows = await conn.fetch(_UNSEALED, min(batch, max_rows - sealed))
        if not rows:
            break
        ids, seqs, hashes = [], [], []
        for r in rows:
            seq += 1
            previous = chain(previous, canonical(seq, r))
            ids.append(r["id"])
            seqs.append(seq)
            hashes.append(previous)
        await conn.execute(_SEAL, ids, seqs, hashes)
        sealed += len(rows)
        if len(rows) < batch:
            break
    return sealed


_PAGE = f"""
SELECT m.seq, m.chain_hash, w.code AS warehouse_code, {_COLUMNS}
FROM inventory_movements m JOIN warehouses w ON w.id = m.warehouse_id
WHERE m.seq > $1 AND m.seq <= $2
ORDER BY m.seq
"""


def _row(r: Any) -> LedgerRow:
    return LedgerRow(**dict(r.items()))


async def export(session: AsyncSession, *, after_seq: int, limit: int) -> list[LedgerRow]:
    """Seal what can be sealed, then the sealed movements after ``after_seq``, in order."""
    await seal(session)
    conn = await driver_connection(session)
    return [_row(r) for r in await conn.fetch(_PAGE, after_seq, after_seq + limit)]


LAST_SEQ = 2**63 - 1
"""The largest ``seq`` (a bigint): a range read never reaches past it."""


@dataclass(frozen=True, slots=True)
class Verification:
    from_seq: int
    checked: int
    last_seq: int
    last_hash: str
    ok: bool
    mismatch_seq: int | None = None
    problem: str | None = None


async def verify(
    session: AsyncSession, *, from_seq: int, limit: int, previous_hash: str | None
) -> Verification:
    """Recompute the chain from ``from_seq`` over at most ``limit`` movements and compare it
    with the stored hashes: the first seq whose row or link does not match, or a missing seq,
    is reported. ``previous_hash``: the hash of ``from_seq - 1`` as the client holds it (else
    the stored one, or the genesis for seq 1)."""
    conn = await driver_connection(session)
    if previous_hash is None:
        if from_seq == 1:
            previous_hash = GENESIS
        else:
            previous_hash = await conn.fetchval(
                "SELECT chain_hash FROM inventory_movements WHERE seq = $1", from_seq - 1
            )
            if previous_hash is None:
                return Verification(
                    from_seq, 0, from_seq - 1, "", False, from_seq - 1, "missing movement"
                )
    previous = previous_hash
    expected = from_seq
    checked = 0
    batch = 5000
    while checked < limit:
        upto = min(expected - 1 + min(batch, limit - checked), LAST_SEQ)  # bigint's last
        rows: Sequence[Any] = await conn.fetch(_PAGE, expected - 1, upto)
        for r in rows:
            if r["seq"] != expected:
                return Verification(
                    from_seq, checked, expected - 1, previous, False, expected, "missing movement"
                )
            link = chain(previous, canonical(r["seq"], r))
            if link != r["chain_hash"]:
                return Verification(
                    from_seq,
                    checked,
                    expected - 1,
                    previous,
                    False,
                    expected,
                    "hash mismatch: the movement, or the hash stored with it, was altered",
                )
            previous = link
            expected += 1
            checked += 1
        if len(rows) < batch:
            break
    return Verification(from_seq, checked, expected - 1, previous, True)
