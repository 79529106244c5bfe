"""Race fixtures: orders built through the API into a known state, fired at concurrently, and
``check_order_invariants`` (stock, allocations, counts, returns, money, history, outbox) after.

Every order here splits into two parcels and has stock rows of its own: its two SKUs (a
T-shirt and a mug, fresh names per order) are stocked right before it is placed, the T-shirt
only in BER and the mug only in HAM. So shipment 1 and shipment 2 exist, and whatever one race
does to stock cannot hide or be blamed on another round.

One database per test module (truncated when the module starts): the orders of different
rounds and pairs share nothing but the warehouses, the keys and the connector.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import itertools
import json
import os
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker
from standardwebhooks import Webhook

from oms.inventory import service as inventory
from oms.orders import service as orders_service
from oms.shared.roles import Role
from tests.helpers import (
    INVARIANTS_SQL,
    assert_stock_invariants,
    auth,
    make_key,
    order_body,
    stock,
)

ROUNDS = max(1, int(os.environ.get("OMS_RACE_ROUNDS", "3")))
"""Fresh orders each pair of operations races on (``OMS_RACE_ROUNDS``; default 3)."""

RACE_TIMEOUT_S = 30.0
"""Requests that have not all answered by then are a hang (a lock never released)."""

PSP = "psp"  # the payment provider connector (format oms, channel web)
SHOP = "race-shop"  # the marketplace connector (format shopify, channel web)
SHOP_SECRET = "shpss_race_matrix"
_serial_numbers = itertools.count(1)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: many rounds against the real database (deselect with -m 'not slow')"
    )


async def _truncate(engine: AsyncEngine) -> None:
    """Empty every table but the migration stamp (as ``tests.conftest.clean_db`` does)."""
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


# ---- orders in a known state, through the API ------------------------------------------------


@dataclass
class RaceOrder:
    """What the operations need to know about one order built for a race."""

    id: str
    total: int
    shirt: str  # the SKUs of this order (stocked for it alone)
    mug: str
    shipments: list[str]  # ids, by seq: shipments[0] is shipment 1
    lines: dict[str, str]  # "shirt" / "mug" -> order line id
    payment_id: str | None = None  # the authorized payment (state "authorized")
    return_id: str | None = None
    return_lines: dict[str, str] = field(default_factory=dict)  # "shirt" -> return line id
    hold_id: str | None = None  # the hold standing on it (state "held")
    transfer_id: str | None = None  # #19: the transfer bringing its short units to the store
    # the marketplace's ids (``Harness.place``): the order's, and each line's ("shirt"/"mug")
    external_reference: str | None = None
    external_lines: dict[str, str] = field(default_factory=dict)


STATES: tuple[str, ...] = (
    "placed",  # two pending shipments, nothing paid
    "authorized",  # placed, with an authorized (not captured) payment of the total
    "paid",  # a captured payment of the total made it paid
    "pickup_picked",  # #19: a click-and-collect order at STORE-R, paid and picked, not yet
    # ready for pickup; off the chain (built by Harness.place_pickup)
    "ready_for_pickup",  # #19: a click-and-collect order at STORE-R, paid, picked, ready for
    # pickup (a collection code sent); off the chain (built by Harness.place_pickup)
    "transfer_awaited",  # #19: a paid click-and-collect order at STORE-R, short 1 T-shirt there:
    # a draft transfer from BER brings it (reserved at BER); off the chain
    "transfer_in_transit",  # ... that transfer shipped (the T-shirt backordered while on the
    # way); off the chain
    "held",  # paid, with a hold (fraud_review) standing; off the chain (see OFF_CHAIN)
    "backordered",  # paid, placed with its mug backordered (none in stock): one shipment; off
    # the chain (built by Harness.place_backordered)
    "split",  # paid, one of shipment 1's T-shirts split off into shipment 3 (BER); off the chain
    "picked_one",  # paid, shipment 1 picked, shipment 2 pending
    "picked",  # both shipments picked
    "packed",  # both shipments packed
    "shipped",  # both shipments shipped
    "delivered",  # both shipments delivered
    "return_requested",  # a return of both T-shirts was requested
    "return_approved",  # ... and approved
    "return_received",  # ... and received: 2 restocked, 100 refunded
)


OFF_CHAIN: frozenset[str] = frozenset(
    {
        "held",
        "backordered",
        "split",
        "pickup_picked",
        "ready_for_pickup",
        "transfer_awaited",
        "transfer_in_transit",
    }
)
"""States built from the one before them in STATES, but not on the way to the later ones."""

PICKUP_STORE = "STORE-R"
"""#19: the pickup store of the "ready_for_pickup" orders."""

BACKORDER_CHANNEL = "race-backorders"
"""The channel of the "backordered" orders: its routing policy takes backorders."""


class Harness:
    """The API as the races drive it: one client, a key per role, the psp connector."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        keys: dict[str, str],
        engine: AsyncEngine,
        sessionmaker: async_sessionmaker[AsyncSession],
        psp_secret: str,
    ) -> None:
        self.client, self.keys, self.engine = client, keys, engine
        self.sessionmaker, self.psp_secret = sessionmaker, psp_secret

    def headers(self, role: str) -> dict[str, str]:
        return auth(self.keys[role])

    async def post(self, url: str, role: str, body: dict[str, Any] | None = None) -> httpx.Response:
        return await self.client.post(url, json=body, headers=auth(self.keys[role]))

    async def ok(self, url: str, role: str, body: dict[str, Any] | None = None) -> Any:
        resp = await self.post(url, role, body)
        assert resp.status_code in (200, 201), (
            f"setup: POST {url} -> {resp.status_code} {resp.text}"
        )
        return resp.json()

    async def hook(self, type_: str, **data: Any) -> httpx.Response:
        """Deliver one canonical event from the payment provider, signed as Standard Webhooks
        prescribes, with a new webhook id each time."""
        body = json.dumps({"type": type_, "data": data})
        msg_id, now = f"msg_{uuid.uuid4().hex}", datetime.now(UTC)
        headers = {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(self.psp_secret).sign(msg_id, now, body),
        }
        return await self.client.post(f"/v1/webhooks/inbound/{PSP}", content=body, headers=headers)

    async def shopify(self, topic: str, payload: dict[str, Any]) -> httpx.Response:
        """Deliver one Shopify webhook (``topic``) to the marketplace connector, signed as
        Shopify signs, with a new webhook id each time."""
        body = json.dumps(payload).encode()
        digest = hmac.new(SHOP_SECRET.encode(), body, hashlib.sha256).digest()
        headers = {
            "content-type": "application/json",
            "X-Shopify-Topic": topic,
            "X-Shopify-Hmac-Sha256": base64.b64encode(digest).decode(),
            "X-Shopify-Shop-Domain": "races.myshopify.com",
            "X-Shopify-Webhook-Id": str(uuid.uuid4()),
        }
        return await self.client.post(f"/v1/webhooks/inbound/{SHOP}", content=body, headers=headers)

    # -- the operations' building blocks, shared with the setups --------------------------

    async def order_to(self, order: RaceOrder, to: str) -> httpx.Response:
        body: dict[str, Any] = {"to": to}
        if to == "shipped":
            body |= {"carrier": "DHL", "tracking_number": f"JJD{uuid.uuid4().hex[:12]}"}
        return await self.post(f"/v1/orders/{order.id}/transitions", "admin", body)

    async def shipment_to(self, order: RaceOrder, seq: int, to: str) -> httpx.Response:
        body: dict[str, Any] = {"to": to}
        if to == "shipped":
            body |= {"carrier": "UPS", "tracking_number": f"1Z{uuid.uuid4().hex[:12]}"}
        return await self.post(
            f"/v1/shipments/{order.shipments[seq - 1]}/transitions", "fulfillment", body
        )

    async def pay(self, order: RaceOrder, status: str = "captured") -> httpx.Response:
        return await self.post(
            f"/v1/orders/{order.id}/payments",
            "admin",
            {
                "method": "card",
                "provider": "stripe",
                "provider_reference": f"pi_{uuid.uuid4().hex}",
                "amount": order.total,
                "currency": "EUR",
                "status": status,
            },
        )

    async def hold(self, order: RaceOrder, reason: str = "fraud_review") -> httpx.Response:
        return await self.post(f"/v1/orders/{order.id}/holds", "admin", {"reason": reason})

    async def receive_return(self, order: RaceOrder) -> httpx.Response:
        """Receive the T-shirt return: both units restocked, 100 refunded (as in the issue)."""
        return await self.post(
            f"/v1/returns/{order.return_id}/receive",
            "fulfillment",
            {
                "lines": [{"return_line_id": order.return_lines["shirt"], "restock": 2}],
                "refund": {"amount": 100, "reason": "return received"},
            },
        )

    async def on_hand(self, warehouse: str, sku: str) -> int:
        async with self.engine.connect() as conn:
            value = await conn.scalar(
                text(
                    "SELECT s.on_hand FROM stock_levels s JOIN warehouses w "
                    "ON w.id = s.warehouse_id WHERE w.code = :wh AND s.sku = :sku"
                ),
                {"wh": warehouse, "sku": sku},
            )
        return int(value)

    # -- setups ---------------------------------------------------------------------------

    async def place(self, shirts: int = 2, mugs: int = 1) -> RaceOrder:
        """Stock two fresh SKUs (T-shirts in BER, mugs in HAM) and order them: two parcels."""
        n = next(_serial_numbers)
        shirt, mug = f"RACE-SHIRT-{n}", f"RACE-MUG-{n}"
        async with self.sessionmaker() as session, session.begin():
            # MUC (farther) has T-shirts too: where a shipment exception or a move sends them
            for warehouse, sku in (("BER", shirt), ("HAM", mug), ("MUC", shirt)):
                await inventory.adjust_stock(
                    session,
                    warehouse_code=warehouse,
                    sku=sku,
                    kind="receive",
                    quantity=100,
                    actor="races",
                )
        # as a marketplace's order: its id, and its line items' ids (what the connector's
        # order.updated and order.edited name)
        reference = str(7_000_000_000 + n)
        external_lines = {"shirt": f"{reference}1", "mug": f"{reference}2"}
        body = order_body(
            external_reference=reference,
            lines=[
                {"sku": shirt, "quantity": shirts, "unit_price": 1999, "tax_rate_bps": 1900},
                {"sku": mug, "quantity": mugs, "unit_price": 850, "tax_rate_bps": 700},
            ],
        )
        placed = await self.ok("/v1/orders", "storefront", body)
        shipments = sorted(placed["shipments"], key=lambda s: s["seq"])
        assert sorted(s["warehouse"] for s in shipments) == ["BER", "HAM"], placed
        by_sku = {ln["sku"]: ln["id"] for ln in placed["lines"]}
        async with self.sessionmaker() as session, session.begin():  # as the connector does
            await orders_service.set_external_line_ids(
                session,
                order_id=uuid.UUID(placed["id"]),
                line_ids=[external_lines["shirt"], external_lines["mug"]],
                channel_updated_at=None,
            )
        return RaceOrder(
            id=placed["id"],
            total=placed["totals"]["total"],
            shirt=shirt,
            mug=mug,
            shipments=[s["id"] for s in shipments],
            lines={"shirt": by_sku[shirt], "mug": by_sku[mug]},
            external_reference=reference,
            external_lines=external_lines,
        )

    async def place_backordered(self) -> RaceOrder:
        """Two T-shirts in stock at BER, one mug none of which is in stock (HAM knows the SKU,
        with 0 units), on a channel that takes backorders: one shipment, the mug waiting."""
        n = next(_serial_numbers)
        shirt, mug = f"RACE-SHIRT-{n}", f"RACE-MUG-{n}"
        async with self.sessionmaker() as session, session.begin():
            for warehouse, sku, units in (("BER", shirt, 100), ("HAM", mug, 0)):
                await inventory.adjust_stock(
                    session,
                    warehouse_code=warehouse,
                    sku=sku,
                    kind="count",
                    quantity=units,
                    actor="races",
                )
        await self.client.put(
            f"/v1/routing-policies/{BACKORDER_CHANNEL}",
            json={"allow_backorder": True},
            headers=auth(self.keys["admin"]),
        )
        body = order_body(
            channel=BACKORDER_CHANNEL,
            lines=[
                {"sku": shirt, "quantity": 2, "unit_price": 1999, "tax_rate_bps": 1900},
                {"sku": mug, "quantity": 1, "unit_price": 850, "tax_rate_bps": 700},
            ],
        )
        placed = await self.ok("/v1/orders", "storefront", body)
        assert [s["warehouse"] for s in placed["shipments"]] == ["BER"], placed
        by_sku = {ln["sku"]: ln for ln in placed["lines"]}
        assert by_sku[mug]["backordered"] == 1, placed
        return RaceOrder(
            id=placed["id"],
            total=placed["totals"]["total"],
            shirt=shirt,
            mug=mug,
            shipments=[s["id"] for s in placed["shipments"]],
            lines={"shirt": by_sku[shirt]["id"], "mug": by_sku[mug]["id"]},
        )

    async def place_pickup(self, store_shirts: int = 100) -> RaceOrder:
        """#19: two fresh SKUs stocked at the pickup store STORE-R, ordered for click and
        collect there: one shipment, at the store. With fewer than 2 ``store_shirts``, BER
        holds the T-shirts the store lacks: a transfer to fulfil (``transfer_id``) brings them."""
        n = next(_serial_numbers)
        shirt, mug = f"RACE-SHIRT-{n}", f"RACE-MUG-{n}"
        await stock(
            self.sessionmaker,
            PICKUP_STORE,
            {shirt: store_shirts, mug: 100},
            latitude=52.53,
            longitude=13.41,
            is_pickup_store=True,
        )
        if store_shirts < 2:
            await stock(self.sessionmaker, "BER", {shirt: 10})
        body = order_body(
            pickup_store=PICKUP_STORE,
            lines=[
                {"sku": shirt, "quantity": 2, "unit_price": 1999, "tax_rate_bps": 1900},
                {"sku": mug, "quantity": 1, "unit_price": 850, "tax_rate_bps": 700},
            ],
        )
        placed = await self.ok("/v1/orders", "storefront", body)
        assert [s["warehouse"] for s in placed["shipments"]] == [PICKUP_STORE], placed
        by_sku = {ln["sku"]: ln["id"] for ln in placed["lines"]}
        transfer_id = None
        if store_shirts < 2:
            async with self.engine.connect() as conn:
                transfer_id = str(
                    (
                        await conn.execute(
                            text("SELECT id FROM transfers WHERE order_id = :o"),
                            {"o": uuid.UUID(placed["id"])},
                        )
                    ).scalar_one()
                )
        return RaceOrder(
            id=placed["id"],
            total=placed["totals"]["total"],
            shirt=shirt,
            mug=mug,
            shipments=[s["id"] for s in placed["shipments"]],
            lines={"shirt": by_sku[shirt], "mug": by_sku[mug]},
            transfer_id=transfer_id,
        )

    async def collection_code(self, order: RaceOrder) -> str:
        """The latest collection code sent for the order (``pickup.ready``)."""
        async with self.engine.connect() as conn:
            code = await conn.scalar(
                text(
                    "SELECT payload->'data'->>'collection_code' FROM outbox_events "
                    "WHERE aggregate_id = :oid AND type = 'pickup.ready' ORDER BY id DESC LIMIT 1"
                ),
                {"oid": order.id},
            )
        return str(code)

    async def receipt(self, order: RaceOrder, units: int = 1) -> httpx.Response:
        """Receive ``units`` mugs at HAM (what the backordered mug waits for)."""
        return await self.post(
            "/v1/inventory/adjustments",
            "fulfillment",
            {"warehouse": "HAM", "sku": order.mug, "type": "receive", "quantity": units},
        )

    async def build(self, state: str, **place: int) -> RaceOrder:
        """A fresh order in ``state`` (one of STATES), every step through the API."""
        steps = [s for s in STATES[: STATES.index(state) + 1] if s not in OFF_CHAIN or s == state]
        if state == "backordered":
            order = await self.place_backordered()
        elif state in ("pickup_picked", "ready_for_pickup"):
            order = await self.place_pickup()
        elif state in ("transfer_awaited", "transfer_in_transit"):
            order = await self.place_pickup(store_shirts=1)
        else:
            order = await self.place(**place)
        for step in steps[1:]:
            await self._step(order, step)
        return order

    async def build_many(self, state: str, n: int) -> list[RaceOrder]:
        """``n`` fresh orders in ``state``, built concurrently (they share no stock rows)."""
        return list(await asyncio.gather(*(self.build(state) for _ in range(n))))

    async def _step(self, order: RaceOrder, step: str) -> None:
        def ok(resp: httpx.Response) -> Any:
            assert resp.status_code in (200, 201), f"setup {step}: {resp.status_code} {resp.text}"
            return resp.json()

        if step == "authorized":
            order.payment_id = ok(await self.pay(order, "authorized"))["id"]
        elif step == "paid":
            if order.payment_id is not None:  # built on "authorized": capture it
                ok(await self.post(f"/v1/payments/{order.payment_id}/capture", "admin", {}))
            else:
                ok(await self.pay(order))
        elif step == "held":
            hold = ok(await self.hold(order))
            order.hold_id = hold["id"]
        elif step == "split":
            line = {"order_line_id": order.lines["shirt"], "quantity": 1}
            split = ok(
                await self.post(
                    f"/v1/shipments/{order.shipments[0]}/split", "fulfillment", {"lines": [line]}
                )
            )
            order.shipments.append(split["shipment_id"])  # shipment 3
        elif step == "picked_one":
            ok(await self.shipment_to(order, 1, "picked"))
        elif step in ("picked", "packed", "shipped", "delivered"):
            ok(await self.order_to(order, step))
        elif step == "return_requested":
            line = {"order_line_id": order.lines["shirt"], "quantity": 2, "reason_code": "other"}
            rma = await self.ok(f"/v1/orders/{order.id}/returns", "storefront", {"lines": [line]})
            order.return_id = rma["id"]
            order.return_lines = {"shirt": rma["lines"][0]["id"]}
        elif step == "return_approved":
            await self.ok(f"/v1/returns/{order.return_id}/approve", "admin")
        elif step == "return_received":
            ok(await self.receive_return(order))
        elif step == "backordered":
            pass  # placed so by place_backordered
        elif step == "transfer_awaited":
            pass  # placed so by place_pickup(store_shirts=1)
        elif step == "transfer_in_transit":
            ok(await self.post(f"/v1/transfers/{order.transfer_id}/ship", "fulfillment"))
        elif step == "pickup_picked":
            ok(await self.order_to(order, "picked"))
        elif step == "ready_for_pickup":
            ok(await self.order_to(order, "picked"))
            ok(await self.post(f"/v1/pickups/{order.shipments[0]}/ready", "fulfillment"))
        else:  # pragma: no cover - a typo in STATES
            raise AssertionError(f"unknown state {step}")


@pytest.fixture(scope="module")
async def harness(
    app: FastAPI, engine: AsyncEngine, sessionmaker: async_sessionmaker[AsyncSession]
) -> AsyncIterator[Harness]:
    """A clean database for the module, the two warehouses, the real app over httpx, a key
    per role and the psp connector."""
    await _truncate(engine)
    await stock(sessionmaker, "BER", {}, latitude=52.52, longitude=13.405)
    await stock(sessionmaker, "HAM", {}, latitude=53.55, longitude=9.99)
    await stock(sessionmaker, "MUC", {}, latitude=48.14, longitude=11.58)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://oms.test") as client:
        keys = {role.value: await make_key(sessionmaker, role) for role in Role}
        resp = await client.post(
            "/v1/connectors",
            json={"name": PSP, "channel": "web", "format": "oms"},
            headers=auth(keys["admin"]),
        )
        assert resp.status_code == 201, resp.text
        secret = resp.json()["secret"]
        resp = await client.post(  # a marketplace selling into the same channel
            "/v1/connectors",
            json={"name": SHOP, "channel": "web", "format": "shopify", "secret": SHOP_SECRET},
            headers=auth(keys["admin"]),
        )
        assert resp.status_code == 201, resp.text
        # unpaid card orders of 'web' expire after a year (the `expire` op runs a year later)
        resp = await client.put(
            "/v1/expiry-policies/web/card", json={"after_hours": 8784}, headers=auth(keys["admin"])
        )
        assert resp.status_code == 201, resp.text
        # waves (#20): web's orders wait for a wave; no trigger, so only the `wave` op runs one
        resp = await client.put(
            "/v1/wave-policies/web", json={"enabled": True}, headers=auth(keys["admin"])
        )
        assert resp.status_code == 200, resp.text
        yield Harness(client, keys, engine, sessionmaker, secret)


# ---- firing at once ----------------------------------------------------------------------------


@dataclass
class Outcome:
    """One operation's answer in a race: its status and problem code, or what it raised."""

    name: str
    status: int | None
    code: str | None = None
    error: str | None = None

    @property
    def won(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def __str__(self) -> str:
        if self.error is not None:
            return f"{self.name}: raised {self.error}"
        return f"{self.name}: {self.status}" + (f" {self.code}" if self.code else "")


async def at_once(*calls: tuple[str, Callable[[], Awaitable[httpx.Response]]]) -> list[Outcome]:
    """Start every call together and wait for all of them (a hang fails after RACE_TIMEOUT_S)."""
    results = await asyncio.wait_for(
        asyncio.gather(*(call() for _, call in calls), return_exceptions=True), RACE_TIMEOUT_S
    )
    out = []
    for (name, _), res in zip(calls, results, strict=True):
        if isinstance(res, BaseException):
            out.append(Outcome(name, None, error=f"{type(res).__name__}: {res}"))
            continue
        code = None
        if res.headers.get("content-type", "").startswith("application/problem+json"):
            code = res.json().get("code")
        out.append(Outcome(name, res.status_code, code))
    return out


def answer_problems(outcomes: list[Outcome]) -> list[str]:
    """Every answer is a success or a 4xx problem document: never a 5xx, never an exception."""
    bad = []
    for o in outcomes:
        if o.error is not None or o.status is None or o.status >= 500:
            bad.append(f"not a 2xx or 4xx answer: {o}")
        elif not o.won and o.code is None:
            bad.append(f"a refusal without a problem document: {o}")
    return bad


# ---- the invariants ----------------------------------------------------------------------------

_SHIPMENT_FLOW = ("pending", "picked", "packed", "shipped", "delivered")
_FULFILMENT = ("picked", "packed", "shipped", "delivered")
_ORDER_STATUSES = (
    "placed",
    "paid",
    "picked",
    "packed",
    "shipped",
    "delivered",
    "returned",
    "cancelled",
)

_ORDER = """
    SELECT status, total_amount, units_ordered, units_shipped, live_shipments, units_returned,
           fulfillment
    FROM orders WHERE id = :oid"""
_LINES = """
    SELECT l.id, l.sku, l.quantity, l.backordered,
           coalesce(sum(a.quantity) FILTER (WHERE a.status = 'open'), 0) AS open,
           coalesce(sum(a.quantity) FILTER (WHERE a.status = 'consumed'), 0) AS consumed
    FROM order_lines l LEFT JOIN allocations a ON a.order_line_id = l.id
    WHERE l.order_id = :oid GROUP BY l.id ORDER BY l.line_no"""
_SHIPMENTS = """
    SELECT s.id::text AS id, s.seq, s.status,
           coalesce(sum(a.quantity) FILTER (WHERE a.status = 'open'), 0) AS open,
           coalesce(sum(a.quantity) FILTER (WHERE a.status = 'consumed'), 0) AS consumed,
           coalesce(sum(a.quantity) FILTER (WHERE a.status = 'released'), 0) AS released
    FROM shipments s LEFT JOIN allocations a ON a.shipment_id = s.id
    WHERE s.order_id = :oid GROUP BY s.id ORDER BY s.seq"""
_STOCK = """
    SELECT w.code, s.sku, s.on_hand, s.reserved,
           (SELECT coalesce(sum(a.quantity), 0) FROM allocations a
            WHERE a.warehouse_id = s.warehouse_id AND a.sku = s.sku AND a.status = 'open')
             AS open,
           (SELECT coalesce(sum(m.quantity), 0) FROM inventory_movements m
            WHERE m.warehouse_id = s.warehouse_id AND m.sku = s.sku) AS ledger
    FROM stock_levels s JOIN warehouses w ON w.id = s.warehouse_id
    WHERE s.sku IN (SELECT sku FROM order_lines WHERE order_id = :oid)
    ORDER BY w.code, s.sku"""
_COPIES = """
    SELECT count(*) FROM allocations a JOIN orders o ON o.id = a.order_id
    WHERE a.order_id = :oid AND (a.placed_at, a.channel, a.currency)
          IS DISTINCT FROM (o.created_at, o.channel, o.currency)"""
_UNSHIPPED_ALLOCATIONS = """
    SELECT status, sum(quantity) FROM allocations
    WHERE order_id = :oid AND shipment_id IS NULL AND status <> 'released' GROUP BY status"""
_HISTORY = """
    SELECT id, kind, from_status, to_status FROM order_events WHERE order_id = :oid ORDER BY id"""
_EVENTS = """
    SELECT type, payload->'data'->>'shipment_id' AS shipment_id,
           payload->'data'->>'return_id' AS return_id
    FROM outbox_events WHERE aggregate_id = :oid_text ORDER BY id"""
_RETURNS = """
    SELECT r.id::text AS id, r.status,
           (SELECT coalesce(sum(rl.restocked_quantity), 0) FROM return_lines rl
            WHERE rl.return_id = r.id) AS restocked,
           (SELECT coalesce(sum(m.quantity), 0) FROM inventory_movements m
            WHERE m.movement_type = 'return' AND m.reference_type = 'return'
              AND m.reference_id = r.id::text) AS ledger,
           (SELECT count(*) FROM refunds f WHERE f.return_id = r.id) AS refunds
    FROM returns r WHERE r.order_id = :oid ORDER BY r.created_at"""
_RETURNED_BY_LINE = """
    SELECT rl.order_line_id, sum(rl.quantity) FROM return_lines rl
    JOIN returns r ON r.id = rl.return_id
    WHERE r.order_id = :oid AND r.status <> 'rejected' GROUP BY rl.order_line_id"""
_MONEY = """
    SELECT (SELECT coalesce(sum(captured_amount), 0) FROM payments WHERE order_id = :oid),
           (SELECT count(*) FROM payments WHERE order_id = :oid AND captured_amount > 0),
           (SELECT coalesce(sum(refunded_amount), 0) FROM payments WHERE order_id = :oid),
           (SELECT coalesce(sum(amount), 0) FROM refunds WHERE order_id = :oid),
           (SELECT count(*) FROM refunds WHERE order_id = :oid)"""


_PICKUP_FLOW = ("pending", "picked", "ready_for_pickup", "collected")  # #19: click and collect
_PICKUP_RANK = {"ready_for_pickup": 2, "collected": 4}  # as oms.orders.domain.shipment_rank


def _rank(status: str) -> int:
    if status in _SHIPMENT_FLOW:
        return _SHIPMENT_FLOW.index(status)
    return _PICKUP_RANK.get(status, -1)


async def stock_baseline(engine: AsyncEngine) -> dict[str, int]:
    """How many rows break each invariant of ``tests.helpers.INVARIANTS_SQL`` (all orders)."""
    async with engine.connect() as conn:
        return {
            name: int((await conn.execute(text(sql))).scalar_one())
            for name, sql in INVARIANTS_SQL.items()
        }


async def stock_violations_since(engine: AsyncEngine, baseline: dict[str, int]) -> list[str]:
    """The invariants of ``tests.helpers`` (stock, ledger, the orders' counts and copies, the
    customer totals) broken by more rows than at ``baseline``: what a test did, not what an
    earlier test of the module left behind."""
    now = await stock_baseline(engine)
    return [
        f"all orders: invariant broken: {name} ({now[name] - baseline[name]} more rows)"
        for name in now
        if now[name] > baseline[name]
    ]


async def order_invariant_violations(engine: AsyncEngine, order_id: str) -> list[str]:
    """Everything wrong with one order and the stock rows of its SKUs, as sentences.

    Scoped to the order, so a race is judged by its own order (the races' orders each have
    SKUs of their own); ``check_order_invariants`` adds the database-wide checks."""
    bad: list[str] = []
    params = {"oid": uuid.UUID(order_id), "oid_text": order_id}
    async with engine.connect() as conn:

        async def rows(sql: str) -> list[Any]:
            return list((await conn.execute(text(sql), params)).all())

        order = (await rows(_ORDER))[0]
        levels = await rows(_STOCK)
        bad_copies = (await rows(_COPIES))[0][0]
        lines = await rows(_LINES)
        shipments = await rows(_SHIPMENTS)
        loose = await rows(_UNSHIPPED_ALLOCATIONS)
        history = await rows(_HISTORY)
        events = await rows(_EVENTS)
        returns = await rows(_RETURNS)
        returned_by_line = {line: int(q) for line, q in await rows(_RETURNED_BY_LINE)}
        captured, captured_payments, refunded_on_payments, refunded, refund_rows = (
            await rows(_MONEY)
        )[0]

    status = order.status
    live = [s for s in shipments if s.status != "cancelled"]
    consumed = sum(int(ln.consumed) for ln in lines)
    ordered = sum(ln.quantity for ln in lines)

    # -- stock (the rows of the order's SKUs) ------------------------------------------------
    for lv in levels:
        where = f"stock {lv.sku} in {lv.code}"
        if lv.on_hand < 0 or lv.reserved < 0 or lv.reserved > lv.on_hand:
            bad.append(f"{where}: {lv.on_hand} on hand, {lv.reserved} reserved")
        if lv.reserved != lv.open:
            bad.append(f"{where}: {lv.reserved} reserved, open allocations hold {lv.open}")
        if lv.ledger != lv.on_hand:
            bad.append(f"{where}: {lv.on_hand} on hand, the ledger sums to {lv.ledger}")
    if bad_copies:
        bad.append(f"{bad_copies} allocations differ from the order's time, channel, currency")

    # -- allocations and shipments ---------------------------------------------------------
    if loose:
        bad.append(f"allocations without a shipment: {loose}")
    for s in shipments:
        where = f"shipment {s.seq} ({s.status})"
        if s.status == "cancelled" and s.consumed:
            bad.append(f"{where} has {s.consumed} units consumed (shipped, then cancelled)")
        if s.status != "cancelled" and s.released:
            bad.append(f"{where} is live but {s.released} of its units were released")
        if s.status in ("pending", "picked", "packed", "ready_for_pickup") and s.consumed:
            bad.append(f"{where} has not shipped but {s.consumed} of its units were consumed")
        if s.status in ("shipped", "delivered", "collected") and s.open:
            bad.append(f"{where} has shipped but {s.open} of its units are still reserved")
        if s.status == "cancelled" and s.open:
            bad.append(f"{where} still reserves {s.open} units")
        if s.status != "cancelled" and not (s.open or s.consumed):
            bad.append(f"{where} is live but carries no units")
    if status == "cancelled":
        if any(ln.open for ln in lines):
            bad.append("the cancelled order still reserves stock")
        if consumed or any(s.status in ("shipped", "delivered") for s in shipments):
            bad.append(f"the cancelled order has shipped units ({consumed} consumed)")
    if consumed > ordered:
        bad.append(f"{consumed} units shipped for a {ordered}-unit order")
    if consumed != order.units_shipped:
        bad.append(f"units_shipped is {order.units_shipped}, consumed allocations {consumed}")
    if ordered != order.units_ordered:
        bad.append(f"units_ordered is {order.units_ordered}, the lines hold {ordered}")
    if len(live) != order.live_shipments:
        bad.append(f"live_shipments is {order.live_shipments}, {len(live)} are not cancelled")
    on_returns = sum(returned_by_line.values())
    if on_returns != order.units_returned:
        bad.append(f"units_returned is {order.units_returned}, {on_returns} units on returns")
    for ln in lines:
        held = int(ln.open) + int(ln.consumed) + ln.backordered
        if held > ln.quantity or (status != "cancelled" and held != ln.quantity):
            bad.append(
                f"line {ln.sku}: {ln.open} reserved + {ln.consumed} shipped + "
                f"{ln.backordered} backordered for a quantity of {ln.quantity}"
            )

    # -- the order's status against its shipments -----------------------------------------
    ranks = [_rank(s.status) for s in live]
    if status == "cancelled":
        if live:
            bad.append(f"the cancelled order has live shipments: {[s.status for s in live]}")
    elif not live:
        pass  # nothing to ship (everything backordered): the line check covers the units
    elif status in ("placed", "paid") and min(ranks) != 0:
        bad.append(f"the order is {status} but every live shipment is past pending: {ranks}")
    elif status in _FULFILMENT and min(ranks) != _rank(status):
        bad.append(f"the order is {status}, its live shipments {[s.status for s in live]}")
    elif status == "ready_for_pickup" and min(ranks) != _rank("ready_for_pickup"):
        bad.append(f"the order is ready for pickup, its shipments {[s.status for s in live]}")
    elif status == "returned" and min(ranks) != _rank("delivered"):
        bad.append(f"the order is returned, its live shipments {[s.status for s in live]}")

    # -- returns ---------------------------------------------------------------------------
    by_line = {ln.id: ln for ln in lines}
    for line_id, qty in returned_by_line.items():
        if qty > int(by_line[line_id].consumed):
            ln = by_line[line_id]
            bad.append(f"line {ln.sku}: {qty} units on returns, {ln.consumed} delivered")
    received_events = Counter(e.return_id for e in events if e.type == "return.received")
    restocked_total = 0
    for r in returns:
        restocked_total += int(r.ledger)
        if r.ledger != r.restocked:
            bad.append(
                f"return {r.id}: {r.ledger} units restocked in the ledger, lines say {r.restocked}"
            )
        expected = 1 if r.status in ("received", "closed") else 0
        if received_events[r.id] != expected:
            bad.append(f"return {r.id} ({r.status}) was received {received_events[r.id]} times")
        # one receipt refunds each captured payment at most once
        if r.refunds > expected * captured_payments:
            bad.append(f"return {r.id} ({r.status}) has {r.refunds} refunds")
    if restocked_total > consumed:
        bad.append(f"{restocked_total} units restocked from returns, {consumed} delivered")
    requested = sum(1 for e in events if e.type == "return.requested")
    if requested != len(returns):
        bad.append(f"{requested} return.requested events for {len(returns)} returns")

    # -- money -----------------------------------------------------------------------------
    # net of refunds: a partial cancellation lowers the total below what was captured, and
    # the excess is refunded (or reported as due)
    if captured - refunded > order.total_amount:
        bad.append(
            f"{captured} captured, {refunded} refunded, for an order total of {order.total_amount}"
        )
    if refunded > captured:
        bad.append(f"{refunded} refunded, {captured} captured")
    if refunded_on_payments != refunded:
        bad.append(f"payments say {refunded_on_payments} refunded, refunds sum to {refunded}")
    kinds = Counter(e.type for e in events)
    if kinds["refund.issued"] != refund_rows:
        bad.append(f"{kinds['refund.issued']} refund.issued events for {refund_rows} refunds")
    if kinds["payment.captured"] != captured_payments:
        bad.append(
            f"{kinds['payment.captured']} payment.captured events for {captured_payments} "
            "captured payments"
        )

    # -- history ---------------------------------------------------------------------------
    if not history or (history[0].from_status, history[0].to_status) != (None, "placed"):
        bad.append(f"history does not start with placement: {history[:1]}")
    for before, after in zip(history, history[1:], strict=False):
        if after.from_status != before.to_status:
            bad.append(
                f"history: '{after.kind}' from {after.from_status} follows a move to "
                f"{before.to_status}"
            )
    if history and history[-1].to_status != status:
        bad.append(f"history ends in {history[-1].to_status}, the order is {status}")

    # -- outbox ----------------------------------------------------------------------------
    into = Counter(h.to_status for h in history if h.kind == "transition")
    for s in _ORDER_STATUSES:
        if kinds[f"order.{s}"] != into[s]:
            bad.append(f"{kinds[f'order.{s}']} order.{s} events for {into[s]} moves into {s}")
    rerouted = sum(1 for h in history if h.kind == "rerouted")
    if kinds["order.rerouted"] != rerouted:
        bad.append(f"{kinds['order.rerouted']} order.rerouted events for {rerouted} re-routes")
    per_shipment: dict[str, Counter[str]] = defaultdict(Counter)
    for e in events:
        if e.type.startswith("shipment."):
            per_shipment[e.shipment_id][e.type.removeprefix("shipment.")] += 1
    pickup = order.fulfillment == "pickup"  # #19: its shipments' steps are _PICKUP_FLOW's
    for s in shipments:
        seen = per_shipment[s.id]
        if s.status == "cancelled":
            for step in ("shipped", "delivered", "collected"):
                if seen[step]:
                    bad.append(f"shipment.{step} sent for shipment {s.seq}, which ended cancelled")
        for step in _PICKUP_FLOW[1:] if pickup else _FULFILMENT:
            reached = s.status != "cancelled" and _rank(step) <= _rank(s.status)
            if seen[step] > 1 or (s.status != "cancelled" and seen[step] != int(reached)):
                bad.append(f"{seen[step]} shipment.{step} events for shipment {s.seq} ({s.status})")
    return bad


async def check_order_invariants(engine: AsyncEngine, order_id: str) -> None:
    """Assert every invariant of one order: stock, allocations, the order's fulfilment counts,
    returns, money, history and outbox consistent with the final state."""
    bad = await order_invariant_violations(engine, order_id)
    try:  # and the database-wide ones of tests.helpers (on a database of this test's orders)
        await assert_stock_invariants(engine)
    except AssertionError as exc:
        bad.append(str(exc))
    assert not bad, f"order {order_id}:\n  " + "\n  ".join(bad)


# ---- what an order looks like, for comparing a race with the serial runs -----------------------

_FINGERPRINT: dict[str, str] = {  # SKUs without their per-order number
    "order": """SELECT status, units_shipped, live_shipments, units_returned, paid_at IS NOT NULL
                FROM orders WHERE id = :oid""",
    "shipments": "SELECT seq, warehouse_code, status FROM shipments WHERE order_id = :oid",
    "allocations": """
        SELECT s.seq, regexp_replace(a.sku, '-[0-9]+$', ''), a.quantity, a.status FROM allocations a
        LEFT JOIN shipments s ON s.id = a.shipment_id WHERE a.order_id = :oid""",
    "payments": """SELECT status, amount, captured_amount, refunded_amount FROM payments
                   WHERE order_id = :oid""",
    "refunds": "SELECT amount, return_id IS NOT NULL FROM refunds WHERE order_id = :oid",
    "returns": """
        SELECT r.status, regexp_replace(rl.sku, '-[0-9]+$', ''), rl.quantity,
               rl.restocked_quantity, rl.discarded_quantity
        FROM returns r JOIN return_lines rl ON rl.return_id = r.id WHERE r.order_id = :oid""",
    "ledger": """
        SELECT m.movement_type, regexp_replace(m.sku, '-[0-9]+$', ''), m.quantity
        FROM inventory_movements m
        WHERE m.reference_id = :oid_text
           OR m.reference_id IN (SELECT id::text FROM shipments WHERE order_id = :oid)
           OR m.reference_id IN (SELECT id::text FROM returns WHERE order_id = :oid)""",
    "events": "SELECT type FROM outbox_events WHERE aggregate_id = :oid_text",
}
_HISTORY_FINGERPRINT = (
    "SELECT kind, from_status, to_status FROM order_events WHERE order_id = :oid ORDER BY id"
)


async def order_fingerprint(engine: AsyncEngine, order_id: str) -> dict[str, Any]:
    """The order's business state without ids, times or references: two orders that went
    through the same operations in the same order have equal fingerprints."""
    params = {"oid": uuid.UUID(order_id), "oid_text": order_id}
    out: dict[str, Any] = {}
    async with engine.connect() as conn:
        for name, sql in _FINGERPRINT.items():
            rows = (await conn.execute(text(sql), params)).all()
            out[name] = sorted((tuple(r) for r in rows), key=repr)
        history = (await conn.execute(text(_HISTORY_FINGERPRINT), params)).all()
        out["history"] = [tuple(r) for r in history]
    return out


def fingerprint_diff(a: dict[str, Any], b: dict[str, Any]) -> str:
    """The parts of two fingerprints that differ, for a failure message."""
    return "; ".join(f"{k}: {a[k]} vs {b[k]}" for k in a if a[k] != b[k]) or "equal"
