"""Holds on orders through the real ASGI app against real Postgres."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from oms.outbox.models import OutboxEvent
from tests.helpers import assert_stock_invariants, auth, order_body, stock

ORDER_MUG = {"sku": "MUG-01", "quantity": 1, "unit_price": 850, "tax_rate_bps": 700}


async def _paid_order(
    client: httpx.AsyncClient, keys: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> dict[str, Any]:
    await stock(sessionmaker, "BER", {"TSHIRT-RED-M": 10, "MUG-01": 10})
    resp = await client.post("/v1/orders", json=order_body(), headers=auth(keys["storefront"]))
    assert resp.status_code == 201, resp.text
    order: dict[str, Any] = resp.json()
    resp = await client.post(
        f"/v1/orders/{order['id']}/transitions", json={"to": "paid"}, headers=auth(keys["admin"])
    )
    assert resp.status_code == 200, resp.text
    return order


async def _events(engine: AsyncEngine, type_: str) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(OutboxEvent.payload).where(OutboxEvent.type == type_))
        return [r[0] for r in rows]


async def test_hold_blocks_fulfilment_until_every_hold_is_released(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    order = await _paid_order(client, keys, sessionmaker)
    oid, admin, ff = order["id"], auth(keys["admin"]), auth(keys["fulfillment"])
    first = await client.post(
        f"/v1/orders/{oid}/holds", json={"reason": "fraud_review", "note": "odd"}, headers=admin
    )
    assert first.status_code == 201, first.text
    second = await client.post(
        f"/v1/orders/{oid}/holds", json={"reason": "address_check"}, headers=admin
    )
    assert second.status_code == 201, second.text
    h1, h2 = first.json(), second.json()
    assert h1["active"] and h1["placed_by"].startswith("apikey:") and h1["rule"] is None

    read = (await client.get(f"/v1/orders/{oid}", headers=admin)).json()
    assert [h["id"] for h in read["holds"]] == [h1["id"], h2["id"]]
    queue = (await client.get("/v1/warehouses/BER/pick-queue", headers=ff)).json()
    assert queue == [] or all(item.get("order_id") != oid for item in queue)

    resp = await client.post(f"/v1/orders/{oid}/transitions", json={"to": "picked"}, headers=ff)
    assert resp.status_code == 409, resp.text
    body = resp.json()
    assert body["code"] == "order_on_hold"
    assert {h["reason"] for h in body["holds"]} == {"fraud_review", "address_check"}
    shipment_id = read["shipments"][0]["id"]
    resp = await client.post(
        f"/v1/shipments/{shipment_id}/transitions", json={"to": "picked"}, headers=ff
    )
    assert resp.status_code == 409 and resp.json()["code"] == "order_on_hold", resp.text

    rel = await client.post(
        f"/v1/orders/{oid}/holds/{h1['id']}/release", json={"note": "ok"}, headers=admin
    )
    assert rel.status_code == 200, rel.text
    assert rel.json()["active"] is False and rel.json()["release_note"] == "ok"
    again = await client.post(f"/v1/orders/{oid}/holds/{h1['id']}/release", headers=admin)
    assert again.status_code == 409 and again.json()["code"] == "hold_already_released"
    still = await client.post(f"/v1/orders/{oid}/transitions", json={"to": "picked"}, headers=ff)
    assert still.status_code == 409 and [h["id"] for h in still.json()["holds"]] == [h2["id"]]

    assert (
        await client.post(f"/v1/orders/{oid}/holds/{h2['id']}/release", headers=admin)
    ).is_success
    queue = (await client.get("/v1/warehouses/BER/pick-queue", headers=ff)).json()
    assert len(queue) == 1
    moved = await client.post(f"/v1/orders/{oid}/transitions", json={"to": "picked"}, headers=ff)
    assert moved.status_code == 200, moved.text

    holds = (await client.get(f"/v1/orders/{oid}/holds", headers=ff)).json()
    assert [(h["reason"], h["active"]) for h in holds] == [
        ("fraud_review", False),
        ("address_check", False),
    ]
    history = (await client.get(f"/v1/orders/{oid}/history", headers=admin)).json()
    kinds = [e["kind"] for e in history]
    assert kinds.count("hold_placed") == 2 and kinds.count("hold_released") == 2
    held = await _events(engine, "order.held")
    released = await _events(engine, "order.hold_released")
    assert [e["data"]["active_holds"] for e in held] == [1, 2]
    assert [e["data"]["active_holds"] for e in released] == [1, 0]
    await assert_stock_invariants(engine)


async def test_held_order_keeps_its_reservation_and_can_be_cancelled(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    order = await _paid_order(client, keys, sessionmaker)
    oid, admin = order["id"], auth(keys["admin"])
    resp = await client.post(
        f"/v1/orders/{oid}/holds", json={"reason": "customer_request"}, headers=admin
    )
    assert resp.status_code == 201
    avail = (await client.get("/v1/inventory/availability?sku=MUG-01", headers=admin)).json()
    assert avail[0]["reserved"] == 1, avail
    resp = await client.post(
        f"/v1/orders/{oid}/transitions", json={"to": "cancelled"}, headers=admin
    )
    assert resp.status_code == 200, resp.text
    avail = (await client.get("/v1/inventory/availability?sku=MUG-01", headers=admin)).json()
    assert avail[0]["reserved"] == 0, avail
    closed = await client.post(f"/v1/orders/{oid}/holds", json={"reason": "other"}, headers=admin)
    assert closed.status_code == 409 and closed.json()["code"] == "order_closed"
    await assert_stock_invariants(engine)


async def test_bad_hold_requests_change_nothing(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    order = await _paid_order(client, keys, sessionmaker)
    oid, admin = order["id"], auth(keys["admin"])
    bad = await client.post(f"/v1/orders/{oid}/holds", json={"reason": "whim"}, headers=admin)
    assert bad.status_code == 422 and bad.json()["code"] == "validation_error"
    extra = await client.post(
        f"/v1/orders/{oid}/holds", json={"reason": "other", "x": 1}, headers=admin
    )
    assert extra.status_code == 422
    sf = await client.post(
        f"/v1/orders/{oid}/holds", json={"reason": "other"}, headers=auth(keys["storefront"])
    )
    assert sf.status_code == 403
    missing = await client.post(
        "/v1/orders/00000000-0000-0000-0000-000000000000/holds",
        json={"reason": "other"},
        headers=admin,
    )
    assert missing.status_code == 404
    nohold = await client.post(
        f"/v1/orders/{oid}/holds/00000000-0000-0000-0000-000000000000/release", headers=admin
    )
    assert nohold.status_code == 404 and nohold.json()["code"] == "hold_not_found"
    assert (await client.get(f"/v1/orders/{oid}/holds", headers=admin)).json() == []
    assert await _events(engine, "order.held") == []


async def test_blockers_explain_why_an_order_is_not_moving(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    admin = auth(keys["admin"])
    await stock(sessionmaker, "BER", {"HOLD-SHIRT": 1})
    policy = await client.put(
        "/v1/routing-policies/web", json={"allow_backorder": True}, headers=admin
    )
    assert policy.status_code == 200, policy.text
    short_line = {"sku": "HOLD-SHIRT", "quantity": 2, "unit_price": 1999, "tax_rate_bps": 1900}
    order = (
        await client.post("/v1/orders", json=order_body(lines=[short_line]), headers=admin)
    ).json()
    assert [ln["backordered"] for ln in order["lines"]] == [1], order
    incoming = {"warehouse": "BER", "sku": "HOLD-SHIRT", "quantity": 5}
    for day in ("2030-02-01", "2030-01-15"):
        resp = await client.post(
            "/v1/inventory/incoming", json={**incoming, "expected_on": day}, headers=admin
        )
        assert resp.status_code == 201, resp.text
    oid = order["id"]
    hold = (
        await client.post(f"/v1/orders/{oid}/holds", json={"reason": "fraud_review"}, headers=admin)
    ).json()

    resp = await client.get(f"/v1/orders/{oid}/blockers", headers=auth(keys["storefront"]))
    assert resp.status_code == 200, resp.text
    found = resp.json()
    assert found["blocked"] is True and found["status"] == "placed"
    by_kind = {b["kind"]: b for b in found["blockers"]}
    assert set(by_kind) == {"hold", "payment", "backorder"}
    assert by_kind["hold"]["data"]["hold_id"] == hold["id"]
    assert by_kind["payment"]["data"] == {
        "total": order["totals"]["total"],
        "captured": 0,
        "currency": "EUR",
        "payment_method": "card",
    }
    assert by_kind["backorder"]["data"]["units"] == 1
    assert by_kind["backorder"]["data"]["expected_on"] == "2030-01-15"

    # another order: paid, nothing held or short
    paid = await client.post("/v1/orders", json=order_body(lines=[ORDER_MUG]), headers=admin)
    paid_id = paid.json()["id"]
    resp = await client.post(
        f"/v1/orders/{paid_id}/transitions", json={"to": "paid"}, headers=admin
    )
    assert resp.status_code == 200, resp.text
    clear = (await client.get(f"/v1/orders/{paid_id}/blockers", headers=admin)).json()
    assert clear["blocked"] is False and clear["blockers"] == []

    for kind, expected in (("hold", [oid]), ("payment", [oid]), ("backorder", [oid])):
        page = (await client.get(f"/v1/orders?blocked_by={kind}", headers=admin)).json()
        assert [o["id"] for o in page["items"]] == expected, kind
    bad = await client.get("/v1/orders?blocked_by=weather", headers=admin)
    assert bad.status_code == 422
    missing = await client.get(
        "/v1/orders/00000000-0000-0000-0000-000000000000/blockers", headers=admin
    )
    assert missing.status_code == 404


async def test_late_pick_is_a_blocker_past_the_handling_time(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    from datetime import timedelta

    from oms.auth.service import Principal
    from oms.flows.blockers import order_blockers
    from oms.shared.clock import utcnow
    from oms.shared.roles import Role

    order = await _paid_order(client, keys, sessionmaker)
    oid = uuid.UUID(order["id"])
    admin = Principal(key_id=oid, name="t", role=Role.ADMIN, channel=None)
    async with sessionmaker() as session:
        for hours, late in ((47, False), (49, True)):
            _, found = await order_blockers(
                session,
                order_id=oid,
                principal=admin,
                handling_time=timedelta(hours=48),
                now=utcnow() + timedelta(hours=hours),
            )
            assert [b["kind"] for b in found] == (["late_pick"] if late else []), found
