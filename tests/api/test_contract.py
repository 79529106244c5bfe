"""The contract a client sees: what the OpenAPI document states is what the server does.

CSV exports have operations of their own, problems carry typed extension members, the routing
explanation has its real schema, every answer the server gives is documented, rules it enforces
are in the schema, out-of-range or loosely typed input is a 4xx, 401s say how to authenticate,
and a key bound to a channel sees nothing of other channels.
"""

from __future__ import annotations

import base64
import uuid
from functools import cache
from typing import Any

import httpx
import pytest

from oms.cli import openapi_document
from tests.helpers import auth, order_body, stock

# ---- the document ---------------------------------------------------------------------------


@cache
def _doc() -> dict[str, Any]:
    return openapi_document()


def _op(method: str, path: str) -> dict[str, Any]:
    op: dict[str, Any] = _doc()["paths"][path][method]  # type: ignore[index]
    return op


def _schema(name: str) -> dict[str, Any]:
    schema: dict[str, Any] = _doc()["components"]["schemas"][name]  # type: ignore[index]
    return schema


def _resolve(schema: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in schema:
        return _schema(schema["$ref"].rsplit("/", 1)[1])
    if "anyOf" in schema:
        return _resolve(next(s for s in schema["anyOf"] if s.get("type") != "null"))
    return schema


def _param(op: dict[str, Any], name: str) -> dict[str, Any]:
    return _resolve(next(p for p in op["parameters"] if p["name"] == name)["schema"])


REPORTS = (
    "top-products",
    "top-customers",
    "top-countries",
    "top-channels",
    "daily",
    "fulfilment",
    "returns/by-product",
    "returns/by-reason",
    "late-orders",
)


@pytest.mark.parametrize("name", REPORTS)
def test_every_report_has_a_csv_operation_and_json_stays_the_default(name: str) -> None:
    csv_op = _op("get", f"/v1/reports/{name}.csv")
    assert list(csv_op["responses"]["200"]["content"]) == ["text/csv"]
    assert csv_op["responses"]["200"]["content"]["text/csv"]["schema"]["type"] == "string"
    json_op = _op("get", f"/v1/reports/{name}")
    assert list(json_op["responses"]["200"]["content"])[0] == "application/json"
    # a generated client must not be able to ask the JSON operation for CSV
    assert "format" not in {p["name"] for p in json_op["parameters"]}
    assert csv_op["operationId"] != json_op["operationId"]


def test_problems_are_typed_per_status() -> None:
    conflict = _op("post", "/v1/orders")["responses"]["409"]["content"]["application/problem+json"]
    schema = _resolve(conflict["schema"])
    props = schema["properties"]
    short = _resolve(props["short_lines"])
    assert _resolve(short["items"])["required"] == ["line_id", "sku", "requested", "available"]
    assert _resolve(props["allowed_transitions"])["type"] == "array"
    for member in ("current_status", "requested_status", "order_id", "payment_id"):
        assert member in props, member
    invalid = _op("post", "/v1/orders")["responses"]["422"]["content"]["application/problem+json"]
    errors = _resolve(_resolve(invalid["schema"])["properties"]["errors"])
    assert set(_resolve(errors["items"])["properties"]) >= {"field", "loc", "message", "type"}


def test_the_routing_explanation_has_its_schema() -> None:
    for name in ("RouteRead", "OrderRoutingRead"):
        explanation = _resolve(_schema(name)["properties"]["explanation"])
        props = explanation["properties"]
        assert {"summary", "deciding_rule", "candidates", "runner_up", "chosen_cost"} <= set(props)
        candidate = _resolve(_resolve(props["candidates"])["items"])
        assert {"warehouse_id", "code", "eligible", "reason", "distance_km"} <= set(
            candidate["properties"]
        )
        assert "enum" in _resolve(props["deciding_rule"])


def test_every_answer_is_documented() -> None:
    place = _op("post", "/v1/orders")["responses"]
    assert "404" in place, "an unknown pickup_store is 404"
    assert "Retry-After" in place["409"].get("headers", {}), "stock_contention sends Retry-After"
    assert "stock_contention" in place["409"]["description"]
    assert "200" in _op("post", "/v1/orders/{order_id}/payments")["responses"]
    assert "Bearer" in _op("get", "/v1/orders")["responses"]["401"].get("headers", {}).get(
        "WWW-Authenticate", {}
    ).get("description", "")


def test_rules_the_server_enforces_are_in_the_schema() -> None:
    assert "pattern" in _param(_op("get", "/v1/orders"), "cursor")
    assert "pattern" in _param(_op("get", "/v1/reports/daily"), "tz")
    assert "pattern" in _param(_op("get", "/v1/reports/daily"), "currency")
    order = _schema("OrderCreate")["properties"]
    assert "pattern" in _resolve(order["currency"])
    assert "pattern" in _resolve(_schema("Address")["properties"]["country"])
    assert "whsec_" in _resolve(_schema("ConnectorCreate")["properties"]["secret"])["description"]
    created_from = next(
        p for p in _op("get", "/v1/orders")["parameters"] if p["name"] == "created_from"
    )
    assert _resolve(created_from["schema"])["format"] == "date-time"
    assert "1970" in created_from["description"]
    sku = next(
        p
        for p in _op("patch", "/v1/inventory/levels/{warehouse}/{sku}")["parameters"]
        if p["name"] == "sku"
    )
    assert "/" in sku["description"]


# ---- the server -----------------------------------------------------------------------------


async def test_a_csv_report_is_served_by_its_operation(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    await client.post("/v1/orders", json=order_body(), headers=auth(keys["admin"]))
    resp = await client.get("/v1/reports/top-products.csv", headers=auth(keys["admin"]))
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "text/csv; charset=utf-8"
    assert resp.text.splitlines()[0] == "currency,rank,sku,name,units,orders,revenue"
    assert "attachment" in resp.headers["content-disposition"]
    # the JSON operation is JSON, and its ?format=csv still answers CSV (older clients)
    plain = await client.get("/v1/reports/top-products", headers=auth(keys["admin"]))
    assert plain.headers["content-type"] == "application/json"
    old = await client.get(
        "/v1/reports/top-products", params={"format": "csv"}, headers=auth(keys["admin"])
    )
    assert old.text == resp.text


async def test_401_says_how_to_authenticate(client: httpx.AsyncClient) -> None:
    for headers in ({}, auth("oms_abc_def")):
        resp = await client.get("/v1/orders", headers=headers)
        assert resp.status_code == 401
        assert resp.headers.get("www-authenticate") == "Bearer"


async def test_allow_lists_every_method_of_the_path(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    for method in ("OPTIONS", "DELETE"):
        resp = await client.request(method, "/v1/orders", headers=auth(keys["admin"]))
        assert resp.status_code == 405
        assert {m.strip() for m in resp.headers["allow"].split(",")} == {"GET", "POST"}
        assert resp.json()["code"] == "method_not_allowed"


def _cursor(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


OUT_OF_RANGE = [
    ("GET", "/v1/orders", {"cursor": _cursor(f"0001-01-01T00:00:00+14:00|{uuid.uuid4()}")}, None),
    ("GET", "/v1/orders", {"cursor": _cursor(f"0001-01-01T00:00:00|{uuid.uuid4()}")}, None),
    ("GET", "/v1/orders", {"created_from": "0001-01-01T00:00:00+14:00"}, None),
    ("GET", "/v1/orders", {"created_to": "9999-12-31T23:59:59-12:00"}, None),
    ("GET", "/v1/reports/daily", {"to": "0001-01-02T00:00:00Z"}, None),
    ("GET", "/v1/reports/daily", {"to": "9999-12-31T23:59:59-12:00"}, None),
    ("GET", "/v1/reports/daily", {"from": "0001-01-01T00:00:00", "tz": "Asia/Tokyo"}, None),
    ("GET", "/v1/webhooks/inbox", {"received_from": "0001-01-01T00:00:00+14:00"}, None),
]


@pytest.mark.parametrize(("method", "path", "params", "body"), OUT_OF_RANGE)
async def test_out_of_range_datetimes_are_4xx(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    method: str,
    path: str,
    params: dict[str, str],
    body: Any,
) -> None:
    resp = await client.request(method, path, params=params, json=body, headers=auth(keys["admin"]))
    assert resp.status_code in (400, 422), resp.text
    assert resp.headers["content-type"] == "application/problem+json"


async def _subscription(client: httpx.AsyncClient, admin: dict[str, str]) -> str:
    resp = await client.post(
        "/v1/webhooks/subscriptions",
        json={"url": "https://93.184.216.34/hook", "event_types": ["*"]},
        headers=admin,
    )
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


async def test_redelivery_since_far_in_the_past_is_4xx(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    admin = auth(keys["admin"])
    sub = await _subscription(client, admin)
    for since in ("0001-01-01T00:00:00Z", "0001-01-01T00:00:00+14:00"):
        resp = await client.post(
            f"/v1/webhooks/subscriptions/{sub}/redeliver", json={"since": since}, headers=admin
        )
        assert resp.status_code == 422, resp.text


def _fields(resp: httpx.Response) -> set[str]:
    return {e["field"] for e in resp.json().get("errors", [])}


async def test_no_loose_coercion_of_bools_and_times(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    admin = auth(keys["admin"])
    sub = await _subscription(client, admin)
    cases = [
        ("PATCH", f"/v1/webhooks/subscriptions/{sub}", {"enabled": 0}, "body.enabled"),
        ("PATCH", "/v1/warehouses/BER", {"active": 1}, "body.active"),
        ("PUT", "/v1/routing-policies/web", {"allow_backorder": "true"}, "body.allow_backorder"),
        (
            "POST",
            f"/v1/webhooks/subscriptions/{sub}/redeliver",
            {"since": 1700000000},
            "body.since",
        ),
        (
            "POST",
            f"/v1/webhooks/subscriptions/{sub}/redeliver",
            {"since": "2025-01-01T00:00:00"},  # no offset: which zone?
            "body.since",
        ),
        (
            "POST",
            "/v1/inventory/incoming",
            {"warehouse": "BER", "sku": "MUG-01", "quantity": 1, "expected_on": 0},
            "body.expected_on",
        ),
    ]
    for method, path, body, field in cases:
        resp = await client.request(method, path, json=body, headers=admin)
        assert resp.status_code == 422, (path, body, resp.text)
        assert field in _fields(resp), resp.text
    for params in ({"created_from": "1700000000"}, {"created_to": "2025-01-01T00:00:00"}):
        resp = await client.get("/v1/orders", params=params, headers=admin)
        assert resp.status_code == 422, (params, resp.text)


async def test_a_sku_with_a_slash_is_reachable(
    client: httpx.AsyncClient, keys: dict[str, str], sessionmaker: Any
) -> None:
    await stock(sessionmaker, "BER", {"BOX/12": 5})
    resp = await client.patch(
        "/v1/inventory/levels/BER/BOX%2F12", json={"safety_stock": 2}, headers=auth(keys["admin"])
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["sku"] == "BOX/12" and resp.json()["safety_stock"] == 2
    plain = await client.patch(
        "/v1/inventory/levels/BER/BOX/12", json={"safety_stock": 3}, headers=auth(keys["admin"])
    )
    assert plain.status_code == 200 and plain.json()["safety_stock"] == 3


async def test_undocumented_answers_are_now_documented(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    resp = await client.post(
        "/v1/orders", json=order_body(pickup_store="NOPE"), headers=auth(keys["admin"])
    )
    assert resp.status_code == 404 and resp.json()["code"] == "warehouse_not_found"


# ---- isolation ------------------------------------------------------------------------------


async def test_a_bound_key_sees_nothing_of_other_channels(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    other = order_body(channel="app")
    placed = await client.post("/v1/orders", json=other, headers=auth(keys["admin"]))
    assert placed.status_code == 201
    bound = auth(keys["storefront_web"])
    # the ledger names other channels' orders, shipments and API keys: not for storefronts
    for role in ("storefront_web", "storefront"):
        resp = await client.get("/v1/inventory/movements", headers=auth(keys[role]))
        assert resp.status_code == 403, resp.text
    for role in ("fulfillment", "admin"):
        resp = await client.get("/v1/inventory/movements", headers=auth(keys[role]))
        assert resp.status_code == 200
    # previewing another channel's routing (its policy) is not for a key bound to 'web'
    preview = {
        "channel": "app",
        "shipping_address": other["shipping_address"],
        "lines": [{"sku": "MUG-01", "quantity": 1}],
    }
    resp = await client.post("/v1/routing/preview", json=preview, headers=bound)
    assert resp.status_code == 403 and resp.json()["code"] == "channel_not_allowed"
    mine = await client.post(
        "/v1/routing/preview", json=preview | {"channel": "web"}, headers=bound
    )
    assert mine.status_code == 200
    # and none of the order reads leak it
    oid = placed.json()["id"]
    for path in (
        f"/v1/orders/{oid}",
        f"/v1/orders/{oid}/history",
        f"/v1/orders/{oid}/routing",
        f"/v1/orders/{oid}/payments",
        f"/v1/orders/{oid}/returns",
    ):
        assert (await client.get(path, headers=bound)).status_code == 404, path
    listed = await client.get("/v1/orders", headers=bound)
    assert oid not in {o["id"] for o in listed.json()["items"]}
    listed = await client.get("/v1/customers/cus_1/orders", headers=bound)
    assert oid not in {o["id"] for o in listed.json()["items"]}
