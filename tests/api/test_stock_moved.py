"""POST /v1/orders when the stock moves between the routing snapshot and the reservation.

The HTTP route takes no savepoint: the reservation fails, the whole transaction is rolled back,
the Idempotency-Key claimed again and the order routed again. Here the race is real: another
transaction holds the chosen stock row locked while the order is routed; once the order's
reservation waits for that lock, the other transaction counts the units away and commits, which
is what a concurrent order does.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from oms.inventory import service as inventory_service
from tests.helpers import assert_stock_invariants, auth, order_body, stock

HAMBURG = {
    "name": "Ada Lovelace",
    "lines": ["Jungfernstieg 1"],
    "city": "Hamburg",
    "postal_code": "20354",
    "country": "DE",
}
WAREHOUSES = {"HAM": (53.55, 9.99), "BER": (52.52, 13.40), "MUC": (48.14, 11.58)}


def _race_order(quantity: int) -> dict[str, Any]:
    """An order of `quantity` RACE units to Hamburg (nearest: HAM, then BER, then MUC)."""
    return order_body(
        lines=[{"sku": "RACE", "quantity": quantity, "unit_price": 500}],
        shipping_address=HAMBURG,
    )


async def _stock_race(sessionmaker: async_sessionmaker[AsyncSession], *codes: str) -> None:
    """5 RACE units in each of the named warehouses."""
    for code in codes:
        lat, lon = WAREHOUSES[code]
        await stock(sessionmaker, code, {"RACE": 5}, latitude=lat, longitude=lon)


class Holder:
    """Another transaction holding one warehouse's RACE row locked."""

    def __init__(self, session: AsyncSession, warehouse: str, pid: int) -> None:
        self.session, self.warehouse, self.pid = session, warehouse, pid

    async def wait_until_blocking(
        self, engine: AsyncEngine, request: asyncio.Task[httpx.Response], within_s: float = 30.0
    ) -> None:
        """Until some other backend (the order's reservation) waits for this lock. Generous: the
        first order of a test process loads the offline geo tables, slow on a busy machine."""
        deadline = time.monotonic() + within_s
        async with engine.connect() as conn:
            while time.monotonic() < deadline:
                if request.done():
                    resp = request.result()
                    raise AssertionError(
                        f"the order did not wait for {self.warehouse}: "
                        f"{resp.status_code} {resp.text[:300]}"
                    )
                waiting = await conn.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity "
                        "WHERE CAST(:pid AS int) = ANY(pg_blocking_pids(pid))"
                    ),
                    {"pid": self.pid},
                )
                if waiting:
                    return
                await asyncio.sleep(0.01)
            rows = (
                await conn.execute(
                    text(
                        "SELECT pid, wait_event, pg_blocking_pids(pid)::text, left(query, 60) "
                        "FROM pg_stat_activity WHERE datname = current_database()"
                    )
                )
            ).all()
        raise AssertionError(f"nothing waited for {self.warehouse} (pid {self.pid}): {rows}")

    async def count_away_and_commit(self) -> None:
        """On hand = reserved, through the ledger (a stock count), then commit."""
        (level,) = await inventory_service.list_levels(
            self.session, warehouse_code=self.warehouse, sku="RACE", limit=1, offset=0
        )
        await inventory_service.adjust_stock(
            self.session, warehouse_code=self.warehouse, sku="RACE", kind="count",
            quantity=level.reserved, actor="test",
        )  # fmt: skip
        await self.session.commit()


@asynccontextmanager
async def holding(
    sessionmaker: async_sessionmaker[AsyncSession], warehouse: str
) -> AsyncIterator[Holder]:
    async with sessionmaker() as session:
        pid = await session.scalar(text("SELECT pg_backend_pid()"))
        await session.execute(
            text(
                "SELECT 1 FROM stock_levels s JOIN warehouses w ON w.id = s.warehouse_id "
                "WHERE w.code = :code AND s.sku = 'RACE' FOR UPDATE OF s"
            ),
            {"code": warehouse},
        )
        yield Holder(session, warehouse, int(pid or 0))


async def test_stock_moved_routes_again_in_a_new_transaction(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await _stock_race(sessionmaker, "HAM", "MUC")
    body = _race_order(2)
    headers = auth(keys["storefront"]) | {"Idempotency-Key": "race-1"}
    async with holding(sessionmaker, "HAM") as ham:
        placing = asyncio.create_task(client.post("/v1/orders", json=body, headers=headers))
        await ham.wait_until_blocking(engine, placing)
        await ham.count_away_and_commit()
        resp = await placing
    assert resp.status_code == 201, resp.text
    order = resp.json()
    assert order["routed_to"] == ["MUC"]  # HAM first (nearest), then MUC after the restart
    again = await client.post("/v1/orders", json=body, headers=headers)
    assert again.status_code == 201
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == order
    async with engine.connect() as conn:
        orders = (await conn.execute(text("SELECT count(*) FROM orders"))).scalar_one()
        allocations = (
            await conn.execute(text("SELECT count(*), sum(quantity) FROM allocations"))
        ).one()
        keys_stored = (
            await conn.execute(text("SELECT count(*) FROM idempotency_keys WHERE key = 'race-1'"))
        ).scalar_one()
    assert orders == 1
    assert tuple(allocations) == (1, 2)
    assert keys_stored == 1
    await assert_stock_invariants(engine)


async def test_stock_moved_while_a_duplicate_waits_places_one_order(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """The first request's stock moves while a retry with the same key waits for its claim:
    whichever claims the key after the restart places the order, the other replays it."""
    await _stock_race(sessionmaker, "HAM", "MUC")
    body = _race_order(1)
    headers = auth(keys["storefront"]) | {"Idempotency-Key": "dup"}
    async with holding(sessionmaker, "HAM") as ham:
        first = asyncio.create_task(client.post("/v1/orders", json=body, headers=headers))
        await ham.wait_until_blocking(engine, first)
        second = asyncio.create_task(client.post("/v1/orders", json=body, headers=headers))
        await asyncio.sleep(0.2)  # the retry waits for the first one's claim of the key
        await ham.count_away_and_commit()
        responses = [await first, await second]
    assert [r.status_code for r in responses] == [201, 201], [r.text for r in responses]
    assert responses[0].json() == responses[1].json()
    assert responses[0].json()["routed_to"] == ["MUC"]
    replayed = [r.headers.get("Idempotent-Replayed") for r in responses]
    assert replayed.count("true") == 1
    async with engine.connect() as conn:
        orders = (await conn.execute(text("SELECT count(*) FROM orders"))).scalar_one()
    assert orders == 1
    await assert_stock_invariants(engine)


async def test_stock_moving_on_every_attempt_is_a_409_stock_contention_that_stores_nothing(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """Three warehouses; each time the order's reservation waits for the chosen warehouse's
    row, another transaction counts its units away: after three attempts the answer is 409
    ``stock_contention`` with Retry-After, nothing is stored, and the same key then works once
    the stock is back."""
    await _stock_race(sessionmaker, "HAM", "BER", "MUC")
    body = _race_order(1)
    headers = auth(keys["storefront"]) | {"Idempotency-Key": "always-moving"}
    async with (
        holding(sessionmaker, "HAM") as ham,
        holding(sessionmaker, "BER") as ber,
        holding(sessionmaker, "MUC") as muc,
    ):
        placing = asyncio.create_task(client.post("/v1/orders", json=body, headers=headers))
        for holder in (ham, ber, muc):  # nearest first, one warehouse per attempt
            await holder.wait_until_blocking(engine, placing)
            await holder.count_away_and_commit()
        resp = await placing
    assert resp.status_code == 409, resp.text
    assert resp.json()["code"] == "stock_contention"
    assert resp.headers["retry-after"] == "1"
    async with engine.connect() as conn:
        counts = (
            await conn.execute(
                text(
                    "SELECT (SELECT count(*) FROM orders), (SELECT count(*) FROM allocations), "
                    "(SELECT count(*) FROM idempotency_keys WHERE response_status IS NOT NULL)"
                )
            )
        ).one()
    assert tuple(counts) == (0, 0, 0)
    await assert_stock_invariants(engine)
    await stock(sessionmaker, "BER", {"RACE": 3})
    again = await client.post("/v1/orders", json=body, headers=headers)
    assert again.status_code == 201, again.text
    assert again.json()["routed_to"] == ["BER"]
