"""Unpaid orders expire: the worker (Relay, with an injected clock) cancels orders past their
channel's expiry policy for their payment method, skipping paid ones, and releases stock."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from oms.config import Settings
from oms.outbox.models import OutboxEvent
from oms.worker import Relay
from tests.helpers import assert_stock_invariants, auth, order_body


async def _place(client: httpx.AsyncClient, keys: dict[str, str], method: str) -> dict[str, Any]:
    resp = await client.post(
        "/v1/orders", json=order_body(payment_method=method), headers=auth(keys["storefront"])
    )
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


async def test_worker_expires_unpaid_orders_past_their_policy(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    admin = auth(keys["admin"])
    resp = await client.put(
        "/v1/expiry-policies/web/bank_transfer", json={"after_hours": 168}, headers=admin
    )
    assert resp.status_code == 201, resp.text
    assert resp.json()["after_hours"] == 168
    listed = (await client.get("/v1/expiry-policies", headers=admin)).json()
    assert [(p["channel"], p["payment_method"]) for p in listed] == [("web", "bank_transfer")]

    unpaid = await _place(client, keys, "bank_transfer")
    paid = await _place(client, keys, "bank_transfer")
    card = await _place(client, keys, "card")  # no policy for cards
    held = await _place(client, keys, "bank_transfer")
    assert (
        await client.post(
            f"/v1/orders/{held['id']}/holds", json={"reason": "awaiting_payment"}, headers=admin
        )
    ).status_code == 201
    resp = await client.post(
        f"/v1/orders/{paid['id']}/payments",
        json={
            "method": "bank_transfer",
            "provider": "bank",
            "provider_reference": "tx-1",
            "amount": paid["totals"]["total"],
            "currency": "EUR",
            "status": "captured",
        },
        headers=admin,
    )
    assert resp.status_code == 201, resp.text

    now = datetime.fromisoformat(unpaid["created_at"])
    clock = {"now": now + timedelta(days=6)}
    async with httpx.AsyncClient() as http:
        relay = Relay(
            sessionmaker=sessionmaker, client=http, settings=settings, clock=lambda: clock["now"]
        )
        assert await relay.expire_unpaid() == 0  # six days: not yet
        clock["now"] = now + timedelta(days=7, minutes=1)
        assert await relay.run_once() >= 2  # the worker's round expires them
        assert relay.stats.orders_expired == 2
        assert await relay.expire_unpaid(force=True) == 0  # done once

    async def status(order: dict[str, Any]) -> str:
        return str((await client.get(f"/v1/orders/{order['id']}", headers=admin)).json()["status"])

    assert [await status(o) for o in (unpaid, paid, card, held)] == [
        "cancelled",
        "paid",
        "placed",
        "cancelled",
    ]
    history = (await client.get(f"/v1/orders/{unpaid['id']}/history", headers=admin)).json()
    last = history[-1]
    assert (last["to_status"], last["actor"]) == ("cancelled", "apikey:expiry")
    assert "expired" in last["reason"] and "7 days" in last["reason"]
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(OutboxEvent.aggregate_id, OutboxEvent.payload).where(
                    OutboxEvent.type == "order.expired"
                )
            )
        ).all()
    assert sorted(r[0] for r in rows) == sorted([unpaid["id"], held["id"]])
    assert rows[0][1]["data"]["expired_after_s"] == 7 * 86400
    avail = (await client.get("/v1/inventory/availability?sku=MUG-01", headers=admin)).json()
    assert avail[0]["reserved"] == 2  # the paid and the card order still hold theirs
    await assert_stock_invariants(engine)

    assert (
        await client.delete("/v1/expiry-policies/web/bank_transfer", headers=admin)
    ).status_code == 204
    assert (
        await client.delete("/v1/expiry-policies/web/bank_transfer", headers=admin)
    ).status_code == 404
    bad = await client.put(
        "/v1/expiry-policies/web/bank_transfer", json={"after_hours": 0}, headers=admin
    )
    assert bad.status_code == 422
    bad = await client.put("/v1/expiry-policies/web/barter", json={"after_hours": 1}, headers=admin)
    assert bad.status_code == 422
