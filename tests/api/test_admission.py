"""The admission gate in the real app: with every turn taken by a request stuck on the database
(here: waiting for an order lock the test holds), a newcomer waits its turn, then answers 503
`server_busy` (problem+json, Retry-After) having done nothing; probes still answer; the stuck
request completes once the lock goes, and the next one is let in."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests.helpers import app_client, auth, order_body, stock, until_waiting_for_a_lock


@pytest.fixture
async def gated(migrated: str, clean_db: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(
        migrated, db_pool_size=2, max_in_flight=1, admission_timeout_s=0.5
    ) as client:
        yield client


async def _admission_metrics(client: httpx.AsyncClient) -> dict[str, float]:
    """The admission gate's series from /metrics (never held by the gate)."""
    text_ = (await client.get("/metrics")).text
    out = {}
    for line in text_.splitlines():
        if line.startswith("oms_http_admission_") and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            if "{" not in name:
                out[name] = float(value)
    return out


async def test_a_request_waiting_past_its_turn_gets_server_busy_and_changes_nothing(
    client: httpx.AsyncClient,
    gated: httpx.AsyncClient,
    keys: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    await stock(sessionmaker, "BER", {"TSHIRT-RED-M": 10, "MUG-01": 10})
    resp = await client.post("/v1/orders", json=order_body(), headers=auth(keys["storefront"]))
    assert resp.status_code == 201, resp.text
    order_id = resp.json()["id"]
    admin = auth(keys["admin"])

    async with engine.connect() as holder:
        await holder.execute(
            text("SELECT 1 FROM orders WHERE id = :id FOR UPDATE"), {"id": order_id}
        )
        stuck = asyncio.create_task(
            gated.post(f"/v1/orders/{order_id}/transitions", json={"to": "paid"}, headers=admin)
        )
        # the transition is in the app, waiting for the order lock
        await until_waiting_for_a_lock(engine)  # the transition waits for the order lock
        before = await _admission_metrics(gated)
        late = await gated.post(
            "/v1/orders", json=order_body(external_reference="late-1"), headers=admin
        )
        assert late.status_code == 503, late.text
        assert late.headers["content-type"] == "application/problem+json"
        assert late.headers["retry-after"].isdigit()
        assert late.json()["code"] == "server_busy"
        assert (await gated.get("/healthz")).status_code == 200
        after = await _admission_metrics(gated)  # counted, for operators tuning the limit
        assert after["oms_http_admission_rejected_total"] == (
            before["oms_http_admission_rejected_total"] + 1
        )
        assert after["oms_http_admission_wait_seconds_count"] == (
            before["oms_http_admission_wait_seconds_count"] + 1
        )
        assert after["oms_http_admission_waiting"] == 0
        await holder.rollback()  # the lock goes
    done = await stuck
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "paid"
    # the late placement did nothing; the next request is let in at once
    found = await gated.get("/v1/orders?limit=10", headers=admin)
    assert found.status_code == 200
    assert [o["id"] for o in found.json()["items"]] == [order_id]
