"""Transfers between locations (#19): draft → shipped (out of the source's on hand through the
ledger, in transit, incoming at the destination) → received (partial receipts, discrepancies as
their own movements, backorders at the destination filled) / cancelled."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from oms.inventory import service as inventory
from tests.helpers import assert_stock_invariants, auth, order_body, stock

SKU = "LAMP-7"


@pytest.fixture(autouse=True)
async def locations(
    sessionmaker: async_sessionmaker[AsyncSession], client: httpx.AsyncClient
) -> None:
    await stock(sessionmaker, "DC-1", {SKU: 50, "VASE-2": 5}, latitude=52.3, longitude=13.5)
    await stock(sessionmaker, "STORE-A", {}, latitude=53.55, longitude=9.99, is_pickup_store=True)
    async with sessionmaker() as session, session.begin():  # the store knows the SKU, has none
        await inventory.adjust_stock(
            session, warehouse_code="STORE-A", sku=SKU, kind="count", quantity=0, actor="test"
        )


async def _create(
    client: httpx.AsyncClient, keys: dict[str, str], lines: list[dict[str, Any]], **extra: Any
) -> Any:
    body = {"from_warehouse": "DC-1", "to_warehouse": "STORE-A", "lines": lines, **extra}
    resp = await client.post("/v1/transfers", json=body, headers=auth(keys["fulfillment"]))
    assert resp.status_code == 201, resp.text
    return resp.json()


async def _post(
    client: httpx.AsyncClient, keys: dict[str, str], path: str, body: Any = None
) -> httpx.Response:
    return await client.post(path, json=body, headers=auth(keys["fulfillment"]))


async def _levels(engine: AsyncEngine, sku: str = SKU) -> dict[str, int]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT w.code, s.on_hand FROM stock_levels s JOIN warehouses w "
                "ON w.id = s.warehouse_id WHERE s.sku = :sku"
            ),
            {"sku": sku},
        )
        return {code: on_hand for code, on_hand in rows.all()}


async def _ledger(engine: AsyncEngine, transfer_id: str) -> list[tuple[str, str, int]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT w.code, m.movement_type, m.quantity FROM inventory_movements m "
                "JOIN warehouses w ON w.id = m.warehouse_id WHERE m.reference_type = 'transfer' "
                "AND m.reference_id = :t ORDER BY m.id"
            ),
            {"t": transfer_id},
        )
        return [tuple(r) for r in rows.all()]  # type: ignore[misc]


async def _incoming(client: httpx.AsyncClient, keys: dict[str, str]) -> Any:
    resp = await client.get(
        "/v1/inventory/availability", params={"sku": SKU}, headers=auth(keys["admin"])
    )
    assert resp.status_code == 200, resp.text
    return resp.json()


async def test_ship_then_receive_in_parts_with_a_shortfall(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    t = await _create(client, keys, [{"sku": SKU, "quantity": 12}], reference="TR-1")
    assert t["status"] == "draft" and t["lines"][0]["in_transit"] == 0
    assert await _levels(engine) == {"DC-1": 50, "STORE-A": 0}  # a draft moves nothing

    resp = await _post(client, keys, f"/v1/transfers/{t['id']}/ship", {"expected_on": "2026-12-24"})
    assert resp.status_code == 200, resp.text
    shipped = resp.json()
    assert shipped["status"] == "shipped" and shipped["expected_on"] == "2026-12-24"
    assert shipped["lines"][0]["in_transit"] == 12
    assert await _levels(engine) == {"DC-1": 38, "STORE-A": 0}
    avail = await _incoming(client, keys)
    [item] = avail if isinstance(avail, list) else avail["items"]
    assert item["incoming"] == 12
    assert item["incoming_supply"][0]["warehouse"] == "STORE-A"
    assert item["incoming_supply"][0]["expected_on"] == "2026-12-24"

    resp = await _post(
        client, keys, f"/v1/transfers/{t['id']}/receive", {"lines": [{"sku": SKU, "quantity": 5}]}
    )
    assert resp.status_code == 200, resp.text
    part = resp.json()
    assert part["status"] == "shipped"
    assert part["lines"][0] | {} == {
        "sku": SKU,
        "quantity": 12,
        "received": 5,
        "short": 0,
        "over": 0,
        "in_transit": 7,
    }
    assert await _levels(engine) == {"DC-1": 38, "STORE-A": 5}
    item = await _incoming(client, keys)
    item = (item if isinstance(item, list) else item["items"])[0]
    assert item["incoming"] == 7

    resp = await _post(
        client,
        keys,
        f"/v1/transfers/{t['id']}/receive",
        {"lines": [{"sku": SKU, "quantity": 4}], "close": True},
    )
    assert resp.status_code == 200, resp.text
    done = resp.json()
    assert done["status"] == "received" and done["received_at"]
    assert done["lines"][0]["received"] == 9 and done["lines"][0]["short"] == 3
    assert done["lines"][0]["in_transit"] == 0
    assert await _levels(engine) == {"DC-1": 38, "STORE-A": 9}
    item = await _incoming(client, keys)
    item = (item if isinstance(item, list) else item["items"])[0]
    assert item["incoming"] == 0
    assert await _ledger(engine, t["id"]) == [
        ("DC-1", "transfer_out", -12),
        ("STORE-A", "transfer_in", 5),
        ("STORE-A", "transfer_in", 4),
        ("STORE-A", "transfer_in", 3),  # the missing units: booked in ...
        ("STORE-A", "transfer_short", -3),  # ... and out as lost, their own movement
    ]
    again = await _post(
        client, keys, f"/v1/transfers/{t['id']}/receive", {"lines": [{"sku": SKU, "quantity": 1}]}
    )
    assert again.status_code == 409
    assert again.json()["code"] == "illegal_transfer_transition"
    await assert_stock_invariants(engine)


async def test_more_arrives_than_was_shipped(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    t = await _create(client, keys, [{"sku": SKU, "quantity": 2}])
    assert (await _post(client, keys, f"/v1/transfers/{t['id']}/ship")).status_code == 200
    resp = await _post(
        client, keys, f"/v1/transfers/{t['id']}/receive", {"lines": [{"sku": SKU, "quantity": 3}]}
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "received"
    assert resp.json()["lines"][0]["over"] == 1
    assert (await _ledger(engine, t["id"]))[1:] == [
        ("STORE-A", "transfer_in", 2),
        ("STORE-A", "transfer_over", 1),
    ]
    await assert_stock_invariants(engine)


async def test_shipping_never_takes_reserved_units_and_a_draft_can_be_cancelled(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    body = order_body(
        lines=[{"sku": "VASE-2", "quantity": 4, "unit_price": 100, "tax_rate_bps": 0}]
    )
    assert (
        await client.post("/v1/orders", json=body, headers=auth(keys["storefront"]))
    ).status_code == 201
    t = await _create(client, keys, [{"sku": "VASE-2", "quantity": 2}, {"sku": SKU, "quantity": 1}])
    resp = await _post(client, keys, f"/v1/transfers/{t['id']}/ship")
    assert resp.status_code == 409
    assert resp.json()["code"] == "insufficient_stock"
    assert resp.json()["short_lines"][0]["sku"] == "VASE-2"
    assert resp.json()["short_lines"][0]["available"] == 1
    assert await _levels(engine) == {"DC-1": 50, "STORE-A": 0}  # nothing moved

    resp = await _post(client, keys, f"/v1/transfers/{t['id']}/cancel")
    assert resp.status_code == 200 and resp.json()["status"] == "cancelled"
    resp = await _post(client, keys, f"/v1/transfers/{t['id']}/ship")
    assert resp.status_code == 409


async def test_bad_transfers_are_refused(client: httpx.AsyncClient, keys: dict[str, str]) -> None:
    same = {
        "from_warehouse": "DC-1",
        "to_warehouse": "DC-1",
        "lines": [{"sku": SKU, "quantity": 1}],
    }
    resp = await client.post("/v1/transfers", json=same, headers=auth(keys["fulfillment"]))
    assert resp.status_code == 422 and resp.json()["code"] == "same_location"
    nowhere = {**same, "to_warehouse": "NOPE"}
    resp = await client.post("/v1/transfers", json=nowhere, headers=auth(keys["fulfillment"]))
    assert resp.status_code == 404 and resp.json()["code"] == "warehouse_not_found"
    twice = {**same, "to_warehouse": "STORE-A", "lines": [{"sku": SKU, "quantity": 1}] * 2}
    resp = await client.post("/v1/transfers", json=twice, headers=auth(keys["fulfillment"]))
    assert resp.status_code == 422 and resp.json()["code"] == "duplicate_sku"
    t = await _create(client, keys, [{"sku": SKU, "quantity": 1}])
    await _post(client, keys, f"/v1/transfers/{t['id']}/ship")
    resp = await _post(
        client, keys, f"/v1/transfers/{t['id']}/receive", {"lines": [{"sku": "X", "quantity": 1}]}
    )
    assert resp.status_code == 422 and resp.json()["code"] == "transfer_sku_unknown"
    resp = await client.get(
        "/v1/transfers/00000000-0000-0000-0000-000000000000", headers=auth(keys["fulfillment"])
    )
    assert resp.status_code == 404


async def test_receipt_fills_backorders_at_the_destination(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    resp = await client.put(
        "/v1/routing-policies/web", json={"allow_backorder": True}, headers=auth(keys["admin"])
    )
    assert resp.status_code == 200, resp.text
    body = order_body(
        pickup_store="STORE-A",
        lines=[{"sku": SKU, "quantity": 2, "unit_price": 100, "tax_rate_bps": 0}],
    )

    async def count_dc(quantity: int) -> None:
        async with sessionmaker() as session, session.begin():
            await inventory.adjust_stock(
                session, warehouse_code="DC-1", sku=SKU, kind="count", quantity=quantity, actor="t"
            )

    await count_dc(0)  # no location could send it: (else a transfer to fulfil is made)
    resp = await client.post("/v1/orders", json=body, headers=auth(keys["storefront"]))
    await count_dc(50)
    assert resp.status_code == 201, resp.text
    waiting = resp.json()
    assert waiting["lines"][0]["backordered"] == 2 and waiting["shipments"] == []

    t = await _create(client, keys, [{"sku": SKU, "quantity": 2}])
    await _post(client, keys, f"/v1/transfers/{t['id']}/ship")
    resp = await _post(
        client, keys, f"/v1/transfers/{t['id']}/receive", {"lines": [{"sku": SKU, "quantity": 2}]}
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["backorder_units_filled"] == 2
    order = (await client.get(f"/v1/orders/{waiting['id']}", headers=auth(keys["admin"]))).json()
    assert order["lines"][0]["backordered"] == 0
    assert [s["warehouse"] for s in order["shipments"]] == ["STORE-A"]
    listed = await client.get(
        "/v1/transfers",
        params={"warehouse": "STORE-A", "status": "received"},
        headers=auth(keys["fulfillment"]),
    )
    assert [x["id"] for x in listed.json()] == [t["id"]]
    await assert_stock_invariants(engine)


IN_TRANSIT_SQL = """
    SELECT count(*) FROM transfer_lines l JOIN transfers t ON t.id = l.transfer_id
    WHERE (l.quantity - (l.received - l.over) - l.short) < 0
       OR (t.status = 'shipped' AND (l.quantity - (l.received - l.over) - l.short) <>
           coalesce((SELECT i.quantity FROM incoming_supply i
                     WHERE i.id = l.incoming_id AND i.status = 'expected'), 0)
           + l.for_order)  -- a transfer to fulfil: the order's units are not incoming for sale
       OR (t.status IN ('shipped', 'received') AND -l.quantity <> (
           SELECT coalesce(sum(m.quantity), 0) FROM inventory_movements m
           WHERE m.reference_type = 'transfer' AND m.reference_id = t.id::text
             AND m.warehouse_id = t.from_warehouse_id AND m.sku = l.sku))
       OR (l.received <> (  -- in + over + (short in - short out) at the destination
           SELECT coalesce(sum(m.quantity), 0) FROM inventory_movements m
           WHERE m.reference_type = 'transfer' AND m.reference_id = t.id::text
             AND m.warehouse_id = t.to_warehouse_id AND m.sku = l.sku))"""
"""Transfer lines whose units in transit are negative, differ from what the destination still
expects, or whose ledger rows at either end do not add up to what the line says."""


async def test_a_receipt_racing_placements_and_till_sales_keeps_every_invariant(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    """Concurrently, on the same SKU at STORE-A: the transfer's receipts, pickup orders placed
    there and till sales. Every answer is a success or a 4xx problem; afterwards on hand >= 0,
    reserved = open allocations, ledger = on hand, in transit consistent, and the store's on
    hand is what arrived less what the tills took."""
    received_total = 0
    for round_no in range(3):
        t = await _create(client, keys, [{"sku": SKU, "quantity": 6}])
        assert (await _post(client, keys, f"/v1/transfers/{t['id']}/ship")).status_code == 200
        receipts = [
            _post(
                client,
                keys,
                f"/v1/transfers/{t['id']}/receive",
                {"lines": [{"sku": SKU, "quantity": 2}], "close": i == 2},
            )
            for i in range(3)
        ]
        order = order_body(
            pickup_store="STORE-A",
            lines=[{"sku": SKU, "quantity": 1, "unit_price": 100, "tax_rate_bps": 0}],
        )
        placements = [
            client.post("/v1/orders", json=order, headers=auth(keys["storefront"]))
            for _ in range(6)
        ]
        sales = [
            client.post(
                "/v1/stores/STORE-A/sales",
                json={
                    "receipt_id": f"R{round_no}-{i}",
                    "currency": "EUR",
                    "lines": [{"sku": SKU, "quantity": 1, "unit_price": 100, "tax_rate_bps": 0}],
                },
                headers=auth(keys["fulfillment"]),
            )
            for i in range(3)
        ]
        answers = await asyncio.gather(*receipts, *placements, *sales)
        for a in answers:
            assert a.status_code < 500, a.text
            assert a.status_code < 300 or a.headers["content-type"].startswith(
                "application/problem+json"
            ), a.text
        received_total += sum(
            2 for a in answers[:3] if a.status_code == 200
        )  # a receipt after the closing one is refused (409)
        await assert_stock_invariants(engine)
        async with engine.connect() as conn:
            assert (await conn.execute(text(IN_TRANSIT_SQL))).scalar_one() == 0
    async with engine.connect() as conn:
        taken = (
            await conn.execute(
                text(
                    "SELECT -coalesce(sum(m.quantity), 0) FROM inventory_movements m JOIN "
                    "warehouses w ON w.id = m.warehouse_id WHERE w.code = 'STORE-A' "
                    "AND m.movement_type = 'sale'"
                )
            )
        ).scalar_one()
        short = (
            await conn.execute(text("SELECT coalesce(sum(short), 0) FROM transfer_lines"))
        ).scalar_one()
    assert received_total + short == 18  # every unit shipped arrived or was booked short
    assert (await _levels(engine))["STORE-A"] == received_total - taken


async def test_closing_without_units_books_them_all_short(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    t = await _create(client, keys, [{"sku": SKU, "quantity": 3}])
    await _post(client, keys, f"/v1/transfers/{t['id']}/ship")
    empty = await _post(client, keys, f"/v1/transfers/{t['id']}/receive", {"lines": []})
    assert empty.status_code == 422 and empty.json()["code"] == "empty_receipt"
    resp = await _post(client, keys, f"/v1/transfers/{t['id']}/receive", {"close": True})
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "received"
    assert resp.json()["lines"][0]["short"] == 3
    assert await _levels(engine) == {"DC-1": 47, "STORE-A": 0}
    await assert_stock_invariants(engine)
