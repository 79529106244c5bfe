"""``GET /v1/inventory/levels?as_of=T``: on hand and reserved at a past instant, rebuilt from the
ledger and the allocations, equal the live levels read at that instant."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.helpers import auth, order_body, stock


async def _place(client: httpx.AsyncClient, keys: dict[str, str], qty: int) -> str:
    body = order_body(
        lines=[
            {"sku": "MUG-01", "quantity": qty, "unit_price": 850, "tax_rate_bps": 700},
            {"sku": "TSHIRT-RED-M", "quantity": 1, "unit_price": 1999, "tax_rate_bps": 1900},
        ]
    )
    resp = await client.post("/v1/orders", json=body, headers=auth(keys["storefront"]))
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


async def _move(
    client: httpx.AsyncClient, keys: dict[str, str], order_id: str, *steps: Any
) -> None:
    for step in steps:
        resp = await client.post(
            f"/v1/orders/{order_id}/transitions", json=step, headers=auth(keys["admin"])
        )
        assert resp.status_code == 200, resp.text


SHIP = (
    {"to": "paid"},
    {"to": "picked"},
    {"to": "packed"},
    {"to": "shipped", "carrier": "DHL", "tracking_number": "JJD1"},
)


async def _levels(client: httpx.AsyncClient, keys: dict[str, str], **params: Any) -> list[Any]:
    resp = await client.get("/v1/inventory/levels", params=params, headers=auth(keys["admin"]))
    assert resp.status_code == 200, resp.text
    return list(resp.json())


async def _instant() -> datetime:
    """A moment no change is stamped at (the clock moves on before and after it)."""
    await asyncio.sleep(0.01)
    at = datetime.now(UTC)
    await asyncio.sleep(0.01)
    return at


async def test_levels_as_of_a_moment_equal_the_live_levels_then(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    before_anything = await _instant()
    await stock(sessionmaker, "BER", {"MUG-01": 20, "TSHIRT-RED-M": 5})
    await stock(sessionmaker, "HAM", {"MUG-01": 4})
    shipped = await _place(client, keys, 3)
    cancelled = await _place(client, keys, 2)
    open_order = await _place(client, keys, 1)
    await _move(client, keys, shipped, *SHIP)
    await _move(client, keys, cancelled, {"to": "cancelled"})

    moments = []
    for round_ in range(2):
        at = await _instant()
        moments.append((at, await _levels(client, keys)))
        # more changes after T: an order, a cancellation, a shipment, a receipt, a count
        later = await _place(client, keys, 2)
        await _move(client, keys, open_order if round_ == 0 else later, {"to": "cancelled"})
        shipped_later = await _place(client, keys, 1)
        await _move(client, keys, shipped_later, *SHIP)
        resp = await client.post(
            "/v1/inventory/adjustments",
            json={"warehouse": "HAM", "sku": "MUG-01", "type": "count", "quantity": 9 + round_},
            headers=auth(keys["admin"]),
        )
        assert resp.status_code == 201, resp.text

    live_now = await _levels(client, keys)
    for at, live in moments:
        rebuilt = await _levels(client, keys, as_of=at.isoformat())
        assert rebuilt == live
        assert rebuilt != live_now
    # one warehouse, one SKU
    at, live = moments[0]
    one = await _levels(client, keys, as_of=at.isoformat(), warehouse="BER", sku="MUG-01")
    assert one == [r for r in live if (r["warehouse"], r["sku"]) == ("BER", "MUG-01")]
    # before anything: nothing on hand, nothing reserved
    empty = await _levels(client, keys, as_of=before_anything.isoformat())
    assert {(r["on_hand"], r["reserved"]) for r in empty} == {(0, 0)}
    # now (or later): the live levels
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    assert await _levels(client, keys, as_of=future) == live_now


async def test_as_of_needs_a_time_zone(client: httpx.AsyncClient, keys: dict[str, str]) -> None:
    for bad in ("2026-12-05T10:00:00", "yesterday"):
        resp = await client.get(
            "/v1/inventory/levels", params={"as_of": bad}, headers=auth(keys["admin"])
        )
        assert resp.status_code == 422, resp.text
