"""Bad input gets a clear 4xx problem and stores nothing."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from oms.orders.models import Order
from tests.helpers import auth, order_body


async def _orders(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(Order))).scalar_one())


def _line(**changes: Any) -> dict[str, Any]:
    return {"sku": "A-1", "quantity": 1, "unit_price": 100} | changes


BAD_BODIES = {
    "unknown currency": order_body(currency="XXY"),
    "lowercase nonsense currency": order_body(currency="eu"),
    "unknown country": order_body(
        shipping_address=order_body()["shipping_address"] | {"country": "ZZ"}
    ),
    "zero quantity": order_body(lines=[_line(quantity=0)]),
    "negative quantity": order_body(lines=[_line(quantity=-3)]),
    "negative price": order_body(lines=[_line(unit_price=-1)]),
    "float price": order_body(lines=[_line(unit_price=19.99)]),
    "enormous price": order_body(lines=[_line(unit_price=10**15)]),
    "no lines": order_body(lines=[]),
    "too many lines": order_body(lines=[_line(sku=f"S{i}") for i in range(251)]),
    "no customer": order_body(customer={}),
    "bad email": order_body(customer={"email": "not-an-email"}),
    "unknown field": order_body(colour="red"),
    "bad payment method": order_body(payment_method="beads"),
    "sql-looking sku": order_body(lines=[_line(sku="A'; DROP TABLE orders;--")]),
    "half coordinates": order_body(
        shipping_address=order_body()["shipping_address"] | {"latitude": 52.5}
    ),
    "tax above 100%": order_body(lines=[_line(tax_rate_bps=10_001)]),
}


@pytest.mark.parametrize("name", list(BAD_BODIES))
async def test_invalid_order_is_422_and_stores_nothing(
    name: str, client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    resp = await client.post("/v1/orders", json=BAD_BODIES[name], headers=auth(keys["storefront"]))
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    problem = resp.json()
    assert problem["code"] == "validation_error"
    assert problem["errors"]
    assert all(e["field"] for e in problem["errors"])
    assert await _orders(engine) == 0


async def test_validation_lists_the_offending_fields(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    body = order_body(currency="XXY", lines=[_line(quantity=0)])
    problem = (await client.post("/v1/orders", json=body, headers=auth(keys["storefront"]))).json()
    fields = {e["field"] for e in problem["errors"]}
    assert {"body.currency", "body.lines.0.quantity"} <= fields


async def test_malformed_json_is_400(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    resp = await client.post(
        "/v1/orders",
        content=b'{"channel": "web", ',
        headers=auth(keys["storefront"]) | {"content-type": "application/json"},
    )
    assert resp.status_code == 400
    assert resp.json()["code"] == "malformed_json"
    assert await _orders(engine) == 0


async def test_huge_body_is_413(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    body = order_body(notes="x" * 300_000)
    resp = await client.post("/v1/orders", json=body, headers=auth(keys["storefront"]))
    assert resp.status_code == 413
    assert resp.json()["code"] == "body_too_large"
    assert await _orders(engine) == 0


async def test_huge_chunked_body_is_413(client: httpx.AsyncClient, keys: dict[str, str]) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(100):
            yield b"x" * 10_000

    resp = await client.post(
        "/v1/orders",
        content=chunks(),
        headers=auth(keys["storefront"]) | {"content-type": "application/json"},
    )
    assert resp.status_code == 413


async def test_wrong_content_type_is_415(client: httpx.AsyncClient, keys: dict[str, str]) -> None:
    resp = await client.post(
        "/v1/orders",
        content=b"channel=web",
        headers=auth(keys["storefront"]) | {"content-type": "text/plain"},
    )
    assert resp.status_code == 415
    assert resp.json()["code"] == "unsupported_media_type"


async def test_unknown_route_and_method_are_problems(client: httpx.AsyncClient) -> None:
    missing = await client.get("/v1/nothing-here")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"
    wrong = await client.delete("/v1/order-state-machine")
    assert wrong.status_code == 405
    assert wrong.json()["code"] == "method_not_allowed"


async def test_bad_transition_target_is_422(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    order = (
        await client.post("/v1/orders", json=order_body(), headers=auth(keys["storefront"]))
    ).json()
    resp = await client.post(
        f"/v1/orders/{order['id']}/transitions",
        json={"to": "teleported"},
        headers=auth(keys["admin"]),
    )
    assert resp.status_code == 422
    bad_id = await client.get("/v1/orders/not-a-uuid", headers=auth(keys["admin"]))
    assert bad_id.status_code == 422
