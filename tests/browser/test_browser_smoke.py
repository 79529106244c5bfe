"""The browser test harness itself: the live server answers a real Chromium, and axe runs."""

from __future__ import annotations

from playwright.async_api import Page

from tests.browser.axe import axe_violations


async def test_live_server_answers_the_browser(page: Page) -> None:
    response = await page.goto("/healthz")
    assert response is not None and response.status == 200
    assert '"ok"' in await page.content()


async def test_axe_reports_a_missing_label(page: Page) -> None:
    # the check can fail: an unlabelled input is a serious violation axe must find
    await page.set_content("<html lang='en'><title>t</title><main><input></main></html>")
    found = {v["id"] for v in await axe_violations(page)}
    assert "label" in found
