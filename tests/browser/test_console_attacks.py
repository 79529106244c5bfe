"""The console attacked over HTTP (the ASGI app over httpx, signed in through the form): CSRF
on every state-changing route, session rotation and sign-out, script planted in data through
the API, authorisation by role and warehouse scope, malformed input. Each refusal also checks
that nothing changed."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
from fastapi.routing import APIRoute
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms.auth.service import authenticate, set_key_warehouses
from oms.console.router import router as console_router
from oms.console.web import COOKIE
from oms.inventory import service as inventory_service
from tests.browser.console import pay, place_order
from tests.helpers import auth, stock
from tests.webhooks.conftest import canonical, make_connector, oms_headers, order_data

SCRIPT = '<script>alert("xss")</script>'
IMG = '"><img src=x onerror=alert(1)>'
RAW = ("<script>alert", "<img src=x")
"""Planted markup: never in a page as markup ..."""
ESCAPED = ("&lt;script&gt;alert", "&lt;img src=x")
"""... but shown, escaped (so the test sees the data was rendered)."""


def _token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None, html[:500]
    return found.group(1)


def _session_cookie(resp: httpx.Response) -> str | None:
    """The session id a response sets (None: it sets none)."""
    for header in resp.headers.get_list("set-cookie"):
        found = re.match(rf"{COOKIE}=([^;]*)", header)
        if found:
            return found.group(1)
    return None


async def _sign_in(client: httpx.AsyncClient, key: str) -> str:
    """Sign ``client`` in with ``key``; the CSRF token of its new session."""
    page = await client.get("/console/sign-in")
    resp = await client.post(
        "/console/sign-in", data={"csrf_token": _token(page.text), "api_key": key, "next": ""}
    )
    assert resp.status_code == 303, resp.text
    assert _session_cookie(resp)
    return _token((await client.get("/console/orders")).text)


def _other(client: httpx.AsyncClient, session_id: str | None = None) -> httpx.AsyncClient:
    """Another browser on the same app (with this session cookie, if given)."""
    headers = {"cookie": f"{COOKIE}={session_id}"} if session_id is not None else None
    return httpx.AsyncClient(
        transport=client._transport, base_url="http://oms.test", headers=headers
    )


def _state_changing_routes() -> list[APIRoute]:
    return [
        r
        for r in console_router.routes
        if isinstance(r, APIRoute) and r.methods & {"POST", "PUT", "PATCH", "DELETE"}
    ]


async def _order_state(client: httpx.AsyncClient, admin: str, order_id: str) -> Any:
    read = (await client.get(f"/v1/orders/{order_id}", headers=auth(admin))).json()
    holds = (await client.get(f"/v1/orders/{order_id}/holds", headers=auth(admin))).json()
    return read["status"], read["version"], [s["status"] for s in read["shipments"]], holds


# ---- CSRF ----------------------------------------------------------------------------------


async def test_every_state_changing_route_refuses_a_missing_wrong_or_foreign_csrf_token(
    client: httpx.AsyncClient, keys: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await stock(sessionmaker, "BER", {"TSHIRT-RED-M": 10, "MUG-01": 10})
    order = await place_order(client, keys["storefront"])
    await pay(client, keys["admin"], order["id"])
    hold = await client.post(
        f"/v1/orders/{order['id']}/holds", json={"reason": "other"}, headers=auth(keys["admin"])
    )
    assert hold.status_code == 201
    params = {
        "order_id": order["id"],
        "hold_id": hold.json()["id"],
        "code": "BER",
        "shipment_id": order["shipments"][0]["id"],
        "delivery_id": "1",
        "inbox_id": "1",
    }
    forms = {  # what each form sends, but its token: done with the token, each would act
        "/console/sign-out": {},
        "/console/orders/{order_id}/transitions": {"to": "cancelled", "reason": "csrf"},
        "/console/orders/{order_id}/holds": {"reason": "other", "note": "csrf"},
        "/console/orders/{order_id}/holds/{hold_id}/release": {},
        "/console/orders/{order_id}/reroute": {},
        "/console/warehouse/{code}/orders/{order_id}/shipments/{shipment_id}": {
            "to": "picked",
            "sku": ["TSHIRT-RED-M", "MUG-01"],
        },
        "/console/inventory/adjustments": {
            "warehouse": "BER",
            "sku": "MUG-01",
            "type": "receive",
            "quantity": "5",
            "reason": "csrf",
        },
        "/console/integrations/deliveries/{delivery_id}/redeliver": {},
        "/console/integrations/inbox/{inbox_id}/replay": {},
    }
    routes = {r.path for r in _state_changing_routes()} - {"/console/sign-in"}
    assert routes == set(forms), "a new state-changing route: add it here"
    # another browser's session: its token must not open this one's forms
    async with _other(client) as other:
        foreign = await _sign_in(other, keys["admin"])
    good = await _sign_in(client, keys["admin"])
    before = await _order_state(client, keys["admin"], order["id"])
    for path, data in forms.items():
        url = path.format(**params)
        for token in (None, "", "x" * 43, foreign, good + "x", good[:-1]):
            body = dict(data or {"note": ""}) if token is None else data | {"csrf_token": token}
            resp = await client.post(url, data=body)
            assert resp.status_code == 403, (path, token, resp.status_code)
            assert "CSRF" in resp.text, path
        # the token sent any other way than in the form: refused too
        json_body = await client.post(url, json=data | {"csrf_token": good})
        assert json_body.status_code in {403, 415}, path
        header = await client.post(url, data=data or {"note": ""}, headers={"X-CSRF-Token": good})
        assert header.status_code == 403, path
    assert await _order_state(client, keys["admin"], order["id"]) == before
    levels = await client.get(
        "/v1/inventory/levels", params={"sku": "MUG-01"}, headers=auth(keys["admin"])
    )
    assert levels.json()[0]["on_hand"] == 10
    # and the session is still signed in (sign-out refused too)
    assert (await client.get("/console/orders")).status_code == 200


async def test_sign_in_refuses_a_form_without_its_cookie_token(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    page = await client.get("/console/sign-in")
    token = _token(page.text)
    client.cookies.clear()
    resp = await client.post(
        "/console/sign-in", data={"csrf_token": token, "api_key": keys["admin"], "next": ""}
    )
    assert resp.status_code == 403 and _session_cookie(resp) is None


async def test_no_state_changing_path_acts_on_a_get(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    """Every state-changing path answers GET with 405 (there is no GET twin that acts); the
    sign-in path's GET only shows the form."""
    await _sign_in(client, keys["admin"])
    values = {"code": "BER", "delivery_id": "1", "inbox_id": "1"}
    zero = str(uuid.UUID(int=0))
    for route in _state_changing_routes():
        url = re.sub(r"\{(\w+)\}", lambda m: values.get(m.group(1), zero), route.path)
        resp = await client.get(url)
        if route.path == "/console/sign-in":
            assert resp.status_code == 200 and "<form" in resp.text
        else:
            assert resp.status_code == 405, url


# ---- sessions ------------------------------------------------------------------------------


async def _sign_in_answer(client: httpx.AsyncClient, key: str) -> httpx.Response:
    page = await client.get("/console/sign-in")
    resp = await client.post(
        "/console/sign-in", data={"csrf_token": _token(page.text), "api_key": key, "next": ""}
    )
    assert resp.status_code == 303, resp.text
    return resp


async def test_signing_in_again_ends_the_previous_session_of_the_browser(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    first = _session_cookie(await _sign_in_answer(client, keys["admin"]))
    second = _session_cookie(await _sign_in_answer(client, keys["fulfillment"]))
    assert first and second and first != second  # a new id at every sign-in
    async with _other(client, first) as replay:
        old = await replay.get("/console/orders")
    assert old.status_code == 303 and old.headers["location"].startswith("/console/sign-in")
    async with _other(client, second) as current:
        assert (await current.get("/console/warehouse/BER")).status_code == 404  # signed in


async def test_a_cookie_planted_before_sign_in_is_not_the_session_afterwards(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    planted = "attacker-chosen-session-id-0123456789abcdef"
    client.cookies.set(COOKIE, planted, path="/console")
    signed = _session_cookie(await _sign_in_answer(client, keys["admin"]))
    assert signed and signed != planted
    async with _other(client, planted) as attacker:
        assert (await attacker.get("/console/orders")).status_code == 303


async def test_sign_out_ends_the_session_on_the_server(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    sid = _session_cookie(await _sign_in_answer(client, keys["admin"]))
    csrf = _token((await client.get("/console/orders")).text)
    out = await client.post("/console/sign-out", data={"csrf_token": csrf})
    assert out.status_code == 303 and "Max-Age=0" in out.headers["set-cookie"]
    async with _other(client, sid) as thief:  # someone who copied the cookie before sign-out
        assert (await thief.get("/console/dashboard")).status_code == 303
        refused = await thief.post("/console/sign-out", data={"csrf_token": csrf})
        assert refused.status_code == 303 and "sign-in" in refused.headers["location"]


async def test_a_session_cookie_of_garbage_is_a_sign_in_redirect(
    client: httpx.AsyncClient,
) -> None:
    for value in ("", "x", "a" * 129, "a" * 5000, "%00", "%C3%A9", '"quoted"'):
        async with _other(client, value) as browser:
            resp = await browser.get("/console/orders")
        assert resp.status_code == 303, value


# ---- script planted in data ----------------------------------------------------------------


def _assert_escaped(html: str, where: str, *, shown: tuple[str, ...] = ESCAPED) -> None:
    for raw in RAW:
        assert raw not in html, f"{where}: unescaped {raw!r}"
    for escaped in shown:
        assert escaped in html, f"{where}: the planted value is not shown ({escaped!r})"


async def test_markup_planted_through_the_api_is_shown_as_text_on_every_page(
    client: httpx.AsyncClient, keys: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    admin = auth(keys["admin"])
    await stock(sessionmaker, "BER", {"TSHIRT-RED-M": 10, "MUG-01": 10}, name=SCRIPT + IMG)
    lines = [
        {
            "sku": "MUG-01",
            "quantity": 1,
            "unit_price": 850,
            "tax_rate_bps": 700,
            "name": SCRIPT + IMG,
        }
    ]
    order = await place_order(
        client,
        keys["storefront"],
        external_reference=SCRIPT[:60] + IMG,
        shipping_address={
            "name": SCRIPT + IMG,
            "lines": [SCRIPT, IMG],
            "city": SCRIPT + IMG,
            "postal_code": "10117",
            "country": "DE",
        },
        lines=lines,
        notes=SCRIPT + IMG,
        attributes={"gift": SCRIPT + IMG},
    )
    await pay(client, keys["admin"], order["id"])
    held = await client.post(
        f"/v1/orders/{order['id']}/holds",
        json={"reason": "other", "note": SCRIPT + IMG},
        headers=admin,
    )
    assert held.status_code == 201
    sub = await client.post(
        "/v1/webhooks/subscriptions",
        json={
            "url": "https://hooks.example.com/x?a=%3Cscript%3E",
            "event_types": ["order.placed"],
            "description": SCRIPT + IMG,
        },
        headers=admin,
    )
    assert sub.status_code == 201, sub.text
    secret = await make_connector(client, admin, name="psp", fmt="oms")
    body = canonical(
        "order.created",
        **order_data(
            "in-" + SCRIPT[:50] + IMG,
            lines=[{"sku": "UNSTOCKED-1", "quantity": 1, "unit_price": 5}],
        ),
    )
    inbound = await client.post(
        "/v1/webhooks/inbound/psp", content=body, headers=oms_headers(secret, body)
    )
    assert inbound.status_code == 422, inbound.text
    csrf = await _sign_in(client, keys["admin"])
    cancel = await client.post(  # a reason in the history
        f"/console/orders/{order['id']}/transitions",
        data={"csrf_token": csrf, "to": "cancelled", "reason": SCRIPT + IMG},
    )
    assert cancel.status_code in {303, 409}, cancel.text
    pages = {
        f"/console/orders/{order['id']}": ESCAPED,
        "/console/orders": ESCAPED,
        f"/console/orders?q={SCRIPT[:40]}": ("&lt;script&gt;alert",),
        "/console/integrations": ESCAPED,
        "/console/inventory": ESCAPED,
        "/console/warehouse/BER": ESCAPED,
    }
    for path, shown in pages.items():
        resp = await client.get(path)
        assert resp.status_code == 200, (path, resp.status_code)
        _assert_escaped(resp.text, path, shown=shown)
    # error pages echo the bad input, escaped
    for path in (
        f"/console/warehouse/{IMG}",
        f"/console/orders?created_from={IMG[:10]}",
        f"/console/dashboard?currency={SCRIPT[:3]}",
        f"/console/inventory?warehouse={IMG[:32]}",
    ):
        resp = await client.get(path)
        assert 400 <= resp.status_code < 500, path
        for raw in ("<img src", "<scr"):
            assert raw not in resp.text.split("<main", 1)[1], path


async def test_a_placed_order_on_the_warehouse_screen_shows_planted_markup_as_text(
    client: httpx.AsyncClient, keys: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await stock(sessionmaker, "BER", {"MUG-01": 10})
    lines = [
        {
            "sku": "MUG-01",
            "quantity": 1,
            "unit_price": 850,
            "tax_rate_bps": 700,
            "name": SCRIPT + IMG,
        }
    ]
    order = await place_order(
        client,
        keys["storefront"],
        lines=lines,
        shipping_address={"name": SCRIPT + IMG, "lines": ["x"], "city": IMG, "country": "DE"},
    )
    await pay(client, keys["admin"], order["id"])
    await _sign_in(client, keys["fulfillment"])
    page = await client.get(f"/console/warehouse/BER/orders/{order['id']}")
    assert page.status_code == 200
    _assert_escaped(page.text, "shipment work")


# ---- authorisation -------------------------------------------------------------------------


async def test_each_role_reaches_only_its_pages_and_actions(
    client: httpx.AsyncClient, keys: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await stock(sessionmaker, "BER", {"TSHIRT-RED-M": 10, "MUG-01": 10})
    order = await place_order(client, keys["storefront"])
    await pay(client, keys["admin"], order["id"])
    oid, sid = order["id"], order["shipments"][0]["id"]
    admin_only = ["/console/dashboard", "/console/integrations"]
    warehouse_only = ["/console/warehouse", "/console/warehouse/BER", "/console/inventory"]
    admin_posts = {
        f"/console/orders/{oid}/holds": {"reason": "other"},
        f"/console/orders/{oid}/reroute": {},
        "/console/integrations/deliveries/1/redeliver": {},
        "/console/integrations/inbox/1/replay": {},
    }
    warehouse_posts = {
        f"/console/warehouse/BER/orders/{oid}/shipments/{sid}": {
            "to": "picked",
            "sku": ["TSHIRT-RED-M", "MUG-01"],
        },
        "/console/inventory/adjustments": {
            "warehouse": "BER",
            "sku": "MUG-01",
            "type": "receive",
            "quantity": "5",
            "reason": "x",
        },
    }
    before = await _order_state(client, keys["admin"], oid)
    csrf = await _sign_in(client, keys["fulfillment"])
    for path in admin_only:
        assert (await client.get(path)).status_code == 403, path
    for path, data in admin_posts.items():
        assert (await client.post(path, data=data | {"csrf_token": csrf})).status_code == 403
    csrf = await _sign_in(client, keys["storefront"])
    for path in admin_only + warehouse_only:
        assert (await client.get(path)).status_code == 403, path
    for path, data in (admin_posts | warehouse_posts).items():
        resp = await client.post(path, data=data | {"csrf_token": csrf})
        assert resp.status_code == 403, path
    assert await _order_state(client, keys["admin"], oid) == before
    # connector keys (machines) get no session at all
    client.cookies.clear()
    page = await client.get("/console/sign-in")
    refused = await client.post(
        "/console/sign-in",
        data={"csrf_token": _token(page.text), "api_key": keys["connector"], "next": ""},
    )
    assert refused.status_code == 401 and _session_cookie(refused) is None


async def _scoped_to_muc(
    client: httpx.AsyncClient, keys: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """Scope the fulfilment key to the store MUC (``auth.service.set_key_warehouses``)."""
    async with sessionmaker() as session, session.begin():
        found = await inventory_service.warehouse_ids_by_code(session, codes=["MUC"])
        principal = await authenticate(session, token=keys["fulfillment"])
        assert principal is not None
        await set_key_warehouses(session, key_id=principal.key_id, warehouse_ids=[found["MUC"]])


async def test_a_store_key_cannot_see_or_move_another_stores_shipments(
    client: httpx.AsyncClient, keys: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await stock(sessionmaker, "BER", {"MUG-01": 10}, priority=1)
    await stock(sessionmaker, "MUC", {"TSHIRT-RED-M": 10}, priority=2)
    mug = [{"sku": "MUG-01", "quantity": 1, "unit_price": 850, "tax_rate_bps": 700}]
    shirt = [{"sku": "TSHIRT-RED-M", "quantity": 1, "unit_price": 1999, "tax_rate_bps": 1900}]
    ber = await place_order(client, keys["storefront"], lines=mug)
    muc = await place_order(client, keys["storefront"], lines=shirt)
    assert ber["shipments"][0]["warehouse"] == "BER" and muc["shipments"][0]["warehouse"] == "MUC"
    for o in (ber, muc):
        await pay(client, keys["admin"], o["id"])
    await _scoped_to_muc(client, keys, sessionmaker)
    csrf = await _sign_in(client, keys["fulfillment"])
    ber_ship, muc_ship = ber["shipments"][0]["id"], muc["shipments"][0]["id"]
    before = await _order_state(client, keys["admin"], ber["id"])
    # another store's order: not found, whichever way it is asked for
    assert (await client.get(f"/console/orders/{ber['id']}")).status_code == 404
    assert (await client.get(f"/console/warehouse/BER/orders/{ber['id']}")).status_code == 404
    assert (await client.get(f"/console/warehouse/MUC/orders/{ber['id']}")).status_code == 404
    assert (await client.get(f"/console/warehouse/MUC?order={ber['number']}")).status_code == 404
    moves = [
        (f"/console/warehouse/MUC/orders/{ber['id']}/shipments/{ber_ship}", ["MUG-01"]),
        (f"/console/warehouse/MUC/orders/{muc['id']}/shipments/{ber_ship}", ["MUG-01"]),
        (f"/console/warehouse/BER/orders/{ber['id']}/shipments/{ber_ship}", ["MUG-01"]),
        (f"/console/warehouse/MUC/orders/{muc['id']}/shipments/{ber_ship}", []),
    ]
    for url, skus in moves:
        resp = await client.post(url, data={"csrf_token": csrf, "to": "picked", "sku": skus})
        assert resp.status_code == 404, (url, resp.status_code)
    moved = await client.post(
        f"/console/orders/{ber['id']}/transitions", data={"csrf_token": csrf, "to": "cancelled"}
    )
    assert moved.status_code == 404
    assert await _order_state(client, keys["admin"], ber["id"]) == before
    # its own shipment, reached through the URL of another order: not found either (the URL's
    # order and warehouse must be the shipment's, or the scan check is skipped)
    own_before = await _order_state(client, keys["admin"], muc["id"])
    wrong_order = await client.post(
        f"/console/warehouse/MUC/orders/{ber['id']}/shipments/{muc_ship}",
        data={"csrf_token": csrf, "to": "picked"},
    )
    assert wrong_order.status_code == 404
    assert await _order_state(client, keys["admin"], muc["id"]) == own_before


async def test_an_unscoped_key_cannot_skip_the_scan_through_another_orders_url(
    client: httpx.AsyncClient, keys: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await stock(sessionmaker, "BER", {"MUG-01": 10, "TSHIRT-RED-M": 10})
    await stock(sessionmaker, "MUC", {"MUG-01": 10}, priority=200)
    one = await place_order(client, keys["storefront"])
    two = await place_order(client, keys["storefront"])
    for o in (one, two):
        await pay(client, keys["admin"], o["id"])
    csrf = await _sign_in(client, keys["fulfillment"])
    ship = one["shipments"][0]["id"]
    for url in (
        f"/console/warehouse/BER/orders/{two['id']}/shipments/{ship}",  # another order
        f"/console/warehouse/MUC/orders/{one['id']}/shipments/{ship}",  # another warehouse
    ):
        resp = await client.post(url, data={"csrf_token": csrf, "to": "picked"})
        assert resp.status_code == 404, url
    read = (await client.get(f"/v1/orders/{one['id']}", headers=auth(keys["admin"]))).json()
    assert read["shipments"][0]["status"] == "pending"


async def test_a_store_key_sees_its_own_stock_however_much_other_stores_hold(
    client: httpx.AsyncClient, keys: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await stock(sessionmaker, "MUC", {"ZZ-MUC-ONLY": 3})
    await stock(sessionmaker, "BER", {f"AA-{i:03d}": 1 for i in range(210)})
    await _scoped_to_muc(client, keys, sessionmaker)
    await _sign_in(client, keys["fulfillment"])
    page = await client.get("/console/inventory")
    assert page.status_code == 200
    assert "ZZ-MUC-ONLY</a>" in page.text  # its level, though 210 others sort first
    assert "ZZ-MUC-ONLY</td>" in page.text  # and its ledger, though 210 movements are newer
    assert "AA-000" not in page.text


async def test_after_sign_in_no_redirect_leaves_the_console(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    for target in (
        "https://evil.example/",
        "//evil.example",
        "/\\evil.example",
        "/console/\\evil.example",
        "/console@evil.example",
        "/console/%2F%2Fevil.example",
        "/console/x\r\nLocation: https://evil.example",
        "javascript:alert(1)",
        "/consolexyz",
        '/console/"><script>alert(1)</script>',
        " /console/orders",
    ):
        page = await client.get("/console/sign-in", params={"next": target})
        assert page.status_code == 200
        hidden = re.search(r'name="next" value="([^"]*)"', page.text)
        assert hidden is not None and hidden.group(1).startswith("/console")
        resp = await client.post(
            "/console/sign-in",
            data={"csrf_token": _token(page.text), "api_key": keys["admin"], "next": target},
        )
        assert resp.status_code == 303, target
        location = resp.headers["location"]
        assert location.startswith("/console") and "\n" not in location, (target, location)
        assert httpx.URL("http://oms.test").join(location).host == "oms.test", target


# ---- malformed input -----------------------------------------------------------------------


async def test_malformed_input_is_a_4xx_page_never_a_500(
    client: httpx.AsyncClient, keys: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await stock(sessionmaker, "BER", {"TSHIRT-RED-M": 10, "MUG-01": 10})
    order = await place_order(client, keys["storefront"])
    await pay(client, keys["admin"], order["id"])
    oid, sid = order["id"], order["shipments"][0]["id"]
    csrf = await _sign_in(client, keys["admin"])
    before = await _order_state(client, keys["admin"], oid)
    gets = [
        "/console/orders?q=%C2%B2",  # '²' is a digit to str.isdigit, not to int()
        "/console/orders?q=%23%C2%B9%C2%B2",
        "/console/orders?q=%00",
        "/console/orders?q=a%00b@example.com",
        "/console/orders?channel=%00",
        "/console/orders?status=nope",
        "/console/orders?status=paid&status=%00",
        "/console/orders?blocked_by=everything",
        "/console/orders?created_from=2026-02-30",
        "/console/orders?created_to=99999-01-01",
        "/console/orders?created_from=0000-01-01",
        "/console/orders?created_to=9999-12-31",
        "/console/orders?cursor=garbage",
        "/console/orders?cursor=" + "A" * 200,
        "/console/orders?q=" + "9" * 400,
        "/console/orders?q=" + "9" * 18,
        "/console/orders?q=%23" + "9" * 18,
        "/console/orders/" + "9" * 5000,
        "/console/orders/00000000-0000-0000-0000-00000000000g",
        "/console/warehouse/BER?order=%C2%B2",
        "/console/warehouse/BER?order=%00",
        "/console/warehouse/BER?order=" + "9" * 18,
        "/console/warehouse/%00",
        "/console/warehouse/BER/orders/not-a-uuid",
        f"/console/warehouse/BER/orders/{uuid.UUID(int=0)}",
        "/console/inventory?sku=%00",
        "/console/inventory?warehouse=%00",
        "/console/inventory?sku=" + "x" * 65,
        "/console/dashboard?days=1000",
        "/console/dashboard?days=-1",
        "/console/dashboard?channel=%00",
        "/console/dashboard?currency=%00",
        "/console/dashboard?currency=XXXX",
        "/console/integrations?status=%00",
        "/console/integrations?status=" + "x" * 100,
    ]
    for path in gets:
        resp = await client.get(path)
        assert resp.status_code < 500, (path, resp.status_code)
        assert resp.status_code in {200, 303} or resp.headers["content-type"].startswith(
            "text/html"
        ), path
    posts: list[tuple[str, dict[str, Any]]] = [
        (f"/console/orders/{oid}/transitions", {"to": "cancelled", "expected_version": "²"}),
        (f"/console/orders/{oid}/transitions", {"to": "cancelled", "expected_version": "0"}),
        (
            f"/console/orders/{oid}/transitions",
            {"to": "cancelled", "expected_version": "9" * 30},
        ),
        (
            f"/console/orders/{oid}/transitions",
            {"to": "cancelled", "expected_version": "9" * 5000},
        ),
        (f"/console/orders/{oid}/transitions", {"to": "nowhere"}),
        (f"/console/orders/{oid}/transitions", {"to": "cancelled", "reason": "\x00"}),
        (f"/console/orders/{oid}/holds", {"reason": "nope"}),
        (f"/console/orders/{oid}/holds", {"reason": "other", "note": "x" * 3000}),
        (f"/console/orders/{oid}/holds", {"reason": "other", "note": "\x00"}),
        (f"/console/orders/{oid}/holds/{uuid.UUID(int=0)}/release", {}),
        (f"/console/orders/{oid}/holds/not-a-uuid/release", {}),
        (f"/console/orders/{uuid.UUID(int=0)}/reroute", {"reason": "x"}),
        (f"/console/warehouse/BER/orders/{oid}/shipments/{sid}", {"to": "flying"}),
        (f"/console/warehouse/BER/orders/{oid}/shipments/{sid}", {"to": "picked", "sku": "\x00"}),
        (
            f"/console/warehouse/BER/orders/{oid}/shipments/{sid}",
            {"to": "shipped", "carrier": "\x00", "tracking_number": "\x00"},
        ),
        (f"/console/warehouse/BER/orders/{oid}/shipments/{uuid.UUID(int=0)}", {"to": "packed"}),
        ("/console/integrations/deliveries/" + "9" * 30 + "/redeliver", {}),
        ("/console/integrations/deliveries/-1/redeliver", {}),
        ("/console/integrations/deliveries/0/redeliver", {}),
        ("/console/integrations/inbox/" + "9" * 30 + "/replay", {}),
        ("/console/integrations/inbox/-5/replay", {}),
        ("/console/inventory/adjustments", {"warehouse": "BER", "sku": "MUG-01"}),
        (
            "/console/inventory/adjustments",
            {
                "warehouse": "\x00",
                "sku": "MUG-01",
                "type": "receive",
                "quantity": "1",
                "reason": "x",
            },
        ),
        (
            "/console/inventory/adjustments",
            {
                "warehouse": "BER",
                "sku": "MUG-01",
                "type": "receive",
                "quantity": "9" * 5000,
                "reason": "x",
            },
        ),
        (
            "/console/inventory/adjustments",
            {
                "warehouse": "BER",
                "sku": "MUG-01",
                "type": "receive",
                "quantity": "²",
                "reason": "x",
            },
        ),
        (
            "/console/inventory/adjustments",
            {
                "warehouse": "BER",
                "sku": "MUG-01",
                "type": "receive",
                "quantity": "1",
                "reason": "\x00",
            },
        ),
    ]
    for path, data in posts:
        resp = await client.post(path, data=data | {"csrf_token": csrf})
        assert 400 <= resp.status_code < 500, (path, data, resp.status_code)
        assert resp.headers["content-type"].startswith("text/html"), path
    assert await _order_state(client, keys["admin"], oid) == before
    levels = await client.get(
        "/v1/inventory/levels", params={"sku": "MUG-01"}, headers=auth(keys["admin"])
    )
    assert levels.json()[0]["on_hand"] == 10
    # a form body that is not a form, or far too many fields
    for content, kind in (
        (b"\xff\xfe", "application/x-www-form-urlencoded"),
        (b"{}", "text/plain"),
    ):
        resp = await client.post(
            f"/console/orders/{oid}/holds", content=content, headers={"content-type": kind}
        )
        assert resp.status_code in {403, 415}, kind


async def test_too_long_text_is_refused_as_the_api_refuses_it_not_cut_short(
    client: httpx.AsyncClient, keys: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """A scanned tracking number or a reason longer than the API takes is refused (422, as
    the API's schema would), never stored cut short."""
    await stock(sessionmaker, "BER", {"MUG-01": 10})
    mug = [{"sku": "MUG-01", "quantity": 1, "unit_price": 850, "tax_rate_bps": 700}]
    order = await place_order(client, keys["storefront"], lines=mug)
    await pay(client, keys["admin"], order["id"])
    oid, sid = order["id"], order["shipments"][0]["id"]
    hold = await client.post(
        f"/v1/orders/{oid}/holds", json={"reason": "other"}, headers=auth(keys["admin"])
    )
    csrf = await _sign_in(client, keys["admin"])
    before = await _order_state(client, keys["admin"], oid)
    refused = {
        f"/console/orders/{oid}/transitions": {"to": "cancelled", "reason": "r" * 501},
        f"/console/orders/{oid}/reroute": {"reason": "r" * 501},
        f"/console/orders/{oid}/holds/{hold.json()['id']}/release": {"note": "n" * 2001},
    }
    for url, data in refused.items():
        resp = await client.post(url, data=data | {"csrf_token": csrf})
        assert resp.status_code == 422, (url, resp.status_code)
    assert await _order_state(client, keys["admin"], oid) == before
    await client.post(
        f"/v1/orders/{oid}/holds/{hold.json()['id']}/release", headers=auth(keys["admin"])
    )
    url = f"/console/warehouse/BER/orders/{oid}/shipments/{sid}"
    for step in ({"to": "picked", "sku": "MUG-01"}, {"to": "packed"}):
        assert (await client.post(url, data=step | {"csrf_token": csrf})).status_code == 303
    long_scan = {"to": "shipped", "carrier": "DHL", "tracking_number": "JJD" + "0" * 200}
    resp = await client.post(url, data=long_scan | {"csrf_token": csrf})
    assert resp.status_code == 422
    read = (await client.get(f"/v1/orders/{oid}", headers=auth(keys["admin"]))).json()
    assert read["shipments"][0]["status"] == "packed"
    assert read["shipments"][0]["tracking_number"] is None


async def test_every_page_renders_for_orders_of_every_kind(
    client: httpx.AsyncClient, keys: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """An operator's walk: orders split, backordered, cash on delivery, click and collect,
    delivered and returned with a refund, cancelled; each order page, each parcel's work
    page, the lists and the dashboard render (no 500 from a shape the templates missed)."""
    admin = auth(keys["admin"])
    await stock(sessionmaker, "BER", {"MUG-01": 5}, latitude=52.52, longitude=13.4)
    async with sessionmaker() as session, session.begin():  # a known SKU with no units
        await inventory_service.adjust_stock(
            session, warehouse_code="BER", sku="BACK-1", kind="count", quantity=0, actor="t"
        )
    await stock(sessionmaker, "MUC", {"TSHIRT-RED-M": 5}, latitude=48.1, longitude=11.6)
    await stock(sessionmaker, "STORE-1", {"MUG-01": 5}, is_pickup_store=True, city="Berlin")
    policy = await client.put(
        "/v1/routing-policies/web", json={"allow_backorder": True}, headers=admin
    )
    assert policy.status_code == 200, policy.text
    line = {"quantity": 1, "unit_price": 1000, "tax_rate_bps": 1900}
    split = await place_order(client, keys["storefront"])  # MUG at BER, shirts at MUC
    back = await place_order(client, keys["storefront"], lines=[line | {"sku": "BACK-1"}])
    cod = await place_order(
        client,
        keys["storefront"],
        lines=[line | {"sku": "MUG-01"}],
        payment_method="cash_on_delivery",
    )
    pickup = await place_order(
        client, keys["storefront"], lines=[line | {"sku": "MUG-01"}], pickup_store="STORE-1"
    )
    cancelled = await place_order(client, keys["storefront"], lines=[line | {"sku": "MUG-01"}])
    done = await place_order(client, keys["storefront"], lines=[line | {"sku": "MUG-01"}])
    paid = await client.post(
        f"/v1/orders/{done['id']}/payments",
        json={
            "method": "card",
            "provider": "stripe",
            "provider_reference": "pi_1",
            "amount": done["totals"]["total"],
            "currency": "EUR",
        },
        headers=admin,
    )
    assert paid.status_code == 201, paid.text
    for step in (
        {"to": "picked"},
        {"to": "packed"},
        {"to": "shipped", "carrier": "DHL", "tracking_number": "1"},
        {"to": "delivered"},
    ):
        moved = await client.post(f"/v1/orders/{done['id']}/transitions", json=step, headers=admin)
        assert moved.status_code == 200, moved.text
    rma = await client.post(
        f"/v1/orders/{done['id']}/returns",
        json={
            "lines": [
                {"order_line_id": done["lines"][0]["id"], "quantity": 1, "reason_code": "damaged"}
            ]
        },
        headers=auth(keys["storefront"]),
    )
    assert rma.status_code == 201, rma.text
    await client.post(
        f"/v1/orders/{cancelled['id']}/transitions", json={"to": "cancelled"}, headers=admin
    )
    await pay(client, keys["admin"], split["id"])
    orders = [split, back, cod, pickup, cancelled, done]
    await _sign_in(client, keys["admin"])
    for o in orders:
        page = await client.get(f"/console/orders/{o['id']}")
        assert page.status_code == 200, (o["number"], page.text[-800:])
    for path in (
        "/console/orders",
        "/console/orders?blocked_by=backorder",
        "/console/orders?blocked_by=payment",
        "/console/orders?status=delivered",
        "/console/dashboard",
        "/console/dashboard?days=7&currency=EUR",
        "/console/integrations",
        "/console/inventory?sku=MUG-01",
        "/console/inventory?sku=BACK-1&warehouse=BER",
    ):
        page = await client.get(path)
        assert page.status_code == 200, (path, page.text[-800:])
    await _sign_in(client, keys["fulfillment"])
    for o in orders:
        read = (await client.get(f"/v1/orders/{o['id']}", headers=admin)).json()
        for s in read["shipments"]:
            page = await client.get(f"/console/warehouse/{s['warehouse']}/orders/{o['id']}")
            assert page.status_code == 200, (o["number"], s["warehouse"], page.status_code)
    for code in ("BER", "MUC", "STORE-1"):
        assert (await client.get(f"/console/warehouse/{code}")).status_code == 200


async def test_a_store_key_lists_only_its_stores_orders(
    client: httpx.AsyncClient, keys: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """The orders list of a key scoped to MUC: no order (number, email, total) of another
    store, however it is searched for; the order page of one is 404 as on the API."""
    await stock(sessionmaker, "BER", {"MUG-01": 10}, priority=1)
    await stock(sessionmaker, "MUC", {"TSHIRT-RED-M": 10}, priority=2)
    mug = [{"sku": "MUG-01", "quantity": 1, "unit_price": 850, "tax_rate_bps": 700}]
    shirt = [{"sku": "TSHIRT-RED-M", "quantity": 1, "unit_price": 1999, "tax_rate_bps": 1900}]
    ber = await place_order(
        client,
        keys["storefront"],
        lines=mug,
        customer={"id": "c-ber", "email": "berlin-only@example.com"},
        external_reference="REF-BER",
    )
    muc = await place_order(client, keys["storefront"], lines=shirt)
    await _scoped_to_muc(client, keys, sessionmaker)
    await _sign_in(client, keys["fulfillment"])
    for path in (
        "/console/orders",
        f"/console/orders?q={ber['number']}",
        "/console/orders?q=berlin-only@example.com",
        "/console/orders?q=REF-BER",
    ):
        page = await client.get(path)
        assert page.status_code == 200, path
        assert (
            f"#{ber['number']}<" not in page.text
            and "berlin-only" not in page.text.split("<section", 1)[1]
        ), path
    listed = await client.get("/console/orders")
    assert f"#{muc['number']}<" in listed.text
