"""Shared pieces of the reliability suite: a stocked "world" with real ids, table cleanup,
and `oms serve` as a subprocess (crash and outage tests)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from oms.shared.roles import Role
from tests.helpers import auth, make_key, order_body, stock

OMS = [sys.executable, "-m", "oms.cli"]
SKUS = ("TSHIRT-RED-M", "MUG-01")


async def truncate_all(engine: AsyncEngine) -> None:
    """Empty every table but the migration stamp (like the `clean_db` fixture, any scope)."""
    async with engine.begin() as conn:
        tables = (
            await conn.execute(
                text(
                    "SELECT tablename FROM pg_tables WHERE schemaname='public' "
                    "AND tablename <> 'alembic_version'"
                )
            )
        ).scalars()
        names = ", ".join(f'"{t}"' for t in tables)
        if names:
            await conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@dataclass
class World:
    """Keys per role and real resources of every kind, created through the API.

    ``named`` holds one id per purpose (e.g. ``order_delivered``, ``return_approved``);
    ``ids`` maps OpenAPI path parameter names to real values (for the fuzzer).
    """

    keys: dict[str, str]
    named: dict[str, str] = field(default_factory=dict)
    ids: dict[str, list[str]] = field(default_factory=dict)

    def headers(self, role: str = "admin") -> dict[str, str]:
        return auth(self.keys[role])


def signed(secret: str, body: bytes, msg_id: str) -> dict[str, str]:
    """Standard Webhooks headers, as a connector of format `oms` sends them."""
    from standardwebhooks import Webhook

    now = datetime.now(UTC)
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, now, body.decode()),
    }


def inbound_order(reference: str, sku: str = "MUG-01") -> bytes:
    data = order_body(
        external_reference=reference, lines=[{"sku": sku, "quantity": 1, "unit_price": 850}]
    )
    data.pop("channel")
    return json.dumps({"type": "order.created", "data": data}).encode()


async def build_world(app: FastAPI, sessionmaker: async_sessionmaker[AsyncSession]) -> World:
    """Keys for every role, a stocked warehouse and one of each resource, created via the API."""
    from oms.webhooks.outbound import service as outbound

    keys = {role.value: await make_key(sessionmaker, role) for role in Role}
    keys["storefront_web"] = await make_key(sessionmaker, Role.STOREFRONT, "web")
    await stock(sessionmaker, "BER", dict.fromkeys(SKUS, 100_000), latitude=52.52, longitude=13.4)
    world = World(keys=keys)
    admin = world.headers()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://oms.test") as c:

        async def post(path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
            resp = await c.post(path, json=body or {}, headers=admin)
            assert resp.status_code in (200, 201), (path, resp.text)
            return dict(resp.json())

        for sku in ("NO-STOCK-1", "NO-STOCK-2"):  # known SKUs without units: insufficient stock
            count = {"warehouse": "BER", "sku": sku, "type": "count", "quantity": 0}
            await post("/v1/inventory/adjustments", count)

        sub = await post(
            "/v1/webhooks/subscriptions",
            # nothing is delivered to it here; `.example` never resolves (RFC 2606)
            {"url": "https://erp.example/hooks", "event_types": ["order.*"]},
        )
        placed = await post("/v1/orders", order_body())
        paid = await post("/v1/orders", order_body())
        await post(f"/v1/orders/{paid['id']}/transitions", {"to": "paid"})
        hold = await post(f"/v1/orders/{paid['id']}/holds", {"reason": "other"})  # released:
        await post(f"/v1/orders/{paid['id']}/holds/{hold['id']}/release")  # releasing is a 409
        delivered = await post("/v1/orders", order_body(payment_method="cash_on_delivery"))
        for step in ("picked", "packed"):
            await post(f"/v1/orders/{delivered['id']}/transitions", {"to": step})
        ship = {"to": "shipped", "carrier": "DHL", "tracking_number": "JJD1"}
        await post(f"/v1/orders/{delivered['id']}/transitions", ship)
        await post(f"/v1/orders/{delivered['id']}/transitions", {"to": "delivered"})
        payment = await post(
            f"/v1/orders/{placed['id']}/payments",
            {
                "method": "card",
                "provider": "stripe",
                "provider_reference": "pi_world",
                "amount": 100,
                "currency": "EUR",
                "status": "authorized",
            },
        )
        line_a, line_b = delivered["lines"]
        requested = await post(
            f"/v1/orders/{delivered['id']}/returns",
            {"lines": [{"order_line_id": line_a["id"], "quantity": 1, "reason_code": "damaged"}]},
        )
        approved = await post(
            f"/v1/orders/{delivered['id']}/returns",
            {"lines": [{"order_line_id": line_b["id"], "quantity": 1, "reason_code": "other"}]},
        )
        await post(f"/v1/returns/{approved['id']}/approve")
        connector = await post(
            "/v1/connectors", {"name": "shop", "channel": "web", "format": "oms"}
        )
        supply = await post(
            "/v1/inventory/incoming",
            {"warehouse": "BER", "sku": "MUG-01", "quantity": 5, "expected_on": "2030-01-01"},
        )
        # -- #18: a supplier, a sent purchase order and a cancelled one, a transit row
        await post("/v1/suppliers", {"code": "ACME", "name": "Acme", "lead_time_days": 7})
        po_lines = {
            "supplier": "ACME",
            "warehouse": "BER",
            "lines": [{"sku": "MUG-01", "quantity": 2}],
        }
        po_sent = await post("/v1/purchase-orders", po_lines)
        await post(f"/v1/purchase-orders/{po_sent['id']}/send")
        po_cancelled = await post("/v1/purchase-orders", po_lines)
        await post(f"/v1/purchase-orders/{po_cancelled['id']}/cancel")
        # -- #19: a store, a cancelled transfer to it, a till sale (its receipt is taken)
        await stock(
            sessionmaker, "STORE-W", {}, latitude=52.5, longitude=13.4, is_pickup_store=True
        )
        transfer = await post(
            "/v1/transfers",
            {
                "from_warehouse": "BER",
                "to_warehouse": "STORE-W",
                "lines": [{"sku": "MUG-01", "quantity": 1}],
            },
        )
        await post(f"/v1/transfers/{transfer['id']}/cancel")
        till_line = {"sku": "MUG-01", "quantity": 1, "unit_price": 100, "tax_rate_bps": 0}
        await post(
            "/v1/stores/BER/sales", {"receipt_id": "W-1", "currency": "EUR", "lines": [till_line]}
        )
        # -- #20: a wave policy of a channel no order uses (its orders would wait for waves),
        # and a wave run of it
        resp = await c.put("/v1/wave-policies/waves", json={"enabled": True}, headers=admin)
        assert resp.status_code == 200, resp.text
        wave = await post("/v1/waves", {"channel": "waves"})
        transit = {"bands": [{"from_band": 0, "min_days": 1, "max_days": 2}]}
        resp = await c.put("/v1/transit-times/DE", json=transit, headers=admin)
        assert resp.status_code == 200, resp.text
        inbox: dict[str, int] = {}
        for name, body in (
            ("processed", inbound_order("SHOP-1")),
            ("failed", inbound_order("SHOP-2", sku="NO-STOCK-1")),
        ):
            resp = await c.post(
                "/v1/webhooks/inbound/shop",
                content=body,
                headers=signed(connector["secret"], body, f"msg_{name}"),
            )
            assert resp.status_code in (200, 409), resp.text
            inbox[name] = int(resp.json()["inbox_id"])
    async with sessionmaker() as session, session.begin():
        await outbound.fan_out(session, batch=500, grace=timedelta(0))
    async with sessionmaker() as session, session.begin():
        deliveries = [
            str(i)
            for i in (
                await session.scalars(text("SELECT id FROM webhook_deliveries ORDER BY id"))
            ).all()
        ]
        # a delivery a worker is sending right now (redelivering it is a conflict)
        await session.execute(
            text("UPDATE webhook_deliveries SET status = 'delivering' WHERE id = :id"),
            {"id": int(deliveries[-1])},
        )
    # -- #22: tracking links to a real order, one live, one expired (the link key is made now,
    # so that no error call below creates it)
    from oms.tracking import service as tracking_service

    async with sessionmaker() as session, session.begin():
        links = [
            (
                await tracking_service.link_for(
                    session,
                    settings=app.state.settings,
                    order_id=uuid.UUID(placed["id"]),
                    now=datetime.now(UTC) - age,
                )
            ).rsplit("/", 1)[1]
            for age in (timedelta(0), timedelta(days=3650))
        ]
    world.named = {
        "tracking_expired": links[1],
        "order_placed": placed["id"],
        "order_paid": paid["id"],
        "hold_released": hold["id"],
        "order_delivered": delivered["id"],
        "shipment_pending": placed["shipments"][0]["id"],
        "shipment_delivered": delivered["shipments"][0]["id"],
        "payment_authorized": payment["id"],
        "order_line": line_a["id"],
        "return_requested": requested["id"],
        "return_approved": approved["id"],
        "return_line": requested["lines"][0]["id"],
        "connector": connector["name"],
        "connector_secret": connector["secret"],
        "subscription": sub["id"],
        "supply": supply["id"],
        "inbox_processed": str(inbox["processed"]),
        "inbox_failed": str(inbox["failed"]),
        "delivery": deliveries[0],
        "delivery_sending": deliveries[-1],
        "po_sent": po_sent["id"],
        "po_cancelled": po_cancelled["id"],
        "transfer_cancelled": transfer["id"],  # #19
    }
    world.ids = {
        "order_id": [placed["id"], paid["id"], delivered["id"]],
        "shipment_id": [s["id"] for o in (placed, delivered) for s in o["shipments"]],
        "payment_id": [payment["id"]],
        "hold_id": [hold["id"]],
        "payment_method": ["card"],
        "return_id": [requested["id"], approved["id"]],
        "customer_id": ["cus_1"],
        "code": ["BER"],
        "warehouse": ["BER"],
        "sku": list(SKUS),
        "channel": ["web"],
        "connector_name": [connector["name"]],
        "name": [connector["name"]],
        "subscription_id": [sub["id"]],
        "supply_id": [supply["id"]],
        "outcome": ["received", "cancelled"],
        "inbox_id": [str(inbox["processed"]), str(inbox["failed"])],
        "delivery_id": deliveries[:2],
        "po_id": [po_sent["id"]],
        # -- #19
        "transfer_id": [transfer["id"]],
        "key_id": [str(uuid.uuid4())],  # (only ever refused before it is looked up)
        # -- #20
        "wave_id": [wave["id"]],
        # -- #22
        "token": [links[0]],
        "event_type": ["order.placed"],
        "message_channel": ["email"],
        "language": ["en"],
        "sales_channel": ["web"],
        "address": ["ada@example.com"],
        "country": ["DE"],
    }
    return world


# ---- `oms serve` as a real process ------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    """One `oms serve` process on 127.0.0.1:port (OMS_WORKERS=1), its output in a file."""

    database_url: str
    port: int = field(default_factory=free_port)
    log_path: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, *, timeout: float = 60) -> Server:
        env = (
            os.environ
            | {
                "OMS_DATABASE_URL": self.database_url,
                "OMS_PORT": str(self.port),
                "OMS_WORKERS": "1",
                "OMS_RUN_MIGRATIONS_ON_START": "false",
            }
            | self.env
        )
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self._log = self.log_path.open("ab") if self.log_path else None
        self.proc = subprocess.Popen(
            OMS + ["serve"],
            env=env,
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT if self._log else subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"oms serve exited with {self.proc.returncode}: {self.tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.base}/readyz", timeout=1).status_code == 200:
                    return self
            time.sleep(0.1)
        self.kill()
        raise AssertionError(f"oms serve did not become ready: {self.tail()}")

    def kill(self) -> None:
        """SIGKILL: no graceful shutdown, no chance to finish in-flight requests."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)
        self._close_log()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def tail(self, chars: int = 4000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]


@contextlib.contextmanager
def serving(database_url: str, log_path: Path, **env: str) -> Iterator[Server]:
    server = Server(database_url, log_path=log_path, env=env).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def world(
    app: FastAPI, clean_db: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> World:
    return await build_world(app, sessionmaker)
