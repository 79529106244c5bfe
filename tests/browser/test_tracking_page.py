"""The customer's tracking page in a real browser (Chromium): what a customer opening the link
from a message sees, on a phone and a desktop, and the error pages of bad links."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from fastapi import FastAPI
from playwright.async_api import Page
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms.tracking import service as tracking
from tests.browser.axe import assert_accessible
from tests.browser.conftest import NewPage
from tests.helpers import auth, order_body, stock


async def shipped_order(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> dict[str, Any]:
    await stock(sessionmaker, "BER", {"TSHIRT-RED-M": 100, "MUG-01": 100}, city="Berlin")
    admin = auth(keys["admin"])
    body = order_body(customer={"email": "giulia@example.it"}, locale="it")
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
        json={"to": "shipped", "carrier": "DHL", "tracking_number": "JD0146000038"},
        headers=admin,
    )
    assert r.status_code == 200, r.text
    return order


async def token_for(
    app: FastAPI, sessionmaker: async_sessionmaker[AsyncSession], order_id: str, now: datetime
) -> str:
    async with sessionmaker() as session, session.begin():
        url = await tracking.link_for(
            session, settings=app.state.settings, order_id=uuid.UUID(order_id), now=now
        )
    return url.rsplit("/track/", 1)[1]


async def test_customer_opens_the_tracking_page_on_a_phone(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    app: FastAPI,
    sessionmaker: async_sessionmaker[AsyncSession],
    new_page: NewPage,
) -> None:
    order = await shipped_order(client, keys, sessionmaker)
    token = await token_for(app, sessionmaker, order["id"], datetime.now(UTC))
    page: Page = await new_page(width=390, height=844)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    # every request the page makes (the browser's own favicon probe aside) succeeds
    page.on(
        "response",
        lambda r: (
            errors.append(f"{r.status} {r.url}")
            if r.status >= 400 and not r.url.endswith("/favicon.ico")
            else None
        ),
    )

    response = await page.goto(f"/track/{token}")
    assert response is not None and response.status == 200
    assert await page.text_content("#order-number") == f"Ordine {order['number']}"
    assert await page.get_attribute("#order-status", "data-status") == "shipped"
    assert (await page.text_content("#order-status") or "").strip() == "Spedito"
    link = page.locator(".shipment .tracking-number a")
    assert await link.text_content() == "JD0146000038"
    assert "tracking-id=JD0146000038" in (await link.get_attribute("href") or "")
    assert await page.text_content(".shipment .carrier") == "DHL"
    assert "Berlin, DE" in (await page.text_content("#destination") or "")
    content = await page.content()
    assert "giulia@example.it" not in content and order["id"] not in content
    # readable on a phone: nothing wider than the screen
    overflow = await page.evaluate(
        "document.documentElement.scrollWidth > document.documentElement.clientWidth"
    )
    assert overflow is False
    assert errors == []
    await assert_accessible(page)


async def test_bad_links_show_an_error_page(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    app: FastAPI,
    sessionmaker: async_sessionmaker[AsyncSession],
    page: Page,
) -> None:
    order = await shipped_order(client, keys, sessionmaker)
    good = await token_for(app, sessionmaker, order["id"], datetime.now(UTC))
    tampered = good[:10] + ("A" if good[10] != "A" else "B") + good[11:]
    response = await page.goto(f"/track/{tampered}")
    assert response is not None and response.status == 404
    assert await page.get_attribute("#error", "data-code") == "tracking_link_invalid"
    assert await page.locator(".shipment").count() == 0  # nothing of the order shown
    assert "DHL" not in await page.content()

    old = await token_for(app, sessionmaker, order["id"], datetime.now(UTC) - timedelta(days=365))
    response = await page.goto(f"/track/{old}")
    assert response is not None and response.status == 410
    assert await page.get_attribute("#error", "data-code") == "tracking_link_expired"
    await assert_accessible(page)
