"""How platform deliveries become oms orders: delivery ids are identities (never cut), lines are
mapped to SKUs explicitly (never invented), guests are identified by phone or are anonymous,
and an unknown SKU is named as such."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from oms.orders.models import Order
from oms.payments.models import Payment, Refund
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


async def test_numbers_with_enormous_exponents_are_refused_at_once(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """A quantity or amount like ``1e400000`` (a few bytes) is 422 ``invalid_payload`` at once:
    turned into an integer it has 400 001 digits, which takes seconds of CPU with the event loop
    blocked (minutes for ``1e2000000``), and it could never be stored anyway."""
    await make_connector(client, admin, name="shop", fmt="shopify", secret="shpss_x1")
    await make_connector(client, admin, name="woo", fmt="woocommerce", secret="woo-secret-1")
    mapped = {"sku_map": {"product:93": "MUG-01", "variant:23": "TSHIRT-RED-M"}}
    assert (await client.patch("/v1/connectors/woo", json=mapped, headers=admin)).is_success
    huge = "1e400000"
    shop_line = fixture_json("shopify_orders_create.json")["line_items"][0]
    woo_line = fixture_json("woocommerce_order.json")["line_items"][0]
    cases = [  # (connector, line field, the value as JSON text)
        ("shop", "quantity", huge),
        ("shop", "price", huge),
        ("shop", "price", f'"{huge}"'),
        ("shop", "total_discount", f'"{huge}"'),
        ("woo", "quantity", huge),
        ("woo", "price", huge),
        ("woo", "total", f'"{huge}"'),
    ]
    for i, (name, field, value) in enumerate(cases):
        if name == "shop":
            raw = _shopify(8100 + i, line_items=[shop_line | {field: "@@"}])
        else:
            sample = fixture_json("woocommerce_order.json")
            sample.update(id=8100 + i, line_items=[woo_line | {field: "@@"}])
            raw = json.dumps(sample).encode()
        body = raw.replace(b'"@@"', value.encode())
        headers = (
            shopify_headers("shpss_x1", body)
            if name == "shop"
            else woo_headers("woo-secret-1", body)
        )
        started = time.perf_counter()
        resp = await _post(client, name, body, headers)
        assert time.perf_counter() - started < 1.5, (name, field, value)
        assert resp.status_code == 422, (name, field, resp.text[:300])
        assert resp.json()["code"] == "invalid_payload"
    assert await count(engine, Order) == 0


async def test_deeply_nested_platform_payloads_are_400_not_500(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """JSON nested a thousand deep (a body of a few kB) overflows the parser's recursion: a
    Shopify or WooCommerce delivery like that is 400 ``malformed_payload`` (as the oms format
    answers), not a RecursionError and a 500."""
    await make_connector(client, admin, name="shop", fmt="shopify", secret="shpss_x1")
    await make_connector(client, admin, name="woo", fmt="woocommerce", secret="woo-secret-1")
    deep = "[" * 5000 + "]" * 5000
    for i, body in enumerate(
        (
            deep.encode(),
            _shopify(8200).replace(b'"note": null', f'"note": {deep}'.encode()),
            _woo(8201).replace(b'"meta_data": []', f'"meta_data": {deep}'.encode(), 1),
        )
    ):
        for name, headers in (
            ("shop", shopify_headers("shpss_x1", body)),
            ("woo", woo_headers("woo-secret-1", body)),
        ):
            resp = await _post(client, name, body, headers)
            assert resp.status_code == 400, (i, name, resp.text[:300])
            assert resp.json()["code"] == "malformed_payload"
    assert await count(engine, Order) == 0


async def test_nul_in_platform_text_is_422_not_500(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """Postgres cannot store NUL in text: a delivery with one in a note, a city, a line name,
    a customer id or an attribute is 422 ``invalid_character`` (as through the API), kept as
    failed, not a 500 "internal error while processing the webhook"."""
    await make_connector(client, admin, name="shop", fmt="shopify", secret="shpss_x1")
    secret = await make_connector(client, admin, name="psp", fmt="oms")
    bodies: list[tuple[str, bytes, dict[str, str]]] = []
    sample = fixture_json("shopify_orders_create.json")
    for i, change in enumerate(
        (
            {"note": "a\x00b"},
            {"shipping_address": sample["shipping_address"] | {"city": "Ber\x00lin"}},
            {"line_items": [sample["line_items"][0] | {"name": "Mug\x00"}]},
        )
    ):
        body = _shopify(8300 + i, **change)
        bodies.append(("shop", body, shopify_headers("shpss_x1", body)))
    for i, change in enumerate(
        (
            {"notes": "a\x00b"},
            {"attributes": {"k\x00": 1}},
            {"attributes": {"k": "v\x00"}},
            {"customer": {"id": "cus\x00", "email": "ada@example.com"}},
        )
    ):
        body = canonical("order.created", **order_data(f"NUL-{i}", **change))
        bodies.append(("psp", body, oms_headers(secret, body)))
    for name, body, headers in bodies:
        resp = await _post(client, name, body, headers)
        assert resp.status_code == 422, (name, body[:80], resp.text[:300])
        assert resp.json()["code"] == "invalid_character"
    assert await count(engine, Order) == 0
    async with engine.connect() as conn:
        rows = (await conn.execute(select(InboxMessage.status, InboxMessage.error_code))).all()
    assert {tuple(r) for r in rows} == {("failed", "invalid_character")}
    assert len(rows) == len(bodies)


async def test_shopify_payments_of_zero_or_less_are_422(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """A payment or refund of 0 or less is no payment (the oms format requires > 0): 422
    ``invalid_payload``, kept as failed and nothing recorded; a payment of -1 was a 500 from
    the database's check, a refund of -1 was "processed"."""
    await make_connector(client, admin, name="shop", fmt="shopify", secret="shpss_x1")
    body = _shopify(8400, financial_status="pending")
    resp = await _post(client, "shop", body, shopify_headers("shpss_x1", body))
    assert resp.status_code == 200, resp.text
    for i, amount in enumerate(("0.00", "-1.00")):
        paid = json.dumps(json.loads(_shopify(8400)) | {"total_price": amount}).encode()
        refund = json.dumps(
            {
                "id": 8500 + i,
                "order_id": 8400,
                "transactions": [
                    {"kind": "refund", "status": "success", "currency": "USD", "amount": amount}
                ],
            }
        ).encode()
        for topic, payload in (("orders/paid", paid), ("refunds/create", refund)):
            headers = shopify_headers("shpss_x1", payload, topic=topic)
            resp = await _post(client, "shop", payload, headers)
            assert resp.status_code == 422, (topic, amount, resp.text[:300])
            assert resp.json()["code"] == "invalid_payload"
    assert await count(engine, Payment) == 0 and await count(engine, Refund) == 0
