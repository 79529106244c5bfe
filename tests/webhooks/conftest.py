"""Fixtures for webhook tests: stock for the SKUs used, connectors, signing, a relay factory.

The receivers of these tests listen on 127.0.0.1, a target oms refuses by default: the API and
the relays here run with ``webhook_allow_private_targets`` on
(``OMS_WEBHOOK_ALLOW_PRIVATE_TARGETS``, the local-development setting). A test module that
needs the default overrides the ``private_targets_allowed`` fixture with one returning False.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from standardwebhooks import Webhook

from oms.config import Settings
from oms.worker import Relay
from tests.helpers import auth, stock

FIXTURES = Path(__file__).parent / "fixtures"
SKUS = ("TSHIRT-RED-M", "MUG-01", "IPOD2008PINK", "Bar3")


@pytest.fixture(autouse=True)
async def webhook_stock(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await stock(sessionmaker, "BER", dict.fromkeys(SKUS, 10_000), city="Berlin")


@pytest.fixture
def admin(keys: dict[str, str]) -> dict[str, str]:
    return auth(keys["admin"])


def load_fixture(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def fixture_json(name: str) -> dict[str, Any]:
    return dict(json.loads(load_fixture(name)))


async def make_connector(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    *,
    name: str,
    fmt: str,
    channel: str = "web",
    secret: str | None = None,
) -> str:
    body: dict[str, Any] = {"name": name, "channel": channel, "format": fmt}
    if secret is not None:
        body["secret"] = secret
    resp = await client.post("/v1/connectors", json=body, headers=admin)
    assert resp.status_code == 201, resp.text
    return str(secret or resp.json()["secret"])


def oms_headers(
    secret: str, body: bytes, *, msg_id: str | None = None, at: datetime | None = None
) -> dict[str, str]:
    """Sign like a Standard Webhooks sender would, with the reference library."""
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    at = at or datetime.now(UTC)
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, at, body.decode()),
    }


def hmac_b64(secret: str, body: bytes) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def shopify_headers(
    secret: str, body: bytes, *, topic: str = "orders/create", webhook_id: str | None = None
) -> dict[str, str]:
    return {
        "content-type": "application/json",
        "X-Shopify-Topic": topic,
        "X-Shopify-Hmac-Sha256": hmac_b64(secret, body),
        "X-Shopify-Shop-Domain": "jsmith.myshopify.com",
        "X-Shopify-API-Version": "2022-04",
        "X-Shopify-Webhook-Id": webhook_id or str(uuid.uuid4()),
    }


def woo_headers(
    secret: str, body: bytes, *, topic: str = "order.created", delivery: str | None = None
) -> dict[str, str]:
    resource, event = topic.split(".")
    return {
        "content-type": "application/json",
        "X-WC-Webhook-Source": "https://www.example.com/",
        "X-WC-Webhook-Topic": topic,
        "X-WC-Webhook-Resource": resource,
        "X-WC-Webhook-Event": event,
        "X-WC-Webhook-Signature": hmac_b64(secret, body),
        "X-WC-Webhook-ID": "3",
        "X-WC-Webhook-Delivery-ID": delivery or uuid.uuid4().hex,
    }


def canonical(type_: str, **data: Any) -> bytes:
    return json.dumps({"type": type_, "data": data}).encode()


def order_data(reference: str = "SHOP-1", **changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "external_reference": reference,
        "currency": "EUR",
        "customer": {"id": "cus_1", "email": "ada@example.com"},
        "shipping_address": {
            "name": "Ada Lovelace",
            "lines": ["Unter den Linden 1"],
            "city": "Berlin",
            "postal_code": "10117",
            "country": "DE",
        },
        "shipping_fee": 495,
        "lines": [{"sku": "TSHIRT-RED-M", "quantity": 2, "unit_price": 1999}],
    }
    data.update(changes)
    return data


async def count(engine: AsyncEngine, model: type, *where: Any) -> int:
    async with engine.connect() as conn:
        stmt = select(func.count()).select_from(model).where(*where)
        return int((await conn.execute(stmt)).scalar_one())


@pytest.fixture
def private_targets_allowed() -> bool:
    """Whether subscriptions and deliveries may target loopback/private addresses (the local
    receivers): on here, off in production by default."""
    return True


@pytest.fixture(autouse=True)
def api_target_policy(
    app: FastAPI, settings: Settings, private_targets_allowed: bool
) -> Iterator[None]:
    """The API (one app for the whole test session) runs this test with the setting above."""
    app.state.settings = settings.model_copy(
        update={"webhook_allow_private_targets": private_targets_allowed}
    )
    try:
        yield
    finally:
        app.state.settings = settings


@pytest.fixture
async def outbound_client() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5, trust_env=False) as c:
        yield c


RelayFactory = Callable[..., Relay]


@pytest.fixture
def relay_factory(
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
    outbound_client: httpx.AsyncClient,
    private_targets_allowed: bool,
) -> RelayFactory:
    """A Relay with fast retry settings; keyword arguments override settings (``resolver``:
    the relay's DNS seam)."""

    def make(client: httpx.AsyncClient | None = None, **overrides: Any) -> Relay:
        fast = {
            "webhook_backoff_base_s": 0.01,
            "webhook_backoff_max_s": 0.05,
            "webhook_timeout_s": 5.0,
            "webhook_lease_s": 30.0,
            "worker_poll_interval_s": 0.01,
            "outbox_gap_grace_s": 300.0,
            "webhook_allow_private_targets": private_targets_allowed,
        } | overrides
        kwargs: dict[str, Any] = {
            name: fast.pop(name) for name in ("clock", "resolver") if name in fast
        }
        relay_settings = settings.model_copy(update=fast)
        return Relay(
            sessionmaker=sessionmaker,
            client=client or outbound_client,
            settings=relay_settings,
            **kwargs,
        )

    return make
