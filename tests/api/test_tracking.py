"""The customer's tracking page and JSON, reached by a signed link: what it shows, what it never
shows, and how it refuses altered, foreign and expired links."""

from __future__ import annotations

import base64
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr, ValidationError
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms.config import Settings
from oms.tracking import service as tracking
from oms.tracking import token as tokens
from tests.helpers import auth, order_body


async def place_and_ship(client: httpx.AsyncClient, keys: dict[str, str]) -> dict[str, Any]:
    admin = auth(keys["admin"])
    body = order_body(
        customer={"id": "cus_t", "email": "secret.customer@example.com", "phone": "+4915112345"},
        locale="it",
    )
    resp = await client.post("/v1/orders", json=body, headers=admin)
    assert resp.status_code == 201, resp.text
    order = dict(resp.json())
    for step in ("paid", "picked", "packed"):
        r = await client.post(
            f"/v1/orders/{order['id']}/transitions", json={"to": step}, headers=admin
        )
        assert r.status_code == 200, r.text
    r = await client.post(
        f"/v1/orders/{order['id']}/transitions",
        json={"to": "shipped", "carrier": "DHL", "tracking_number": "JD<b>0146"},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    return order


async def link(
    app: FastAPI,
    sessionmaker: async_sessionmaker[AsyncSession],
    order_id: str,
    now: datetime | None = None,
) -> str:
    async with sessionmaker() as session, session.begin():
        url = await tracking.link_for(
            session,
            settings=app.state.settings,
            order_id=uuid.UUID(order_id),
            now=now or datetime.now(UTC),
        )
    return url.rsplit("/track/", 1)[1]


async def test_tracking_json_shows_the_parcels_and_nothing_else(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    app: FastAPI,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    order = await place_and_ship(client, keys)
    token = await link(app, sessionmaker, order["id"])
    resp = await client.get(f"/v1/tracking/{token}")  # no API key
    assert resp.status_code == 200, resp.text
    data = resp.json()
    assert data["order_number"] == order["number"]
    assert data["status"] == "shipped"
    assert data["destination"] == {"city": "Berlin", "country": "DE", "pickup_store": None}
    [parcel] = data["shipments"]
    assert parcel["carrier"] == "DHL" and parcel["tracking_number"] == "JD<b>0146"
    assert parcel["tracking_link"].endswith("tracking-id=JD%3Cb%3E0146")
    assert data["returns"] == []
    leaked = resp.text
    for private in (
        order["id"],
        "secret.customer@example.com",
        "+4915112345",
        "Ada Lovelace",
        "Unter den Linden",
        "10117",
        "cus_t",
        str(order["totals"]["total"]),
        "BER",  # the warehouse
    ):
        assert private not in leaked, private
    assert set(data) == {
        "order_number",
        "status",
        "placed_on",
        "fulfillment",
        "destination",
        "shipments",
        "returns",
        "link_expires_at",
    }


async def test_tracking_page_is_html_in_the_customers_language(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    app: FastAPI,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    order = await place_and_ship(client, keys)
    token = await link(app, sessionmaker, order["id"])
    resp = await client.get(f"/track/{token}")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/html")
    assert resp.headers["referrer-policy"] == "no-referrer"
    assert "default-src 'none'" in resp.headers["content-security-policy"]
    assert resp.headers["cache-control"] == "no-store"
    page = resp.text
    assert f"Ordine {order['number']}" in page and "Spedito" in page
    assert "JD&lt;b&gt;0146" in page and "JD<b>0146" not in page  # escaped
    assert "secret.customer@example.com" not in page and order["id"] not in page


@pytest.mark.parametrize("where", ["json", "page"])
async def test_tampered_foreign_and_expired_links_are_refused(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    app: FastAPI,
    sessionmaker: async_sessionmaker[AsyncSession],
    where: str,
) -> None:
    order = await place_and_ship(client, keys)
    good = await link(app, sessionmaker, order["id"])
    base = "/v1/tracking/" if where == "json" else "/track/"

    def url(token: str) -> str:
        return base + token

    flipped = good[:-5] + ("A" if good[-5] != "A" else "B") + good[-4:]
    # the order id swapped for another one, the signature kept
    other = tokens.sign(uuid.uuid4(), datetime.now(UTC) + timedelta(days=1), b"k")
    swapped = other[:32] + good[32:]
    foreign = tokens.sign(uuid.UUID(order["id"]), datetime.now(UTC) + timedelta(days=1), b"x" * 32)
    for bad in (flipped, swapped, foreign, good[:-1], good + "A", "not-a-token", "%00" * 10):
        resp = await client.get(url(bad))
        assert resp.status_code == 404, (bad, resp.text)
        if where == "json":
            assert resp.json()["code"] in ("tracking_link_invalid", "not_found")
        else:
            assert resp.headers["content-type"].startswith("text/html")
            assert "tracking_link_invalid" in resp.text
            assert "Ada" not in resp.text

    expired = await link(
        app, sessionmaker, order["id"], now=datetime.now(UTC) - timedelta(days=400)
    )
    resp = await client.get(url(expired))
    assert resp.status_code == 410
    if where == "json":
        assert resp.json()["code"] == "tracking_link_expired"
    else:
        assert "tracking_link_expired" in resp.text

    # a genuine link to an order that does not exist (e.g. deleted data): 404, not 500
    missing = await link(app, sessionmaker, str(uuid.uuid4()))
    assert (await client.get(url(missing))).status_code == 404
    assert (await client.get(url(good))).status_code == 200


def test_tokens_are_bound_to_key_order_and_expiry() -> None:
    now = datetime(2026, 12, 5, tzinfo=UTC)
    key = tokens.derive_key("s" * 40)
    order_id = uuid.uuid4()
    token = tokens.sign(order_id, now + timedelta(hours=1), key)
    assert len(token) == tokens.TOKEN_CHARS
    assert tokens.verify(token, key, now=now)[0] == order_id
    with pytest.raises(tokens.ExpiredToken):
        tokens.verify(token, key, now=now + timedelta(hours=1))
    with pytest.raises(tokens.InvalidToken):
        tokens.verify(token, tokens.derive_key("t" * 40), now=now)
    for i in range(len(token)):  # any single character changed
        changed = token[:i] + ("A" if token[i] != "A" else "B") + token[i + 1 :]
        with pytest.raises(tokens.InvalidToken):
            tokens.verify(changed, key, now=now)


async def test_the_promised_dates_are_shown_when_the_order_has_them(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    app: FastAPI,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    resp = await client.post(
        "/v1/orders", json=order_body(locale="it"), headers=auth(keys["admin"])
    )
    assert resp.status_code == 201, resp.text
    order = resp.json()
    token = await link(app, sessionmaker, order["id"])
    before = (await client.get(f"/v1/tracking/{token}")).json()
    assert before["shipments"][0]["deliver_by"] is None  # no promise: none shown
    assert "deliver-by" not in (await client.get(f"/track/{token}")).text
    # the promise placement stores when warehouses have calendars (oms.orders.promising)
    async with sessionmaker() as session, session.begin():
        await session.execute(
            text(
                "UPDATE shipments SET ship_by = '2030-03-04T17:00:00+00', "
                "deliver_by = '2030-03-07' WHERE order_id = :o"
            ),
            {"o": order["id"]},
        )
    data = (await client.get(f"/v1/tracking/{token}")).json()
    [parcel] = data["shipments"]
    assert (parcel["ship_by"], parcel["deliver_by"]) == ("2030-03-04", "2030-03-07")
    page = (await client.get(f"/track/{token}")).text
    assert "Consegna prevista entro il" in page and "2030-03-07" in page
    assert "Non ancora spedito." in page


async def test_links_never_reach_the_access_log(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    app: FastAPI,
    sessionmaker: async_sessionmaker[AsyncSession],
    caplog: pytest.LogCaptureFixture,
) -> None:
    order = await place_and_ship(client, keys)
    token = await link(app, sessionmaker, order["id"])
    caplog.set_level(logging.INFO, logger="oms.access")
    for path in (f"/track/{token}", f"/v1/tracking/{token}", f"/v1/tracking/{token[:-2]}xx"):
        await client.get(path)
    access = [r for r in caplog.records if r.name == "oms.access"]
    assert [getattr(r, "path", None) for r in access] == [
        "/track/{token}",
        "/v1/tracking/{token}",
        "/v1/tracking/{token}",
    ]
    assert all(token[:20] not in f"{r.getMessage()} {r.__dict__}" for r in caplog.records)


async def test_a_configured_secret_signs_the_links(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    app: FastAPI,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    with pytest.raises(ValidationError):
        Settings(tracking_secret="too-short")
    order = await place_and_ship(client, keys)
    configured = app.state.settings.model_copy(
        update={"tracking_secret": SecretStr("k" * 40), "public_base_url": "https://shop.test/"}
    )
    now = datetime.now(UTC)
    async with sessionmaker() as session, session.begin():
        url = await tracking.link_for(
            session, settings=configured, order_id=uuid.UUID(order["id"]), now=now
        )
        assert url.startswith("https://shop.test/track/")
        token = url.rsplit("/", 1)[1]
        found = await tracking.view(session, settings=configured, token=token, now=now)
        assert found.data["order_number"] == order["number"]
    # the app keeps its own key (none configured): a link signed with another key is refused
    assert (await client.get(f"/v1/tracking/{token}")).status_code == 404


def test_a_token_says_nothing_readable() -> None:
    """A link travels in emails, SMS and browser histories: decoding it shows neither the order's
    id nor its expiry (it is encrypted as well as signed), and two links to one order differ
    with the key."""
    now = datetime(2026, 12, 5, tzinfo=UTC)
    order_id = uuid.uuid4()
    expires = now + timedelta(days=90)
    key = tokens.derive_key("s" * 40)
    token = tokens.sign(order_id, expires, key)
    raw = base64.urlsafe_b64decode(token + "=")
    assert order_id.bytes not in raw and order_id.bytes[:6] not in raw
    assert int(expires.timestamp()).to_bytes(8, "big")[3:] not in raw
    other = tokens.sign(order_id, expires, tokens.derive_key("t" * 40))
    assert base64.urlsafe_b64decode(other + "=")[:24] != raw[:24]
    assert tokens.verify(token, key, now=now) == (order_id, expires)
