"""Warehouses, adjustments, the ledger, availability, and reservations through the order life."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from oms.outbox.models import OutboxEvent
from tests.helpers import assert_stock_invariants, auth, order_body

WAREHOUSE = {
    "code": "HAM",
    "name": "Hamburg DC",
    "country": "DE",
    "city": "Hamburg",
    "postal_code": "20095",
    "latitude": 53.55,
    "longitude": 9.99,
    "priority": 10,
}


async def _avail(client: httpx.AsyncClient, token: str, sku: str) -> dict[str, Any]:
    resp = await client.get("/v1/inventory/availability", params={"sku": sku}, headers=auth(token))
    assert resp.status_code == 200, resp.text
    return dict(resp.json()[0])


async def _adjust(client: httpx.AsyncClient, token: str, **body: Any) -> httpx.Response:
    return await client.post("/v1/inventory/adjustments", json=body, headers=auth(token))


async def test_warehouse_crud_and_deactivation(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    admin = auth(keys["admin"])
    created = await client.post("/v1/warehouses", json=WAREHOUSE, headers=admin)
    assert created.status_code == 201, created.text
    assert created.json()["ships_to"] is None and created.json()["active"] is True
    dup = await client.post("/v1/warehouses", json=WAREHOUSE, headers=admin)
    assert dup.status_code == 409
    assert dup.json()["code"] == "warehouse_exists"
    patched = await client.patch(
        "/v1/warehouses/HAM", json={"ships_to": ["de", "AT"], "priority": 5}, headers=admin
    )
    assert patched.json()["ships_to"] == ["DE", "AT"]
    off = await client.patch("/v1/warehouses/HAM", json={"active": False}, headers=admin)
    assert off.json()["active"] is False and off.json()["deactivated_at"]
    codes = [w["code"] for w in (await client.get("/v1/warehouses", headers=admin)).json()]
    assert "HAM" in codes  # deactivated warehouses keep their history
    assert (await client.get("/v1/warehouses/NOPE", headers=admin)).status_code == 404
    forbidden = await client.post(
        "/v1/warehouses", json=WAREHOUSE | {"code": "X"}, headers=auth(keys["storefront"])
    )
    assert forbidden.status_code == 403


async def test_availability_follows_the_order_life(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    admin = keys["admin"]
    await client.post("/v1/warehouses", json=WAREHOUSE, headers=auth(admin))
    assert (
        await _adjust(client, admin, warehouse="HAM", sku="LAMP", type="receive", quantity=10)
    ).status_code == 201
    start = await _avail(client, admin, "LAMP")
    assert (start["on_hand"], start["reserved"], start["available"]) == (10, 0, 10)

    body = order_body(lines=[{"sku": "LAMP", "quantity": 3, "unit_price": 5000}])
    placed = (await client.post("/v1/orders", json=body, headers=auth(keys["storefront"]))).json()
    assert placed["routed_to"] == ["HAM"]
    assert placed["shipments"][0]["lines"][0]["quantity"] == 3
    after_place = await _avail(client, admin, "LAMP")
    assert (after_place["on_hand"], after_place["reserved"], after_place["available"]) == (10, 3, 7)

    cancelled = (
        await client.post("/v1/orders", json=body, headers=auth(keys["storefront"]))
    ).json()
    await client.post(
        f"/v1/orders/{cancelled['id']}/transitions", json={"to": "cancelled"}, headers=auth(admin)
    )
    after_cancel = await _avail(client, admin, "LAMP")
    assert (after_cancel["reserved"], after_cancel["available"]) == (3, 7)

    url = f"/v1/orders/{placed['id']}/transitions"
    await client.post(url, json={"to": "paid"}, headers=auth(admin))
    await client.post(url, json={"to": "picked"}, headers=auth(admin))
    await client.post(url, json={"to": "packed"}, headers=auth(admin))
    shipped = await client.post(
        url, json={"to": "shipped", "carrier": "DHL", "tracking_number": "T1"}, headers=auth(admin)
    )
    assert shipped.json()["shipments"][0]["status"] == "shipped"
    after_ship = await _avail(client, admin, "LAMP")
    assert (after_ship["on_hand"], after_ship["reserved"], after_ship["available"]) == (7, 0, 7)

    ledger = (
        await client.get("/v1/inventory/movements", params={"sku": "LAMP"}, headers=auth(admin))
    ).json()
    assert [(m["movement_type"], m["quantity"], m["on_hand_after"]) for m in ledger] == [
        ("shipment", -3, 7),
        ("receipt", 10, 10),
    ]
    assert ledger[0]["reference_type"] == "shipment"
    await assert_stock_invariants(engine)


async def test_not_enough_stock_is_409_naming_short_lines_and_stores_nothing(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    await client.post("/v1/warehouses", json=WAREHOUSE, headers=auth(keys["admin"]))
    await _adjust(client, keys["admin"], warehouse="HAM", sku="LAMP", type="receive", quantity=2)
    # a level at 0: known, sold out (a SKU with no level anywhere is 422 unknown_sku instead)
    await _adjust(client, keys["admin"], warehouse="HAM", sku="SOLD-OUT", type="count", quantity=0)
    body = order_body(
        lines=[
            {"sku": "LAMP", "quantity": 5, "unit_price": 100},
            {"sku": "MUG-01", "quantity": 1, "unit_price": 100},
            {"sku": "SOLD-OUT", "quantity": 1, "unit_price": 100},
        ]
    )
    resp = await client.post("/v1/orders", json=body, headers=auth(keys["storefront"]))
    assert resp.status_code == 409
    problem = resp.json()
    assert problem["code"] == "insufficient_stock"
    short = {s["sku"]: (s["requested"], s["available"]) for s in problem["short_lines"]}
    assert short == {"LAMP": (5, 2), "SOLD-OUT": (1, 0)}
    async with engine.connect() as conn:
        assert (await conn.execute(text("SELECT count(*) FROM orders"))).scalar_one() == 0
        assert (await conn.execute(text("SELECT count(*) FROM allocations"))).scalar_one() == 0
        assert (
            await conn.execute(text("SELECT sum(reserved) FROM stock_levels"))
        ).scalar_one() == 0


async def test_count_guard_and_reserved_floor(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    ff = keys["fulfillment"]
    await client.post("/v1/warehouses", json=WAREHOUSE, headers=auth(keys["admin"]))
    await _adjust(client, ff, warehouse="HAM", sku="LAMP", type="receive", quantity=10)
    await client.post(
        "/v1/orders",
        json=order_body(lines=[{"sku": "LAMP", "quantity": 4, "unit_price": 1}]),
        headers=auth(keys["storefront"]),
    )
    stale = await _adjust(
        client, ff, warehouse="HAM", sku="LAMP", type="count", quantity=8, expected_on_hand=9
    )
    assert stale.status_code == 409
    assert stale.json()["code"] == "count_guard_mismatch" and stale.json()["on_hand"] == 10
    ok = await _adjust(
        client, ff, warehouse="HAM", sku="LAMP", type="count", quantity=8, expected_on_hand=10
    )
    assert ok.status_code == 201 and ok.json()["available"] == 4
    below = await _adjust(client, ff, warehouse="HAM", sku="LAMP", type="count", quantity=3)
    assert below.status_code == 409 and below.json()["code"] == "below_reserved"
    fix = await _adjust(
        client, ff, warehouse="HAM", sku="LAMP", type="correct", quantity=-2, reason="damaged"
    )
    assert fix.json()["on_hand"] == 6
    no_reason = await _adjust(client, ff, warehouse="HAM", sku="LAMP", type="correct", quantity=-1)
    assert no_reason.status_code == 422
    await assert_stock_invariants(engine)


async def test_adjustment_bad_input(client: httpx.AsyncClient, keys: dict[str, str]) -> None:
    ff = keys["fulfillment"]
    await client.post("/v1/warehouses", json=WAREHOUSE, headers=auth(keys["admin"]))
    cases = [
        ({"warehouse": "HAM", "sku": "LAMP", "type": "receive", "quantity": 0}, 422),
        ({"warehouse": "HAM", "sku": "LAMP", "type": "receive", "quantity": -5}, 422),
        ({"warehouse": "HAM", "sku": "LAMP", "type": "count", "quantity": -1}, 422),
        ({"warehouse": "NOPE", "sku": "LAMP", "type": "receive", "quantity": 1}, 404),
        (
            {"warehouse": "HAM", "sku": "NEVER", "type": "correct", "quantity": 1, "reason": "x"},
            404,
        ),
        ({"warehouse": "HAM", "sku": "LAMP", "type": "teleport", "quantity": 1}, 422),
    ]
    for body, status in cases:
        resp = await client.post("/v1/inventory/adjustments", json=body, headers=auth(ff))
        assert resp.status_code == status, (body, resp.text)
        assert resp.headers["content-type"] == "application/problem+json"
    assert (
        await client.get("/v1/inventory/levels", params={"warehouse": "HAM"}, headers=auth(ff))
    ).json() == []


async def test_bulk_load_is_all_or_nothing(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    admin = auth(keys["admin"])
    await client.post("/v1/warehouses", json=WAREHOUSE, headers=admin)
    bad = await client.post(
        "/v1/inventory/bulk",
        json={
            "rows": [
                {"warehouse": "HAM", "sku": "A", "on_hand": 5},
                {"warehouse": "HAM", "sku": "B", "on_hand": 6},
                {"warehouse": "NOWHERE", "sku": "C", "on_hand": 7},
            ]
        },
        headers=admin,
    )
    assert bad.status_code == 422
    assert bad.json()["code"] == "bulk_row_invalid"
    assert (bad.json()["row"], bad.json()["column"]) == (3, "warehouse")
    async with engine.connect() as conn:
        count = (
            await conn.execute(
                text(
                    "SELECT count(*) FROM inventory_movements m "
                    "JOIN warehouses w ON w.id = m.warehouse_id WHERE w.code = 'HAM'"
                )
            )
        ).scalar_one()
    assert count == 0
    ok = await client.post(
        "/v1/inventory/bulk",
        json={
            "rows": [
                {
                    "warehouse": "HAM",
                    "sku": "A",
                    "on_hand": 5,
                    "reorder_point": 10,
                    "reorder_quantity": 20,
                },
                {"warehouse": "BER", "sku": "A", "on_hand": 6, "safety_stock": 2},
            ]
        },
        headers=admin,
    )
    assert ok.status_code == 200 and ok.json() == {"rows": 2}
    a = await _avail(client, keys["admin"], "A")
    assert (a["on_hand"], a["available"]) == (11, 9)
    assert {w["warehouse"]: w["available"] for w in a["warehouses"]} == {"HAM": 5, "BER": 4}
    repl = (await client.get("/v1/inventory/replenishment", headers=admin)).json()
    assert repl == [
        {
            "warehouse": "HAM",
            "sku": "A",
            "on_hand": 5,
            "reserved": 0,
            "available": 5,
            "reorder_point": 10,
            "reorder_quantity": 20,
            "incoming": 0,
            "suggested_quantity": 25,
        }
    ]
    await assert_stock_invariants(engine)


async def test_incoming_supply_is_shown_beside_availability(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    ff = auth(keys["fulfillment"])
    created = await client.post(
        "/v1/inventory/incoming",
        json={
            "warehouse": "BER",
            "sku": "MUG-01",
            "quantity": 40,
            "expected_on": "2026-12-01",
            "reference": "PO-7",
        },
        headers=ff,
    )
    assert created.status_code == 201
    a = await _avail(client, keys["fulfillment"], "MUG-01")
    assert a["incoming"] == 40
    assert a["incoming_supply"][0]["reference"] == "PO-7"
    closed = await client.post(
        f"/v1/inventory/incoming/{created.json()['id']}/received", headers=ff
    )
    assert closed.status_code == 204
    assert (await _avail(client, keys["fulfillment"], "MUG-01"))["incoming"] == 0


async def test_low_stock_event_when_crossing_threshold(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    admin = keys["admin"]
    await client.patch(
        "/v1/inventory/levels/BER/MUG-01",
        json={"low_stock_threshold": 9_995},
        headers=auth(admin),
    )
    body = order_body(lines=[{"sku": "MUG-01", "quantity": 3, "unit_price": 1}])
    for _ in range(3):  # 9997 (above), 9994 (crosses), 9991 (already below: no new event)
        assert (
            await client.post("/v1/orders", json=body, headers=auth(keys["storefront"]))
        ).status_code == 201
    async with engine.connect() as conn:
        events = (
            (
                await conn.execute(
                    select(OutboxEvent.payload).where(OutboxEvent.type == "inventory.low_stock")
                )
            )
            .scalars()
            .all()
        )
    assert len(events) == 1
    assert events[0]["data"]["sku"] == "MUG-01" and events[0]["data"]["available"] == 9_994
