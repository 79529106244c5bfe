"""Back-testing a routing policy (POST /v1/routing/simulations) through the real ASGI app
against real Postgres: past orders replayed against the stock of their time."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.helpers import auth, order_body, stock

BERLIN = {"latitude": 52.52, "longitude": 13.405}
MUNICH = {"latitude": 48.137, "longitude": 11.576}


def _to_berlin(quantity: int) -> dict[str, Any]:
    return order_body(
        shipping_address={
            "name": "Ada",
            "lines": ["Street 1"],
            "city": "Berlin",
            "country": "DE",
            **BERLIN,
        },
        lines=[{"sku": "SIM-A", "quantity": quantity, "unit_price": 500, "tax_rate_bps": 0}],
    )


async def _now() -> datetime:
    await asyncio.sleep(0.01)  # stamps on either side of a boundary differ
    moment = datetime.now(UTC)
    await asyncio.sleep(0.01)
    return moment


async def test_replay_uses_the_stock_of_the_time_and_names_changed_orders(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    admin = auth(keys["admin"])
    await stock(sessionmaker, "BRL", {"SIM-A": 1}, **BERLIN)
    await stock(sessionmaker, "MNC", {"SIM-A": 2}, **MUNICH)
    start = await _now()
    first = await client.post("/v1/orders", json=_to_berlin(1), headers=admin)
    assert first.status_code == 201, first.text
    await stock(sessionmaker, "BRL", {"SIM-A": 2})  # a receipt inside the window
    second = await client.post("/v1/orders", json=_to_berlin(2), headers=admin)
    assert second.status_code == 201, second.text
    end = await _now()
    await stock(sessionmaker, "MNC", {"SIM-A": 100})  # after the window: must not count
    cancel = await client.post(
        f"/v1/orders/{first.json()['id']}/transitions", json={"to": "cancelled"}, headers=admin
    )
    assert cancel.status_code == 200  # today's state does not change the past

    body = {
        "channel": "web",
        "from": start.isoformat(),
        "to": end.isoformat(),
        "proposed": {"warehouse_codes": ["MNC"]},
    }
    resp = await client.post("/v1/routing/simulations", json=body, headers=admin)
    assert resp.status_code == 200, resp.text
    sim = resp.json()
    assert sim["window"]["orders"] == 2 and not sim["window"]["truncated"]
    now, new = sim["current"]["figures"], sim["proposed"]["figures"]
    # as it happened: both from Berlin, the second thanks to the receipt in the window
    assert now["fill_rate"] == 1.0 and now["load"] == {"BRL": {"parcels": 2, "units": 3}}
    assert now["parcels_by_band"] == {"0": 2}
    # Munich only: 2 units there when the window opened, the later 100 do not count
    assert new["units_placed"] == 2 and new["fill_rate"] == round(2 / 3, 4)
    assert new["load"] == {"MNC": {"parcels": 2, "units": 2}}
    assert new["parcels_by_band"] == {"1": 2}
    assert sim["proposed"]["policy"]["warehouse_codes"] == ["MNC"]
    assert sim["current"]["policy"]["warehouse_codes"] is None
    assert sim["changed_orders"] == 2
    change = sim["changes"][0]
    assert change["order_id"] == first.json()["id"]
    assert change["current"]["warehouses"] == ["BRL"]
    assert change["proposed"]["warehouses"] == ["MNC"]
    assert change["current"]["explanation"]["chosen_cost"]["band_sum"] == 0
    assert change["proposed"]["explanation"]["candidates"]


async def test_replay_with_waves_and_a_shipment_cap(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    admin = auth(keys["admin"])
    await stock(sessionmaker, "BRL", {"SIM-A": 3}, **BERLIN)
    start = await _now()
    for _ in range(3):
        resp = await client.post("/v1/orders", json=_to_berlin(1), headers=admin)
        assert resp.status_code == 201, resp.text
    end = await _now()
    body = {
        "channel": "web",
        "from": start.isoformat(),
        "to": end.isoformat(),
        "proposed": {"waves": True, "wave_size": 2, "max_shipments": 1},
    }
    resp = await client.post("/v1/routing/simulations", json=body, headers=admin)
    assert resp.status_code == 200, resp.text
    sim = resp.json()
    assert sim["proposed"]["figures"]["waves"] == 2  # a full wave of 2, then the last one
    assert sim["current"]["figures"]["waves"] == 0
    assert sim["proposed"]["policy"] == {
        "warehouse_codes": None,
        "max_shipments": 1,
        "allow_line_split": True,
        "waves": True,
        "wave_size": 2,
    }
    assert sim["changed_orders"] == 0  # one warehouse: nothing to re-assign


async def test_bad_simulation_requests_are_4xx(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    admin = auth(keys["admin"])
    window = {"from": "2026-01-02T00:00:00Z", "to": "2026-01-01T00:00:00Z"}
    resp = await client.post(
        "/v1/routing/simulations", json={"channel": "web", **window, "proposed": {}}, headers=admin
    )
    assert resp.status_code == 422 and resp.json()["code"] == "invalid_window"
    window = {"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"}
    resp = await client.post(
        "/v1/routing/simulations",
        json={"channel": "web", **window, "proposed": {"warehouse_codes": ["NOPE"]}},
        headers=admin,
    )
    assert resp.status_code == 422 and resp.json()["code"] == "warehouse_not_found"
    resp = await client.post(
        "/v1/routing/simulations",
        json={"channel": "web", "from": "2026-01-01T00:00:00", "to": "x", "proposed": {}},
        headers=admin,
    )
    assert resp.status_code == 422
    resp = await client.post(
        "/v1/routing/simulations",
        json={"channel": "web", **window, "proposed": {}},
        headers=auth(keys["storefront"]),
    )
    assert resp.status_code == 403
