"""Stock reads added with the stock feed respect a store-scoped key and a channel-bound key:
levels as of a past moment show only the key's locations, a channel-bound key cannot read
another channel's feed, and a cursor is only a place in the journal (any channel may use it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms.auth import service as auth_service
from oms.shared.roles import Role
from tests.helpers import auth, stock

SKU = "CAP-9"


@pytest.fixture(autouse=True)
async def stores(sessionmaker: async_sessionmaker[AsyncSession], client: httpx.AsyncClient) -> None:
    for code, lat in (("STORE-A", 52.5), ("STORE-B", 48.1)):
        await stock(
            sessionmaker, code, {SKU: 20}, latitude=lat, longitude=13.4, is_pickup_store=True
        )


async def _staff(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    *codes: str,
) -> dict[str, str]:
    async with sessionmaker() as session, session.begin():
        key, token = await auth_service.create_api_key(session, name="staff", role=Role.FULFILLMENT)
    resp = await client.put(
        f"/v1/api-keys/{key.id}/warehouses",
        json={"warehouses": list(codes)},
        headers=auth(keys["admin"]),
    )
    assert resp.status_code == 200, resp.text
    return auth(token)


async def test_levels_as_of_show_only_a_scoped_keys_locations(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    staff = await _staff(client, keys, sessionmaker, "STORE-A")
    now = (datetime.now(UTC) + timedelta(seconds=1)).isoformat()
    resp = await client.get("/v1/inventory/levels", params={"sku": SKU}, headers=staff)
    assert [lv["warehouse"] for lv in resp.json()] == ["STORE-A"]
    resp = await client.get(
        "/v1/inventory/levels", params={"sku": SKU, "as_of": now}, headers=staff
    )
    assert resp.status_code == 200, resp.text
    assert [(lv["warehouse"], lv["on_hand"]) for lv in resp.json()] == [("STORE-A", 20)]
    resp = await client.get(
        "/v1/inventory/levels", params={"sku": SKU, "as_of": now}, headers=auth(keys["fulfillment"])
    )
    assert [lv["warehouse"] for lv in resp.json()] == ["STORE-A", "STORE-B"]


async def test_levels_as_of_a_future_moment_or_the_epoch(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    headers = auth(keys["fulfillment"])
    later = (datetime.now(UTC) + timedelta(days=365)).isoformat()
    resp = await client.get(
        "/v1/inventory/levels", params={"sku": SKU, "as_of": later}, headers=headers
    )
    assert resp.status_code == 200, resp.text
    assert {lv["on_hand"] for lv in resp.json()} == {20}
    epoch = "1970-01-01T00:00:00Z"
    resp = await client.get(
        "/v1/inventory/levels", params={"sku": SKU, "as_of": epoch}, headers=headers
    )
    assert resp.status_code == 200, resp.text
    assert {(lv["on_hand"], lv["reserved"]) for lv in resp.json()} == {(0, 0)}
    for bad in ("1969-12-31T23:59:59Z", "2026-01-01T00:00:00", "0001-01-01T00:00:00+14:00"):
        resp = await client.get(
            "/v1/inventory/levels", params={"sku": SKU, "as_of": bad}, headers=headers
        )
        assert resp.status_code == 422, (bad, resp.text)
        assert resp.headers["content-type"] == "application/problem+json"


async def test_a_channel_bound_key_reads_only_its_channels_feed(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    bound = auth(keys["storefront_web"])
    resp = await client.get("/v1/inventory/changes", params={"channel": "app"}, headers=bound)
    assert resp.status_code == 403, resp.text
    assert resp.json()["code"] == "channel_not_allowed"
    resp = await client.get("/v1/inventory/changes", headers=bound)
    assert resp.status_code == 200, resp.text
    assert resp.json()["channel"] == "web"
    # a cursor handed out on one channel's page is a place in the journal: another channel
    # reading from it sees what changed after that place, nothing is lost or repeated
    cursor = resp.json()["cursor"]
    staff = auth(keys["fulfillment"])
    adjust = {"warehouse": "STORE-A", "sku": SKU, "type": "receive", "quantity": 1}
    assert (
        await client.post("/v1/inventory/adjustments", json=adjust, headers=staff)
    ).status_code == 201
    for channel in ("web", "app"):
        resp = await client.get(
            "/v1/inventory/changes", params={"cursor": cursor, "channel": channel}, headers=staff
        )
        assert resp.status_code == 200, resp.text
        assert [(lv["warehouse"], lv["on_hand"]) for lv in resp.json()["levels"]] == [
            ("STORE-A", 21)
        ]


async def test_the_change_feed_lists_only_a_scoped_keys_locations(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    staff = await _staff(client, keys, sessionmaker, "STORE-A")
    resp = await client.get("/v1/inventory/changes", headers=staff)
    assert resp.status_code == 200, resp.text
    assert {lv["warehouse"] for lv in resp.json()["levels"]} == {"STORE-A"}
    resp = await client.get("/v1/inventory/changes", headers=auth(keys["fulfillment"]))
    assert {lv["warehouse"] for lv in resp.json()["levels"]} >= {"STORE-A", "STORE-B"}


async def test_a_scoped_key_cannot_receive_or_read_another_locations_purchase_order(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    admin = auth(keys["admin"])
    body = {"code": "ACME", "name": "Acme", "lead_time_days": 7}
    assert (await client.post("/v1/suppliers", json=body, headers=admin)).status_code == 201
    ids = {}
    for store in ("STORE-A", "STORE-B"):
        po = {"supplier": "ACME", "warehouse": store, "lines": [{"sku": SKU, "quantity": 10}]}
        resp = await client.post("/v1/purchase-orders", json=po, headers=admin)
        assert resp.status_code == 201, resp.text
        ids[store] = resp.json()["id"]
        resp = await client.post(f"/v1/purchase-orders/{ids[store]}/send", headers=admin)
        assert resp.status_code == 200, resp.text
    staff = await _staff(client, keys, sessionmaker, "STORE-A")
    receipt = {"reference": "GRN-1", "lines": [{"sku": SKU, "quantity": 4}]}

    other = ids["STORE-B"]
    resp = await client.post(f"/v1/purchase-orders/{other}/receipts", json=receipt, headers=staff)
    assert resp.status_code == 404, resp.text
    assert resp.json()["code"] == "purchase_order_not_found"
    assert (await client.get(f"/v1/purchase-orders/{other}", headers=staff)).status_code == 404
    listed = (await client.get("/v1/purchase-orders", headers=staff)).json()
    assert [po["warehouse"] for po in listed] == ["STORE-A"]
    levels = (await client.get("/v1/inventory/levels", params={"sku": SKU}, headers=admin)).json()
    assert {lv["warehouse"]: lv["on_hand"] for lv in levels} == {"STORE-A": 20, "STORE-B": 20}

    own = ids["STORE-A"]
    resp = await client.post(f"/v1/purchase-orders/{own}/receipts", json=receipt, headers=staff)
    assert resp.status_code == 201, resp.text
    assert (await client.get(f"/v1/purchase-orders/{own}", headers=staff)).status_code == 200


async def test_a_scoped_key_cannot_export_the_whole_ledger(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    staff = await _staff(client, keys, sessionmaker, "STORE-A")
    for path in ("/v1/inventory/ledger", "/v1/inventory/ledger/verify"):
        resp = await client.get(path, headers=staff)
        assert resp.status_code == 403, resp.text
        assert resp.json()["code"] == "scoped_key_not_allowed"
        resp = await client.get(path, headers=auth(keys["fulfillment"]))
        assert resp.status_code == 200, resp.text


async def test_reorder_suggestions_show_a_scoped_key_only_its_locations(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    admin = auth(keys["admin"])
    body = {"code": "ACME", "name": "Acme", "lead_time_days": 7}
    assert (await client.post("/v1/suppliers", json=body, headers=admin)).status_code == 201
    for store in ("STORE-A", "STORE-B"):
        resp = await client.put(
            f"/v1/reorder-policies/{store}", json={"supplier": "ACME"}, headers=admin
        )
        assert resp.status_code == 200, resp.text
    every = (await client.get("/v1/reorder-suggestions", headers=admin)).json()
    assert {s["warehouse"] for s in every} == {"STORE-A", "STORE-B"}
    staff = await _staff(client, keys, sessionmaker, "STORE-A")
    resp = await client.get("/v1/reorder-suggestions", headers=staff)
    assert resp.status_code == 200, resp.text
    assert {s["warehouse"] for s in resp.json()} == {"STORE-A"}
