"""Bad input gets a clear 4xx problem and stores nothing."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from oms.orders.models import Order
from oms.shared.jsonlimits import MAX_BYTES, MAX_DEPTH
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


# ---- free-form JSON (`attributes`): bounded depth and size ----------------------------------


def _nested(depth: int, *, leaf: Any = "leaf") -> dict[str, Any]:
    """A JSON object nested ``depth`` levels deep, itself counted as the first level."""
    value: Any = leaf
    for i in range(depth):
        value = {"k": value, "level": depth - i}
    return dict(value)


def _compact_size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())


async def _stored(engine: AsyncEngine) -> dict[str, int]:
    """What an order placement writes: orders, reservations, events, idempotency keys."""
    sql = {
        "orders": "SELECT count(*) FROM orders",
        "reserved": "SELECT coalesce(sum(reserved), 0) FROM stock_levels",
        "allocations": "SELECT count(*) FROM allocations",
        "outbox_events": "SELECT count(*) FROM outbox_events",
        "idempotency_keys": "SELECT count(*) FROM idempotency_keys",
        "inbox_orders": "SELECT count(*) FROM webhook_inbox WHERE order_id IS NOT NULL",
    }
    async with engine.connect() as conn:
        return {name: int((await conn.execute(text(q))).scalar_one()) for name, q in sql.items()}


def _limit_error(resp: httpx.Response, error_type: str) -> dict[str, Any]:
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = resp.json()
    assert problem["code"] == "validation_error"
    assert [(e["field"], e["type"]) for e in problem["errors"]] == [("body.attributes", error_type)]
    return problem


@pytest.mark.parametrize("idempotency_key", [None, "deep-1"])
async def test_attributes_nested_256_deep_are_422_and_store_nothing(
    idempotency_key: str | None,
    client: httpx.AsyncClient,
    keys: dict[str, str],
    engine: AsyncEngine,
) -> None:
    """Such an order used to be committed with its reservation and then answer 500 on every
    read (pydantic-core gives up serializing past ~255 levels): it is refused up front."""
    before = await _stored(engine)
    headers = auth(keys["storefront"])
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    body = order_body(attributes=_nested(256))
    resp = await client.post("/v1/orders", json=body, headers=headers)
    problem = _limit_error(resp, "json_too_deep")
    assert f"at most {MAX_DEPTH} levels" in problem["detail"]
    assert await _stored(engine) == before
    listed = await client.get("/v1/orders", headers=auth(keys["admin"]))
    assert listed.status_code == 200, listed.text
    assert listed.json()["items"] == []


async def test_attributes_one_level_too_deep_or_too_large_are_422(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    before = await _stored(engine)
    headers = auth(keys["storefront"])
    deep = order_body(attributes=_nested(MAX_DEPTH + 1))
    _limit_error(await client.post("/v1/orders", json=deep, headers=headers), "json_too_deep")
    deep_list: Any = 1
    for _ in range(MAX_DEPTH):
        deep_list = [deep_list]
    lists = order_body(attributes={"k": deep_list})  # 1 + MAX_DEPTH levels
    _limit_error(await client.post("/v1/orders", json=lists, headers=headers), "json_too_deep")
    large = order_body(attributes={"blob": "x" * MAX_BYTES})
    problem = _limit_error(
        await client.post("/v1/orders", json=large, headers=headers), "json_too_large"
    )
    assert str(MAX_BYTES) in problem["detail"]
    non_json = json.dumps(order_body(attributes={"k": "@NAN@"})).replace('"@NAN@"', "NaN")
    resp = await client.post(
        "/v1/orders",
        content=non_json.encode(),
        headers=headers | {"content-type": "application/json"},
    )
    assert resp.status_code in (400, 422), resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    assert await _stored(engine) == before


@pytest.mark.parametrize(
    "attributes",
    [
        pytest.param(_nested(8), id="8 levels"),
        pytest.param(_nested(MAX_DEPTH), id="the depth limit"),
        pytest.param({f"key-{i:02d}": "ü" * 180 for i in range(40)}, id="large"),
    ],
)
async def test_acceptable_attributes_round_trip_and_the_order_stays_usable(
    attributes: dict[str, Any], client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    assert _compact_size(attributes) <= MAX_BYTES
    resp = await client.post(
        "/v1/orders", json=order_body(attributes=attributes), headers=auth(keys["storefront"])
    )
    assert resp.status_code == 201, resp.text
    assert resp.json()["attributes"] == attributes
    order_id = resp.json()["id"]
    got = await client.get(f"/v1/orders/{order_id}", headers=auth(keys["admin"]))
    assert got.status_code == 200, got.text
    assert got.json()["attributes"] == attributes
    listed = await client.get("/v1/orders", headers=auth(keys["admin"]))
    assert listed.status_code == 200, listed.text
    assert [o["attributes"] for o in listed.json()["items"]] == [attributes]
    cancelled = await client.post(
        f"/v1/orders/{order_id}/transitions", json={"to": "cancelled"}, headers=auth(keys["admin"])
    )
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["attributes"] == attributes


def test_the_large_case_is_near_the_size_limit() -> None:
    large = {f"key-{i:02d}": "ü" * 180 for i in range(40)}
    assert MAX_BYTES - 2048 < _compact_size(large) <= MAX_BYTES


async def test_inbound_webhook_orders_with_deep_attributes_fail_cleanly(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    """The canonical format (which inherits the orders' limits) and a platform whose mapped
    attributes turn out too deep: a 4xx problem, the delivery kept as failed, no order."""
    from tests.webhooks.conftest import (
        canonical,
        load_fixture,
        make_connector,
        oms_headers,
        order_data,
        shopify_headers,
    )

    admin = auth(keys["admin"])
    before = await _stored(engine)
    secret = await make_connector(client, admin, name="psp", fmt="oms")
    url = "/v1/webhooks/inbound/{}"
    cases = [
        # past the attributes limit: refused by the order's validation
        (canonical("order.created", **order_data(attributes=_nested(MAX_DEPTH + 1))), 422),
        # past the JSON parser's own recursion limit (200): refused as malformed
        (canonical("order.created", **order_data("SHOP-2", attributes=_nested(256))), 400),
    ]
    for body, status in cases:
        resp = await client.post(url.format("psp"), content=body, headers=oms_headers(secret, body))
        assert resp.status_code == status, resp.text
        assert resp.headers["content-type"] == "application/problem+json"
    await make_connector(
        client, admin, name="shop", fmt="shopify", channel="shop", secret="shpss_deep"
    )
    order = json.loads(load_fixture("shopify_orders_create.json"))
    order["financial_status"] = _nested(256)  # copied into the order's attributes
    body = json.dumps(order).encode()
    resp = await client.post(
        url.format("shop"), content=body, headers=shopify_headers("shpss_deep", body)
    )
    assert resp.status_code == 422, resp.text
    assert resp.json()["code"] == "invalid_payload"
    assert "json_too_deep" in {e["type"] for e in resp.json()["errors"]}
    inbox = await client.get("/v1/webhooks/inbox", params={"status": "failed"}, headers=admin)
    assert len(inbox.json()["items"]) == 3
    assert await _stored(engine) == before
