"""Screenshots of the console's main pages for the README (docs/console/*.png), taken on demand:

    OMS_CONSOLE_SCREENSHOTS=1 OMS_TEST_DATABASE_URL=... .venv/bin/pytest -q \\
        tests/browser/test_console_screenshots.py

Skipped otherwise (CI does not rewrite the committed pictures). The data is set up through the
API as a shop would, then the orders are spread over the last two weeks so the charts show days.
"""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.async_api import Page
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from oms.config import Settings
from oms.webhooks.outbound import service as outbound_service
from oms.webhooks.outbound.schemas import SubscriptionCreate
from oms.worker import Relay
from tests.browser.conftest import NewPage
from tests.browser.console import pay, place_order, sign_in
from tests.helpers import auth, stock

pytestmark = pytest.mark.skipif(
    os.environ.get("OMS_CONSOLE_SCREENSHOTS") != "1",
    reason="set OMS_CONSOLE_SCREENSHOTS=1 to (re)take the README's screenshots",
)
DOCS = Path(__file__).resolve().parents[2] / "docs" / "console"
CUSTOMERS = ["ada", "grace", "alan", "edsger", "barbara", "donald", "margaret", "ken"]
CITIES = [
    ("Berlin", "10117", 52.52, 13.40),
    ("München", "80331", 48.14, 11.58),
    ("Hamburg", "20095", 53.55, 9.99),
    ("Köln", "50667", 50.94, 6.96),
]


async def _seed(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
    settings: Settings,
) -> dict[str, Any]:
    await stock(
        sessionmaker,
        "BER",
        {"TSHIRT-RED-M": 120, "MUG-01": 60, "CAP-BLK": 40},
        name="Berlin DC",
        latitude=52.52,
        longitude=13.40,
    )
    await stock(
        sessionmaker,
        "MUC",
        {"TSHIRT-RED-M": 80, "MUG-01": 6},
        name="Munich store",
        latitude=48.14,
        longitude=11.58,
    )
    await stock(
        sessionmaker, "HAM", {"CAP-BLK": 30}, name="Hamburg", latitude=53.55, longitude=9.99
    )
    admin = auth(keys["admin"])
    resp = await client.patch(
        "/v1/inventory/levels/MUC/MUG-01", json={"reorder_point": 10}, headers=admin
    )
    assert resp.status_code == 200, resp.text
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    async with sessionmaker() as session, session.begin():
        await outbound_service.create_subscription(
            session,
            data=SubscriptionCreate(
                url=f"http://127.0.0.1:{port}/erp/orders",
                event_types=["order.placed"],
                description="ERP order sync",
            ),
            allow_private=True,
        )
    placed = []
    for i in range(28):
        city, postal, lat, lon = CITIES[i % len(CITIES)]
        lines = [{"sku": "TSHIRT-RED-M", "quantity": 1 + i % 3, "unit_price": 1999}]
        if i % 2:
            lines.append({"sku": "MUG-01", "quantity": 1, "unit_price": 850})
        if i % 5 == 0:
            lines.append({"sku": "CAP-BLK", "quantity": 1, "unit_price": 1450})
        order = await place_order(
            client,
            keys["storefront"],
            channel="web" if i % 3 else "app",
            customer={"id": f"cus_{i % 8}", "email": f"{CUSTOMERS[i % 8]}@example.com"},
            shipping_address={
                "name": CUSTOMERS[i % 8].title() + " Example",
                "lines": ["Hauptstraße 1"],
                "city": city,
                "postal_code": postal,
                "country": "DE",
                "latitude": lat,
                "longitude": lon,
            },
            lines=lines,
            external_reference=f"SHOP-{5000 + i}",
        )
        placed.append(order)
    for order in placed[:20]:
        await pay(client, keys["admin"], order["id"])
    for order in placed[:12]:
        read = (await client.get(f"/v1/orders/{order['id']}", headers=admin)).json()
        for sh in read["shipments"]:
            for step in ("picked", "packed", "shipped"):
                body: dict[str, Any] = {"to": step}
                if step == "shipped":
                    body |= {"carrier": "DHL", "tracking_number": f"JJD{sh['id'][:8]}"}
                r = await client.post(
                    f"/v1/shipments/{sh['id']}/transitions",
                    json=body,
                    headers=auth(keys["fulfillment"]),
                )
                assert r.status_code == 200, r.text
    await client.post(
        f"/v1/orders/{placed[-1]['id']}/transitions", json={"to": "cancelled"}, headers=admin
    )
    held = placed[18]
    await client.post(
        f"/v1/orders/{held['id']}/holds",
        json={"reason": "fraud_review", "note": "billing and shipping differ"},
        headers=admin,
    )
    fast = settings.model_copy(
        update={"webhook_max_attempts": 1, "webhook_allow_private_targets": True}
    )
    async with httpx.AsyncClient(timeout=2, trust_env=False) as http:
        relay = Relay(sessionmaker=sessionmaker, client=http, settings=fast)
        for _ in range(5):
            await relay.fan_out()
            await relay.deliver()
    # spread the orders (and what happened to them) over the last two weeks
    async with engine.begin() as conn:
        for i, order in enumerate(placed):
            shift = timedelta(days=(i * 13) % 14, hours=(i * 7) % 24)
            # placed a few hours before it was paid and shipped: the times have a spread
            await conn.execute(
                text(
                    "UPDATE orders SET created_at = created_at - CAST(:h AS interval) "
                    "WHERE id = :id"
                ),
                {"h": timedelta(hours=2 + (i * 5) % 30), "id": order["id"]},
            )
            for table, column in (
                ("orders", "created_at"),
                ("shipments", "ship_by"),  # its promise (issue 18) moves with it
                ("orders", "paid_at"),
                ("orders", "shipped_at"),
                ("order_events", "created_at"),
            ):
                key = "id" if table == "orders" else "order_id"  # shipments, events: order_id
                await conn.execute(
                    text(
                        f"UPDATE {table} SET {column} = {column} - CAST(:shift AS interval) "
                        f"WHERE {key} = :id AND {column} IS NOT NULL"
                    ),
                    {"shift": shift, "id": order["id"]},
                )
    return {"orders": placed, "held": held, "open": placed[19]}


async def test_take_the_readme_screenshots(
    new_page: NewPage,
    client: httpx.AsyncClient,
    keys: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
    settings: Settings,
) -> None:
    data = await _seed(client, keys, sessionmaker, engine, settings)
    DOCS.mkdir(parents=True, exist_ok=True)
    page: Page = await new_page()
    await page.goto("/console/sign-in")
    await page.screenshot(path=DOCS / "sign-in.png")
    await sign_in(page, keys["admin"], then="/console/dashboard")
    await page.screenshot(path=DOCS / "dashboard.png", full_page=True)
    await page.goto("/console/orders")
    await page.screenshot(path=DOCS / "orders.png", full_page=True)
    await page.goto(f"/console/orders/{data['held']['id']}")
    await page.screenshot(path=DOCS / "order.png", full_page=True)
    await page.goto("/console/inventory?sku=MUG-01")
    await page.screenshot(path=DOCS / "inventory.png", full_page=True)
    await page.goto("/console/integrations")
    await page.screenshot(path=DOCS / "integrations.png", full_page=True)
    phone: Page = await new_page(width=390, height=844)
    await sign_in(phone, keys["fulfillment"], then="/console/warehouse/BER")
    await phone.screenshot(path=DOCS / "warehouse-phone.png", full_page=True)
    await phone.goto(f"/console/warehouse/BER/orders/{data['open']['id']}")
    await phone.screenshot(path=DOCS / "pick-phone.png", full_page=True)
