"""The auth matrix: missing/invalid/revoked keys, roles per operation, channel binding."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms.auth.service import revoke_api_key
from tests.helpers import auth, order_body


async def test_missing_and_malformed_keys_get_401(client: httpx.AsyncClient) -> None:
    for headers in ({}, auth("nope"), auth("oms_abc_def"), {"X-API-Key": "oms_x_y"}):
        resp = await client.get("/v1/orders", headers=headers)
        assert resp.status_code == 401
        assert resp.headers["content-type"] == "application/problem+json"
        assert resp.json()["code"] in {"missing_api_key", "invalid_api_key"}


async def test_x_api_key_header_works(client: httpx.AsyncClient, keys: dict[str, str]) -> None:
    resp = await client.get("/v1/orders", headers={"X-API-Key": keys["admin"]})
    assert resp.status_code == 200


async def test_wrong_secret_for_a_real_prefix_is_401(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    prefix = keys["admin"].split("_")[1]
    resp = await client.get("/v1/orders", headers=auth(f"oms_{prefix}_wrongsecret"))
    assert resp.status_code == 401


@pytest.mark.parametrize(
    ("role", "create", "read", "pay", "pick_cod", "cancel"),
    [
        ("admin", 201, 200, 200, 200, 200),
        ("storefront", 201, 200, 403, 403, 200),
        ("fulfillment", 403, 200, 403, 200, 403),
        ("connector", 403, 403, 403, 403, 403),
    ],
)
async def test_role_matrix(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    role: str,
    create: int,
    read: int,
    pay: int,
    pick_cod: int,
    cancel: int,
) -> None:
    token = keys[role]
    assert (
        await client.post("/v1/orders", json=order_body(), headers=auth(token))
    ).status_code == create
    card = (await client.post("/v1/orders", json=order_body(), headers=auth(keys["admin"]))).json()
    cod = (
        await client.post(
            "/v1/orders",
            json=order_body(payment_method="cash_on_delivery"),
            headers=auth(keys["admin"]),
        )
    ).json()
    assert (await client.get(f"/v1/orders/{card['id']}", headers=auth(token))).status_code == read
    assert (await client.get("/v1/orders", headers=auth(token))).status_code == read
    pay_resp = await client.post(
        f"/v1/orders/{card['id']}/transitions", json={"to": "paid"}, headers=auth(token)
    )
    assert pay_resp.status_code == pay
    pick_resp = await client.post(
        f"/v1/orders/{cod['id']}/transitions", json={"to": "picked"}, headers=auth(token)
    )
    assert pick_resp.status_code == pick_cod
    other = (await client.post("/v1/orders", json=order_body(), headers=auth(keys["admin"]))).json()
    cancel_resp = await client.post(
        f"/v1/orders/{other['id']}/transitions", json={"to": "cancelled"}, headers=auth(token)
    )
    assert cancel_resp.status_code == cancel
    if cancel_resp.status_code == 403:
        assert cancel_resp.json()["code"] == "role_not_allowed"


async def test_channel_bound_key_sees_only_its_channel(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    web_key = keys["storefront_web"]
    pos = (
        await client.post("/v1/orders", json=order_body(channel="pos"), headers=auth(keys["admin"]))
    ).json()
    web = (await client.post("/v1/orders", json=order_body(), headers=auth(web_key))).json()
    assert (await client.get(f"/v1/orders/{pos['id']}", headers=auth(web_key))).status_code == 404
    assert (
        await client.get(f"/v1/orders/{pos['id']}/history", headers=auth(web_key))
    ).status_code == 404
    listed = (await client.get("/v1/orders", headers=auth(web_key))).json()["items"]
    assert [o["id"] for o in listed] == [web["id"]]
    assert (
        await client.get("/v1/orders", params={"channel": "pos"}, headers=auth(web_key))
    ).json()["items"] == []
    wrong = await client.post("/v1/orders", json=order_body(channel="pos"), headers=auth(web_key))
    assert wrong.status_code == 403
    assert wrong.json()["code"] == "channel_not_allowed"
    cancel = await client.post(
        f"/v1/orders/{pos['id']}/transitions", json={"to": "cancelled"}, headers=auth(web_key)
    )
    assert cancel.status_code == 404


async def test_revoked_key_stops_working_at_once(
    client: httpx.AsyncClient, keys: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    token = keys["storefront"]
    assert (await client.get("/v1/orders", headers=auth(token))).status_code == 200
    async with sessionmaker() as session, session.begin():
        await revoke_api_key(session, prefix=token.split("_")[1])
    resp = await client.get("/v1/orders", headers=auth(token))
    assert resp.status_code == 401
    assert resp.json()["code"] == "invalid_api_key"
