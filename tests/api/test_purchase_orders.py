"""Suppliers and purchase orders through the API on real Postgres: the life of an order
(draft → sent → partially received → received / cancelled) with bad moves refused (409, nothing
changed), sent orders as incoming supply, receipts through the ledger filling backorders,
idempotent receipts, concurrent receipts that never over-receive, reorder suggestions that show
their inputs, and automatic drafts created once."""

from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from oms.flows.purchasing import draft_where_crossed
from tests.helpers import assert_stock_invariants, auth, order_body

Keys = dict[str, str]


async def _supplier(
    client: httpx.AsyncClient, keys: Keys, code: str = "ACME", **terms: Any
) -> dict[str, Any]:
    body = {"code": code, "name": "Acme", "lead_time_days": 7} | terms
    resp = await client.post("/v1/suppliers", json=body, headers=auth(keys["admin"]))
    assert resp.status_code == 201, resp.text
    got: dict[str, Any] = resp.json()
    return got


async def _draft(
    client: httpx.AsyncClient, keys: Keys, *lines: tuple[str, int], supplier: str = "ACME"
) -> httpx.Response:
    return await client.post(
        "/v1/purchase-orders",
        json={
            "supplier": supplier,
            "warehouse": "BER",
            "lines": [{"sku": s, "quantity": q} for s, q in lines],
        },
        headers=auth(keys["admin"]),
    )


async def _sent(client: httpx.AsyncClient, keys: Keys, *lines: tuple[str, int]) -> dict[str, Any]:
    resp = await _draft(client, keys, *lines)
    assert resp.status_code == 201, resp.text
    resp = await client.post(
        f"/v1/purchase-orders/{resp.json()['id']}/send", headers=auth(keys["admin"])
    )
    assert resp.status_code == 200, resp.text
    got: dict[str, Any] = resp.json()
    return got


async def _receive(
    client: httpx.AsyncClient, keys: Keys, po_id: str, reference: str, *lines: tuple[str, int]
) -> httpx.Response:
    return await client.post(
        f"/v1/purchase-orders/{po_id}/receipts",
        json={"reference": reference, "lines": [{"sku": s, "quantity": q} for s, q in lines]},
        headers=auth(keys["fulfillment"]),
    )


async def _available(client: httpx.AsyncClient, keys: Keys, sku: str) -> dict[str, Any]:
    resp = await client.get(
        "/v1/inventory/availability", params={"sku": sku}, headers=auth(keys["fulfillment"])
    )
    assert resp.status_code == 200
    got: dict[str, Any] = resp.json()[0]
    return got


async def _count(client: httpx.AsyncClient, keys: Keys, sku: str, quantity: int) -> None:
    resp = await client.post(
        "/v1/inventory/adjustments",
        json={"warehouse": "BER", "sku": sku, "type": "count", "quantity": quantity},
        headers=auth(keys["admin"]),
    )
    assert resp.status_code == 201, resp.text


def _illegal(resp: httpx.Response, status: str) -> None:
    assert resp.status_code == 409, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    problem = resp.json()
    assert problem["code"] == "illegal_purchase_order_transition"
    assert problem["current_status"] == status


async def test_life_of_a_purchase_order_and_bad_moves_refused(
    client: httpx.AsyncClient, keys: Keys, engine: AsyncEngine
) -> None:
    await _supplier(client, keys, lead_time_days=5, minimum_order_quantity=12, pack_size=12)
    before = (await _available(client, keys, "MUG-01"))["on_hand"]
    resp = await _draft(client, keys, ("MUG-01", 24))
    assert resp.status_code == 201, resp.text
    po = resp.json()
    assert (po["status"], po["expected_on"], po["automatic"]) == ("draft", None, False)
    po_id = po["id"]

    _illegal(await _receive(client, keys, po_id, "GRN-0", ("MUG-01", 1)), "draft")
    assert (await _available(client, keys, "MUG-01"))["incoming"] == 0  # a draft is not supply

    resp = await client.post(f"/v1/purchase-orders/{po_id}/send", headers=auth(keys["admin"]))
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "sent"
    today = datetime.now(UTC).date()
    assert resp.json()["expected_on"] in {
        str(today + timedelta(days=5)),
        str(datetime.now(UTC).date() + timedelta(days=5)),
    }
    avail = await _available(client, keys, "MUG-01")
    assert avail["incoming"] == 24
    assert avail["incoming_supply"][0]["reference"] == f"PO-{po['number']}"
    _illegal(
        await client.post(f"/v1/purchase-orders/{po_id}/send", headers=auth(keys["admin"])), "sent"
    )

    resp = await _receive(client, keys, po_id, "GRN-1", ("MUG-01", 10))
    assert resp.status_code == 201, resp.text
    assert resp.json()["status"] == "partially_received"
    assert resp.json()["lines"][0] | {} == {
        "line_no": 1,
        "sku": "MUG-01",
        "quantity": 24,
        "received": 10,
        "remaining": 14,
    }
    avail = await _available(client, keys, "MUG-01")
    assert (avail["on_hand"], avail["incoming"]) == (before + 10, 14)

    resp = await client.post(f"/v1/purchase-orders/{po_id}/cancel", headers=auth(keys["admin"]))
    assert resp.status_code == 200 and resp.json()["status"] == "cancelled"
    avail = await _available(client, keys, "MUG-01")
    assert (avail["on_hand"], avail["incoming"]) == (before + 10, 0)  # received units stay
    _illegal(await _receive(client, keys, po_id, "GRN-2", ("MUG-01", 1)), "cancelled")
    _illegal(
        await client.post(f"/v1/purchase-orders/{po_id}/cancel", headers=auth(keys["admin"])),
        "cancelled",
    )
    _illegal(
        await client.post(f"/v1/purchase-orders/{po_id}/send", headers=auth(keys["admin"])),
        "cancelled",
    )
    got = await client.get(f"/v1/purchase-orders/{po_id}", headers=auth(keys["fulfillment"]))
    assert got.json()["status"] == "cancelled"
    assert [r["reference"] for r in got.json()["receipts"]] == ["GRN-1"]
    # the receipt went through the ledger
    async with engine.connect() as conn:
        moved = (
            await conn.execute(
                text(
                    "SELECT movement_type, quantity, reference_id FROM inventory_movements "
                    "WHERE reference_id LIKE 'PO-%'"
                )
            )
        ).all()
    assert [tuple(m) for m in moved] == [("receipt", 10, f"PO-{po['number']}/GRN-1")]
    await assert_stock_invariants(engine)


async def test_a_received_order_is_closed(client: httpx.AsyncClient, keys: Keys) -> None:
    await _supplier(client, keys)
    po = await _sent(client, keys, ("MUG-01", 3), ("TSHIRT-RED-M", 2))
    resp = await _receive(client, keys, po["id"], "A", ("MUG-01", 3), ("TSHIRT-RED-M", 2))
    assert resp.status_code == 201 and resp.json()["status"] == "received"
    assert resp.json()["closed_at"] is not None
    _illegal(
        await client.post(f"/v1/purchase-orders/{po['id']}/cancel", headers=auth(keys["admin"])),
        "received",
    )
    _illegal(await _receive(client, keys, po["id"], "B", ("MUG-01", 1)), "received")
    assert (await _available(client, keys, "MUG-01"))["incoming"] == 0


async def test_bad_input_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    await _supplier(client, keys, minimum_order_quantity=24, pack_size=12)
    resp = await client.post(
        "/v1/suppliers",
        json={"code": "ACME", "name": "again", "lead_time_days": 1},
        headers=auth(keys["admin"]),
    )
    assert resp.status_code == 409 and resp.json()["code"] == "supplier_exists"
    for qty in (12, 30):  # below the minimum; not whole packs
        resp = await _draft(client, keys, ("MUG-01", qty))
        assert resp.status_code == 422 and resp.json()["code"] == "invalid_quantity", resp.text
    resp = await _draft(client, keys, ("MUG-01", 24), ("MUG-01", 24))
    assert resp.status_code == 422 and resp.json()["code"] == "duplicate_sku"
    resp = await _draft(client, keys, ("MUG-01", 24), supplier="NOPE")
    assert resp.status_code == 404 and resp.json()["code"] == "supplier_not_found"
    listed = await client.get("/v1/purchase-orders", headers=auth(keys["admin"]))
    assert listed.json() == []

    resp = await _draft(client, keys, ("MUG-01", 24))
    po_id = resp.json()["id"]
    past = await client.post(
        f"/v1/purchase-orders/{po_id}/send",
        json={"expected_on": str(date(2020, 1, 1))},
        headers=auth(keys["admin"]),
    )
    assert past.status_code == 422 and past.json()["code"] == "invalid_expected_on"
    resp = await client.post(f"/v1/purchase-orders/{po_id}/send", headers=auth(keys["admin"]))
    assert resp.status_code == 200
    unknown = await _receive(client, keys, po_id, "R", ("MUG-02", 1))
    assert unknown.status_code == 422 and unknown.json()["code"] == "unknown_po_line"
    over = await _receive(client, keys, po_id, "R", ("MUG-01", 25))
    assert over.status_code == 409 and over.json()["code"] == "over_receipt"
    assert over.json()["remaining"] == 24
    storefront = await _receive(client, keys, po_id, "R", ("MUG-01", 1))
    assert storefront.status_code == 201
    po = (await client.get(f"/v1/purchase-orders/{po_id}", headers=auth(keys["admin"]))).json()
    assert po["lines"][0]["received"] == 1  # only the good receipt counted
    forbidden = await client.post(
        f"/v1/purchase-orders/{po_id}/receipts",
        json={"reference": "S", "lines": [{"sku": "MUG-01", "quantity": 1}]},
        headers=auth(keys["storefront"]),
    )
    assert forbidden.status_code == 403


async def test_a_receipt_is_recorded_once_per_reference(
    client: httpx.AsyncClient, keys: Keys, engine: AsyncEngine
) -> None:
    await _supplier(client, keys)
    po = await _sent(client, keys, ("MUG-01", 10))
    before = (await _available(client, keys, "MUG-01"))["on_hand"]
    first = await _receive(client, keys, po["id"], "GRN-7", ("MUG-01", 4))
    assert first.status_code == 201
    again = await _receive(client, keys, po["id"], "GRN-7", ("MUG-01", 4))
    assert again.status_code == 201 and again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert (await _available(client, keys, "MUG-01"))["on_hand"] == before + 4
    other = await _receive(client, keys, po["id"], "GRN-7", ("MUG-01", 5))
    assert other.status_code == 409 and other.json()["code"] == "receipt_reference_reused"
    # the same reference at once, four times: one receipt
    results = await asyncio.gather(
        *(_receive(client, keys, po["id"], "GRN-8", ("MUG-01", 2)) for _ in range(4))
    )
    assert [r.status_code for r in results] == [201] * 4
    assert sum("idempotent-replayed" in r.headers for r in results) == 3
    assert (await _available(client, keys, "MUG-01"))["on_hand"] == before + 6
    await assert_stock_invariants(engine)


async def test_concurrent_receipts_of_one_line_never_over_receive(
    client: httpx.AsyncClient, keys: Keys, engine: AsyncEngine
) -> None:
    await _supplier(client, keys)
    po = await _sent(client, keys, ("MUG-01", 20))
    before = (await _available(client, keys, "MUG-01"))["on_hand"]
    results = await asyncio.gather(
        *(_receive(client, keys, po["id"], f"GRN-{i}", ("MUG-01", 7)) for i in range(8))
    )
    codes = sorted(r.status_code for r in results)
    assert codes == [201] * 2 + [409] * 6, [r.text for r in results]
    assert {r.json()["code"] for r in results if r.status_code == 409} == {"over_receipt"}
    got = (await client.get(f"/v1/purchase-orders/{po['id']}", headers=auth(keys["admin"]))).json()
    assert got["status"] == "partially_received"
    assert got["lines"][0]["received"] == 14 and len(got["receipts"]) == 2
    # the rest at once, from four receivers: one completes the line, the others are refused
    results = await asyncio.gather(
        *(_receive(client, keys, po["id"], f"LAST-{i}", ("MUG-01", 6)) for i in range(4))
    )
    assert sorted(r.status_code for r in results) == [201, 409, 409, 409]
    got = (await client.get(f"/v1/purchase-orders/{po['id']}", headers=auth(keys["admin"]))).json()
    assert got["status"] == "received" and got["lines"][0]["received"] == 20
    avail = await _available(client, keys, "MUG-01")
    assert (avail["on_hand"], avail["incoming"]) == (before + 20, 0)
    await assert_stock_invariants(engine)


async def test_receipts_fill_backorders_first_in_first_out(
    client: httpx.AsyncClient, keys: Keys, engine: AsyncEngine
) -> None:
    await _supplier(client, keys)
    await _count(client, keys, "BO-1", 0)
    resp = await client.put(
        "/v1/routing-policies/web", json={"allow_backorder": True}, headers=auth(keys["admin"])
    )
    assert resp.status_code == 200
    waiting = []
    for qty in (3, 2):
        resp = await client.post(
            "/v1/orders",
            json=order_body(
                lines=[{"sku": "BO-1", "quantity": qty, "unit_price": 100, "tax_rate_bps": 0}]
            ),
            headers=auth(keys["storefront"]),
        )
        assert resp.status_code == 201, resp.text
        assert resp.json()["lines"][0]["backordered"] == qty
        waiting.append(resp.json()["id"])
    po = await _sent(client, keys, ("BO-1", 5))
    resp = await _receive(client, keys, po["id"], "GRN-1", ("BO-1", 4))
    assert resp.status_code == 201, resp.text

    async def backordered(order_id: str) -> int:
        got = await client.get(f"/v1/orders/{order_id}", headers=auth(keys["admin"]))
        n: int = got.json()["lines"][0]["backordered"]
        return n

    assert [await backordered(o) for o in waiting] == [0, 1]  # oldest first, the rest partly
    filled = (await client.get(f"/v1/orders/{waiting[0]}", headers=auth(keys["admin"]))).json()
    [parcel] = filled["shipments"]  # a new parcel, promised from the fill
    assert parcel["warehouse"] == "BER" and parcel["ship_by"] is not None
    avail = await _available(client, keys, "BO-1")
    assert (avail["on_hand"], avail["reserved"], avail["incoming"]) == (4, 4, 1)
    resp = await _receive(client, keys, po["id"], "GRN-2", ("BO-1", 1))
    assert resp.status_code == 201 and resp.json()["status"] == "received"
    assert [await backordered(o) for o in waiting] == [0, 0]
    async with engine.connect() as conn:
        kinds = (
            await conn.execute(
                text("SELECT count(*) FROM order_events WHERE kind = 'backorder_filled'")
            )
        ).scalar_one()
    assert kinds == 3
    await assert_stock_invariants(engine)


async def _sell(client: httpx.AsyncClient, keys: Keys, sku: str, quantity: int) -> None:
    resp = await client.post(
        "/v1/orders",
        json=order_body(
            lines=[{"sku": sku, "quantity": quantity, "unit_price": 100, "tax_rate_bps": 0}]
        ),
        headers=auth(keys["storefront"]),
    )
    assert resp.status_code == 201, resp.text


async def test_reorder_suggestions_show_every_input(client: httpx.AsyncClient, keys: Keys) -> None:
    await _supplier(client, keys, lead_time_days=7, minimum_order_quantity=10, pack_size=6)
    await _count(client, keys, "R-1", 20)
    for qty in (5, 10):
        await _sell(client, keys, "R-1", qty)
    resp = await client.put(
        "/v1/reorder-policies/BER/R-1",
        json={"supplier": "ACME", "demand_window_days": 7, "safety_factor": 1.65, "review_days": 7},
        headers=auth(keys["admin"]),
    )
    assert resp.status_code == 200, resp.text
    resp = await client.get(
        "/v1/reorder-suggestions", params={"sku": "R-1"}, headers=auth(keys["fulfillment"])
    )
    assert resp.status_code == 200, resp.text
    [s] = resp.json()
    i = s["inputs"]
    assert (s["warehouse"], s["supplier"], s["policy"]) == ("BER", "ACME", "sku")
    assert i["units_sold_in_window"] == 15 and i["demand_window_days"] == 7
    assert i["ewma_alpha"] == 0.25 and i["demand_rate_per_day"] > 0
    assert (i["on_hand"], i["reserved"], i["on_order"]) == (20, 15, 0)
    assert i["position"] == 5 and i["crossed"] is True
    assert i["lead_time_days"] == 7 and i["reorder_point_source"] == "computed"
    assert i["safety_stock"] == -(-1.65 * i["demand_std_per_day"] * 14**0.5 // 1)
    assert i["reorder_point"] == -(-(i["demand_rate_per_day"] * 7 + i["safety_stock"]) // 1)
    assert s["quantity"] == i["quantity"] >= max(10, i["order_up_to"] - i["position"])
    assert s["quantity"] % 6 == 0
    # once the units are on order, the position is back above the reorder point
    await _sent(client, keys, ("R-1", s["quantity"]))
    [s] = (
        await client.get(
            "/v1/reorder-suggestions", params={"sku": "R-1"}, headers=auth(keys["admin"])
        )
    ).json()
    assert s["inputs"]["on_order"] > 0 and s["inputs"]["crossed"] is False and s["quantity"] == 0
    # a policy set again is replaced, not doubled
    for window in (14, 21):
        resp = await client.put(
            "/v1/reorder-policies/BER/R-1",
            json={"supplier": "ACME", "demand_window_days": window},
            headers=auth(keys["admin"]),
        )
        assert resp.status_code == 200 and resp.json()["demand_window_days"] == window
    policies = (await client.get("/v1/reorder-policies", headers=auth(keys["admin"]))).json()
    assert [(p["sku"], p["demand_window_days"]) for p in policies] == [("R-1", 21)]
    resp = await client.delete("/v1/reorder-policies/BER/R-1", headers=auth(keys["admin"]))
    assert resp.status_code == 204
    resp = await client.delete("/v1/reorder-policies/BER/R-1", headers=auth(keys["admin"]))
    assert resp.status_code == 404 and resp.json()["code"] == "policy_not_found"


async def test_automatic_drafts_are_created_once(
    client: httpx.AsyncClient, keys: Keys, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await _supplier(client, keys, lead_time_days=3)
    await _count(client, keys, "R-2", 12)
    await _count(client, keys, "R-3", 500)
    await _sell(client, keys, "R-2", 10)
    await _sell(client, keys, "R-3", 10)
    resp = await client.put(  # every SKU of BER, automatically
        "/v1/reorder-policies/BER",
        json={"supplier": "ACME", "auto_draft": True, "demand_window_days": 7},
        headers=auth(keys["admin"]),
    )
    assert resp.status_code == 200, resp.text
    now = datetime.now(UTC)
    created = await asyncio.gather(*(draft_where_crossed(sessionmaker, now=now) for _ in range(3)))
    assert sum(created) == 1  # R-2 only (R-3 and the default SKUs are far above)
    assert await draft_where_crossed(sessionmaker, now=now) == 0
    drafts = (
        await client.get(
            "/v1/purchase-orders", params={"status": "draft"}, headers=auth(keys["admin"])
        )
    ).json()
    assert len(drafts) == 1
    draft = drafts[0]
    assert draft["automatic"] is True and draft["lines"][0]["sku"] == "R-2"
    assert draft["explanation"]["crossed"] is True
    assert draft["lines"][0]["quantity"] == draft["explanation"]["quantity"] > 0
    # sent, it is on order: no new draft; cancelled, the point is crossed again: a new one
    resp = await client.post(f"/v1/purchase-orders/{draft['id']}/send", headers=auth(keys["admin"]))
    assert resp.status_code == 200
    assert await draft_where_crossed(sessionmaker, now=now) == 0
    resp = await client.post(
        f"/v1/purchase-orders/{draft['id']}/cancel", headers=auth(keys["admin"])
    )
    assert resp.status_code == 200
    assert await draft_where_crossed(sessionmaker, now=now) == 1
    # a SKU's own policy without auto_draft wins over the warehouse's
    await client.put(
        "/v1/reorder-policies/BER/R-2", json={"supplier": "ACME"}, headers=auth(keys["admin"])
    )
    drafts = (
        await client.get(
            "/v1/purchase-orders", params={"status": "draft"}, headers=auth(keys["admin"])
        )
    ).json()
    for d in drafts:
        resp = await client.post(
            f"/v1/purchase-orders/{d['id']}/cancel", headers=auth(keys["admin"])
        )
        assert resp.status_code == 200
    assert await draft_where_crossed(sessionmaker, now=now) == 0
