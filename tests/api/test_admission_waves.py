"""A request that runs a wave (POST /v1/waves) solves for up to its policy's time limit without
the database: meanwhile it holds neither an admission turn (oms.shared.admission.lent) nor a
pooled connection, so the worker's other requests are served while it solves (with the turn
held, every other request of the worker waited and answered 503 server_busy; and the request
held its key check's connection, idle in its transaction, while the wave took others: with one
connection per turn, as by default, the wave could not start)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from oms.flows import waves as waves_flow
from tests.helpers import app_client, auth, order_body, stock

BERLIN = {"latitude": 52.52, "longitude": 13.405}


@pytest.fixture(params=[1, 2], ids=["pool-1", "pool-2"])
async def gated(
    migrated: str, clean_db: AsyncEngine, request: pytest.FixtureRequest
) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(
        migrated,
        db_pool_size=request.param,
        db_pool_timeout_s=1.0,
        max_in_flight=1,
        admission_timeout_s=1.0,
    ) as client:
        yield client


async def test_other_requests_are_served_while_a_wave_solves(
    client: httpx.AsyncClient,
    gated: httpx.AsyncClient,
    keys: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    admin = auth(keys["admin"])
    await stock(sessionmaker, "BRL", {"WAVE-A1": 5}, **BERLIN)
    resp = await client.put(
        "/v1/wave-policies/web", json={"enabled": True, "interval_s": 3600}, headers=admin
    )
    assert resp.status_code == 200, resp.text
    body = order_body(
        shipping_address={
            "name": "Ada",
            "lines": ["Street 1"],
            "city": "Berlin",
            "country": "DE",
            **BERLIN,
        },
        lines=[{"sku": "WAVE-A1", "quantity": 1, "unit_price": 850, "tax_rate_bps": 700}],
    )
    placed = await client.post("/v1/orders", json=body, headers=admin)
    assert placed.status_code == 201, placed.text

    solving, solved = threading.Event(), threading.Event()
    real = waves_flow.solve_wave

    def slow_solve(*args: Any, **kwargs: Any) -> Any:  # a solve up to the time limit
        solving.set()
        solved.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(waves_flow, "solve_wave", slow_solve)
    wave = asyncio.create_task(gated.post("/v1/waves", json={"channel": "web"}, headers=admin))
    for _ in range(500):
        if solving.is_set():
            break
        await asyncio.sleep(0.01)
    assert solving.is_set(), "the wave never solved"
    try:
        listed = await gated.get("/v1/orders?limit=5", headers=admin)
        assert listed.status_code == 200, listed.text
        again = await gated.post(
            "/v1/orders", json=order_body(external_reference="during-wave"), headers=admin
        )
        assert again.status_code in (201, 422), again.text  # let in (its outcome aside)
    finally:
        solved.set()
    done = await wave
    assert done.status_code == 201, done.text
    assert [o["order_id"] for o in done.json()["orders"]] == [placed.json()["id"]]
