"""Console actions over HTTP (the ASGI app over httpx, signed in through the form): each goes
through the API's services, and a refused one shows the API's error on a page and changes
nothing. The browser tests (test_console.py) cover the same pages through Chromium."""

from __future__ import annotations

import re

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.browser.console import pay, place_order
from tests.helpers import auth, stock
from tests.webhooks.conftest import canonical, make_connector, oms_headers, order_data


async def _sign_in(client: httpx.AsyncClient, key: str) -> str:
    """Sign ``client`` in; the CSRF token of its session."""
    page = await client.get("/console/sign-in")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert token is not None
    resp = await client.post(
        "/console/sign-in", data={"csrf_token": token.group(1), "api_key": key, "next": ""}
    )
    assert resp.status_code == 303, resp.text
    home = await client.get("/console/orders")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', home.text)
    assert csrf is not None
    return csrf.group(1)


async def test_moves_follow_the_state_machine_and_a_refused_one_changes_nothing(
    client: httpx.AsyncClient, keys: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await stock(sessionmaker, "BER", {"TSHIRT-RED-M": 10, "MUG-01": 10})
    order = await place_order(client, keys["storefront"])
    csrf = await _sign_in(client, keys["admin"])
    url = f"/console/orders/{order['id']}/transitions"
    refused = await client.post(url, data={"csrf_token": csrf, "to": "shipped"})
    assert refused.status_code == 409 and "illegal_transition" in refused.text
    page = await client.get(f"/console/orders/{order['id']}")
    assert 'value="cancelled"' in page.text and 'value="shipped"' not in page.text
    done = await client.post(url, data={"csrf_token": csrf, "to": "cancelled", "reason": "dup"})
    assert done.status_code == 303
    read = (await client.get(f"/v1/orders/{order['id']}", headers=auth(keys["admin"]))).json()
    assert read["status"] == "cancelled"
    history = await client.get(f"/v1/orders/{order['id']}/history", headers=auth(keys["admin"]))
    assert history.json()[-1]["reason"] == "dup"


async def test_a_held_order_is_not_picked_from_the_warehouse_screen(
    client: httpx.AsyncClient, keys: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await stock(sessionmaker, "BER", {"TSHIRT-RED-M": 10, "MUG-01": 10})
    order = await place_order(client, keys["storefront"])
    await pay(client, keys["admin"], order["id"])
    resp = await client.post(
        f"/v1/orders/{order['id']}/holds", json={"reason": "other"}, headers=auth(keys["admin"])
    )
    assert resp.status_code == 201
    csrf = await _sign_in(client, keys["fulfillment"])
    queue = await client.get("/console/warehouse/BER")
    assert f"#{order['number']}<" not in queue.text  # a held order leaves the queue
    shipment = order["shipments"][0]["id"]
    refused = await client.post(
        f"/console/warehouse/BER/orders/{order['id']}/shipments/{shipment}",
        data={"csrf_token": csrf, "to": "picked", "sku": ["TSHIRT-RED-M", "MUG-01"]},
    )
    assert refused.status_code == 409 and "order_on_hold" in refused.text
    read = (await client.get(f"/v1/orders/{order['id']}", headers=auth(keys["admin"]))).json()
    assert read["shipments"][0]["status"] == "pending"


async def test_stock_adjustments_need_a_reason_and_land_in_the_ledger(
    client: httpx.AsyncClient, keys: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await stock(sessionmaker, "BER", {"MUG-01": 10})
    csrf = await _sign_in(client, keys["fulfillment"])
    form = {"csrf_token": csrf, "warehouse": "BER", "sku": "MUG-01", "type": "receive"}
    missing = await client.post("/console/inventory/adjustments", data=form | {"quantity": "5"})
    assert missing.status_code == 422
    bad = await client.post(
        "/console/inventory/adjustments",
        data=form | {"quantity": "5", "reason": "x", "type": "steal"},
    )
    assert bad.status_code == 422  # the API's schema: receive, count or correct
    done = await client.post(
        "/console/inventory/adjustments",
        data=form | {"quantity": "5", "reason": "PO-77 delivered", "reference": "PO-77"},
    )
    assert done.status_code == 303
    levels = await client.get(
        "/v1/inventory/levels", params={"sku": "MUG-01"}, headers=auth(keys["admin"])
    )
    assert levels.json()[0]["on_hand"] == 15
    page = await client.get(done.headers["location"])
    assert "PO-77 delivered" in page.text and "Stock adjusted." in page.text


async def test_a_failed_inbound_event_is_replayed_from_the_integrations_page(
    client: httpx.AsyncClient, keys: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    admin = auth(keys["admin"])
    secret = await make_connector(client, admin, name="psp", fmt="oms")
    body = canonical(
        "order.created",
        **order_data("NOSTOCK-1", lines=[{"sku": "UNSTOCKED-1", "quantity": 1, "unit_price": 5}]),
    )
    resp = await client.post(
        "/v1/webhooks/inbound/psp", content=body, headers=oms_headers(secret, body)
    )
    assert resp.status_code == 422
    inbox_id = resp.json()["inbox_id"]
    csrf = await _sign_in(client, keys["admin"])
    page = await client.get("/console/integrations")
    assert f"Replay inbound event {inbox_id}" in page.text and "unknown_sku" in page.text
    url = f"/console/integrations/inbox/{inbox_id}/replay"
    again = await client.post(url, data={"csrf_token": csrf})  # still no stock: fails again
    assert again.headers["location"].endswith("done=replay_failed")
    await stock(sessionmaker, "BER", {"UNSTOCKED-1": 5})
    fixed = await client.post(url, data={"csrf_token": csrf})
    assert fixed.headers["location"].endswith("done=replayed")
    detail = (await client.get(f"/v1/webhooks/inbox/{inbox_id}", headers=admin)).json()
    assert detail["status"] == "processed" and detail["attempts"] == 3


async def test_the_orders_list_pages_with_a_cursor(
    client: httpx.AsyncClient, keys: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await stock(sessionmaker, "BER", {"TSHIRT-RED-M": 100, "MUG-01": 100})
    numbers = [(await place_order(client, keys["storefront"]))["number"] for _ in range(27)]
    await _sign_in(client, keys["admin"])
    first = await client.get("/console/orders")
    shown = [int(n) for n in re.findall(r">#(\d+)</a>", first.text)]
    assert shown == sorted(numbers, reverse=True)[:25]
    nxt = re.search(r'href="(/console/orders\?[^"]*cursor=[^"]+)"', first.text)
    assert nxt is not None
    second = await client.get(nxt.group(1).replace("&amp;", "&"))
    assert [int(n) for n in re.findall(r">#(\d+)</a>", second.text)] == sorted(numbers)[:2][::-1]
    assert "Next page" not in second.text


async def test_a_malformed_id_is_a_not_found_page(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    await _sign_in(client, keys["admin"])
    resp = await client.get("/console/orders/not-a-uuid")
    assert resp.status_code == 404 and resp.headers["content-type"].startswith("text/html")
    missing = await client.get("/console/orders/00000000-0000-0000-0000-000000000000")
    assert missing.status_code == 404 and "order_not_found" in missing.text


async def test_a_move_from_a_stale_page_is_refused(
    client: httpx.AsyncClient, keys: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await stock(sessionmaker, "BER", {"TSHIRT-RED-M": 10, "MUG-01": 10})
    order = await place_order(client, keys["storefront"])
    csrf = await _sign_in(client, keys["admin"])
    page = await client.get(f"/console/orders/{order['id']}")
    version = re.search(r'name="expected_version" value="(\d+)"', page.text)
    assert version is not None
    await pay(client, keys["admin"], order["id"])  # someone else moved it meanwhile
    stale = await client.post(
        f"/console/orders/{order['id']}/transitions",
        data={"csrf_token": csrf, "to": "cancelled", "expected_version": version.group(1)},
    )
    assert stale.status_code == 409
    read = (await client.get(f"/v1/orders/{order['id']}", headers=auth(keys["admin"]))).json()
    assert read["status"] == "paid"


async def test_reroute_is_for_admins_and_recorded(
    client: httpx.AsyncClient, keys: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await stock(sessionmaker, "BER", {"TSHIRT-RED-M": 10, "MUG-01": 10})
    order = await place_order(client, keys["storefront"])
    csrf = await _sign_in(client, keys["fulfillment"])
    url = f"/console/orders/{order['id']}/reroute"
    assert (await client.post(url, data={"csrf_token": csrf})).status_code == 403
    csrf = await _sign_in(client, keys["admin"])
    done = await client.post(url, data={"csrf_token": csrf, "reason": "BER offline"})
    assert done.status_code == 303
    history = await client.get(f"/v1/orders/{order['id']}/history", headers=auth(keys["admin"]))
    assert history.json()[-1]["kind"] == "rerouted"
