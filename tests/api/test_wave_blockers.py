"""An order held out of the pick queue for its channel's next wave says so: `GET
/v1/orders/{id}/blockers` names the wave (when it comes, how to run one now) and
`GET /v1/orders?blocked_by=wave` lists exactly the waiting orders; both clear once a wave
releases them."""

from __future__ import annotations

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
        lines=[{"sku": "WAVE-B1", "quantity": 1, "unit_price": 850, "tax_rate_bps": 700}],
        **changes,
    )


async def _kinds(client: httpx.AsyncClient, admin: dict[str, str], oid: str) -> list[str]:
    resp = await client.get(f"/v1/orders/{oid}/blockers", headers=admin)
    assert resp.status_code == 200, resp.text
    return [b["kind"] for b in resp.json()["blockers"]]


async def _listed(client: httpx.AsyncClient, admin: dict[str, str]) -> set[str]:
    resp = await client.get("/v1/orders?blocked_by=wave", headers=admin)
    assert resp.status_code == 200, resp.text
    return {o["id"] for o in resp.json()["items"]}


async def test_a_waiting_order_names_its_wave_until_one_releases_it(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    admin = auth(keys["admin"])
    await stock(sessionmaker, "BRL", {"WAVE-B1": 5}, **BERLIN)
    before = await client.post("/v1/orders", json=_body(), headers=admin)  # placed before waves
    resp = await client.put(
        "/v1/wave-policies/web",
        json={"enabled": True, "interval_s": 600, "max_pool": 50, "cutoffs": ["14:00"]},
        headers=admin,
    )
    assert resp.status_code == 200, resp.text
    waiting = (await client.post("/v1/orders", json=_body(), headers=admin)).json()["id"]
    express = (
        await client.post("/v1/orders", json=_body(priority="express"), headers=admin)
    ).json()["id"]

    resp = await client.get(f"/v1/orders/{waiting}/blockers", headers=admin)
    wave = [b for b in resp.json()["blockers"] if b["kind"] == "wave"]
    assert len(wave) == 1, resp.json()
    assert wave[0]["data"]["channel"] == "web"
    assert wave[0]["data"]["max_pool"] == 50 and wave[0]["data"]["cutoffs"] == ["14:00"]
    assert "every 600 s" in wave[0]["clears_when"] and "POST /v1/waves" in wave[0]["clears_when"]
    assert "wave" not in await _kinds(client, admin, express)  # express skips waves
    assert "wave" not in await _kinds(client, admin, before.json()["id"])  # placed before
    assert await _listed(client, admin) == {waiting}

    run = await client.post("/v1/waves", json={"channel": "web"}, headers=admin)
    assert run.status_code in (200, 201), run.text
    assert "wave" not in await _kinds(client, admin, waiting)
    assert await _listed(client, admin) == set()


async def test_blocked_by_wave_is_checked_like_the_other_kinds(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    resp = await client.get("/v1/orders?blocked_by=waves", headers=auth(keys["admin"]))
    assert resp.status_code == 422
    assert resp.headers["content-type"] == "application/problem+json"
