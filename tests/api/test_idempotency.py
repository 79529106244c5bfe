"""Idempotency-Key on order creation, sequential and concurrent."""

from __future__ import annotations

import asyncio

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from oms.orders.models import Order
from oms.outbox.models import OutboxEvent
from tests.helpers import auth, order_body


async def _count(engine: AsyncEngine, model: type) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(model))).scalar_one())


async def test_same_key_same_body_replays_first_response(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    headers = auth(keys["storefront"]) | {"Idempotency-Key": "k-1"}
    first = await client.post("/v1/orders", json=order_body(), headers=headers)
    # same content, different key order and whitespace
    second = await client.post(
        "/v1/orders",
        content=httpx.Request("POST", "/", json=dict(reversed(order_body().items()))).content,
        headers=headers | {"content-type": "application/json"},
    )
    assert first.status_code == second.status_code == 201
    assert second.headers["idempotent-replayed"] == "true"
    assert second.json() == first.json()
    assert await _count(engine, Order) == 1
    assert await _count(engine, OutboxEvent) == 1


async def test_same_key_different_body_is_rejected(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    headers = auth(keys["storefront"]) | {"Idempotency-Key": "k-2"}
    await client.post("/v1/orders", json=order_body(), headers=headers)
    resp = await client.post("/v1/orders", json=order_body(shipping_fee=1), headers=headers)
    assert resp.status_code == 422
    assert resp.json()["code"] == "idempotency_key_reused"
    assert await _count(engine, Order) == 1


async def test_keys_are_scoped_per_api_key(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    for token in (keys["storefront"], keys["admin"]):
        resp = await client.post(
            "/v1/orders", json=order_body(), headers=auth(token) | {"Idempotency-Key": "shared"}
        )
        assert resp.status_code == 201
    assert await _count(engine, Order) == 2


async def test_concurrent_requests_with_one_key_create_one_order(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    headers = auth(keys["storefront"]) | {"Idempotency-Key": "race"}
    responses = await asyncio.gather(
        *[client.post("/v1/orders", json=order_body(), headers=headers) for _ in range(25)]
    )
    assert [r.status_code for r in responses] == [201] * 25
    assert len({r.json()["id"] for r in responses}) == 1
    assert sum(r.headers.get("idempotent-replayed") == "true" for r in responses) == 24
    assert await _count(engine, Order) == 1


async def test_concurrent_requests_with_one_external_reference_create_one_order(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    body = order_body(external_reference="MKT-42")
    responses = await asyncio.gather(
        *[client.post("/v1/orders", json=body, headers=auth(keys["storefront"])) for _ in range(25)]
    )
    codes = sorted(r.status_code for r in responses)
    assert codes == [201] + [409] * 24
    winner = next(r for r in responses if r.status_code == 201).json()["id"]
    assert {r.json()["order_id"] for r in responses if r.status_code == 409} == {winner}
    assert await _count(engine, Order) == 1


async def test_failed_request_does_not_burn_the_key(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    headers = auth(keys["storefront"]) | {"Idempotency-Key": "retry-me"}
    taken = await client.post(
        "/v1/orders", json=order_body(external_reference="X"), headers=auth(keys["storefront"])
    )
    assert taken.status_code == 201
    failed = await client.post(
        "/v1/orders", json=order_body(external_reference="X"), headers=headers
    )
    assert failed.status_code == 409
    ok = await client.post("/v1/orders", json=order_body(external_reference="Y"), headers=headers)
    assert ok.status_code == 201
