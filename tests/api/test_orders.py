"""Orders through the real ASGI app against real Postgres."""

from __future__ import annotations

import httpx
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from oms.orders.models import Order
from oms.outbox.models import OutboxEvent
from tests.helpers import auth, order_body


async def count(engine: AsyncEngine, model: type) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(model))).scalar_one())


async def test_place_order_computes_totals_in_minor_units(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    resp = await client.post("/v1/orders", json=order_body(), headers=auth(keys["storefront"]))
    assert resp.status_code == 201, resp.text
    order = resp.json()
    assert resp.headers["location"] == f"/v1/orders/{order['id']}"
    assert order["status"] == "placed"
    # 2 x 19.99 at 19% -> 3998 + 760 (759.62 rounded half up); 8.50 at 7% -> 850 + 60 (59.5)
    assert [ln["tax"] for ln in order["lines"]] == [760, 60]
    assert order["totals"] == {
        "subtotal": 4848,
        "tax_total": 820,
        "shipping_fee": 495,
        "total": 6163,
    }
    assert order["customer"]["email"] == "ada@example.com"
    assert order["allowed_transitions"] == ["paid", "cancelled"]
    assert await count(engine, OutboxEvent) == 1


async def test_walk_the_whole_life(client: httpx.AsyncClient, keys: dict[str, str]) -> None:
    order = (
        await client.post("/v1/orders", json=order_body(), headers=auth(keys["storefront"]))
    ).json()
    url = f"/v1/orders/{order['id']}/transitions"
    steps = [
        (keys["admin"], {"to": "paid", "reason": "captured by PSP"}),
        (keys["fulfillment"], {"to": "picked"}),
        (keys["fulfillment"], {"to": "packed"}),
        (keys["fulfillment"], {"to": "shipped", "carrier": "DHL", "tracking_number": "JJD1"}),
        (keys["fulfillment"], {"to": "delivered"}),
        (keys["admin"], {"to": "returned", "reason": "customer sent it back"}),
    ]
    for token, body in steps:
        resp = await client.post(url, json=body, headers=auth(token))
        assert resp.status_code == 200, resp.text
        assert resp.json()["status"] == body["to"]
    final = (await client.get(f"/v1/orders/{order['id']}", headers=auth(keys["admin"]))).json()
    assert final["carrier"] == "DHL"
    assert final["tracking_number"] == "JJD1"
    assert final["paid_at"]
    assert final["shipped_at"]
    assert final["delivered_at"]
    assert final["version"] == 7
    history = (
        await client.get(f"/v1/orders/{order['id']}/history", headers=auth(keys["admin"]))
    ).json()
    assert [(h["from_status"], h["to_status"]) for h in history] == [
        (None, "placed"),
        ("placed", "paid"),
        ("paid", "picked"),
        ("picked", "packed"),
        ("packed", "shipped"),
        ("shipped", "delivered"),
        ("delivered", "returned"),
    ]
    assert history[1]["actor"] == "apikey:test-admin"
    assert history[1]["reason"] == "captured by PSP"
    assert history[2]["actor_role"] == "fulfillment"
    assert history[4]["data"] == {"carrier": "DHL", "tracking_number": "JJD1"}
    assert all(h["request_id"] for h in history)


async def test_illegal_transition_names_current_and_allowed(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    order = (
        await client.post("/v1/orders", json=order_body(), headers=auth(keys["storefront"]))
    ).json()
    resp = await client.post(
        f"/v1/orders/{order['id']}/transitions",
        json={"to": "shipped", "carrier": "DHL", "tracking_number": "1"},
        headers=auth(keys["admin"]),
    )
    assert resp.status_code == 409
    assert resp.headers["content-type"] == "application/problem+json"
    problem = resp.json()
    assert problem["code"] == "illegal_transition"
    assert problem["current_status"] == "placed"
    assert problem["allowed_transitions"] == ["paid", "cancelled"]


async def test_shipping_requires_carrier_and_tracking(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    body = order_body(payment_method="cash_on_delivery")
    order = (await client.post("/v1/orders", json=body, headers=auth(keys["storefront"]))).json()
    url = f"/v1/orders/{order['id']}/transitions"
    # cash on delivery may be fulfilled before payment
    for to in ("picked", "packed"):
        assert (
            await client.post(url, json={"to": to}, headers=auth(keys["fulfillment"]))
        ).status_code == 200
    resp = await client.post(
        url, json={"to": "shipped", "carrier": "DHL"}, headers=auth(keys["fulfillment"])
    )
    assert resp.status_code == 422
    assert resp.json()["code"] == "shipping_details_required"
    after = (await client.get(f"/v1/orders/{order['id']}", headers=auth(keys["admin"]))).json()
    assert after["status"] == "packed"


async def test_card_order_cannot_be_picked_before_payment(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    order = (
        await client.post("/v1/orders", json=order_body(), headers=auth(keys["storefront"]))
    ).json()
    resp = await client.post(
        f"/v1/orders/{order['id']}/transitions",
        json={"to": "picked"},
        headers=auth(keys["fulfillment"]),
    )
    assert resp.status_code == 409
    assert resp.json()["allowed_transitions"] == ["paid", "cancelled"]


async def test_cancel_allowed_until_shipped(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    order = (
        await client.post("/v1/orders", json=order_body(), headers=auth(keys["storefront"]))
    ).json()
    url = f"/v1/orders/{order['id']}/transitions"
    await client.post(url, json={"to": "paid"}, headers=auth(keys["admin"]))
    await client.post(url, json={"to": "picked"}, headers=auth(keys["fulfillment"]))
    resp = await client.post(
        url, json={"to": "cancelled", "reason": "fraud"}, headers=auth(keys["storefront"])
    )
    assert resp.status_code == 200
    assert resp.json()["cancelled_at"]
    again = await client.post(url, json={"to": "paid"}, headers=auth(keys["admin"]))
    assert again.status_code == 409
    assert again.json()["allowed_transitions"] == []


async def test_cannot_cancel_after_shipping(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    body = order_body(payment_method="cash_on_delivery")
    order = (await client.post("/v1/orders", json=body, headers=auth(keys["storefront"]))).json()
    url = f"/v1/orders/{order['id']}/transitions"
    for step in (
        {"to": "picked"},
        {"to": "packed"},
        {"to": "shipped", "carrier": "UPS", "tracking_number": "1Z"},
    ):
        assert (
            await client.post(url, json=step, headers=auth(keys["fulfillment"]))
        ).status_code == 200
    resp = await client.post(url, json={"to": "cancelled"}, headers=auth(keys["admin"]))
    assert resp.status_code == 409
    assert resp.json()["current_status"] == "shipped"
    assert resp.json()["allowed_transitions"] == ["delivered"]


async def test_expected_version_guards_stale_writes(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    order = (
        await client.post("/v1/orders", json=order_body(), headers=auth(keys["storefront"]))
    ).json()
    url = f"/v1/orders/{order['id']}/transitions"
    ok = await client.post(
        url, json={"to": "paid", "expected_version": 1}, headers=auth(keys["admin"])
    )
    assert ok.status_code == 200
    stale = await client.post(
        url, json={"to": "cancelled", "expected_version": 1}, headers=auth(keys["admin"])
    )
    assert stale.status_code == 409
    assert stale.json()["code"] == "version_conflict"


async def test_duplicate_external_reference_is_rejected(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    body = order_body(external_reference="SHOP-1")
    first = await client.post("/v1/orders", json=body, headers=auth(keys["storefront"]))
    second = await client.post("/v1/orders", json=body, headers=auth(keys["storefront"]))
    assert second.status_code == 409
    assert second.json()["code"] == "duplicate_external_reference"
    assert second.json()["order_id"] == first.json()["id"]
    # the same reference in another channel is a different order
    other = await client.post(
        "/v1/orders",
        json=order_body(external_reference="SHOP-1", channel="pos"),
        headers=auth(keys["storefront"]),
    )
    assert other.status_code == 201
    assert await count(engine, Order) == 2


async def test_list_filters_and_cursor_pagination(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    ids = []
    for i in range(5):
        body = order_body(channel="web" if i % 2 == 0 else "pos", customer={"id": f"cus_{i % 2}"})
        ids.append(
            (await client.post("/v1/orders", json=body, headers=auth(keys["storefront"]))).json()[
                "id"
            ]
        )
    h = auth(keys["admin"])
    await client.post(f"/v1/orders/{ids[0]}/transitions", json={"to": "paid"}, headers=h)

    seen, cursor = [], None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/v1/orders", params=params, headers=h)).json()
        seen += [o["id"] for o in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))

    web = (await client.get("/v1/orders", params={"channel": "web"}, headers=h)).json()["items"]
    assert {o["id"] for o in web} == {ids[0], ids[2], ids[4]}
    paid = (await client.get("/v1/orders", params={"status": "paid"}, headers=h)).json()["items"]
    assert [o["id"] for o in paid] == [ids[0]]
    history = (await client.get("/v1/customers/cus_1/orders", headers=h)).json()["items"]
    assert [o["id"] for o in history] == [ids[3], ids[1]]
    by_email = (
        await client.get("/v1/orders", params={"customer_email": "ADA@example.com"}, headers=h)
    ).json()["items"]
    assert len(by_email) == 0  # these orders were placed with ids only
    first = (await client.get(f"/v1/orders/{ids[0]}", headers=h)).json()["created_at"]
    later = (await client.get("/v1/orders", params={"created_from": first}, headers=h)).json()[
        "items"
    ]
    assert len(later) == 5
    none = (await client.get("/v1/orders", params={"created_to": first}, headers=h)).json()["items"]
    assert none == []
    bad = await client.get("/v1/orders", params={"cursor": "!!!"}, headers=h)
    assert bad.status_code == 400
    assert bad.json()["code"] == "invalid_cursor"


async def test_unknown_order_is_404_problem(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    resp = await client.get(
        "/v1/orders/00000000-0000-0000-0000-000000000000", headers=auth(keys["admin"])
    )
    assert resp.status_code == 404
    assert resp.json()["code"] == "order_not_found"


async def test_state_machine_is_published(client: httpx.AsyncClient) -> None:
    sm = (await client.get("/v1/order-state-machine")).json()
    assert sm["initial"] == "placed"
    assert sorted(sm["terminal"]) == ["cancelled", "returned"]
    assert {
        "from": "packed",
        "to": "shipped",
        "roles": ["admin", "fulfillment"],
        "conditions": ["carrier_and_tracking"],
    } in sm["transitions"]
    assert sm["mermaid"].startswith("stateDiagram-v2")
