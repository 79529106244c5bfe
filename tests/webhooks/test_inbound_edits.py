"""Connector updates applied as order edits: Shopify ``orders/updated`` and WooCommerce
``order.updated`` (unpaid) carry an order's lines and address as they are now; where they differ
the order is edited; where they touch picked units the inbox row fails with the reason."""

from __future__ import annotations

import json
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.helpers import assert_stock_invariants
from tests.webhooks.conftest import (
    fixture_json,
    load_fixture,
    make_connector,
    shopify_headers,
    woo_headers,
)

URL = "/v1/webhooks/inbound/shop"


async def _order(client: httpx.AsyncClient, admin: dict[str, str], order_id: str) -> dict[str, Any]:
    resp = await client.get(f"/v1/orders/{order_id}", headers=admin)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


async def _updated(client: httpx.AsyncClient, payload: dict[str, Any]) -> httpx.Response:
    body = json.dumps(payload).encode()
    headers = shopify_headers("shpss_e1", body, topic="orders/updated")
    return await client.post(URL, content=body, headers=headers)


async def test_shopify_orders_updated_is_an_edit(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    await make_connector(client, admin, name="shop", fmt="shopify", secret="shpss_e1")
    body = load_fixture("shopify_orders_create.json")
    created = await client.post(URL, content=body, headers=shopify_headers("shpss_e1", body))
    assert created.status_code == 200, created.text
    order_id = created.json()["order_id"]
    # the same order, unchanged: nothing to do
    same = await _updated(client, fixture_json("shopify_orders_create.json"))
    assert same.status_code == 200, same.text
    assert same.json()["detail"] == "no change to the lines or the shipping address"
    assert (await _order(client, admin, order_id))["version"] == 1
    # one more unit of the second line, and a new city
    payload = fixture_json("shopify_orders_create.json")
    payload["line_items"][1]["quantity"] = 2
    payload["shipping_address"]["city"] = "Louisville"
    resp = await _updated(client, payload)
    assert resp.status_code == 200, resp.text
    assert resp.json()["type"] == "order.updated"
    assert resp.json()["detail"] == "order edited (1 line(s) changed, shipping address changed)"
    order = await _order(client, admin, order_id)
    assert [ln["quantity"] for ln in order["lines"]] == [1, 2]
    assert order["shipping_address"]["city"] == "Louisville"
    assert order["version"] == 2
    history = (await client.get(f"/v1/orders/{order_id}/history", headers=admin)).json()
    assert history[-1]["kind"] == "edited"
    await assert_stock_invariants(engine)


async def test_shopify_update_of_picked_units_fails_with_the_reason(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    await make_connector(client, admin, name="shop", fmt="shopify", secret="shpss_e1")
    body = load_fixture("shopify_orders_create.json")
    created = await client.post(URL, content=body, headers=shopify_headers("shpss_e1", body))
    order_id = created.json()["order_id"]
    paid = await client.post(
        URL, content=body, headers=shopify_headers("shpss_e1", body, topic="orders/paid")
    )
    assert paid.status_code == 200, paid.text
    picked = await client.post(
        f"/v1/orders/{order_id}/transitions", json={"to": "picked"}, headers=admin
    )
    assert picked.status_code == 200, picked.text
    payload = fixture_json("shopify_orders_create.json")
    payload["line_items"][0]["quantity"] = 3
    resp = await _updated(client, payload)
    assert resp.status_code == 409, resp.text
    assert resp.json()["code"] == "units_not_editable"
    async with engine.connect() as conn:
        status, error = (
            await conn.execute(
                text("SELECT status, error_code FROM webhook_inbox ORDER BY id DESC LIMIT 1")
            )
        ).one()
    assert status == "failed"
    assert error == "units_not_editable"
    order = await _order(client, admin, order_id)
    assert [ln["quantity"] for ln in order["lines"]] == [1, 1]
    assert order["status"] == "picked"
    await assert_stock_invariants(engine)


async def test_woocommerce_unpaid_order_updated_is_an_edit(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    await make_connector(client, admin, name="woo", fmt="woocommerce", secret="woo-secret-e1")
    mapped = await client.patch(
        "/v1/connectors/woo", json={"sku_map": {"product:93": "MUG-01"}}, headers=admin
    )
    assert mapped.status_code == 200, mapped.text
    sample = fixture_json("woocommerce_order.json") | {"status": "on-hold", "date_paid": None}
    body = json.dumps(sample).encode()
    url = "/v1/webhooks/inbound/woo"
    created = await client.post(url, content=body, headers=woo_headers("woo-secret-e1", body))
    assert created.status_code == 200, created.text
    order_id = created.json()["order_id"]
    sample["line_items"] = sample["line_items"][1:]  # the mugs removed
    body = json.dumps(sample).encode()
    resp = await client.post(
        url, content=body, headers=woo_headers("woo-secret-e1", body, topic="order.updated")
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["detail"] == "order edited (1 line(s) changed)"
    order = await _order(client, admin, order_id)
    assert [(ln["sku"], ln["quantity"]) for ln in order["lines"]] == [("MUG-01", 0), ("Bar3", 1)]
    assert order["totals"]["subtotal"] == 1200
    await assert_stock_invariants(engine)
