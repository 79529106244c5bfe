"""The change feed ``GET /v1/inventory/changes``: gap-free and ordered, so a consumer that
missed events resumes from its last cursor and ends with the right figures, also while orders
are placed concurrently; a change committed late (smaller id, later commit) is not skipped."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from oms.inventory import feed
from oms.inventory import service as inventory
from oms.inventory.horizon import HORIZON
from tests.helpers import assert_stock_invariants, auth, order_body, stock

SKUS = [f"SKU-{i}" for i in range(6)]


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


class Consumer:
    """A connector keeping the figures the feed gives it: the last entry of a level wins."""

    def __init__(self, client: httpx.AsyncClient, key: str, channel: str | None = None) -> None:
        self.client = client
        self.key = key
        self.channel = channel
        self.cursor: str | None = None
        self.levels: dict[tuple[str, str], dict[str, Any]] = {}
        self.channel_available: dict[str, int] = {}
        self.pages = 0

    async def page(self, limit: int = 7) -> bool:
        params: dict[str, Any] = {"limit": limit}
        if self.cursor is not None:
            params["cursor"] = self.cursor
        if self.channel is not None:
            params["channel"] = self.channel
        resp = await self.client.get("/v1/inventory/changes", params=params, headers=auth(self.key))
        assert resp.status_code == 200, resp.text
        body = resp.json()
        for level in body["levels"]:
            self.levels[(level["warehouse"], level["sku"])] = level
        for row in body.get("channel_available", []):
            self.channel_available[row["sku"]] = row["available"]
        self.cursor = body["cursor"]
        self.pages += 1
        return bool(body["has_more"])

    async def catch_up(self) -> None:
        while await self.page():
            pass


async def _live(client: httpx.AsyncClient, key: str) -> dict[tuple[str, str], dict[str, Any]]:
    rows = (await client.get("/v1/inventory/levels?limit=1000", headers=auth(key))).json()
    return {(r["warehouse"], r["sku"]): r for r in rows}


def _figures(
    levels: dict[tuple[str, str], dict[str, Any]],
) -> dict[tuple[str, str], tuple[int, ...]]:
    return {
        k: (v["on_hand"], v["reserved"], v["safety_stock"], v["available"])
        for k, v in levels.items()
    }


async def test_a_consumer_resumes_from_its_cursor_and_ends_with_the_right_figures(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    key = keys["fulfillment"]
    await stock(sessionmaker, "BER", {"MUG-01": 10, "TSHIRT-RED-M": 10})
    await stock(sessionmaker, "HAM", {"MUG-01": 3})
    consumer = Consumer(client, key)
    await _settled(engine)
    await consumer.catch_up()  # from the start: every level, once
    assert _figures(consumer.levels) == _figures(await _live(client, key))
    seen = consumer.cursor
    before = dict(consumer.levels)

    # events missed: an order, a cancellation, a receipt, a safety stock change
    order = await client.post("/v1/orders", json=order_body(), headers=auth(keys["storefront"]))
    assert order.status_code == 201, order.text
    second = await client.post("/v1/orders", json=order_body(), headers=auth(keys["storefront"]))
    cancel = await client.post(
        f"/v1/orders/{second.json()['id']}/transitions",
        json={"to": "cancelled"},
        headers=auth(keys["admin"]),
    )
    assert cancel.status_code == 200, cancel.text
    admin = auth(keys["admin"])
    await client.post(
        "/v1/inventory/adjustments",
        json={"warehouse": "HAM", "sku": "MUG-01", "type": "receive", "quantity": 2},
        headers=admin,
    )
    await client.patch("/v1/inventory/levels/HAM/MUG-01", json={"safety_stock": 2}, headers=admin)

    await _settled(engine)
    await consumer.catch_up()
    assert _figures(consumer.levels) == _figures(await _live(client, key))
    # only what changed after the cursor is listed
    resp = await client.get(f"/v1/inventory/changes?cursor={seen}", headers=auth(key))
    changed = {(r["warehouse"], r["sku"]) for r in resp.json()["levels"]}
    assert ("HAM", "MUG-01") in changed and len(changed) <= 3
    # the journal compacted (the worker does, every 5 minutes): a new consumer from the start
    # and the old cursor still end with the right figures
    async with sessionmaker() as session, session.begin():
        assert await feed.compact(session) > 0
    fresh = Consumer(client, key)
    await fresh.catch_up()
    assert _figures(fresh.levels) == _figures(await _live(client, key))
    late = Consumer(client, key)
    late.cursor, late.levels = seen, dict(before)
    await late.catch_up()
    assert _figures(late.levels) == _figures(await _live(client, key))
    # read to the end: the same cursor again, nothing new
    again = await client.get(f"/v1/inventory/changes?cursor={consumer.cursor}", headers=auth(key))
    assert again.json() == {"levels": [], "cursor": consumer.cursor, "has_more": False}


async def test_a_change_committed_late_is_not_skipped(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    """Transaction A journals a change (smaller id) and commits after B (larger id): a reader
    between B's and A's commits must not move its cursor past A's row."""
    key = keys["fulfillment"]
    await stock(sessionmaker, "BER", {"A": 1, "B": 1})
    consumer = Consumer(client, key)
    await _settled(engine)
    await consumer.catch_up()
    async with sessionmaker() as slow:
        await slow.begin()
        await inventory.adjust_stock(
            slow, warehouse_code="BER", sku="A", kind="receive", quantity=5, actor="test"
        )
        async with sessionmaker() as fast, fast.begin():
            await inventory.adjust_stock(
                fast, warehouse_code="BER", sku="B", kind="receive", quantity=7, actor="test"
            )
        # B is committed, A (older, with the smaller journal id) is not: B is not listed yet
        await consumer.catch_up()
        assert consumer.levels[("BER", "B")]["on_hand"] == 1
        await slow.commit()
    async with sessionmaker() as s:
        ids = dict(
            (await s.execute(text("SELECT sku, max(id) FROM stock_changes GROUP BY sku"))).all()
        )
    assert ids["A"] < ids["B"]  # A's row has the smaller id, and committed last
    await _settled(engine)
    await consumer.catch_up()
    assert consumer.levels[("BER", "A")]["on_hand"] == 6
    assert consumer.levels[("BER", "B")]["on_hand"] == 8


async def test_a_consumer_paging_during_concurrent_placements_ends_right(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    """Many orders placed at once through the API while two consumers page the feed (one per
    warehouse figures, one per channel); one of them stops halfway (missed events) and
    resumes from its cursor. Once the placements are done, both catch up and hold exactly the
    live figures."""
    key = keys["fulfillment"]
    for wh in ("BER", "HAM", "MUC"):
        await stock(sessionmaker, wh, dict.fromkeys(SKUS, 12))
    resp = await client.put(
        "/v1/routing-policies/web",
        json={"warehouse_codes": ["BER", "HAM"]},
        headers=auth(keys["admin"]),
    )
    assert resp.status_code in (200, 201), resp.text
    levels = Consumer(client, key)
    web = Consumer(client, keys["storefront_web"])  # bound to channel web
    await levels.page()
    rng = random.Random(18)
    placed = {"done": False}

    async def place(i: int) -> int:
        lines = [
            {"sku": sku, "quantity": rng.randint(1, 3), "unit_price": 500, "tax_rate_bps": 1900}
            for sku in rng.sample(SKUS, rng.randint(1, 3))
        ]
        resp = await client.post(
            "/v1/orders",
            json=order_body(lines=lines),
            headers={**auth(keys["storefront"]), "Idempotency-Key": f"feed-{i}"},
        )
        assert resp.status_code in (201, 409), resp.text
        return resp.status_code

    async def page_while_placing() -> None:
        while not placed["done"]:
            await levels.page(limit=5)
            if web.pages < 3:  # the channel consumer goes away after three pages
                await web.page(limit=5)
            await asyncio.sleep(0)

    async def placements() -> list[int]:
        try:
            return list(await asyncio.gather(*(place(i) for i in range(60))))
        finally:
            placed["done"] = True

    codes, _ = await asyncio.gather(placements(), page_while_placing())
    assert codes.count(201) > 20
    await _settled(engine)
    await levels.catch_up()
    await web.catch_up()  # resumes from its last cursor
    live = await _live(client, key)
    assert _figures(levels.levels) == _figures(live)
    expected_web = {
        sku: sum(v["available"] for (wh, s), v in live.items() if s == sku and wh in ("BER", "HAM"))
        for sku in SKUS
    }
    assert web.channel_available == expected_web
    await assert_stock_invariants(engine)


async def test_bad_cursors_and_other_channels_are_refused(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    for cursor in ("x", "1.2.3", "-1.2", "99999999999999999999.1", "1."):
        resp = await client.get(
            "/v1/inventory/changes", params={"cursor": cursor}, headers=auth(keys["fulfillment"])
        )
        assert resp.status_code == 422, resp.text
        assert resp.json()["code"] == "invalid_cursor"
    resp = await client.get(
        "/v1/inventory/changes?channel=pos", headers=auth(keys["storefront_web"])
    )
    assert resp.status_code == 403
    assert resp.json()["code"] == "channel_not_allowed"


@pytest.mark.parametrize("limit", [0, 5001])
async def test_limit_is_bounded(
    client: httpx.AsyncClient, keys: dict[str, str], limit: int
) -> None:
    resp = await client.get(
        f"/v1/inventory/changes?limit={limit}", headers=auth(keys["fulfillment"])
    )
    assert resp.status_code == 422
