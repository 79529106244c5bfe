"""Store staff (#19): a fulfilment key scoped to some locations sees and moves only their
shipments, pick queues, pickups, transfers, till sales and stock; the rest is 404."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms.auth import service as auth_service
from oms.shared.roles import Role
from tests.helpers import auth, order_body, stock

SKU = "CAP-9"


@pytest.fixture(autouse=True)
async def stores(sessionmaker: async_sessionmaker[AsyncSession], client: httpx.AsyncClient) -> None:
    for code, lat in (("STORE-A", 52.5), ("STORE-B", 48.1)):
        await stock(
            sessionmaker, code, {SKU: 20}, latitude=lat, longitude=13.4, is_pickup_store=True
        )


async def _staff_key(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    *codes: str,
) -> tuple[str, uuid.UUID]:
    async with sessionmaker() as session, session.begin():
        key, token = await auth_service.create_api_key(
            session, name="store-a-staff", role=Role.FULFILLMENT
        )
    resp = await client.put(
        f"/v1/api-keys/{key.id}/warehouses",
        json={"warehouses": list(codes)},
        headers=auth(keys["admin"]),
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["warehouses"] == sorted(codes)
    return token, key.id


async def _paid_pickup(client: httpx.AsyncClient, keys: dict[str, str], store: str) -> Any:
    body = order_body(
        pickup_store=store,
        lines=[{"sku": SKU, "quantity": 1, "unit_price": 500, "tax_rate_bps": 0}],
    )
    order = (await client.post("/v1/orders", json=body, headers=auth(keys["storefront"]))).json()
    pay = {
        "method": "card",
        "provider": "stripe",
        "provider_reference": f"pi_{uuid.uuid4().hex}",
        "amount": order["totals"]["total"],
        "currency": "EUR",
        "status": "captured",
    }
    resp = await client.post(
        f"/v1/orders/{order['id']}/payments", json=pay, headers=auth(keys["admin"])
    )
    assert resp.status_code == 201, resp.text
    return order


async def test_a_scoped_key_works_only_at_its_locations(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    token, key_id = await _staff_key(client, keys, sessionmaker, "STORE-A")
    staff = auth(token)
    at_a = await _paid_pickup(client, keys, "STORE-A")
    at_b = await _paid_pickup(client, keys, "STORE-B")
    ship_a, ship_b = at_a["shipments"][0]["id"], at_b["shipments"][0]["id"]

    # pick queues
    assert (await client.get("/v1/warehouses/STORE-A/pick-queue", headers=staff)).status_code == 200
    resp = await client.get("/v1/warehouses/STORE-B/pick-queue", headers=staff)
    assert resp.status_code == 404 and resp.json()["code"] == "warehouse_not_found"
    # orders and shipments
    assert (await client.get(f"/v1/orders/{at_a['id']}", headers=staff)).status_code == 200
    assert (await client.get(f"/v1/orders/{at_b['id']}", headers=staff)).status_code == 404
    listed = await client.get("/v1/orders", headers=staff)
    assert [o["id"] for o in listed.json()["items"]] == [at_a["id"]]
    picked = {"to": "picked"}
    resp = await client.post(f"/v1/shipments/{ship_b}/transitions", json=picked, headers=staff)
    assert resp.status_code == 404 and resp.json()["code"] == "shipment_not_found"
    resp = await client.post(f"/v1/orders/{at_b['id']}/transitions", json=picked, headers=staff)
    assert resp.status_code == 404
    resp = await client.post(f"/v1/shipments/{ship_a}/transitions", json=picked, headers=staff)
    assert resp.status_code == 200, resp.text
    # pickups
    assert (await client.post(f"/v1/pickups/{ship_a}/ready", headers=staff)).status_code == 200
    assert (await client.get(f"/v1/pickups/{ship_a}", headers=staff)).status_code == 200
    resp = await client.post(
        f"/v1/shipments/{ship_b}/transitions", json=picked, headers=auth(keys["fulfillment"])
    )
    assert resp.status_code == 200  # an unscoped key still works everywhere
    assert (await client.post(f"/v1/pickups/{ship_b}/ready", headers=staff)).status_code == 404
    # stock
    resp = await client.get("/v1/inventory/levels", params={"sku": SKU}, headers=staff)
    assert [lv["warehouse"] for lv in resp.json()] == ["STORE-A"]
    adjust = {"warehouse": "STORE-B", "sku": SKU, "type": "receive", "quantity": 1}
    resp = await client.post("/v1/inventory/adjustments", json=adjust, headers=staff)
    assert resp.status_code == 404
    resp = await client.post(
        "/v1/inventory/adjustments", json={**adjust, "warehouse": "STORE-A"}, headers=staff
    )
    assert resp.status_code == 201, resp.text
    moves = await client.get("/v1/inventory/movements", params={"sku": SKU}, headers=staff)
    assert {m["warehouse"] for m in moves.json()} == {"STORE-A"}
    # transfers: drafted and shipped from its own store, received only where it works
    line = [{"sku": SKU, "quantity": 2}]
    resp = await client.post(
        "/v1/transfers",
        json={"from_warehouse": "STORE-B", "to_warehouse": "STORE-A", "lines": line},
        headers=staff,
    )
    assert resp.status_code == 404
    resp = await client.post(
        "/v1/transfers",
        json={"from_warehouse": "STORE-A", "to_warehouse": "STORE-B", "lines": line},
        headers=staff,
    )
    assert resp.status_code == 201, resp.text
    transfer = resp.json()["id"]
    assert (await client.post(f"/v1/transfers/{transfer}/ship", headers=staff)).status_code == 200
    receipt = {"lines": line}
    resp = await client.post(f"/v1/transfers/{transfer}/receive", json=receipt, headers=staff)
    assert resp.status_code == 404
    listed = await client.get("/v1/transfers", headers=staff)
    assert [t["id"] for t in listed.json()] == [transfer]
    # till sales
    sale = {
        "receipt_id": "R1",
        "currency": "EUR",
        "lines": [{"sku": SKU, "quantity": 1, "unit_price": 500, "tax_rate_bps": 0}],
    }
    assert (
        await client.post("/v1/stores/STORE-B/sales", json=sale, headers=staff)
    ).status_code == 404
    assert (
        await client.post("/v1/stores/STORE-A/sales", json=sale, headers=staff)
    ).status_code == 201

    # the public answer for other contexts (the operations console)
    async with sessionmaker() as session:
        principal = await auth_service.authenticate(session, token=token)
        unscoped = await auth_service.authenticate(session, token=keys["fulfillment"])
        ids = await auth_service.key_warehouses(session, key_id=key_id)
    assert principal is not None and unscoped is not None
    assert auth_service.visible_warehouses(principal) == frozenset(ids)
    assert auth_service.visible_warehouses(unscoped) is None

    # lifting the scope
    resp = await client.put(
        f"/v1/api-keys/{key_id}/warehouses", json={"warehouses": []}, headers=auth(keys["admin"])
    )
    assert resp.json()["warehouses"] == []
    assert (await client.get("/v1/warehouses/STORE-B/pick-queue", headers=staff)).status_code == 200


async def test_only_fulfilment_keys_are_scoped(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    async with sessionmaker() as session, session.begin():
        key, _ = await auth_service.create_api_key(session, name="web", role=Role.STOREFRONT)
    url = f"/v1/api-keys/{key.id}/warehouses"
    resp = await client.put(url, json={"warehouses": ["STORE-A"]}, headers=auth(keys["admin"]))
    assert resp.status_code == 422 and resp.json()["code"] == "key_not_scopable"
    resp = await client.put(
        f"/v1/api-keys/{uuid.uuid4()}/warehouses",
        json={"warehouses": ["STORE-A"]},
        headers=auth(keys["admin"]),
    )
    assert resp.status_code == 404
    _, staff_id = await _staff_key(client, keys, sessionmaker, "STORE-A")
    resp = await client.put(
        f"/v1/api-keys/{staff_id}/warehouses",
        json={"warehouses": ["NOPE"]},
        headers=auth(keys["admin"]),
    )
    assert resp.status_code == 404 and resp.json()["code"] == "warehouse_not_found"
    resp = await client.put(url, json={"warehouses": []}, headers=auth(keys["fulfillment"]))
    assert resp.status_code == 403


async def test_a_scoped_key_lists_and_reads_only_its_locations_orders(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """``GET /v1/orders`` (every page, every filter), a customer's orders and an order's
    history: a store key gets the orders with a shipment at its locations, nothing else."""
    token, _ = await _staff_key(client, keys, sessionmaker, "STORE-A")
    staff = auth(token)
    at_a = [await _paid_pickup(client, keys, "STORE-A") for _ in range(2)]
    at_b = [await _paid_pickup(client, keys, "STORE-B") for _ in range(3)]
    mine = {o["id"] for o in at_a}

    seen: list[str] = []
    cursor: str | None = None
    for _ in range(10):  # one order a page: the scope holds across pages
        params: dict[str, Any] = {"limit": 1} | ({"cursor": cursor} if cursor else {})
        page = await client.get("/v1/orders", params=params, headers=staff)
        assert page.status_code == 200, page.text
        seen += [o["id"] for o in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(mine)
    for params in ({"status": "paid"}, {"channel": "web"}, {"customer_id": "cus_1"}):
        listed = await client.get("/v1/orders", params=params, headers=staff)
        assert {o["id"] for o in listed.json()["items"]} == mine, params
    customer = await client.get("/v1/customers/cus_1/orders", headers=staff)
    assert {o["id"] for o in customer.json()["items"]} == mine
    everyone = await client.get("/v1/orders", headers=auth(keys["fulfillment"]))
    assert len(everyone.json()["items"]) == 5  # an unscoped key lists them all

    assert (await client.get(f"/v1/orders/{at_a[0]['id']}/history", headers=staff)).is_success
    resp = await client.get(f"/v1/orders/{at_b[0]['id']}/history", headers=staff)
    assert resp.status_code == 404 and resp.json()["code"] == "order_not_found"
