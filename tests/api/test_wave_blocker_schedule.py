"""The wave blocker's `next_by_schedule` is when the worker's schedule runs the next wave: the
interval counted from the channel's last wave or, when none ran since waves were (re-)enabled,
from `enabled_at` (the rule of `oms.flows.waves.due_waves`). It said null before the first wave
and, after a re-enable, a time counted from a wave older than the policy's `enabled_at`."""

from __future__ import annotations

from datetime import datetime, timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.helpers import auth, order_body, stock

BERLIN = {"latitude": 52.52, "longitude": 13.405}


def _body(**changes: object) -> dict[str, object]:
    return order_body(
        shipping_address={
            "name": "Ada",
            "lines": ["Street 1"],
            "city": "Berlin",
            "country": "DE",
            **BERLIN,
        },
        lines=[{"sku": "WAVE-S1", "quantity": 1, "unit_price": 850, "tax_rate_bps": 700}],
        **changes,
    )


async def _next_by_schedule(
    client: httpx.AsyncClient, admin: dict[str, str], oid: str
) -> datetime | None:
    resp = await client.get(f"/v1/orders/{oid}/blockers", headers=admin)
    assert resp.status_code == 200, resp.text
    (wave,) = [b for b in resp.json()["blockers"] if b["kind"] == "wave"]
    value = wave["data"]["next_by_schedule"]
    return None if value is None else datetime.fromisoformat(value)


async def _enable(client: httpx.AsyncClient, admin: dict[str, str], enabled: bool) -> datetime:
    resp = await client.put(
        "/v1/wave-policies/web", json={"enabled": enabled, "interval_s": 600}, headers=admin
    )
    assert resp.status_code == 200, resp.text
    return datetime.fromisoformat(resp.json()["enabled_at"])


async def test_next_by_schedule_counts_from_enabled_at_until_a_wave_runs_after_it(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    admin = auth(keys["admin"])
    await stock(sessionmaker, "BRL", {"WAVE-S1": 10}, **BERLIN)
    enabled_at = await _enable(client, admin, True)
    first = (await client.post("/v1/orders", json=_body(), headers=admin)).json()["id"]
    # no wave yet: the schedule counts from enabled_at
    assert await _next_by_schedule(client, admin, first) == enabled_at + timedelta(seconds=600)

    run = await client.post("/v1/waves", json={"channel": "web"}, headers=admin)
    assert run.status_code == 201, run.text
    last = datetime.fromisoformat(run.json()["started_at"])
    second = (await client.post("/v1/orders", json=_body(), headers=admin)).json()["id"]
    assert await _next_by_schedule(client, admin, second) == last + timedelta(seconds=600)

    # disabled (releasing everyone) and enabled again: the old wave no longer counts
    await _enable(client, admin, False)
    enabled_again = await _enable(client, admin, True)
    assert enabled_again > last
    third = (await client.post("/v1/orders", json=_body(), headers=admin)).json()["id"]
    assert await _next_by_schedule(client, admin, third) == enabled_again + timedelta(seconds=600)
