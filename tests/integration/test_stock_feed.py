"""The stock feed's events: ``inventory.availability_changed`` per SKU and channel (the channel's
warehouses, after safety stock), coalesced to one per interval with the latest figure (the
worker, with an injected clock), and ``inventory.out_of_stock`` / ``inventory.back_in_stock``
on the transitions."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from oms.config import Settings
from oms.inventory import feed
from oms.inventory.horizon import HORIZON
from oms.outbox.models import OutboxEvent
from oms.worker import Relay
from tests.helpers import auth, order_body, stock

INTERVAL = timedelta(seconds=60)


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


async def _events(engine: AsyncEngine, seen: set[str]) -> list[tuple[str, dict[str, Any]]]:
    """The stock feed's events recorded since the last call (type, data), in order."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(OutboxEvent.event_id, OutboxEvent.type, OutboxEvent.payload)
                .where(
                    OutboxEvent.type.like("inventory.%"), OutboxEvent.type != "inventory.low_stock"
                )
                .order_by(OutboxEvent.id)
            )
        ).all()
    out = []
    for event_id, type_, payload in rows:
        if str(event_id) not in seen:
            seen.add(str(event_id))
            out.append((type_, payload["data"]))
    return out


def _summary(
    events: list[tuple[str, dict[str, Any]]],
) -> set[tuple[str, str, str, int, int | None]]:
    return {(t, d["channel"], d["sku"], d["available"], d["previous"]) for t, d in events}


async def _place(client: httpx.AsyncClient, keys: dict[str, str], sku: str, qty: int) -> str:
    body = order_body(
        lines=[{"sku": sku, "quantity": qty, "unit_price": 500, "tax_rate_bps": 1900}]
    )
    resp = await client.post("/v1/orders", json=body, headers=auth(keys["storefront"]))
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


async def test_availability_events_are_coalesced_per_channel_and_interval(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    admin = auth(keys["admin"])
    await stock(sessionmaker, "BER", {"MUG-01": 10})
    await stock(sessionmaker, "HAM", {"MUG-01": 5})
    await stock(sessionmaker, "STORE", {"MUG-01": 50}, is_pickup_store=True)
    for channel, body in (("web", {}), ("pos", {"warehouse_codes": ["HAM"]})):
        resp = await client.put(f"/v1/routing-policies/{channel}", json=body, headers=admin)
        assert resp.status_code in (200, 201), resp.text
    resp = await client.patch(
        "/v1/inventory/levels/BER/MUG-01", json={"safety_stock": 1}, headers=admin
    )
    assert resp.status_code == 200, resp.text
    seen: set[str] = set()
    t0 = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)

    async def round_at(seconds: float) -> feed.FeedRound:
        await _settled(engine)
        return await feed.publish_availability(
            sessionmaker, now=t0 + timedelta(seconds=seconds), interval=INTERVAL
        )

    # first figures: web sells BER (after its safety stock) and HAM, not the pickup store
    await round_at(0)
    assert _summary(await _events(engine, seen)) == {
        ("inventory.availability_changed", "web", "MUG-01", 14, None),
        ("inventory.availability_changed", "pos", "MUG-01", 5, None),
    }
    # three orders within the interval: no event until it has passed, then one per channel
    # with the latest figure
    for i, qty in enumerate((2, 3, 1), start=1):
        await _place(client, keys, "MUG-01", qty)
        await round_at(10 * i)
        assert await _events(engine, seen) == []
    await round_at(59)
    assert await _events(engine, seen) == []
    await round_at(60)
    live = (await client.get("/v1/inventory/availability?sku=MUG-01", headers=admin)).json()[0]
    by_wh = {w["warehouse"]: w["available"] for w in live["warehouses"]}
    assert _summary(await _events(engine, seen)) == {
        ("inventory.availability_changed", "web", "MUG-01", by_wh["BER"] + by_wh["HAM"], 14),
        *(
            [("inventory.availability_changed", "pos", "MUG-01", by_wh["HAM"], 5)]
            if by_wh["HAM"] != 5
            else []
        ),
    }
    assert by_wh["BER"] + by_wh["HAM"] == 8
    # nothing changed: no event, however late
    await round_at(500)
    assert await _events(engine, seen) == []

    # sold out on web: availability_changed and out_of_stock, once
    for wh in ("BER", "HAM"):
        level = (
            await client.get(f"/v1/inventory/levels?warehouse={wh}&sku=MUG-01", headers=admin)
        ).json()[0]
        if level["available"]:
            await _place_from(client, keys, wh, level["available"])
    await round_at(600)
    web = [e for e in await _events(engine, seen) if e[1]["channel"] == "web"]
    assert _summary(web) == {
        ("inventory.availability_changed", "web", "MUG-01", 0, 8),
        ("inventory.out_of_stock", "web", "MUG-01", 0, 8),
    }
    # back in stock: received within the interval, sent when it has passed
    resp = await client.post(
        "/v1/inventory/adjustments",
        json={"warehouse": "HAM", "sku": "MUG-01", "type": "receive", "quantity": 4},
        headers=admin,
    )
    assert resp.status_code == 201, resp.text
    await round_at(630)
    assert await _events(engine, seen) == []
    await round_at(660)
    assert _summary([e for e in await _events(engine, seen) if e[1]["channel"] != "ops"]) == {
        ("inventory.availability_changed", "web", "MUG-01", 4, 0),
        ("inventory.back_in_stock", "web", "MUG-01", 4, 0),
        ("inventory.availability_changed", "pos", "MUG-01", 4, 0),
        ("inventory.back_in_stock", "pos", "MUG-01", 4, 0),
    }


async def _place_from(
    client: httpx.AsyncClient, keys: dict[str, str], warehouse: str, qty: int
) -> None:
    """Reserve ``qty`` units in one warehouse: an order of the admin-only channel 'ops' whose
    policy ships from that warehouse only."""
    admin = auth(keys["admin"])
    resp = await client.put(
        "/v1/routing-policies/ops", json={"warehouse_codes": [warehouse]}, headers=admin
    )
    assert resp.status_code in (200, 201), resp.text
    body = order_body(
        channel="ops",
        lines=[{"sku": "MUG-01", "quantity": qty, "unit_price": 500, "tax_rate_bps": 1900}],
    )
    resp = await client.post("/v1/orders", json=body, headers=admin)
    assert resp.status_code == 201, resp.text


async def test_the_worker_publishes_with_its_clock(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    """The worker's round runs the feed with its injected clock and the configured interval."""
    await stock(sessionmaker, "BER", {"MUG-01": 3})
    resp = await client.put("/v1/routing-policies/web", json={}, headers=auth(keys["admin"]))
    assert resp.status_code in (200, 201), resp.text
    seen: set[str] = set()
    clock = {"now": datetime(2026, 12, 5, 12, 0, tzinfo=UTC)}
    tuned = settings.model_copy(update={"stock_feed_interval_s": 30.0})
    async with httpx.AsyncClient() as http:
        relay = Relay(
            sessionmaker=sessionmaker, client=http, settings=tuned, clock=lambda: clock["now"]
        )
        await _settled(engine)
        await relay.stock_feed()
        assert _summary(await _events(engine, seen)) == {
            ("inventory.availability_changed", "web", "MUG-01", 3, None)
        }
        await _place(client, keys, "MUG-01", 3)
        clock["now"] += timedelta(seconds=10)
        await _settled(engine)
        await relay.stock_feed()
        assert await _events(engine, seen) == []
        clock["now"] += timedelta(seconds=20)
        await _settled(engine)
        await relay.stock_feed()
        assert _summary(await _events(engine, seen)) == {
            ("inventory.availability_changed", "web", "MUG-01", 0, 3),
            ("inventory.out_of_stock", "web", "MUG-01", 0, 3),
        }
        assert relay.stats.stock_feed_events == 3


def test_transition_events_follow_the_published_figure() -> None:
    def types(previous: int | None, available: int) -> list[str]:
        return [
            t
            for t, _ in feed.availability_events(
                channel="web", sku="A", previous=previous, available=available
            )
        ]

    assert types(None, 0) == ["inventory.availability_changed"]
    assert types(None, 5) == ["inventory.availability_changed"]
    assert types(5, 5) == []
    assert types(5, 0) == ["inventory.availability_changed", "inventory.out_of_stock"]
    assert types(0, 2) == ["inventory.availability_changed", "inventory.back_in_stock"]
    assert types(5, 3) == ["inventory.availability_changed"]


def test_a_channel_sells_from_the_warehouses_routing_may_use() -> None:
    ids = [uuid.uuid4() for _ in range(4)]
    warehouses = [
        feed.WarehouseInfo(ids[0], "BER", active=True, is_pickup_store=False),
        feed.WarehouseInfo(ids[1], "HAM", active=False, is_pickup_store=False),
        feed.WarehouseInfo(ids[2], "STORE", active=True, is_pickup_store=True),
        feed.WarehouseInfo(ids[3], "MUC", active=True, is_pickup_store=False),
    ]
    default = feed.channel_warehouses(warehouses, warehouse_codes=None, exclude_pickup_stores=True)
    assert default == {ids[0], ids[3]}  # not the inactive one, not the pickup store
    listed = feed.channel_warehouses(
        warehouses, warehouse_codes=["HAM", "STORE", "MUC"], exclude_pickup_stores=False
    )
    assert listed == {ids[2], ids[3]}
