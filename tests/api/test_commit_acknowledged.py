"""POST /v1/orders commits with its reservation (one message: the order's work, then COMMIT).
Should the connection be lost right after, when only the empty transaction that follows is
left to end, the order is committed: the client is told 201, never asked to retry (a retry
without an Idempotency-Key would place it twice)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.helpers import auth, order_body


class ConnectionCut:
    """Cuts the connection (as a network failure would) at the next COMMIT SQLAlchemy sends
    once armed: a listener on the engine's public ``commit`` event."""

    def __init__(self) -> None:
        self.armed = False
        self.cuts = 0

    def __call__(self, conn: Any) -> None:
        if self.armed:
            self.armed = False
            self.cuts += 1
            conn.connection.driver_connection.terminate()


@pytest.fixture
def cut(engine: AsyncEngine) -> Iterator[ConnectionCut]:
    listener = ConnectionCut()
    event.listen(engine.sync_engine, "commit", listener)
    try:
        yield listener
    finally:
        event.remove(engine.sync_engine, "commit", listener)


async def _orders(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(text("SELECT count(*) FROM orders")) or 0)


async def test_a_lost_connection_after_the_reservation_commit_still_answers_201(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine, cut: ConnectionCut
) -> None:
    headers = auth(keys["storefront"])
    cut.armed = True
    resp = await client.post("/v1/orders", json=order_body(), headers=headers)
    assert cut.cuts == 1
    assert resp.status_code == 201, resp.text
    assert await _orders(engine) == 1
    got = await client.get(f"/v1/orders/{resp.json()['id']}", headers=headers)
    assert got.status_code == 200
    assert got.json()["number"] == resp.json()["number"]
    for _ in range(5):  # the pool holds no broken connection
        listed = await client.get("/v1/orders?limit=1", headers=headers)
        assert listed.status_code == 200, listed.text


async def test_other_requests_whose_commit_fails_are_not_acknowledged(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine, cut: ConnectionCut
) -> None:
    placed = await client.post("/v1/orders", json=order_body(), headers=auth(keys["storefront"]))
    assert placed.status_code == 201
    cut.armed = True
    resp = await client.post(
        f"/v1/orders/{placed.json()['id']}/transitions",
        json={"to": "cancelled"},
        headers=auth(keys["admin"]),
    )
    assert cut.cuts == 1
    assert resp.status_code == 503, resp.text
    assert resp.json()["code"] == "database_unavailable"
    got = await client.get(f"/v1/orders/{placed.json()['id']}", headers=auth(keys["admin"]))
    assert got.json()["status"] == "placed"
