"""Helpers of the console's browser tests: sign in through the form, set data up through the
API (the same requests a storefront or a warehouse would send)."""

from __future__ import annotations

from typing import Any

import httpx
from playwright.async_api import Page, expect

from tests.helpers import auth, order_body


async def sign_in(page: Page, key: str, *, then: str = "/console") -> None:
    """Sign in with ``key`` through the sign-in form and wait to land on ``then``."""
    await page.goto(f"/console/sign-in?next={then}")
    await page.get_by_label("API key").fill(key)
    await page.get_by_role("button", name="Sign in").click()
    await page.wait_for_load_state("domcontentloaded")
    await expect(page.get_by_role("button", name="Sign out")).to_be_visible()


async def place_order(client: httpx.AsyncClient, key: str, **changes: Any) -> dict[str, Any]:
    resp = await client.post("/v1/orders", json=order_body(**changes), headers=auth(key))
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


async def pay(client: httpx.AsyncClient, admin: str, order_id: str) -> None:
    resp = await client.post(
        f"/v1/orders/{order_id}/transitions", json={"to": "paid"}, headers=auth(admin)
    )
    assert resp.status_code == 200, resp.text
