"""Console sessions without a browser (the ASGI app over httpx; the clock injected): expiry,
revocation, the session id stored only as a hash, the security headers, the setting that
turns the console off."""

from __future__ import annotations

import re
from datetime import timedelta

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms.auth.service import revoke_api_key, set_key_warehouses
from oms.config import Settings
from oms.console import sessions
from oms.inventory import service as inventory_service
from oms.main import create_app
from oms.shared.clock import utcnow
from tests.browser.console import place_order
from tests.helpers import stock

LIFETIME = sessions.Lifetime(idle=timedelta(minutes=30), absolute=timedelta(hours=12))


async def _signed_in(sessionmaker: async_sessionmaker[AsyncSession], key: str) -> sessions.SignedIn:
    async with sessionmaker() as session, session.begin():
        signed = await sessions.sign_in(session, token=key, lifetime=LIFETIME, now=utcnow())
    assert signed is not None
    return signed


async def _load(
    sessionmaker: async_sessionmaker[AsyncSession], session_id: str, *, after: timedelta
) -> sessions.Viewer | None:
    async with sessionmaker() as session, session.begin():
        return await sessions.load(
            session, session_id=session_id, lifetime=LIFETIME, now=utcnow() + after
        )


async def test_a_session_ends_when_idle_and_at_its_absolute_end(
    sessionmaker: async_sessionmaker[AsyncSession], keys: dict[str, str]
) -> None:
    signed = await _signed_in(sessionmaker, keys["admin"])
    viewer = await _load(sessionmaker, signed.session_id, after=timedelta(minutes=29))
    assert viewer is not None and viewer.role == "admin"
    assert viewer.csrf_token == signed.csrf_token
    # used at minute 29: the idle clock restarted, so minute 58 is still fine ...
    assert await _load(sessionmaker, signed.session_id, after=timedelta(minutes=58))
    # ... but 31 idle minutes later it is over, and stays over
    assert await _load(sessionmaker, signed.session_id, after=timedelta(minutes=90)) is None
    assert await _load(sessionmaker, signed.session_id, after=timedelta(minutes=1)) is None
    # however active, a session ends at sign-in + 12 h
    other = await _signed_in(sessionmaker, keys["admin"])
    for minutes in range(20, 12 * 60, 20):
        assert await _load(sessionmaker, other.session_id, after=timedelta(minutes=minutes))
    assert await _load(sessionmaker, other.session_id, after=timedelta(hours=12)) is None


async def test_revoking_the_key_ends_its_sessions_at_once(
    sessionmaker: async_sessionmaker[AsyncSession], keys: dict[str, str]
) -> None:
    signed = await _signed_in(sessionmaker, keys["fulfillment"])
    assert await _load(sessionmaker, signed.session_id, after=timedelta(0))
    async with sessionmaker() as session, session.begin():
        await revoke_api_key(session, key_id=signed.principal.key_id)
    assert await _load(sessionmaker, signed.session_id, after=timedelta(0)) is None


async def test_only_a_hash_of_the_session_id_is_stored(
    sessionmaker: async_sessionmaker[AsyncSession], keys: dict[str, str]
) -> None:
    signed = await _signed_in(sessionmaker, keys["storefront"])
    async with sessionmaker() as session:
        stored = (await session.execute(text("SELECT id_hash FROM console_sessions"))).scalars()
        assert list(stored) == [sessions.hash_id(signed.session_id)]


async def test_connector_keys_and_unknown_keys_get_no_session(
    sessionmaker: async_sessionmaker[AsyncSession], keys: dict[str, str]
) -> None:
    async with sessionmaker() as session, session.begin():
        for token in (keys["connector"], "oms_abc_def", "", "x" * 500):
            assert (
                await sessions.sign_in(session, token=token, lifetime=LIFETIME, now=utcnow())
                is None
            )


async def test_pages_carry_the_security_headers_and_ask_for_sign_in(
    client: httpx.AsyncClient,
) -> None:
    resp = await client.get("/console/orders?status=paid")
    assert resp.status_code == 303
    assert resp.headers["location"] == "/console/sign-in?next=%2Fconsole%2Forders%3Fstatus%3Dpaid"
    page = await client.get("/console/sign-in")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"
    assert re.search(r"<script[^>]*>[^<]", page.text) is None  # no inline script at all
    cookie = page.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" not in cookie
    # served over TLS (as a proxy tells uvicorn), the cookies are Secure
    secure = await client.get("https://oms.test/console/sign-in")
    assert "Secure" in secure.headers["set-cookie"]
    # the assets ship in the package
    js = await client.get("/console/static/htmx.min.js")
    assert js.status_code == 200 and "htmx" in js.text[:2000]


async def test_after_sign_in_only_console_paths_are_followed(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    page = await client.get("/console/sign-in")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    for target, expected in (
        ("/console/inventory", "/console/inventory"),
        ("https://evil.example/", "/console"),
        ("//evil.example/console/", "/console"),
        ("/console/..//evil", "/console"),
    ):
        client.cookies.set("oms_console_signin", token.group(1), path="/console")
        resp = await client.post(
            "/console/sign-in",
            data={"csrf_token": token.group(1), "api_key": keys["admin"], "next": target},
        )
        assert resp.status_code == 303 and resp.headers["location"] == expected, target


async def test_the_console_can_be_turned_off(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"console_enabled": False}))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://oms.test") as off:
        assert (await off.get("/console/sign-in")).status_code == 404
        assert (await off.get("/console/static/htmx.min.js")).status_code == 404


async def _console_client(client: httpx.AsyncClient, key: str) -> httpx.AsyncClient:
    """``client`` signed in to the console with ``key`` (through the sign-in form)."""
    page = await client.get("/console/sign-in")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    resp = await client.post(
        "/console/sign-in", data={"csrf_token": token.group(1), "api_key": key, "next": ""}
    )
    assert resp.status_code == 303, resp.text
    return client


async def test_a_channel_bound_storefront_key_sees_its_channel_only(
    client: httpx.AsyncClient, keys: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await stock(sessionmaker, "BER", {"TSHIRT-RED-M": 10, "MUG-01": 10})
    web = await place_order(client, keys["storefront"], channel="web")
    app = await place_order(client, keys["storefront"], channel="app")
    await _console_client(client, keys["storefront_web"])
    listed = await client.get("/console/orders")
    assert listed.status_code == 200
    assert f"#{web['number']}<" in listed.text and f"#{app['number']}<" not in listed.text
    assert (await client.get(f"/console/orders/{web['id']}")).status_code == 200
    assert (await client.get(f"/console/orders/{app['id']}")).status_code == 404
    for path in ("/console/dashboard", "/console/warehouse", "/console/inventory"):
        assert (await client.get(path)).status_code == 403, path


async def test_a_scoped_fulfilment_key_works_in_its_warehouses_only(
    client: httpx.AsyncClient, keys: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await stock(sessionmaker, "BER", {"MUG-01": 10})
    await stock(sessionmaker, "MUC", {"MUG-01": 10})
    async with sessionmaker() as session, session.begin():
        found = await inventory_service.warehouse_ids_by_code(session, codes=["MUC"])
        signed = await sessions.sign_in(
            session, token=keys["fulfillment"], lifetime=LIFETIME, now=utcnow()
        )
        assert signed is not None
        key_id = signed.principal.key_id
        await set_key_warehouses(session, key_id=key_id, warehouse_ids=[found["MUC"]])
    await _console_client(client, keys["fulfillment"])
    # one warehouse: straight to its queue; the other one does not exist for this key
    home = await client.get("/console/warehouse")
    assert home.status_code == 303 and home.headers["location"] == "/console/warehouse/MUC"
    assert (await client.get("/console/warehouse/BER")).status_code == 404
    inventory = await client.get("/console/inventory")
    assert inventory.status_code == 200 and ">BER<" not in inventory.text
