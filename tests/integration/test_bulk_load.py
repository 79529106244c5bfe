"""`POST /v1/inventory/bulk` at the size of a first sync: set-based, in chunks, stock rows
locked in the fixed order for the apply only, so order placement on the same SKUs keeps
flowing; still all or nothing, with the ledger and the stock invariants intact."""

from __future__ import annotations

import asyncio
import time

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests.helpers import assert_stock_invariants, auth, order_body, stock

SKUS = [f"BULK-{n:04d}" for n in range(4000)]
BERLIN = {"latitude": 52.52, "longitude": 13.40}


def _order(sku: str) -> dict[str, object]:
    return order_body(lines=[{"sku": sku, "quantity": 1, "unit_price": 100}])


async def _scalar(engine: AsyncEngine, sql: str) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(text(sql))).scalar_one())


async def test_4000_rows_load_quickly_and_placement_keeps_flowing(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    admin = auth(keys["admin"])
    # the first and last SKUs in the lock order already have stock, and orders placed on them
    await stock(sessionmaker, "BER", {SKUS[0]: 1000, SKUS[-1]: 1000}, **BERLIN)
    for sku in (SKUS[0], SKUS[-1]):
        assert (await client.post("/v1/orders", json=_order(sku), headers=admin)).status_code == 201
    rows = [{"warehouse": "BER", "sku": s, "on_hand": 500 + i % 7} for i, s in enumerate(SKUS)]
    rows[1]["safety_stock"] = 3
    movements_before = await _scalar(engine, "SELECT count(*) FROM inventory_movements")

    start = time.monotonic()
    bulk = asyncio.create_task(
        client.post("/v1/inventory/bulk", json={"rows": rows, "reason": "stocktake"}, headers=admin)
    )
    placements: list[float] = []
    n = 0
    try:
        while not bulk.done():  # place orders on the bulk's SKUs the whole time it runs
            t0 = time.monotonic()
            resp = await client.post(
                "/v1/orders", json=_order((SKUS[0], SKUS[-1])[n % 2]), headers=admin
            )
            placements.append(time.monotonic() - t0)
            assert resp.status_code == 201, resp.text
            n += 1
            await asyncio.sleep(0.01)
    finally:
        await asyncio.wait({bulk}, timeout=60)  # never leave it holding locks for the next test
    resp = await bulk
    elapsed = time.monotonic() - start
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"rows": 4000}
    assert elapsed < 4.0, f"4,000 rows took {elapsed:.1f} s"
    assert placements and max(placements) < 1.0, placements

    assert_rows = (
        "SELECT count(*) FROM stock_levels s JOIN warehouses w ON w.id = s.warehouse_id "
        "WHERE w.code = 'BER' AND s.sku LIKE 'BULK-%' AND s.on_hand = 500 + "
        "(substr(s.sku, 6)::int % 7)"
    )
    assert await _scalar(engine, assert_rows) == 4000
    assert await _scalar(engine, "SELECT safety_stock FROM stock_levels WHERE sku = 'BULK-0001'")
    ledger = (
        "SELECT count(*) FROM inventory_movements WHERE movement_type = 'count' "
        "AND reason = 'stocktake'"
    )
    assert await _scalar(engine, ledger) == 4000
    total = await _scalar(engine, "SELECT count(*) FROM inventory_movements")
    assert total == movements_before + 4000
    await assert_stock_invariants(engine)


async def test_a_row_below_reserved_rejects_the_whole_load(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """The conflict is found while applying (the last row in the lock order, chunks after the
    first already written): nothing of the load stays."""
    admin = auth(keys["admin"])
    await stock(sessionmaker, "BER", {SKUS[-1]: 10}, **BERLIN)
    for _ in range(3):
        assert (
            await client.post("/v1/orders", json=_order(SKUS[-1]), headers=admin)
        ).status_code == 201
    rows = [{"warehouse": "BER", "sku": s, "on_hand": 7} for s in SKUS[:-1]]
    rows.insert(0, {"warehouse": "BER", "sku": SKUS[-1], "on_hand": 2})  # 3 reserved
    movements_before = await _scalar(engine, "SELECT count(*) FROM inventory_movements")
    resp = await client.post("/v1/inventory/bulk", json={"rows": rows}, headers=admin)
    assert resp.status_code == 409, resp.text
    problem = resp.json()
    assert problem["code"] == "below_reserved"
    assert problem["row"] == 1 and problem["reserved"] == 3
    assert await _scalar(engine, "SELECT count(*) FROM inventory_movements") == movements_before
    assert await _scalar(engine, "SELECT count(*) FROM stock_levels") == 1
    assert await _scalar(engine, "SELECT on_hand FROM stock_levels") == 10
    await assert_stock_invariants(engine)


async def test_a_count_below_the_threshold_records_low_stock(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    admin = auth(keys["admin"])
    await stock(sessionmaker, "BER", {"LOW-1": 100, "LOW-2": 100}, **BERLIN)
    rows = [
        {"warehouse": "BER", "sku": "LOW-1", "on_hand": 5, "low_stock_threshold": 10},
        {"warehouse": "BER", "sku": "LOW-2", "on_hand": 50, "low_stock_threshold": 10},
        {"warehouse": "BER", "sku": "NEW-1", "on_hand": 1, "low_stock_threshold": 10},
    ]
    resp = await client.post("/v1/inventory/bulk", json={"rows": rows}, headers=admin)
    assert resp.status_code == 200, resp.text
    async with engine.connect() as conn:
        events = (
            await conn.execute(
                text("SELECT payload FROM outbox_events WHERE type = 'inventory.low_stock'")
            )
        ).scalars()
        data = [e["data"] for e in events]
    # only LOW-1 crossed (100 -> 5, threshold 10); NEW-1 was never above it
    assert [(d["sku"], d["available"], d["threshold"]) for d in data] == [("LOW-1", 5, 10)]
    await assert_stock_invariants(engine)
