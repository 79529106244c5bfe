"""A SKU no warehouse has a stock level for is unknown: 422 ``unknown_sku`` naming the lines,
not "insufficient stock, available 0"; a known SKU without units is still 409
``insufficient_stock`` (or a backorder where the channel's policy allows them)."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from oms.orders.models import Order
from tests.helpers import auth, order_body


def _lines(*lines: tuple[str, int]) -> list[dict[str, Any]]:
    return [{"sku": sku, "quantity": q, "unit_price": 1000} for sku, q in lines]


async def _orders(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(Order))).scalar_one())


async def _empty_level(client: httpx.AsyncClient, admin: dict[str, str], sku: str) -> None:
    """A stock level with no units: the SKU is known, there is just nothing to sell."""
    resp = await client.post(
        "/v1/inventory/adjustments",
        json={"warehouse": "BER", "sku": sku, "type": "count", "quantity": 0},
        headers=admin,
    )
    assert resp.status_code in (200, 201), resp.text


async def test_unknown_sku_is_named_not_short(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    admin = auth(keys["admin"])
    await _empty_level(client, admin, "EMPTY-1")
    body = order_body(lines=_lines(("TSHIRT-RED-M", 1), ("GHOST-1", 2), ("EMPTY-1", 1)))
    resp = await client.post("/v1/orders", json=body, headers=auth(keys["storefront"]))
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    problem = resp.json()
    assert problem["code"] == "unknown_sku"
    assert problem["unknown_lines"] == [{"line_no": 2, "sku": "GHOST-1", "quantity": 2}]
    assert "GHOST-1" in problem["detail"]
    assert "available" not in problem["detail"]
    assert await _orders(engine) == 0
    # known but without units: insufficient stock, as before
    short = await client.post(
        "/v1/orders",
        json=order_body(lines=_lines(("EMPTY-1", 1))),
        headers=auth(keys["storefront"]),
    )
    assert short.status_code == 409, short.text
    assert short.json()["code"] == "insufficient_stock"
    assert await _orders(engine) == 0


async def test_backorder_channel_accepts_known_empty_skus_only(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    admin = auth(keys["admin"])
    await _empty_level(client, admin, "EMPTY-1")
    put = await client.put(
        "/v1/routing-policies/web", json={"allow_backorder": True}, headers=admin
    )
    assert put.status_code == 200, put.text
    placed = await client.post(
        "/v1/orders",
        json=order_body(lines=_lines(("TSHIRT-RED-M", 1), ("EMPTY-1", 2))),
        headers=auth(keys["storefront"]),
    )
    assert placed.status_code == 201, placed.text
    assert [ln["backordered"] for ln in placed.json()["lines"]] == [0, 2]
    ghost = await client.post(
        "/v1/orders",
        json=order_body(lines=_lines(("TSHIRT-RED-M", 1), ("GHOST-1", 1))),
        headers=auth(keys["storefront"]),
    )
    assert ghost.status_code == 422, ghost.text
    assert ghost.json()["code"] == "unknown_sku"
    assert await _orders(engine) == 1


async def test_preview_names_unknown_skus(client: httpx.AsyncClient, keys: dict[str, str]) -> None:
    body = {
        "channel": "web",
        "shipping_address": order_body()["shipping_address"],
        "lines": [{"sku": "MUG-01", "quantity": 1}, {"sku": "GHOST-2", "quantity": 4}],
    }
    resp = await client.post("/v1/routing/preview", json=body, headers=auth(keys["storefront"]))
    assert resp.status_code == 422, resp.text
    assert resp.json()["code"] == "unknown_sku"
    assert resp.json()["unknown_lines"] == [{"line_no": 2, "sku": "GHOST-2", "quantity": 4}]
    known = await client.post(
        "/v1/routing/preview",
        json=body | {"lines": [{"sku": "MUG-01", "quantity": 1}]},
        headers=auth(keys["storefront"]),
    )
    assert known.status_code == 200, known.text
