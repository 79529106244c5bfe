"""The ledger export: every movement with a gap-free ``seq`` and a running sha256 chain that a
client recomputes on its own; the verification finds an altered or a missing row; a movement
committed late (smaller id, later commit) is numbered after, never skipped."""

from __future__ import annotations

import asyncio
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from oms.inventory import service as inventory
from oms.inventory.horizon import HORIZON
from tests.helpers import auth, order_body, stock


async def _settled(engine: AsyncEngine, table: str = "stock_changes") -> None:
    """Wait until every committed row of ``table`` is below the commit horizon (the feed and
    the sealer hand rows out only then): a transaction of this database still in flight
    (another test's, on a shared server) can delay that, briefly."""
    sql = text(f"SELECT count(*) FROM {table} WHERE txid >= {HORIZON}")
    for _ in range(400):
        async with engine.connect() as conn:
            if not (await conn.execute(sql)).scalar_one():
                return
        await asyncio.sleep(0.025)
    raise AssertionError(f"{table}: transactions in flight for 10 s")


def _link(previous: str, row: dict[str, Any]) -> str:
    """The chain as the API documents it, written here independently of the service."""
    created = datetime.fromisoformat(row["created_at"]).astimezone(UTC)
    canonical = json.dumps(
        [
            row["seq"],
            row["id"],
            row["warehouse_id"],
            row["sku"],
            row["movement_type"],
            row["quantity"],
            row["on_hand_after"],
            row["reason"],
            row["reference_type"],
            row["reference_id"],
            row["actor"],
            created.isoformat(timespec="microseconds"),
        ],
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256((previous + canonical).encode()).hexdigest()


async def _export(client: httpx.AsyncClient, key: str, limit: int = 3) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    after = 0
    while True:
        resp = await client.get(
            "/v1/inventory/ledger", params={"after_seq": after, "limit": limit}, headers=auth(key)
        )
        assert resp.status_code == 200, resp.text
        body = resp.json()
        rows += body["movements"]
        after = body["next_after_seq"]
        if not body["has_more"]:
            return rows


async def _verify(client: httpx.AsyncClient, key: str, **params: Any) -> dict[str, Any]:
    resp = await client.get("/v1/inventory/ledger/verify", params=params, headers=auth(key))
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


async def test_the_export_is_gap_free_and_chained_and_an_altered_row_is_found(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    key = keys["fulfillment"]
    await stock(sessionmaker, "BER", {"MUG-01": 10, "TSHIRT-RED-M": 4})
    order = await client.post("/v1/orders", json=order_body(), headers=auth(keys["storefront"]))
    order_id = order.json()["id"]
    for step in (
        {"to": "paid"},
        {"to": "picked"},
        {"to": "packed"},
        {"to": "shipped", "carrier": "DHL", "tracking_number": "JJD1"},
    ):
        resp = await client.post(
            f"/v1/orders/{order_id}/transitions", json=step, headers=auth(keys["admin"])
        )
        assert resp.status_code == 200, resp.text
    resp = await client.post(
        "/v1/inventory/adjustments",
        json={
            "warehouse": "BER",
            "sku": "MUG-01",
            "type": "correct",
            "quantity": -1,
            "reason": "broken, café spill",
        },
        headers=auth(keys["admin"]),
    )
    assert resp.status_code == 201, resp.text

    await _settled(engine, "inventory_movements")
    rows = await _export(client, key)
    assert [r["seq"] for r in rows] == list(range(1, len(rows) + 1))
    kinds = sorted(r["movement_type"] for r in rows)
    assert {"receipt", "shipment", "correction"} <= set(kinds), kinds
    previous = "0" * 64
    for r in rows:
        previous = _link(previous, r)
        assert r["chain_hash"] == previous
    # every movement of the ledger, once
    movements = (await client.get("/v1/inventory/movements?limit=1000", headers=auth(key))).json()
    assert sorted(m["id"] for m in movements) == sorted(r["id"] for r in rows)
    ok = await _verify(client, key)
    n = len(rows)
    assert ok == {"ok": True, "from_seq": 1, "checked": n, "last_seq": n, "last_hash": previous}
    # from the middle, with the hash the client holds
    assert (await _verify(client, key, from_seq=3, previous_hash=rows[1]["chain_hash"]))["ok"]

    # someone edits a movement in the database: the verification names it
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE inventory_movements SET quantity = quantity + 1 WHERE seq = 3")
        )
    bad = await _verify(client, key)
    assert (bad["ok"], bad["mismatch_seq"], bad["checked"], bad["last_seq"]) == (False, 3, 2, 2)
    assert "altered" in bad["problem"]
    # ... also if the hash stored with it is recomputed: the next link breaks
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE inventory_movements SET quantity = quantity - 1 WHERE seq = 3")
        )
    assert (await _verify(client, key))["ok"]
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE inventory_movements SET chain_hash = :h WHERE seq = 3"),
            {"h": "f" * 64},
        )
    bad = await _verify(client, key)
    assert (bad["ok"], bad["mismatch_seq"]) == (False, 3)
    async with engine.begin() as conn:
        await conn.execute(
            text("UPDATE inventory_movements SET chain_hash = :h WHERE seq = 3"),
            {"h": rows[2]["chain_hash"]},
        )
        await conn.execute(text("DELETE FROM inventory_movements WHERE seq = 4"))
    bad = await _verify(client, key)
    assert (bad["ok"], bad["mismatch_seq"], bad["problem"]) == (False, 4, "missing movement")


async def test_a_movement_committed_late_is_numbered_after_and_not_skipped(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    key = keys["fulfillment"]
    await stock(sessionmaker, "BER", {"A": 1, "B": 1})
    await _settled(engine, "inventory_movements")
    assert len(await _export(client, key)) == 2
    async with sessionmaker() as slow:
        await slow.begin()
        await inventory.adjust_stock(
            slow, warehouse_code="BER", sku="A", kind="receive", quantity=5, actor="test"
        )
        async with sessionmaker() as fast, fast.begin():
            await inventory.adjust_stock(
                fast, warehouse_code="BER", sku="B", kind="receive", quantity=7, actor="test"
            )
        # B is committed but A (older, smaller id) is in flight: B waits to be numbered
        assert len(await _export(client, key)) == 2
        await slow.commit()
    await _settled(engine, "inventory_movements")
    rows = await _export(client, key)
    assert [(r["seq"], r["sku"], r["quantity"]) for r in rows[2:]] == [(3, "A", 5), (4, "B", 7)]
    assert rows[2]["id"] < rows[3]["id"]
    assert (await _verify(client, key))["ok"]


async def test_a_storefront_key_cannot_read_the_ledger(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    resp = await client.get("/v1/inventory/ledger", headers=auth(keys["storefront"]))
    assert resp.status_code == 403
    resp = await client.get(
        "/v1/inventory/ledger/verify?previous_hash=xyz", headers=auth(keys["admin"])
    )
    assert resp.status_code == 422


async def test_verifying_from_the_last_bigint_seqs_is_an_answer_not_a_500(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    """`from_seq` up to the largest bigint is valid input: the range read past it must not
    overflow (a seq beyond 2^63 - 1 cannot be sent to the database)."""
    key = keys["fulfillment"]
    top = 2**63 - 1
    for from_seq in (top, top - 1, top - 4_999):
        got = await _verify(client, key, from_seq=from_seq, previous_hash="0" * 64)
        assert got["checked"] == 0 and got["last_seq"] == from_seq - 1
        got = await _verify(client, key, from_seq=from_seq, previous_hash="0" * 64, limit=10**6)
        assert got["checked"] == 0
        assert not (await _verify(client, key, from_seq=from_seq))["ok"]  # no movement before
