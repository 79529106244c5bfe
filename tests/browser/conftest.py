"""Browser test fixtures: the real app served by uvicorn on 127.0.0.1 (a free port) in a thread,
against the test database, driven by Debian's Chromium headless through Playwright (async API,
on pytest-asyncio's session loop).

One browser per test session; each test gets a fresh context (cookies, storage) and page.
Chromium is found at ``/usr/bin/chromium`` (``OMS_TEST_CHROMIUM`` to point elsewhere). Missing,
the browser tests are skipped on a developer machine, and FAIL in CI (``CI=true``): `.ci/run`
installs it (``apt-get install chromium``). Playwright's own browser download is never used.

Fixtures for tests:

* ``live_server``: base URL of the running app (``http://127.0.0.1:<port>``);
* ``browser``: the session's Playwright ``Browser``;
* ``new_page``: ``await new_page(width=390, height=844)`` opens a page in a fresh context
  (base URL set, so ``await page.goto("/console")`` works), closed after the test;
* ``page``: a desktop-sized page (1280x900) from ``new_page``.

Tests also use ``clean_db`` (or ``client``/``keys``, which depend on it) from tests/conftest.py
to start from empty tables and set data up through the API. Accessibility: ``tests.browser.axe``.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import uvicorn
from playwright.async_api import Browser, BrowserContext, Page, async_playwright

from oms.config import Settings
from oms.main import create_app

CHROMIUM_ARGS = [
    "--no-sandbox",  # CI runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
DESKTOP = {"width": 1280, "height": 900}
NewPage = Callable[..., Awaitable[Page]]


def chromium_path() -> str | None:
    """The Chromium to drive: $OMS_TEST_CHROMIUM, else /usr/bin/chromium, else on PATH."""
    wanted = os.environ.get("OMS_TEST_CHROMIUM")
    if wanted:
        return wanted if Path(wanted).exists() else None
    if Path("/usr/bin/chromium").exists():
        return "/usr/bin/chromium"
    return shutil.which("chromium")


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"true", "1", "yes"}


@pytest.fixture(scope="session")
def live_server(settings: Settings) -> Iterator[str]:
    """The real app (``create_app``, its lifespan, middleware, exception handlers) served by
    uvicorn in a thread with its own event loop and database engine."""
    app = create_app(settings)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(
        app, log_level="warning", lifespan="on", ws="none", access_log=False, loop="asyncio"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="oms-live-server", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the live server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    """Headless Chromium, one per test session. Playwright gives it a fresh, throwaway profile
    directory (``launch`` refuses ``--user-data-dir``) and deletes it on close."""
    path = chromium_path()
    if path is None:
        message = "Chromium not found (apt-get install chromium; or set OMS_TEST_CHROMIUM)"
        if _in_ci():
            pytest.fail(f"{message}: browser tests cannot be skipped in CI")
        pytest.skip(message)
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(
            executable_path=path, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield chromium
        finally:
            await chromium.close()


@pytest.fixture
async def new_page(browser: Browser, live_server: str) -> AsyncIterator[NewPage]:
    """Open pages in fresh contexts (no cookies) on the live server; all closed afterwards."""
    contexts: list[BrowserContext] = []

    async def open_page(width: int = DESKTOP["width"], height: int = DESKTOP["height"]) -> Page:
        context = await browser.new_context(
            base_url=live_server,
            viewport={"width": width, "height": height},
            is_mobile=width < 600,
            has_touch=width < 600,
            # the console's Content-Security-Policy refuses inline scripts, as it should; the
            # axe-core check is injected as one (tests/browser/axe.py)
            bypass_csp=True,
        )
        context.set_default_timeout(10_000)
        contexts.append(context)
        return await context.new_page()

    yield open_page
    for context in contexts:
        await context.close()


@pytest.fixture
async def page(new_page: NewPage) -> Page:
    """A desktop-sized page in a fresh context on the live server."""
    return await new_page()
