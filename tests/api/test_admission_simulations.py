"""A back-test (POST /v1/routing/simulations) replays in a thread for seconds to minutes: it
ends its read transaction first and lends its admission turn, so the worker's other requests
are served meanwhile and no connection sits idle in a transaction (which the server would end
after `idle_in_transaction_session_timeout`, 60 s, failing the back-test at its end)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from oms.flows import simulations as simulations_flow
from tests.helpers import app_client, auth, order_body, stock


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


async def test_other_requests_are_served_while_a_back_test_replays(
    client: httpx.AsyncClient,
    gated: httpx.AsyncClient,
    keys: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    admin = auth(keys["admin"])
    await stock(sessionmaker, "BER", {"TSHIRT-RED-M": 10, "MUG-01": 10})
    start = datetime.now(UTC) - timedelta(seconds=1)
    placed = await client.post("/v1/orders", json=order_body(), headers=admin)
    assert placed.status_code == 201, placed.text

    replaying, release = threading.Event(), threading.Event()
    real = simulations_flow.replay

    def slow_replay(*args: Any, **kwargs: Any) -> Any:
        replaying.set()
        release.wait(30)
        return real(*args, **kwargs)

    monkeypatch.setattr(simulations_flow, "replay", slow_replay)
    body = {
        "channel": "web",
        "from": start.isoformat(),
        "to": (datetime.now(UTC) + timedelta(seconds=1)).isoformat(),
        "proposed": {"max_shipments": 1},
    }
    sim = asyncio.create_task(gated.post("/v1/routing/simulations", json=body, headers=admin))
    for _ in range(500):
        if replaying.is_set():
            break
        await asyncio.sleep(0.01)
    assert replaying.is_set(), "the replay never started"
    try:
        async with engine.connect() as probe:
            idle = await probe.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND state = 'idle in transaction' AND pid <> pg_backend_pid()"
                )
            )
        assert idle == 0, "a connection sits idle in a transaction while the replay computes"
        listed = await gated.get("/v1/orders?limit=5", headers=admin)
        assert listed.status_code == 200, listed.text
    finally:
        release.set()
    done = await sim
    assert done.status_code == 200, done.text
    assert done.json()["window"]["orders"] == 1
