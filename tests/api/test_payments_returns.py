"""Payments gate fulfilment; refunds never exceed captures; returns restock through the ledger."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.helpers import assert_stock_invariants, auth, order_body

TOTAL = 6163  # order_body(): 2 x 19.99 @19% + 8.50 @7% + 4.95 shipping


async def _place(client: httpx.AsyncClient, keys: dict[str, str], **changes: Any) -> Any:
    resp = await client.post(
        "/v1/orders", json=order_body(**changes), headers=auth(keys["storefront"])
    )
    assert resp.status_code == 201, resp.text
    return resp.json()


async def _pay(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    order_id: str,
    ref: str,
    amount: int,
    **extra: Any,
) -> httpx.Response:
    body = {
        "method": "card",
        "provider": "stripe",
        "provider_reference": ref,
        "amount": amount,
        "currency": "EUR",
    } | extra
    return await client.post(
        f"/v1/orders/{order_id}/payments", json=body, headers=auth(keys["admin"])
    )


async def _status(client: httpx.AsyncClient, keys: dict[str, str], order_id: str) -> str:
    return str(
        (await client.get(f"/v1/orders/{order_id}", headers=auth(keys["admin"]))).json()["status"]
    )


async def test_partial_captures_add_up_to_paid(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    order = await _place(client, keys)
    oid = order["id"]
    early = await client.post(
        f"/v1/orders/{oid}/transitions", json={"to": "picked"}, headers=auth(keys["fulfillment"])
    )
    assert early.status_code == 409  # not paid: no picking
    first = await _pay(client, keys, oid, "pi_1", 3000)
    assert first.status_code == 201
    assert await _status(client, keys, oid) == "placed"
    again = await _pay(client, keys, oid, "pi_1", 3000)  # the provider retries the same event
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    over = await _pay(client, keys, oid, "pi_2", TOTAL)
    assert over.status_code == 409
    assert over.json()["code"] == "overpayment"
    assert (await _pay(client, keys, oid, "pi_3", TOTAL - 3000)).status_code == 201
    assert await _status(client, keys, oid) == "paid"
    summary = (await client.get(f"/v1/orders/{oid}/payments", headers=auth(keys["admin"]))).json()
    assert (summary["captured"], summary["balance_due"]) == (TOTAL, 0)
    history = (await client.get(f"/v1/orders/{oid}/history", headers=auth(keys["admin"]))).json()
    assert history[-1]["to_status"] == "paid"


async def test_authorize_then_capture_and_bad_payments(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    oid = (await _place(client, keys))["id"]
    wrong = await _pay(client, keys, oid, "pi_x", TOTAL, currency="USD")
    assert wrong.status_code == 422
    assert wrong.json()["code"] == "currency_mismatch"
    auth_only = await _pay(client, keys, oid, "pi_a", TOTAL, status="authorized")
    assert auth_only.json()["status"] == "authorized"
    assert await _status(client, keys, oid) == "placed"
    too_much = await client.post(
        f"/v1/payments/{auth_only.json()['id']}/capture",
        json={"amount": TOTAL + 1},
        headers=auth(keys["admin"]),
    )
    assert too_much.status_code == 409
    captured = await client.post(
        f"/v1/payments/{auth_only.json()['id']}/capture", json={}, headers=auth(keys["admin"])
    )
    assert captured.json()["captured_amount"] == TOTAL
    assert await _status(client, keys, oid) == "paid"
    twice = await client.post(
        f"/v1/payments/{auth_only.json()['id']}/capture", json={}, headers=auth(keys["admin"])
    )
    assert twice.status_code == 409
    forbidden = await client.post(
        f"/v1/orders/{oid}/payments",
        json={
            "method": "card",
            "provider": "p",
            "provider_reference": "r",
            "amount": 1,
            "currency": "EUR",
        },
        headers=auth(keys["storefront"]),
    )
    assert forbidden.status_code == 403
    negative = await _pay(client, keys, oid, "pi_n", -5)
    assert negative.status_code == 422


async def test_refunds_never_exceed_captured(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    oid = (await _place(client, keys))["id"]
    await _pay(client, keys, oid, "pi_1", 4000)
    await _pay(client, keys, oid, "pi_2", TOTAL - 4000)
    url = f"/v1/orders/{oid}/refunds"
    too_much = await client.post(
        url, json={"amount": TOTAL + 1, "reason": "x"}, headers=auth(keys["admin"])
    )
    assert too_much.status_code == 409
    assert too_much.json()["refundable"] == TOTAL
    spread = await client.post(
        url, json={"amount": 5000, "reason": "goodwill"}, headers=auth(keys["admin"])
    )
    assert spread.status_code == 201
    assert [r["amount"] for r in spread.json()] == [4000, 1000]  # oldest payment first
    rest = await client.post(
        url, json={"amount": TOTAL - 5000, "reason": "rest"}, headers=auth(keys["admin"])
    )
    assert rest.status_code == 201
    none_left = await client.post(
        url, json={"amount": 1, "reason": "x"}, headers=auth(keys["admin"])
    )
    assert none_left.status_code == 409
    summary = (await client.get(f"/v1/orders/{oid}/payments", headers=auth(keys["admin"]))).json()
    assert summary["refunded"] == TOTAL
    assert {p["status"] for p in summary["payments"]} == {"refunded"}


async def _deliver(client: httpx.AsyncClient, keys: dict[str, str], oid: str) -> None:
    """Fulfil an order that may be picked (paid, or cash on delivery) through to delivered."""
    url = f"/v1/orders/{oid}/transitions"
    steps: list[dict[str, str]] = []
    steps += [
        {"to": "picked"},
        {"to": "packed"},
        {"to": "shipped", "carrier": "DHL", "tracking_number": "1"},
        {"to": "delivered"},
    ]
    for step in steps:
        resp = await client.post(url, json=step, headers=auth(keys["admin"]))
        assert resp.status_code == 200, resp.text


async def test_cash_on_delivery_is_captured_at_delivery(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    order = await _place(client, keys, payment_method="cash_on_delivery")
    await _deliver(client, keys, order["id"])
    got = (await client.get(f"/v1/orders/{order['id']}", headers=auth(keys["admin"]))).json()
    assert got["status"] == "delivered"
    assert got["paid_at"] is not None
    summary = (
        await client.get(f"/v1/orders/{order['id']}/payments", headers=auth(keys["admin"]))
    ).json()
    assert summary["balance_due"] == 0
    assert summary["payments"][0]["method"] == "cash_on_delivery"


async def _levels(client: httpx.AsyncClient, keys: dict[str, str], sku: str) -> dict[str, int]:
    rows = (
        await client.get("/v1/inventory/levels", params={"sku": sku}, headers=auth(keys["admin"]))
    ).json()
    return {r["warehouse"]: r["on_hand"] for r in rows}


async def test_returns_partial_then_full_with_restock_and_refund(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    order = await _place(client, keys)
    oid = order["id"]
    shirt, mug = order["lines"][0]["id"], order["lines"][1]["id"]
    early = await client.post(
        f"/v1/orders/{oid}/returns",
        json={"lines": [{"order_line_id": shirt, "quantity": 1, "reason_code": "size_or_fit"}]},
        headers=auth(keys["storefront"]),
    )
    assert early.status_code == 409
    assert early.json()["code"] == "order_not_delivered"
    await _pay(client, keys, oid, "pi_r", TOTAL)
    await _deliver(client, keys, oid)
    before = await _levels(client, keys, "TSHIRT-RED-M")

    too_many = await client.post(
        f"/v1/orders/{oid}/returns",
        json={"lines": [{"order_line_id": shirt, "quantity": 3, "reason_code": "damaged"}]},
        headers=auth(keys["storefront"]),
    )
    assert too_many.status_code == 409
    assert too_many.json()["returnable"] == 2
    first = await client.post(
        f"/v1/orders/{oid}/returns",
        json={"lines": [{"order_line_id": shirt, "quantity": 1, "reason_code": "size_or_fit"}]},
        headers=auth(keys["storefront"]),
    )
    assert first.status_code == 201, first.text
    rma = first.json()
    not_yet = await client.post(
        f"/v1/returns/{rma['id']}/receive",
        json={"lines": [{"return_line_id": rma["lines"][0]["id"], "restock": 1}]},
        headers=auth(keys["fulfillment"]),
    )
    assert not_yet.status_code == 409  # must be approved first
    await client.post(f"/v1/returns/{rma['id']}/approve", headers=auth(keys["admin"]))
    received = await client.post(
        f"/v1/returns/{rma['id']}/receive",
        json={"lines": [{"return_line_id": rma["lines"][0]["id"], "restock": 1}]},
        headers=auth(keys["fulfillment"]),
    )
    assert received.status_code == 200, received.text
    assert received.json()["lines"][0]["restocked_quantity"] == 1
    assert (await _levels(client, keys, "TSHIRT-RED-M"))["BER"] == before["BER"] + 1
    assert await _status(client, keys, oid) == "delivered"  # partial return
    # no refund was forced by restocking; refund separately
    assert (await client.get(f"/v1/orders/{oid}/payments", headers=auth(keys["admin"]))).json()[
        "refunded"
    ] == 0

    over = await client.post(
        f"/v1/orders/{oid}/returns",
        json={"lines": [{"order_line_id": shirt, "quantity": 2, "reason_code": "other"}]},
        headers=auth(keys["storefront"]),
    )
    assert over.status_code == 409  # 1 of 2 shirts already returned
    second = (
        await client.post(
            f"/v1/orders/{oid}/returns",
            json={
                "lines": [
                    {"order_line_id": shirt, "quantity": 1, "reason_code": "defective"},
                    {"order_line_id": mug, "quantity": 1, "reason_code": "damaged"},
                ]
            },
            headers=auth(keys["storefront"]),
        )
    ).json()
    await client.post(f"/v1/returns/{second['id']}/approve", headers=auth(keys["admin"]))
    lines = {ln["sku"]: ln["id"] for ln in second["lines"]}
    done = await client.post(
        f"/v1/returns/{second['id']}/receive",
        json={
            "lines": [
                {"return_line_id": lines["TSHIRT-RED-M"], "restock": 1},
                {"return_line_id": lines["MUG-01"], "discard": 1},
            ],
            "refund": {"amount": 2000, "reason": "defective and damaged"},
        },
        headers=auth(keys["fulfillment"]),
    )
    assert done.status_code == 200, done.text
    assert await _status(client, keys, oid) == "returned"
    assert (await client.get(f"/v1/orders/{oid}/payments", headers=auth(keys["admin"]))).json()[
        "refunded"
    ] == 2000
    listed = (await client.get(f"/v1/orders/{oid}/returns", headers=auth(keys["admin"]))).json()
    assert [r["status"] for r in listed] == ["received", "received"]
    ledger = (
        await client.get(
            "/v1/inventory/movements",
            params={"reference_id": rma["id"]},
            headers=auth(keys["admin"]),
        )
    ).json()
    assert [(m["movement_type"], m["quantity"]) for m in ledger] == [("return", 1)]
    closed = await client.post(f"/v1/returns/{rma['id']}/close", headers=auth(keys["fulfillment"]))
    assert closed.json()["status"] == "closed"
    await assert_stock_invariants(engine)


async def test_restock_to_a_named_warehouse_and_bad_receipts(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    await client.post(
        "/v1/warehouses",
        json={"code": "OUTLET", "name": "Outlet", "country": "DE"},
        headers=auth(keys["admin"]),
    )
    order = await _place(client, keys)
    await _pay(client, keys, order["id"], "pi_w", TOTAL)
    await _deliver(client, keys, order["id"])
    rma = (
        await client.post(
            f"/v1/orders/{order['id']}/returns",
            json={
                "lines": [
                    {
                        "order_line_id": order["lines"][0]["id"],
                        "quantity": 2,
                        "reason_code": "other",
                    }
                ]
            },
            headers=auth(keys["storefront"]),
        )
    ).json()
    await client.post(f"/v1/returns/{rma['id']}/approve", headers=auth(keys["admin"]))
    line = rma["lines"][0]["id"]
    bad = await client.post(
        f"/v1/returns/{rma['id']}/receive",
        json={"lines": [{"return_line_id": line, "restock": 2, "discard": 1}]},
        headers=auth(keys["fulfillment"]),
    )
    assert bad.status_code == 422
    nowhere = await client.post(
        f"/v1/returns/{rma['id']}/receive",
        json={"lines": [{"return_line_id": line, "restock": 2, "warehouse": "NOPE"}]},
        headers=auth(keys["fulfillment"]),
    )
    assert nowhere.status_code == 404
    ok = await client.post(
        f"/v1/returns/{rma['id']}/receive",
        json={"lines": [{"return_line_id": line, "restock": 2, "warehouse": "OUTLET"}]},
        headers=auth(keys["fulfillment"]),
    )
    assert ok.status_code == 200
    assert (await _levels(client, keys, "TSHIRT-RED-M"))["OUTLET"] == 2
    await assert_stock_invariants(engine)


async def test_returned_units_count_on_the_order_until_a_return_is_rejected(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    """The order keeps the units on its returns that are not rejected (the fulfilment KPIs
    read that count)."""
    order = await _place(client, keys)
    await _pay(client, keys, order["id"], "pi_r", TOTAL)
    await _deliver(client, keys, order["id"])

    async def request(quantity: int) -> str:
        resp = await client.post(
            f"/v1/orders/{order['id']}/returns",
            json={
                "lines": [
                    {
                        "order_line_id": order["lines"][0]["id"],
                        "quantity": quantity,
                        "reason_code": "damaged",
                    }
                ]
            },
            headers=auth(keys["storefront"]),
        )
        assert resp.status_code == 201, resp.text
        return str(resp.json()["id"])

    async def units_returned() -> int:
        async with engine.connect() as conn:
            value = await conn.scalar(
                text("SELECT units_returned FROM orders WHERE id = :id"), {"id": order["id"]}
            )
        return int(value)

    first = await request(1)
    assert await units_returned() == 1
    resp = await client.post(f"/v1/returns/{first}/reject", headers=auth(keys["admin"]))
    assert resp.status_code == 200, resp.text
    assert await units_returned() == 0
    await request(2)
    assert await units_returned() == 2
    await assert_stock_invariants(engine)


async def test_concurrent_return_requests_never_exceed_the_delivered_units(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    """Eight requests for one unit each of a line with two delivered units, all at once:
    exactly two are opened, the others are refused, and the order counts two units back."""
    order = await _place(client, keys)
    await _pay(client, keys, order["id"], "pi_c", TOTAL)
    await _deliver(client, keys, order["id"])
    line = order["lines"][0]
    assert line["quantity"] == 2

    async def request() -> httpx.Response:
        return await client.post(
            f"/v1/orders/{order['id']}/returns",
            json={"lines": [{"order_line_id": line["id"], "quantity": 1, "reason_code": "other"}]},
            headers=auth(keys["storefront"]),
        )

    answers = await asyncio.gather(*(request() for _ in range(8)))
    assert sorted(r.status_code for r in answers) == [201] * 2 + [409] * 6
    assert {r.json()["code"] for r in answers if r.status_code == 409} == {
        "return_exceeds_delivered"
    }
    async with engine.connect() as conn:
        on_returns = await conn.scalar(
            text(
                "SELECT sum(rl.quantity) FROM returns r JOIN return_lines rl ON rl.return_id = r.id"
                " WHERE r.order_id = :id"
            ),
            {"id": order["id"]},
        )
    assert on_returns == 2
    await assert_stock_invariants(engine)
