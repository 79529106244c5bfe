"""The operations console in a real browser (Chromium, headless): sign in, find an order and
read why it ships from where it does, pick/pack/ship at phone width, holds, the dashboard drawn
from real data, redelivering a failed webhook; refusals (bad key, role, CSRF); accessibility
(axe-core: no serious or critical violation on the main pages)."""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms.config import Settings
from oms.webhooks.outbound import service as outbound_service
from oms.webhooks.outbound.schemas import SubscriptionCreate
from oms.worker import Relay
from tests.browser.axe import assert_accessible
from tests.browser.console import pay, place_order, sign_in
from tests.helpers import auth, stock

NewPage = Callable[..., Any]


@pytest.fixture
async def two_warehouses(
    sessionmaker: async_sessionmaker[AsyncSession], keys: dict[str, str]
) -> None:
    """BER (Berlin) has everything; MUC (Munich) has T-shirts only: an order to Berlin ships
    from BER, and MUC is a candidate the explanation must name and rule out."""
    await stock(
        sessionmaker, "BER", {"TSHIRT-RED-M": 50, "MUG-01": 20}, latitude=52.52, longitude=13.40
    )
    await stock(
        sessionmaker, "MUC", {"TSHIRT-RED-M": 50}, name="Munich", latitude=48.14, longitude=11.58
    )


async def test_a_bad_key_is_refused(page: Page, keys: dict[str, str]) -> None:
    await page.goto("/console/orders")
    await expect(page).to_have_url(re.compile(r"/console/sign-in\?next=%2Fconsole%2Forders"))
    await page.get_by_label("API key").fill("oms_nope_notakey")
    async with page.expect_response(lambda r: r.request.method == "POST") as answer:
        await page.get_by_role("button", name="Sign in").click()
    assert (await answer.value).status == 401
    await expect(page.get_by_role("alert")).to_contain_text("unknown, revoked")
    assert not [c for c in await page.context.cookies() if c["name"] == "oms_console"]
    # a connector key is a real key, but not for people
    await page.get_by_label("API key").fill(keys["connector"])
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_contain_text("unknown, revoked")


async def test_sign_in_sets_a_strict_http_only_cookie_and_sign_out_ends_it(
    page: Page, keys: dict[str, str]
) -> None:
    await sign_in(page, keys["admin"], then="/console/orders")
    await expect(page).to_have_url(re.compile(r"/console/orders$"))
    (cookie,) = [c for c in await page.context.cookies() if c["name"] == "oms_console"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/console"
    assert keys["admin"] not in cookie["value"]
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("status")).to_contain_text("signed out")
    # the old cookie opens nothing any more (the session row is gone)
    await page.context.add_cookies([cookie])
    await page.goto("/console/orders")
    await expect(page).to_have_url(re.compile(r"/console/sign-in"))


async def test_find_an_order_and_read_its_routing_explanation(
    page: Page, client: httpx.AsyncClient, keys: dict[str, str], two_warehouses: None
) -> None:
    other = await place_order(client, keys["storefront"], customer={"email": "bob@example.com"})
    order = await place_order(client, keys["storefront"], external_reference="SHOP-4711")
    await sign_in(page, keys["admin"], then="/console/orders")
    # both orders are listed; searching by number finds the one
    await expect(page.get_by_role("link", name=f"#{other['number']}")).to_be_visible()
    await page.get_by_label("Search").fill(str(order["number"]))
    await page.get_by_label("Search").press("Enter")
    await expect(page.get_by_role("link", name=f"#{other['number']}")).to_have_count(0)
    # ... and by external reference, the same order
    await page.get_by_label("Search").fill("SHOP-4711")
    await page.get_by_label("Search").press("Enter")
    await expect(page.get_by_role("link", name=f"#{other['number']}")).to_have_count(0)
    # htmx redraws the results in place when a filter changes (no page load: the marker stays)
    await page.evaluate("window.marker = 'still here'")
    await page.get_by_label("Search").fill("")
    await page.get_by_label("Status").select_option("cancelled")
    await expect(page.get_by_text("No orders match.")).to_be_visible()
    await expect(page).to_have_url(re.compile(r"status=cancelled"))
    assert await page.evaluate("window.marker") == "still here"
    await page.get_by_label("Status").select_option("")
    await page.get_by_label("Search").fill("SHOP-4711")
    await page.get_by_label("Search").press("Enter")
    # wait for htmx to finish redrawing before clicking (a click on the old list is lost)
    await expect(page).to_have_url(re.compile(r"SHOP-4711"))
    await expect(page.get_by_role("link", name=f"#{other['number']}")).to_have_count(0)
    await page.get_by_role("link", name=f"#{order['number']}").click()
    await page.wait_for_url(re.compile(r"/console/orders/[0-9a-f-]{36}"))
    await expect(page.get_by_role("heading", level=1)).to_contain_text(f"Order #{order['number']}")
    table = page.get_by_role("table", name="Every candidate warehouse")
    ber = table.get_by_role("row", name=re.compile(r"^BER"))
    muc = table.get_by_role("row", name=re.compile(r"^MUC"))
    await expect(ber).to_contain_text("Chosen")
    await expect(ber).to_contain_text("Fills the whole order")
    await expect(muc).to_contain_text("Excluded")
    await expect(page.get_by_text("Runner-up:")).to_be_visible()
    # the shipments name their warehouse, the history starts with the placement
    shipments = page.get_by_role("region", name="Shipments")
    await expect(shipments.get_by_role("cell", name="BER", exact=True)).to_be_visible()
    await expect(page.get_by_role("region", name="History")).to_contain_text("Placed")


async def test_pick_pack_and_ship_from_the_warehouse_screen_at_phone_width(
    new_page: NewPage, client: httpx.AsyncClient, keys: dict[str, str], two_warehouses: None
) -> None:
    order = await place_order(client, keys["storefront"])
    await pay(client, keys["admin"], order["id"])
    page: Page = await new_page(width=390, height=844)
    await sign_in(page, keys["fulfillment"], then="/console/warehouse/BER")
    await expect(page.get_by_role("heading", level=1)).to_contain_text("BER")
    # nothing overflows sideways on a phone
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    await page.get_by_role("link", name=re.compile(f"#{order['number']}")).click()
    # a wrong scan is refused and picks nothing
    await page.get_by_label("Scan SKU 1 of 2").fill("NOT-ON-IT")
    await page.get_by_label("Scan SKU 2 of 2").fill("MUG-01")
    await page.get_by_role("button", name="Picked").click()
    await expect(page.get_by_role("alert")).to_contain_text("not on this shipment: NOT-ON-IT")
    await page.go_back()
    await page.reload()
    await page.get_by_label("Scan SKU 1 of 2").fill("TSHIRT-RED-M")
    await page.get_by_label("Scan SKU 2 of 2").fill("MUG-01")
    picked = page.get_by_role("button", name="Picked")
    box = await picked.bounding_box()
    assert box is not None and box["height"] >= 48  # a big touch target
    await picked.click()
    await expect(page.get_by_role("status")).to_contain_text("Shipment picked")
    await page.get_by_role("button", name="Packed").click()
    await expect(page.get_by_role("status")).to_contain_text("Shipment packed")
    await page.get_by_label("Carrier").fill("DHL")
    await page.get_by_label("Scan tracking number").fill("JJD0001")
    await page.get_by_role("button", name="Shipped").click()
    await expect(page.get_by_role("status")).to_contain_text("Shipment shipped")
    assert await page.evaluate("document.documentElement.scrollWidth") <= 390
    read = (await client.get(f"/v1/orders/{order['id']}", headers=auth(keys["admin"]))).json()
    assert read["status"] == "shipped"
    assert read["shipments"][0]["tracking_number"] == "JJD0001"
    await assert_accessible(page)


async def test_place_and_release_a_hold(
    page: Page, client: httpx.AsyncClient, keys: dict[str, str], two_warehouses: None
) -> None:
    order = await place_order(client, keys["storefront"])
    await sign_in(page, keys["admin"], then=f"/console/orders/{order['id']}")
    await page.get_by_label("Hold reason").select_option("fraud_review")
    await page.get_by_label("Note").fill("billing and shipping differ")
    await page.get_by_role("button", name="Place hold").click()
    await expect(page.get_by_role("status")).to_contain_text("Hold placed")
    holds = page.get_by_role("region", name="Holds")
    await expect(holds).to_contain_text("Standing")
    await expect(page.get_by_role("region", name="Blockers")).to_contain_text("Hold")
    api = (await client.get(f"/v1/orders/{order['id']}/holds", headers=auth(keys["admin"]))).json()
    assert [h["active"] for h in api] == [True]
    await holds.get_by_role("button", name="Release hold").click()
    await expect(page.get_by_role("status")).to_contain_text("Hold released")
    api = (await client.get(f"/v1/orders/{order['id']}/holds", headers=auth(keys["admin"]))).json()
    assert [h["active"] for h in api] == [False]


async def test_the_dashboard_draws_its_charts_from_real_data(
    page: Page, client: httpx.AsyncClient, keys: dict[str, str], two_warehouses: None
) -> None:
    for _ in range(3):
        await place_order(client, keys["storefront"])
    cancelled = await place_order(client, keys["storefront"])
    resp = await client.post(
        f"/v1/orders/{cancelled['id']}/transitions",
        json={"to": "cancelled"},
        headers=auth(keys["admin"]),
    )
    assert resp.status_code == 200, resp.text
    await sign_in(page, keys["admin"], then="/console/dashboard")
    chart = page.get_by_role("img", name="Orders per day (EUR)")
    await expect(chart).to_be_visible()
    # one bar per day of the window; today's bar is the only one with height, and says 3
    bars = chart.locator("rect")
    assert await bars.count() == 31
    tall = [b for b in await bars.all() if float(await b.get_attribute("height") or 0) > 0]
    assert len(tall) == 1
    assert (await tall[0].text_content() or "").endswith(": 3")
    # the same numbers in the table beside it
    await page.get_by_text("The numbers (EUR)").click()
    table = page.get_by_role("region", name="Orders and revenue per day").get_by_role("table")
    today_row = table.get_by_role("row").filter(has=page.get_by_role("cell", name="3", exact=True))
    await expect(today_row).to_have_count(1)
    await expect(today_row).to_contain_text("1")  # the cancelled one
    await expect(page.get_by_role("img", name="Median hours from placement")).to_be_visible()
    await expect(page.get_by_role("region", name="Rates")).to_contain_text("Cancellations")
    await expect(page.get_by_role("region", name="Rates")).to_contain_text("25.0 %")
    # choosing a channel with no orders redraws from the data (htmx swaps the panel)
    await page.goto("/console/dashboard?channel=nowhere")
    await expect(page.get_by_text("No orders in this window.")).to_be_visible()


@pytest.fixture
async def dead_delivery(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    two_warehouses: None,
) -> int:
    """A delivery to an endpoint that refuses connections, dead after its one attempt."""
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with sessionmaker() as session, session.begin():
        await outbound_service.create_subscription(
            session,
            data=SubscriptionCreate(
                url=f"http://127.0.0.1:{port}/hook", event_types=["order.placed"]
            ),
            allow_private=True,
        )
    await place_order(client, keys["storefront"])
    fast = settings.model_copy(
        update={"webhook_max_attempts": 1, "webhook_allow_private_targets": True}
    )
    async with httpx.AsyncClient(timeout=2, trust_env=False) as http:
        relay = Relay(sessionmaker=sessionmaker, client=http, settings=fast)
        for _ in range(20):
            await relay.fan_out()  # the outbox into deliveries, then one attempt each
            await relay.deliver()
            found = (
                await client.get("/v1/webhooks/deliveries?status=dead", headers=auth(keys["admin"]))
            ).json()["items"]
            if found:
                return int(found[0]["id"])
    raise AssertionError("the delivery did not die")


async def test_redeliver_a_failed_webhook(
    page: Page, client: httpx.AsyncClient, keys: dict[str, str], dead_delivery: int
) -> None:
    await sign_in(page, keys["admin"], then="/console/integrations?status=dead")
    log = page.get_by_role("region", name="Delivery log")
    row = log.get_by_role("row").filter(has_text="order.placed")
    await expect(row).to_contain_text("Dead")
    await row.get_by_role("button", name=f"Redeliver delivery {dead_delivery}").click()
    await expect(page.get_by_role("status")).to_contain_text("queued to be sent again")
    one = (
        await client.get(f"/v1/webhooks/deliveries/{dead_delivery}", headers=auth(keys["admin"]))
    ).json()
    assert one["status"] == "pending" and one["attempts"] == 0


async def test_a_fulfilment_key_cannot_reach_admin_pages(
    page: Page, keys: dict[str, str], two_warehouses: None
) -> None:
    await sign_in(page, keys["fulfillment"])
    await expect(page).to_have_url(re.compile(r"/console/warehouse$"))
    nav = page.get_by_role("navigation", name="Main")
    await expect(nav.get_by_role("link", name="Warehouse")).to_be_visible()
    await expect(nav.get_by_role("link", name="Dashboard")).to_have_count(0)
    await expect(nav.get_by_role("link", name="Integrations")).to_have_count(0)
    for path in ("/console/dashboard", "/console/integrations"):
        response = await page.goto(path)
        assert response is not None and response.status == 403
        await expect(page.get_by_role("alert")).to_contain_text("A fulfillment key may not")
    # and no admin action either: placing a hold is refused before any form check
    response = await page.request.post(
        f"/console/orders/{'0' * 8}-0000-0000-0000-{'0' * 12}/holds",
        form={"reason": "other"},
    )
    assert response.status == 403


async def test_state_changing_forms_without_the_csrf_token_are_refused(
    page: Page, client: httpx.AsyncClient, keys: dict[str, str], two_warehouses: None
) -> None:
    order = await place_order(client, keys["storefront"])
    await sign_in(page, keys["admin"], then=f"/console/orders/{order['id']}")
    url = f"/console/orders/{order['id']}/holds"
    for token in (None, "wrong-token"):
        form = {"reason": "other"} | ({"csrf_token": token} if token else {})
        response = await page.request.post(url, form=form)  # the session cookie goes along
        assert response.status == 403
        assert "CSRF" in await response.text()
    api = (await client.get(f"/v1/orders/{order['id']}/holds", headers=auth(keys["admin"]))).json()
    assert api == []
    # the real form, with its token, is accepted
    token = await page.locator("input[name=csrf_token]").first.get_attribute("value")
    response = await page.request.post(
        url, form={"reason": "other", "csrf_token": token or ""}, max_redirects=0
    )
    assert response.status == 303
    # signing in needs the sign-in form's token too (login CSRF)
    fresh = await page.context.browser.new_context(base_url=page.url.split("/console")[0])  # type: ignore[union-attr]
    try:
        response = await fresh.request.post(
            "/console/sign-in", form={"api_key": keys["admin"]}, max_redirects=0
        )
        assert response.status == 403
    finally:
        await fresh.close()


async def test_main_pages_have_no_serious_accessibility_violations(
    page: Page, client: httpx.AsyncClient, keys: dict[str, str], two_warehouses: None
) -> None:
    order = await place_order(client, keys["storefront"])
    await pay(client, keys["admin"], order["id"])
    await page.goto("/console/sign-in")
    await assert_accessible(page)
    await sign_in(page, keys["admin"], then="/console/dashboard")
    for path in (
        "/console/dashboard",
        "/console/orders",
        f"/console/orders/{order['id']}",
        "/console/warehouse/BER",
        f"/console/warehouse/BER/orders/{order['id']}",
        "/console/inventory?sku=MUG-01",
        "/console/integrations",
    ):
        response = await page.goto(path)
        assert response is not None and response.status == 200, path
        await assert_accessible(page)
