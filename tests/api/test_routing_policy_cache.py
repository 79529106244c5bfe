"""The per-process cache of channel routing policies (oms.routing.service): a change applies to
the next placement in the same process at once, even when another placement's read of the
policy was in flight while the change committed (that read saw the row as it was; cached, it
would route every order of the channel under the old policy for the cache's 5 s)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms.routing import service as routing_service
from oms.routing.domain import RouteLine
from tests.helpers import auth, order_body, stock

BERLIN = {
    "name": "Ada",
    "lines": ["Unter den Linden 1"],
    "city": "Berlin",
    "postal_code": "10117",
    "country": "DE",
}


async def test_a_policy_read_in_flight_as_a_change_commits_is_not_cached(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    admin = auth(keys["admin"])
    await stock(sessionmaker, "BER", {"PC-1": 10}, latitude=52.52, longitude=13.405)
    await stock(sessionmaker, "MUC", {"PC-1": 10}, latitude=48.14, longitude=11.58)
    body = order_body(
        shipping_address=BERLIN,
        lines=[{"sku": "PC-1", "quantity": 1, "unit_price": 1000, "tax_rate_bps": 1900}],
    )

    # a placement's read of the policy: its statement ran (no policy yet), its answer is
    # still on its way back when the change below commits
    answered, go_on = asyncio.Event(), asyncio.Event()
    real = routing_service.driver_connection

    class _Slow:
        def __init__(self, conn: Any) -> None:
            self.conn = conn

        async def fetchrow(self, *args: Any) -> Any:
            row = await self.conn.fetchrow(*args)
            answered.set()
            await go_on.wait()
            return row

    async def slow_connection(session: AsyncSession) -> Any:
        return _Slow(await real(session))

    async def in_flight_read() -> None:
        async with sessionmaker() as session, session.begin():
            await routing_service.plan(
                session,
                lines=[RouteLine(line_id="1", sku="PC-1", quantity=1)],
                address=routing_service.Address(
                    country="DE", postal_code="10117", city="Berlin", latitude=None, longitude=None
                ),
                channel="web",
            )

    monkeypatch.setattr(routing_service, "driver_connection", slow_connection)
    reader = asyncio.create_task(in_flight_read())
    await asyncio.wait_for(answered.wait(), 10)
    monkeypatch.setattr(routing_service, "driver_connection", real)

    resp = await client.put(
        "/v1/routing-policies/web", json={"warehouse_codes": ["MUC"]}, headers=admin
    )
    assert resp.status_code == 200, resp.text
    go_on.set()
    await reader

    placed = await client.post("/v1/orders", json=body, headers=admin)
    assert placed.status_code == 201, placed.text
    assert [s["warehouse"] for s in placed.json()["shipments"]] == ["MUC"], placed.json()
