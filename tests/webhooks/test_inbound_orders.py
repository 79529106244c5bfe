"""How platform deliveries become oms orders: delivery ids are identities (never cut), lines are
mapped to SKUs explicitly (never invented), guests are identified by phone or are anonymous,
and an unknown SKU is named as such."""

from __future__ import annotations

import json
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from oms.orders.models import Order
from oms.webhooks.inbound.models import InboxMessage
from tests.webhooks.conftest import (
    canonical,
    count,
    fixture_json,
    make_connector,
    oms_headers,
    order_data,
    shopify_headers,
    woo_headers,
)

URL = "/v1/webhooks/inbound/{}"


async def _post(
    client: httpx.AsyncClient, name: str, body: bytes, headers: dict[str, str]
) -> httpx.Response:
    return await client.post(URL.format(name), content=body, headers=headers)


async def _order(client: httpx.AsyncClient, admin: dict[str, str], order_id: str) -> dict[str, Any]:
    resp = await client.get(f"/v1/orders/{order_id}", headers=admin)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def _shopify(order_id: int, **changes: Any) -> bytes:
    sample = fixture_json("shopify_orders_create.json")
    sample.update(id=order_id, cancelled_at=None, **changes)
    return json.dumps(sample).encode()


def _woo(order_id: int, **changes: Any) -> bytes:
    sample = fixture_json("woocommerce_order.json")
    sample.update(id=order_id, **changes)
    return json.dumps(sample).encode()


# ---- delivery ids ---------------------------------------------------------------------------


async def test_long_delivery_ids_are_refused_not_cut(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """Two deliveries whose ids share their first 255 characters are two deliveries: ids are
    never cut to fit, an id too long to store is refused (400) and nothing is stored."""
    await make_connector(client, admin, name="shop", fmt="shopify", secret="shpss_x1")
    await make_connector(client, admin, name="woo", fmt="woocommerce", secret="woo-secret-1")
    oms_secret = await make_connector(client, admin, name="psp", fmt="oms")
    prefix = "d" * 255
    first, second = _shopify(9001), _shopify(9002)
    for body, suffix in ((first, "1"), (second, "2")):
        resp = await _post(
            client, "shop", body, shopify_headers("shpss_x1", body, webhook_id=prefix + suffix)
        )
        assert resp.status_code == 400, resp.text
        assert resp.headers["content-type"].startswith("application/problem+json")
        assert resp.json()["code"] == "invalid_delivery_id"
    woo = _woo(9003)
    resp = await _post(client, "woo", woo, woo_headers("woo-secret-1", woo, delivery=prefix + "3"))
    assert resp.status_code == 400, resp.text
    assert resp.json()["code"] == "invalid_delivery_id"
    body = canonical("order.created", **order_data("LONG-1"))
    resp = await _post(client, "psp", body, oms_headers(oms_secret, body, msg_id=prefix + "4"))
    assert resp.status_code == 400, resp.text
    assert resp.json()["code"] == "invalid_delivery_id"
    assert await count(engine, InboxMessage) == 0
    assert await count(engine, Order) == 0
    # 255 characters is a valid id, stored whole; a second such id is another delivery
    for body, suffix in ((first, "a"), (second, "b")):
        ok = await _post(
            client, "shop", body, shopify_headers("shpss_x1", body, webhook_id=prefix[1:] + suffix)
        )
        assert ok.status_code == 200, ok.text
        assert ok.json()["duplicate"] is False
        assert ok.json()["event_id"] == prefix[1:] + suffix
    assert await count(engine, Order) == 2


# ---- lines to SKUs ----------------------------------------------------------------------------


async def test_a_line_without_sku_is_refused_until_it_is_mapped(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """WooCommerce's sample order has a line without a SKU: no invented SKU, a 422
    ``unmapped_line`` naming it (kept as failed), then a mapping on the connector fixes it."""
    await make_connector(client, admin, name="woo", fmt="woocommerce", secret="woo-secret-1")
    body = _woo(727)
    resp = await _post(client, "woo", body, woo_headers("woo-secret-1", body))
    assert resp.status_code == 422, resp.text
    problem = resp.json()
    assert problem["code"] == "unmapped_line"
    assert problem["unmapped_lines"] == [
        {
            "position": 1,
            "name": "Woo Single #1",
            "sku": None,
            "variant_id": None,
            "product_id": "93",
            "reason": "the line has no SKU and no mapping names its variant or product",
        }
    ]
    assert "Woo Single #1" in problem["detail"]
    assert await count(engine, Order) == 0
    inbox = (await client.get("/v1/webhooks/inbox?status=failed", headers=admin)).json()
    assert [m["error_code"] for m in inbox["items"]] == ["unmapped_line"]
    # map the product on the connector (merge: other keys stay), then replay
    patched = await client.patch(
        "/v1/connectors/woo",
        json={"sku_map": {"product:93": "MUG-01", "variant:23": "TSHIRT-RED-M"}},
        headers=admin,
    )
    assert patched.status_code == 200, patched.text
    assert patched.json()["sku_map"] == {"product:93": "MUG-01", "variant:23": "TSHIRT-RED-M"}
    removed = await client.patch(
        "/v1/connectors/woo", json={"sku_map": {"variant:23": None}}, headers=admin
    )
    assert removed.json()["sku_map"] == {"product:93": "MUG-01"}
    replayed = await client.post(
        f"/v1/webhooks/inbox/{inbox['items'][0]['id']}/replay", headers=admin
    )
    assert replayed.json()["status"] == "processed", replayed.text
    order = await _order(client, admin, replayed.json()["order_id"])
    assert [(ln["sku"], ln["name"]) for ln in order["lines"]] == [
        ("MUG-01", "Woo Single #1"),
        ("Bar3", "Ship Your Idea \u2013 Color: Black, Size: M Test"),
    ]


async def test_shopify_lines_map_by_variant_then_sku_then_product(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    await make_connector(client, admin, name="shop", fmt="shopify", secret="shpss_x1")
    sample = fixture_json("shopify_orders_create.json")
    first, second = sample["line_items"]
    items = [
        first | {"sku": None},  # no SKU: its variant, unmapped
        second | {"sku": "", "variant_id": None},  # custom line: neither
    ]
    body = _shopify(7001, line_items=items)
    resp = await _post(client, "shop", body, shopify_headers("shpss_x1", body))
    assert resp.status_code == 422, resp.text
    assert resp.json()["code"] == "unmapped_line"
    assert [
        (u["position"], u["variant_id"], u["product_id"]) for u in resp.json()["unmapped_lines"]
    ] == [(1, "808950810", "632910392"), (2, None, "632910392")]
    assert "shopify-None" not in resp.text and "shopify-808950810" not in resp.text
    # a variant mapping wins over the line's own SKU; a product mapping covers the rest
    await client.patch(
        "/v1/connectors/shop",
        json={"sku_map": {"variant:808950810": "MUG-01", "product:632910392": "TSHIRT-RED-M"}},
        headers=admin,
    )
    items = [first, second | {"sku": None, "variant_id": None}, first | {"sku": "IPOD2008PINK"}]
    body = _shopify(7002, line_items=items)
    resp = await _post(client, "shop", body, shopify_headers("shpss_x1", body))
    assert resp.status_code == 200, resp.text
    order = await _order(client, admin, resp.json()["order_id"])
    assert [ln["sku"] for ln in order["lines"]] == ["MUG-01", "TSHIRT-RED-M", "MUG-01"]


async def test_a_sku_too_long_or_invalid_is_not_cut(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    await make_connector(client, admin, name="shop", fmt="shopify", secret="shpss_x1")
    first = fixture_json("shopify_orders_create.json")["line_items"][0]
    body = _shopify(7003, line_items=[first | {"sku": "IPOD2008PINK" + "X" * 60}])
    resp = await _post(client, "shop", body, shopify_headers("shpss_x1", body))
    assert resp.status_code == 422, resp.text
    assert resp.json()["code"] == "unmapped_line"
    assert resp.json()["unmapped_lines"][0]["sku"] == "IPOD2008PINK" + "X" * 60
    assert "not a valid oms SKU" in resp.json()["unmapped_lines"][0]["reason"]


async def test_sku_map_is_validated(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    body = {"name": "shop", "channel": "web", "format": "shopify", "secret": "shpss_x1"}
    for bad in ({"808950810": "MUG-01"}, {"variant:1": "not a sku"}, {"sku:1": "MUG-01"}):
        resp = await client.post("/v1/connectors", json=body | {"sku_map": bad}, headers=admin)
        assert resp.status_code == 422, bad
    created = await client.post(
        "/v1/connectors", json=body | {"sku_map": {"variant:1": "MUG-01"}}, headers=admin
    )
    assert created.status_code == 201, created.text
    assert created.json()["sku_map"] == {"variant:1": "MUG-01"}
    listed = (await client.get("/v1/connectors", headers=admin)).json()
    assert listed[0]["sku_map"] == {"variant:1": "MUG-01"}


# ---- guests -----------------------------------------------------------------------------------


async def test_shopify_guest_orders_by_phone_or_anonymous(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """Phone and POS orders come without email or customer: accepted, identified by the phone,
    or anonymous."""
    await make_connector(client, admin, name="shop", fmt="shopify", secret="shpss_x1")
    by_phone = _shopify(
        8001, email=None, contact_email=None, customer=None, phone="+1 (613) 555-0101"
    )
    resp = await _post(client, "shop", by_phone, shopify_headers("shpss_x1", by_phone))
    assert resp.status_code == 200, resp.text
    order = await _order(client, admin, resp.json()["order_id"])
    assert order["customer"] == {
        "id": None,
        "email": None,
        "phone": "+16135550101",
        "anonymous": False,
    }
    pos = _shopify(8002, email=None, contact_email=None, customer=None, phone=None)
    resp = await _post(client, "shop", pos, shopify_headers("shpss_x1", pos))
    assert resp.status_code == 200, resp.text
    order = await _order(client, admin, resp.json()["order_id"])
    assert order["customer"] == {"id": None, "email": None, "phone": None, "anonymous": True}
    assert await count(engine, Order) == 2


async def test_woocommerce_guest_without_email_uses_the_billing_phone(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    await make_connector(
        client,
        admin,
        name="woo",
        fmt="woocommerce",
        secret="woo-secret-1",
    )
    await client.patch(
        "/v1/connectors/woo", json={"sku_map": {"product:93": "MUG-01"}}, headers=admin
    )
    sample = fixture_json("woocommerce_order.json")
    body = _woo(8003, billing=sample["billing"] | {"email": ""})
    resp = await _post(client, "woo", body, woo_headers("woo-secret-1", body))
    assert resp.status_code == 200, resp.text
    order = await _order(client, admin, resp.json()["order_id"])
    assert order["customer"] == {
        "id": None,
        "email": None,
        "phone": "5555555555",
        "anonymous": False,
    }


# ---- unknown SKUs -----------------------------------------------------------------------------


async def test_unknown_sku_is_the_inbox_failure_reason(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    secret = await make_connector(client, admin, name="psp", fmt="oms")
    lines = [
        {"sku": "TSHIRT-RED-M", "quantity": 1, "unit_price": 100},
        {"sku": "GHOST-1", "quantity": 3, "unit_price": 100},
    ]
    body = canonical("order.created", **order_data("GHOST", lines=lines))
    resp = await _post(client, "psp", body, oms_headers(secret, body))
    assert resp.status_code == 422, resp.text
    assert resp.json()["code"] == "unknown_sku"
    assert resp.json()["unknown_lines"] == [{"line_no": 2, "sku": "GHOST-1", "quantity": 3}]
    async with engine.connect() as conn:
        row = (await conn.execute(select(InboxMessage.status, InboxMessage.error_code))).one()
    assert tuple(row) == ("failed", "unknown_sku")
    assert await count(engine, Order) == 0
