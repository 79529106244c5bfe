"""Click and collect (#19): a pickup order is picked, made ready at its store (a collection
code, no carrier), collected with the code (wrong codes counted and bounded), or marked
uncollected by the worker after the store's window (injected clock): stock, money, events."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from oms.config import Settings
from oms.flows.pickup import expire_uncollected
from oms.shared.clock import utcnow
from oms.worker import Relay
from tests.helpers import assert_stock_invariants, auth, order_body, stock

STORE = "STORE-MITTE"
SKU = "MUG-01"


@pytest.fixture(autouse=True)
async def store(sessionmaker: async_sessionmaker[AsyncSession], client: httpx.AsyncClient) -> None:
    await stock(
        sessionmaker,
        STORE,
        {SKU: 10},
        latitude=52.53,
        longitude=13.40,
        city="Berlin",
        is_pickup_store=True,
    )


async def _level(engine: AsyncEngine, sku: str = SKU, wh: str = STORE) -> tuple[int, int]:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT s.on_hand, s.reserved FROM stock_levels s JOIN warehouses w "
                    "ON w.id = s.warehouse_id WHERE w.code = :wh AND s.sku = :sku"
                ),
                {"wh": wh, "sku": sku},
            )
        ).one()
    return int(row.on_hand), int(row.reserved)


async def _events(engine: AsyncEngine, order_id: str, type_: str) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT payload->'data' FROM outbox_events WHERE aggregate_id = :oid "
                    "AND type = :t ORDER BY id"
                ),
                {"oid": order_id, "t": type_},
            )
        ).scalars()
        return list(rows)


async def _pickup_order(
    client: httpx.AsyncClient, keys: dict[str, str], *, paid: bool = True, quantity: int = 2
) -> tuple[str, str, int]:
    """A pickup order at STORE, paid, its one shipment picked: (order id, shipment id, total)."""
    body = order_body(
        pickup_store=STORE,
        lines=[{"sku": SKU, "quantity": quantity, "unit_price": 850, "tax_rate_bps": 700}],
    )
    resp = await client.post("/v1/orders", json=body, headers=auth(keys["storefront"]))
    assert resp.status_code == 201, resp.text
    order = resp.json()
    assert order["fulfillment"] == "pickup"
    [shipment] = order["shipments"]
    assert shipment["warehouse"] == STORE
    total = order["totals"]["total"]
    if paid:
        pay = {
            "method": "card",
            "provider": "stripe",
            "provider_reference": f"pi_{uuid.uuid4().hex}",
            "amount": total,
            "currency": "EUR",
            "status": "captured",
        }
        resp = await client.post(
            f"/v1/orders/{order['id']}/payments", json=pay, headers=auth(keys["admin"])
        )
        assert resp.status_code == 201, resp.text
        resp = await client.post(
            f"/v1/shipments/{shipment['id']}/transitions",
            json={"to": "picked"},
            headers=auth(keys["fulfillment"]),
        )
        assert resp.status_code == 200, resp.text
    return order["id"], shipment["id"], total


async def _ready(client: httpx.AsyncClient, keys: dict[str, str], shipment_id: str) -> Any:
    resp = await client.post(f"/v1/pickups/{shipment_id}/ready", headers=auth(keys["fulfillment"]))
    assert resp.status_code == 200, resp.text
    return resp.json()


async def _collect(
    client: httpx.AsyncClient, keys: dict[str, str], shipment_id: str, code: str
) -> httpx.Response:
    return await client.post(
        f"/v1/pickups/{shipment_id}/collect",
        json={"code": code},
        headers=auth(keys["fulfillment"]),
    )


async def _order(client: httpx.AsyncClient, keys: dict[str, str], order_id: str) -> Any:
    resp = await client.get(f"/v1/orders/{order_id}", headers=auth(keys["admin"]))
    assert resp.status_code == 200
    return resp.json()


async def test_ready_then_collected_with_the_code(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    order_id, shipment_id, _ = await _pickup_order(client, keys)
    pickup = await _ready(client, keys, shipment_id)
    assert pickup["status"] == "ready"
    assert pickup["shipment_status"] == pickup["order_status"] == "ready_for_pickup"
    assert pickup["attempts_left"] == 5
    assert "code" not in pickup  # only the customer's message carries it
    order = await _order(client, keys, order_id)
    assert order["status"] == "ready_for_pickup"
    assert order["shipments"][0]["status"] == "ready_for_pickup"

    [ready] = await _events(engine, order_id, "pickup.ready")
    assert ready["store"] == STORE and ready["customer_email"] == "ada@example.com"
    code = ready["collection_code"]
    assert len(code) == 6 and code.isdigit()
    assert await _events(engine, order_id, "order.ready_for_pickup")
    assert await _level(engine) == (10, 2)  # still reserved at the counter

    wrong = "000000" if code != "000000" else "111111"
    resp = await _collect(client, keys, shipment_id, wrong)
    assert resp.status_code == 422, resp.text
    assert resp.json()["code"] == "collection_code_invalid"
    assert resp.json()["attempts_left"] == 4
    got = await client.get(f"/v1/pickups/{shipment_id}", headers=auth(keys["fulfillment"]))
    assert got.json()["attempts"] == 1  # the refused attempt counted (committed)
    assert (await _order(client, keys, order_id))["status"] == "ready_for_pickup"

    resp = await _collect(client, keys, shipment_id, code)
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "collected"
    assert resp.json()["shipment_status"] == "collected"
    assert resp.json()["order_status"] == "delivered"
    order = await _order(client, keys, order_id)
    assert order["status"] == "delivered"
    assert await _level(engine) == (8, 0)  # the units left the store
    async with engine.connect() as conn:
        moves = (
            await conn.execute(
                text(
                    "SELECT movement_type, quantity FROM inventory_movements "
                    "WHERE reference_id = :s"
                ),
                {"s": shipment_id},
            )
        ).all()
    assert [tuple(m) for m in moves] == [("shipment", -2)]
    assert await _events(engine, order_id, "pickup.collected")
    assert await _events(engine, order_id, "order.delivered")

    again = await _collect(client, keys, shipment_id, code)
    assert again.status_code == 409
    assert again.json()["code"] == "pickup_not_ready"
    await assert_stock_invariants(engine)


async def test_no_carrier_no_packing_no_shortcut(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    order_id, shipment_id, _ = await _pickup_order(client, keys)
    resp = await client.post(
        f"/v1/shipments/{shipment_id}/transitions",
        json={"to": "packed"},
        headers=auth(keys["fulfillment"]),
    )
    assert resp.status_code == 409
    assert resp.json()["code"] == "illegal_shipment_transition"
    assert resp.json()["allowed_transitions"] == ["ready_for_pickup"]
    resp = await client.post(
        f"/v1/orders/{order_id}/transitions", json={"to": "packed"}, headers=auth(keys["admin"])
    )
    assert resp.status_code == 409
    assert resp.json()["allowed_transitions"] == ["cancelled", "ready_for_pickup"]
    for to in ("ready_for_pickup", "delivered"):
        resp = await client.post(
            f"/v1/orders/{order_id}/transitions", json={"to": to}, headers=auth(keys["admin"])
        )
        assert resp.status_code == 409
        assert resp.json()["code"] == "pickup_route_required"
    resp = await client.post(
        f"/v1/shipments/{shipment_id}/transitions",
        json={"to": "collected"},
        headers=auth(keys["fulfillment"]),
    )
    assert resp.status_code == 409
    assert resp.json()["code"] == "pickup_route_required"


async def test_a_shipping_order_is_not_a_pickup(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    resp = await client.post("/v1/orders", json=order_body(), headers=auth(keys["storefront"]))
    shipment_id = resp.json()["shipments"][0]["id"]
    resp = await client.post(f"/v1/pickups/{shipment_id}/ready", headers=auth(keys["fulfillment"]))
    assert resp.status_code == 409
    assert resp.json()["code"] == "not_a_pickup"
    unpicked = (await _pickup_order(client, keys, paid=False))[1]
    resp = await client.post(f"/v1/pickups/{unpicked}/ready", headers=auth(keys["fulfillment"]))
    assert resp.status_code == 409
    assert resp.json()["code"] == "illegal_shipment_transition"
    resp = await client.post(f"/v1/pickups/{uuid.uuid4()}/ready", headers=auth(keys["fulfillment"]))
    assert resp.status_code == 404


async def test_wrong_codes_are_bounded_and_a_new_code_unlocks(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    resp = await client.put(
        f"/v1/stores/{STORE}/policy",
        json={"pickup_window_hours": 48, "uncollected_action": "cancel", "max_code_attempts": 2},
        headers=auth(keys["admin"]),
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["default"] is False
    order_id, shipment_id, _ = await _pickup_order(client, keys)
    pickup = await _ready(client, keys, shipment_id)
    assert pickup["attempts_left"] == 2
    code = (await _events(engine, order_id, "pickup.ready"))[0]["collection_code"]
    wrong = str((int(code) + 1) % 1_000_000).zfill(6)
    assert [(await _collect(client, keys, shipment_id, wrong)).status_code for _ in range(2)] == [
        422,
        422,
    ]
    locked = await _collect(client, keys, shipment_id, code)  # even the right code: locked
    assert locked.status_code == 409
    assert locked.json()["code"] == "collection_locked"

    resp = await client.post(f"/v1/pickups/{shipment_id}/code", headers=auth(keys["fulfillment"]))
    assert resp.status_code == 200, resp.text
    assert resp.json()["attempts"] == 0
    codes = [e["collection_code"] for e in await _events(engine, order_id, "pickup.ready")]
    assert len(codes) == 2
    resp = await _collect(client, keys, shipment_id, codes[-1])
    assert resp.status_code == 200, resp.text
    assert resp.json()["order_status"] == "delivered"


@pytest.mark.parametrize("action", ["cancel", "refund"])
async def test_uncollected_after_the_window(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    action: str,
) -> None:
    resp = await client.put(
        f"/v1/stores/{STORE}/policy",
        json={"pickup_window_hours": 24, "uncollected_action": action},
        headers=auth(keys["admin"]),
    )
    assert resp.status_code == 200, resp.text
    order_id, shipment_id, total = await _pickup_order(client, keys, quantity=3)
    await _ready(client, keys, shipment_id)
    assert await _level(engine) == (10, 3)

    assert await expire_uncollected(sessionmaker, now=utcnow() + timedelta(hours=23)) == 0
    assert (await _order(client, keys, order_id))["status"] == "ready_for_pickup"

    assert await expire_uncollected(sessionmaker, now=utcnow() + timedelta(hours=25)) == 1
    order = await _order(client, keys, order_id)
    assert order["status"] == "cancelled"
    assert order["shipments"][0]["status"] == "cancelled"
    assert await _level(engine) == (10, 0)  # back on the shelf: sellable at the store again
    got = await client.get(f"/v1/pickups/{shipment_id}", headers=auth(keys["fulfillment"]))
    assert got.json()["status"] == "uncollected"
    [event] = await _events(engine, order_id, "pickup.uncollected")
    assert event["action"] == action
    assert event["refunded"] == (total if action == "refund" else 0)
    payments = await client.get(f"/v1/orders/{order_id}/payments", headers=auth(keys["admin"]))
    refunded = sum(p["refunded_amount"] for p in payments.json()["payments"])
    assert refunded == (total if action == "refund" else 0)
    assert await expire_uncollected(sessionmaker, now=utcnow() + timedelta(hours=50)) == 0
    resp = await _collect(
        client,
        keys,
        shipment_id,
        (await _events(engine, order_id, "pickup.ready"))[0]["collection_code"],
    )
    assert resp.status_code == 409
    await assert_stock_invariants(engine)


async def test_cancelled_while_waiting_is_closed_by_the_sweep(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    order_id, shipment_id, _ = await _pickup_order(client, keys)
    await _ready(client, keys, shipment_id)
    resp = await client.post(
        f"/v1/orders/{order_id}/transitions",
        json={"to": "cancelled", "reason": "customer called"},
        headers=auth(keys["storefront"]),
    )
    assert resp.status_code == 200, resp.text
    assert await _level(engine) == (10, 0)
    assert await expire_uncollected(sessionmaker, now=utcnow() + timedelta(days=10)) == 0
    got = await client.get(f"/v1/pickups/{shipment_id}", headers=auth(keys["fulfillment"]))
    assert got.json()["status"] == "cancelled"
    assert not await _events(engine, order_id, "pickup.uncollected")


async def test_an_online_order_returned_in_store_restocks_that_store(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    """What exists already: a return's receipt names the warehouse its units go back to
    (``warehouse`` on the receipt line; default: where they shipped from)."""
    body = order_body(lines=[{"sku": SKU, "quantity": 1, "unit_price": 850, "tax_rate_bps": 700}])
    order = (await client.post("/v1/orders", json=body, headers=auth(keys["storefront"]))).json()
    assert [s["warehouse"] for s in order["shipments"]] == ["BER"]  # shipped from the warehouse
    admin = auth(keys["admin"])
    pay = {
        "method": "card",
        "provider": "stripe",
        "provider_reference": f"pi_{uuid.uuid4().hex}",
        "amount": order["totals"]["total"],
        "currency": "EUR",
        "status": "captured",
    }
    assert (
        await client.post(f"/v1/orders/{order['id']}/payments", json=pay, headers=admin)
    ).status_code == 201
    for to in ("picked", "packed", "shipped", "delivered"):
        move = (
            {"to": to, "carrier": "DHL", "tracking_number": "JJD1"}
            if to == "shipped"
            else {"to": to}
        )
        resp = await client.post(f"/v1/orders/{order['id']}/transitions", json=move, headers=admin)
        assert resp.status_code == 200, resp.text
    line = order["lines"][0]["id"]
    rma = (
        await client.post(
            f"/v1/orders/{order['id']}/returns",
            json={"lines": [{"order_line_id": line, "quantity": 1, "reason_code": "other"}]},
            headers=auth(keys["storefront"]),
        )
    ).json()
    await client.post(f"/v1/returns/{rma['id']}/approve", headers=admin)
    resp = await client.post(
        f"/v1/returns/{rma['id']}/receive",
        json={
            "lines": [{"return_line_id": rma["lines"][0]["id"], "restock": 1, "warehouse": STORE}]
        },
        headers=auth(keys["fulfillment"]),
    )
    assert resp.status_code == 200, resp.text
    assert await _level(engine) == (11, 0)  # back on the store's shelf, not the warehouse's
    await assert_stock_invariants(engine)


async def test_a_held_order_is_not_collected(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    order_id, shipment_id, _ = await _pickup_order(client, keys)
    await _ready(client, keys, shipment_id)
    code = (await _events(engine, order_id, "pickup.ready"))[0]["collection_code"]
    hold = await client.post(
        f"/v1/orders/{order_id}/holds", json={"reason": "fraud_review"}, headers=auth(keys["admin"])
    )
    assert hold.status_code == 201, hold.text
    resp = await _collect(client, keys, shipment_id, code)
    assert resp.status_code == 409 and resp.json()["code"] == "order_on_hold"
    await client.post(
        f"/v1/orders/{order_id}/holds/{hold.json()['id']}/release", headers=auth(keys["admin"])
    )
    assert (await _collect(client, keys, shipment_id, code)).status_code == 200


async def test_cash_on_delivery_is_paid_at_the_counter(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    body = order_body(
        pickup_store=STORE,
        payment_method="cash_on_delivery",
        lines=[{"sku": SKU, "quantity": 1, "unit_price": 850, "tax_rate_bps": 700}],
    )
    order = (await client.post("/v1/orders", json=body, headers=auth(keys["storefront"]))).json()
    shipment_id = order["shipments"][0]["id"]
    resp = await client.post(
        f"/v1/shipments/{shipment_id}/transitions",
        json={"to": "picked"},
        headers=auth(keys["fulfillment"]),
    )
    assert resp.status_code == 200, resp.text
    await _ready(client, keys, shipment_id)
    code = (await _events(engine, order["id"], "pickup.ready"))[0]["collection_code"]
    assert (await _collect(client, keys, shipment_id, code)).status_code == 200
    got = await _order(client, keys, order["id"])
    assert got["status"] == "delivered" and got["paid_at"] is not None
    payments = await client.get(f"/v1/orders/{order['id']}/payments", headers=auth(keys["admin"]))
    assert [p["captured_amount"] for p in payments.json()["payments"]] == [order["totals"]["total"]]


async def test_the_worker_round_marks_pickups_uncollected(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    """The worker's own round (``Relay.run_once``) with an injected clock: the default window
    (OMS_PICKUP_WINDOW_HOURS, 72 h) passes, the pickup is marked uncollected once."""
    order_id, shipment_id, _ = await _pickup_order(client, keys)
    ready_at = datetime.fromisoformat((await _ready(client, keys, shipment_id))["ready_at"])
    clock = {"now": ready_at + timedelta(hours=71)}
    async with httpx.AsyncClient() as http:
        relay = Relay(
            sessionmaker=sessionmaker, client=http, settings=settings, clock=lambda: clock["now"]
        )
        assert await relay.expire_uncollected() == 0  # not yet
        clock["now"] = ready_at + timedelta(hours=72, minutes=1)
        await relay.run_once()
        assert relay.stats.pickups_uncollected == 1
        assert await relay.expire_uncollected(force=True) == 0  # done once
    assert (await _order(client, keys, order_id))["status"] == "cancelled"
    history = (
        await client.get(f"/v1/orders/{order_id}/history", headers=auth(keys["admin"]))
    ).json()
    assert (history[-1]["actor"], history[-1]["to_status"]) == ("apikey:pickup-expiry", "cancelled")
    assert "not collected" in history[-1]["reason"]


async def test_no_new_code_for_a_shipment_not_waiting_for_pickup(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    """409 `pickup_not_ready` with the shipment's status (never null: the documented type)."""
    resp = await client.post("/v1/orders", json=order_body(), headers=auth(keys["storefront"]))
    shipment_id = resp.json()["shipments"][0]["id"]
    resp = await client.post(f"/v1/pickups/{shipment_id}/code", headers=auth(keys["fulfillment"]))
    assert resp.status_code == 409
    assert (resp.json()["code"], resp.json()["current_status"]) == ("pickup_not_ready", "pending")
