"""POST /v1/orders when the stock moves between the routing snapshot and the reservation.

The HTTP route takes no savepoint: the reservation fails, the whole transaction is rolled back
and a new one begun, the Idempotency-Key claimed again and the order routed again. Here the
stock is taken away at the last moment (between the order's write and its reservation) by
another connection, which is what a concurrent order does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from oms.inventory import service as inventory_service
from oms.orders import service as orders_service
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


async def _count_away(
    sessionmaker: async_sessionmaker[AsyncSession], warehouse: str, sku: str
) -> None:
    """Another transaction counts the available units of ``sku`` in ``warehouse`` away (on hand
    = reserved), as a concurrent order would take them."""
    async with sessionmaker() as other, other.begin():
        (level,) = await inventory_service.list_levels(
            other, warehouse_code=warehouse, sku=sku, limit=1, offset=0
        )
        await inventory_service.adjust_stock(
            other, warehouse_code=warehouse, sku=sku, kind="count",
            quantity=level.reserved, actor="test",
        )  # fmt: skip


def _take_stock_once(
    monkeypatch: pytest.MonkeyPatch,
    sessionmaker: async_sessionmaker[AsyncSession],
    warehouse: str,
    sku: str,
) -> list[int]:
    """Just before the first reservation, another transaction counts the available units of
    ``sku`` in ``warehouse`` away (on hand = reserved), as a concurrent order would take them."""
    real = inventory_service.reserve_and_commit
    calls: list[int] = []

    async def racing(
        session: AsyncSession, *, reservations: Sequence[inventory_service.Reservation]
    ) -> bool:
        calls.append(len(reservations))
        if len(calls) == 1:
            await _count_away(sessionmaker, warehouse, sku)
        return await real(session, reservations=reservations)

    monkeypatch.setattr(inventory_service, "reserve_and_commit", racing)
    return calls


async def test_stock_moved_routes_again_in_a_new_transaction(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await _stock_race(sessionmaker, "HAM", "MUC")
    calls = _take_stock_once(monkeypatch, sessionmaker, "HAM", "RACE")
    body = _race_order(2)
    headers = auth(keys["storefront"]) | {"Idempotency-Key": "race-1"}
    resp = await client.post("/v1/orders", json=body, headers=headers)
    assert resp.status_code == 201, resp.text
    assert len(calls) == 2  # HAM first (nearest), then MUC after the restart
    order = resp.json()
    assert order["routed_to"] == ["MUC"]
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


async def test_stock_moved_then_a_concurrent_duplicate_won_replays_it(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    await _stock_race(sessionmaker, "HAM", "MUC")
    body = _race_order(1)
    headers = auth(keys["storefront"])
    first = await client.post("/v1/orders", json=body, headers=headers | {"Idempotency-Key": "w"})
    assert first.status_code == 201
    _take_stock_once(monkeypatch, sessionmaker, "HAM", "RACE")
    real_claim = orders_service.claim_idempotency_key
    claims: list[str] = []

    async def claim(session: AsyncSession, **kw: Any) -> orders_service.StoredResponse | None:
        claims.append(kw["key"])
        if len(claims) == 2:  # the claim after the restart: a duplicate completed meanwhile
            async with engine.begin() as conn:
                await conn.execute(
                    text(
                        "INSERT INTO idempotency_keys (scope, key, request_hash, "
                        "response_status, response_body, order_id) "
                        "SELECT scope, :key, :hash, response_status, response_body, order_id "
                        "FROM idempotency_keys WHERE key = 'w'"
                    ),
                    {"key": kw["key"], "hash": kw["fingerprint"]},
                )
        return await real_claim(session, **kw)

    monkeypatch.setattr(orders_service, "claim_idempotency_key", claim)
    resp = await client.post("/v1/orders", json=body, headers=headers | {"Idempotency-Key": "l"})
    assert resp.status_code == 201, resp.text
    assert resp.headers["Idempotent-Replayed"] == "true"
    assert resp.json() == first.json()
    assert claims == ["l", "l"]
    async with engine.connect() as conn:
        orders = (await conn.execute(text("SELECT count(*) FROM orders"))).scalar_one()
    assert orders == 1
    await assert_stock_invariants(engine)


async def test_commit_with_the_reservation_falls_back_when_driver_internals_differ(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The reservation's COMMIT marks asyncpg's private transaction state as committed. Should a
    release no longer have that state, ``BEGIN`` rides along instead and the session commits an
    empty transaction: the order is placed and committed just the same."""
    import oms.db

    monkeypatch.setattr(oms.db, "_STARTED", None)
    sent: list[str] = []
    real_execute = oms.db.DriverConnection.execute

    async def execute(self: oms.db.DriverConnection, sql: str, *args: Any) -> str:
        sent.append(sql)
        return await real_execute(self, sql, *args)

    monkeypatch.setattr(oms.db.DriverConnection, "execute", execute)
    await _stock_race(sessionmaker, "HAM")
    body = _race_order(2)
    resp = await client.post("/v1/orders", json=body, headers=auth(keys["storefront"]))
    assert resp.status_code == 201, resp.text
    got = await client.get(f"/v1/orders/{resp.json()['id']}", headers=auth(keys["admin"]))
    assert got.status_code == 200
    assert got.json()["routed_to"] == ["HAM"]
    assert any(sql.endswith("COMMIT;\nBEGIN") for sql in sent)  # the fallback was taken
    async with engine.connect() as conn:
        reserved = (
            await conn.execute(text("SELECT reserved FROM stock_levels WHERE sku = 'RACE'"))
        ).scalar_one()
    assert reserved == 2
    await assert_stock_invariants(engine)


async def test_stock_moving_on_every_attempt_is_a_409_stock_contention_that_stores_nothing(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Three warehouses; before each reservation another transaction takes the chosen
    warehouse's units: after three attempts the answer is 409 ``stock_contention`` with
    Retry-After, nothing is stored, and the same key then works once the stock is back."""
    await _stock_race(sessionmaker, "HAM", "BER", "MUC")
    real = inventory_service.reserve_and_commit
    taken: list[str] = []

    async def racing(
        session: AsyncSession, *, reservations: Sequence[inventory_service.Reservation]
    ) -> bool:
        async with engine.connect() as conn:
            code = (
                await conn.execute(
                    text("SELECT code FROM warehouses WHERE id = :id"),
                    {"id": reservations[0].warehouse_id},
                )
            ).scalar_one()
        await _count_away(sessionmaker, code, "RACE")
        taken.append(code)
        return await real(session, reservations=reservations)

    monkeypatch.setattr(inventory_service, "reserve_and_commit", racing)
    body = _race_order(1)
    headers = auth(keys["storefront"]) | {"Idempotency-Key": "always-moving"}
    resp = await client.post("/v1/orders", json=body, headers=headers)
    assert resp.status_code == 409, resp.text
    assert resp.json()["code"] == "stock_contention"
    assert resp.headers["retry-after"] == "1"
    assert taken == ["HAM", "BER", "MUC"]  # nearest first, one warehouse per attempt
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
    monkeypatch.setattr(inventory_service, "reserve_and_commit", real)
    await stock(sessionmaker, "BER", {"RACE": 3})
    again = await client.post("/v1/orders", json=body, headers=headers)
    assert again.status_code == 201, again.text
    assert again.json()["routed_to"] == ["BER"]
