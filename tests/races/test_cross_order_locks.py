"""Operations on different orders that share stock rows, at once: nobody may lock stock rows
out of the one order (``inventory.domain.stock_lock_key``), or two transactions each wait for a
row the other holds and Postgres aborts one (a deadlock: a client sees a failure for nothing).

The race matrix does not see this (each of its orders has stock rows of its own); these do:
re-routes in opposite directions, a return receipt restocking lines in reverse order against
placements of the same SKUs, and a two-warehouse order shipped against placements.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from tests.helpers import assert_stock_invariants, auth, order_body, stock
from tests.races.conftest import Harness

pytestmark = pytest.mark.slow

TAG = uuid.uuid4().hex[:6]
HAMBURG = {"name": "H", "lines": ["Jungfernstieg 1"], "city": "Hamburg", "country": "DE"}
BERLIN = {"name": "B", "lines": ["Unter den Linden 1"], "city": "Berlin", "country": "DE"}


def _failed(responses: list[httpx.Response]) -> list[str]:
    """Answers that are not a success: a deadlock shows as 500 or 503 transient_conflict."""
    return [f"{r.status_code} {r.text[:200]}" for r in responses if r.status_code >= 300]


async def test_reroutes_in_opposite_directions_never_deadlock(harness: Harness) -> None:
    h = harness
    admin = auth(h.keys["admin"])
    for rnd in range(4):
        sku = f"XR-{rnd}-{TAG}"
        await stock(h.sessionmaker, "BER", {sku: 10})
        await stock(h.sessionmaker, "HAM", {sku: 10})
        line = [{"sku": sku, "quantity": 1, "unit_price": 100, "tax_rate_bps": 0}]
        await h.client.patch("/v1/warehouses/HAM", json={"active": False}, headers=admin)
        o1 = await h.ok(
            "/v1/orders", "storefront", order_body(lines=line, shipping_address=HAMBURG)
        )
        await h.client.patch("/v1/warehouses/HAM", json={"active": True}, headers=admin)
        await h.client.patch("/v1/warehouses/BER", json={"active": False}, headers=admin)
        o2 = await h.ok("/v1/orders", "storefront", order_body(lines=line, shipping_address=BERLIN))
        await h.client.patch("/v1/warehouses/BER", json={"active": True}, headers=admin)
        assert (o1["routed_to"], o2["routed_to"]) == (["BER"], ["HAM"])
        # each re-route releases one row and reserves the other: opposite directions
        results = await asyncio.gather(
            h.post(f"/v1/orders/{o1['id']}/reroute", "admin", {}),
            h.post(f"/v1/orders/{o2['id']}/reroute", "admin", {}),
        )
        assert _failed(list(results)) == []
        assert [r.json()["routed_to"] for r in results] == [["HAM"], ["BER"]]
    await assert_stock_invariants(h.engine)


async def test_a_return_receipt_against_placements_never_deadlocks(harness: Harness) -> None:
    h = harness
    for rnd in range(3):
        a, b = f"RA-{rnd}-{TAG}", f"RB-{rnd}-{TAG}"
        await stock(h.sessionmaker, "BER", {a: 1000, b: 1000})
        lines = [{"sku": s, "quantity": 1, "unit_price": 100, "tax_rate_bps": 0} for s in (a, b)]
        order = await h.ok("/v1/orders", "storefront", order_body(lines=lines))
        oid = order["id"]
        await h.ok(
            f"/v1/orders/{oid}/payments",
            "admin",
            {
                "method": "card",
                "provider": "stripe",
                "provider_reference": f"p-{oid}",
                "amount": order["totals"]["total"],
                "currency": "EUR",
            },
        )
        for to in ("picked", "packed", "shipped", "delivered"):
            body: dict[str, Any] = {"to": to}
            if to == "shipped":
                body |= {"carrier": "DHL", "tracking_number": "T1"}
            await h.ok(f"/v1/orders/{oid}/transitions", "admin", body)
        by_sku = {ln["sku"]: ln["id"] for ln in order["lines"]}
        rma = await h.ok(
            f"/v1/orders/{oid}/returns",
            "storefront",
            {
                "lines": [
                    {"order_line_id": by_sku[s], "quantity": 1, "reason_code": "other"}
                    for s in (a, b)
                ]
            },
        )
        await h.ok(f"/v1/returns/{rma['id']}/approve", "admin")
        ids = {ln["sku"]: ln["id"] for ln in rma["lines"]}
        # the receipt lists B before A; the placements lock A then B
        receipt = {
            "lines": [
                {"return_line_id": ids[b], "restock": 1},
                {"return_line_id": ids[a], "restock": 1},
            ]
        }
        results = await asyncio.gather(
            h.post(f"/v1/returns/{rma['id']}/receive", "fulfillment", receipt),
            *(h.post("/v1/orders", "storefront", order_body(lines=lines)) for _ in range(8)),
        )
        assert _failed(list(results)) == []
    await assert_stock_invariants(h.engine)


async def test_shipping_a_two_warehouse_order_against_placements_never_deadlocks(
    harness: Harness,
) -> None:
    h = harness
    async with h.engine.connect() as conn:
        ids = dict((await conn.execute(text("SELECT code, id::text FROM warehouses"))).all())
    for _ in range(4):
        order = await h.build("packed")
        lines = [
            {"sku": order.shirt, "quantity": 1, "unit_price": 1999, "tax_rate_bps": 1900},
            {"sku": order.mug, "quantity": 1, "unit_price": 850, "tax_rate_bps": 700},
        ]
        results = await asyncio.gather(
            h.order_to(order, "shipped"),
            *(h.post("/v1/orders", "storefront", order_body(lines=lines)) for _ in range(8)),
        )
        assert _failed(list(results)) == [], ids
    await assert_stock_invariants(h.engine)


async def test_a_connector_cancel_and_an_api_cancel_at_once_both_succeed(harness: Harness) -> None:
    """The connector's cancel reads the order's status under its lock: whichever comes second
    finds it cancelled (the connector is told so; the API's second cancel is a 409)."""
    h = harness
    for _ in range(6):
        order = await h.build("placed")
        api, hook = await asyncio.gather(
            h.order_to(order, "cancelled"),
            h.hook("order.cancelled", order_id=order.id, reason="cancelled at the marketplace"),
        )
        assert hook.status_code == 200, hook.text
        assert hook.json()["status"] == "processed"
        assert api.status_code in (200, 409), api.text
