"""Transfer to fulfil (#19): a click-and-collect order whose store lacks units is placed with a
transfer of the short units from the nearest location that has them (explained, runner-up
named), reserved there; the pickup shipment cannot be made ready until the transfer is
received; then ready → collected as usual. Cancelling the order before the transfer ships
cancels it and releases the source's units; after it ships, the units arrive at the store as
ordinary stock. Stock, ledger, order and outbox invariants checked after each story."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests.api.test_transfers import IN_TRANSIT_SQL
from tests.helpers import auth, order_body, stock
from tests.races.conftest import check_order_invariants, stock_baseline, stock_violations_since

STORE = "STORE-PANKOW"
NEAR = "WH-BER"  # Berlin: nearest to the store, has stock
FAR = "WH-MUC"  # Munich: has stock too (the runner-up)
SKU = "LAMP-07"


@pytest.fixture(autouse=True)
async def locations(
    sessionmaker: async_sessionmaker[AsyncSession], client: httpx.AsyncClient
) -> None:
    await stock(
        sessionmaker,
        STORE,
        {SKU: 1},
        latitude=52.57,
        longitude=13.40,
        city="Berlin",
        is_pickup_store=True,
    )
    await stock(sessionmaker, NEAR, {SKU: 5}, latitude=52.40, longitude=13.50, city="Berlin")
    await stock(sessionmaker, FAR, {SKU: 9}, latitude=48.14, longitude=11.58, city="Munich")


async def _level(engine: AsyncEngine, wh: str) -> tuple[int, int]:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT s.on_hand, s.reserved FROM stock_levels s JOIN warehouses w "
                    "ON w.id = s.warehouse_id WHERE w.code = :wh AND s.sku = :sku"
                ),
                {"wh": wh, "sku": SKU},
            )
        ).one()
    return int(row.on_hand), int(row.reserved)


async def _transfers_whole(engine: AsyncEngine) -> None:
    """Every transfer's lines agree with the ledger at both ends and with what is expected
    at the destination (``tests.api.test_transfers.IN_TRANSIT_SQL``)."""
    async with engine.connect() as conn:
        assert (await conn.execute(text(IN_TRANSIT_SQL))).scalar_one() == 0


async def _rows(engine: AsyncEngine, sql: str, **params: Any) -> list[Any]:
    async with engine.connect() as conn:
        return list((await conn.execute(text(sql), params)).all())


async def _place(client: httpx.AsyncClient, keys: dict[str, str], quantity: int = 3) -> Any:
    body = order_body(
        pickup_store=STORE,
        lines=[{"sku": SKU, "quantity": quantity, "unit_price": 2500, "tax_rate_bps": 1900}],
    )
    resp = await client.post("/v1/orders", json=body, headers=auth(keys["storefront"]))
    assert resp.status_code == 201, resp.text
    return resp.json()


async def _transfer_of(engine: AsyncEngine, order_id: str) -> str:
    [row] = await _rows(
        engine, "SELECT id FROM transfers WHERE order_id = :o", o=uuid.UUID(order_id)
    )
    return str(row.id)


async def _post(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    url: str,
    body: Any = None,
    role: str = "fulfillment",
) -> httpx.Response:
    return await client.post(url, json=body, headers=auth(keys[role]))


async def _pay_and_pick(client: httpx.AsyncClient, keys: dict[str, str], order: Any) -> str:
    pay = {
        "method": "card",
        "provider": "stripe",
        "provider_reference": f"pi_{uuid.uuid4().hex}",
        "amount": order["totals"]["total"],
        "currency": "EUR",
        "status": "captured",
    }
    resp = await _post(client, keys, f"/v1/orders/{order['id']}/payments", pay, role="admin")
    assert resp.status_code == 201, resp.text
    [shipment] = order["shipments"]
    resp = await _post(
        client, keys, f"/v1/shipments/{shipment['id']}/transitions", {"to": "picked"}
    )
    assert resp.status_code == 200, resp.text
    return str(shipment["id"])


async def test_short_pickup_order_is_placed_with_an_explained_transfer(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    baseline = await stock_baseline(engine)
    order = await _place(client, keys, quantity=3)  # the store holds 1
    [shipment] = order["shipments"]
    assert shipment["warehouse"] == STORE  # one pickup shipment, carrying all 3 units
    assert sum(ln["quantity"] for ln in shipment["lines"]) == 3
    # 1 reserved at the store, 2 at the nearest location with stock, none at the runner-up
    assert await _level(engine, STORE) == (1, 1)
    assert await _level(engine, NEAR) == (5, 2)
    assert await _level(engine, FAR) == (9, 0)

    transfer_id = await _transfer_of(engine, order["id"])
    got = await client.get(f"/v1/transfers/{transfer_id}", headers=auth(keys["fulfillment"]))
    assert got.status_code == 200
    t = got.json()
    assert (t["from_warehouse"], t["to_warehouse"], t["status"]) == (NEAR, STORE, "draft")
    assert t["order_id"] == order["id"] and t["shipment_id"] == shipment["id"]
    assert t["lines"] == [
        {"sku": SKU, "quantity": 2, "received": 0, "short": 0, "over": 0, "in_transit": 0}
    ]
    why = t["routing"]
    assert why["deciding_rule"] == "distance_band"
    assert why["runner_up"]["codes"] == [FAR]
    assert NEAR in why["summary"] and FAR in why["summary"]

    routing = (
        await client.get(f"/v1/orders/{order['id']}/routing", headers=auth(keys["admin"]))
    ).json()
    assert routing["warehouses"] == [STORE] and routing["fully_filled"] is True
    assert routing["backorders"] == []
    summary = routing["explanation"]["summary"]
    assert f"from {NEAR}" in summary and "runner-up" in summary
    assert any(
        n.startswith(f"transfer {NEAR} → {STORE}: 2 × {SKU}")
        for n in routing["explanation"]["notes"]
    )

    [requested] = await _rows(
        engine,
        "SELECT payload->'data' AS d FROM outbox_events WHERE type = 'transfer.requested' "
        "AND aggregate_id = :t",
        t=transfer_id,
    )
    assert requested.d["order_id"] == order["id"] and requested.d["from_warehouse"] == NEAR
    await check_order_invariants(engine, order["id"])
    assert await stock_violations_since(engine, baseline) == []
    await _transfers_whole(engine)


async def test_ready_waits_for_the_transfer_then_collected(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    order = await _place(client, keys, quantity=3)
    shipment_id = await _pay_and_pick(client, keys, order)
    transfer_id = await _transfer_of(engine, order["id"])

    # the transfer is a draft: the shipment cannot be made ready
    resp = await _post(client, keys, f"/v1/pickups/{shipment_id}/ready")
    assert resp.status_code == 409, resp.text
    problem = resp.json()
    assert problem["code"] == "awaiting_transfer"
    assert problem["transfer_id"] == transfer_id and transfer_id in problem["detail"]
    # ... nor cancelled on its own: it goes with the order
    resp = await _post(client, keys, f"/v1/transfers/{transfer_id}/cancel")
    assert resp.status_code == 409 and resp.json()["code"] == "transfer_fulfils_order"

    # shipped: the reserved units leave the source; the order's line waits for them
    resp = await _post(client, keys, f"/v1/transfers/{transfer_id}/ship")
    assert resp.status_code == 200, resp.text
    assert resp.json()["lines"][0]["in_transit"] == 2
    assert await _level(engine, NEAR) == (3, 0)
    assert await _level(engine, STORE) == (1, 1)
    [line] = await _rows(
        engine, "SELECT backordered FROM order_lines WHERE order_id = :o", o=uuid.UUID(order["id"])
    )
    assert line.backordered == 2
    await check_order_invariants(engine, order["id"])
    resp = await _post(client, keys, f"/v1/pickups/{shipment_id}/ready")
    assert resp.status_code == 409 and resp.json()["transfer_status"] == "shipped"

    # received: booked in at the store and reserved for the pickup shipment
    resp = await _post(
        client,
        keys,
        f"/v1/transfers/{transfer_id}/receive",
        {"lines": [{"sku": SKU, "quantity": 2}]},
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "received"
    assert await _level(engine, STORE) == (3, 3)
    [line] = await _rows(
        engine, "SELECT backordered FROM order_lines WHERE order_id = :o", o=uuid.UUID(order["id"])
    )
    assert line.backordered == 0
    await check_order_invariants(engine, order["id"])

    ready = await _post(client, keys, f"/v1/pickups/{shipment_id}/ready")
    assert ready.status_code == 200, ready.text
    [code] = await _rows(
        engine,
        "SELECT payload->'data'->>'collection_code' AS c FROM outbox_events "
        "WHERE type = 'pickup.ready' AND aggregate_id = :o",
        o=order["id"],
    )
    resp = await _post(client, keys, f"/v1/pickups/{shipment_id}/collect", {"code": code.c})
    assert resp.status_code == 200, resp.text
    assert resp.json()["order_status"] == "delivered"
    assert await _level(engine, STORE) == (0, 0)  # all 3 units left the store with the customer

    ledger = await _rows(
        engine,
        "SELECT w.code, m.movement_type, m.quantity FROM inventory_movements m "
        "JOIN warehouses w ON w.id = m.warehouse_id WHERE m.reference_id IN (:t, :s) ORDER BY m.id",
        t=transfer_id,
        s=shipment_id,
    )
    assert [tuple(r) for r in ledger] == [
        (NEAR, "transfer_out", -2),
        (STORE, "transfer_in", 2),
        (STORE, "shipment", -3),
    ]
    history = await _rows(
        engine,
        "SELECT kind FROM order_events WHERE order_id = :o ORDER BY id",
        o=uuid.UUID(order["id"]),
    )
    kinds = [h.kind for h in history]
    steps = ("transfer_requested", "transfer_shipped", "transfer_received")
    assert [k for k in kinds if k in steps] == list(steps)
    assert kinds[0] == "transition"  # placement first, as for any order
    await check_order_invariants(engine, order["id"])
    await _transfers_whole(engine)


async def test_cancel_before_the_transfer_ships_cancels_it(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    baseline = await stock_baseline(engine)
    order = await _place(client, keys, quantity=4)  # 1 at the store, 3 from WH-BER
    transfer_id = await _transfer_of(engine, order["id"])
    resp = await _post(
        client, keys, f"/v1/orders/{order['id']}/transitions", {"to": "cancelled"}, role="admin"
    )
    assert resp.status_code == 200, resp.text
    got = (await client.get(f"/v1/transfers/{transfer_id}", headers=auth(keys["admin"]))).json()
    assert got["status"] == "cancelled"
    assert await _level(engine, NEAR) == (5, 0)  # released, never moved
    assert await _level(engine, STORE) == (1, 0)
    [ev] = await _rows(
        engine,
        "SELECT payload->'data'->>'order_id' AS o FROM outbox_events "
        "WHERE type = 'transfer.cancelled' AND aggregate_id = :t",
        t=transfer_id,
    )
    assert ev.o == order["id"]
    resp = await _post(client, keys, f"/v1/transfers/{transfer_id}/ship")
    assert resp.status_code == 409 and resp.json()["code"] == "illegal_transfer_transition"
    await check_order_invariants(engine, order["id"])
    assert await stock_violations_since(engine, baseline) == []
    await _transfers_whole(engine)


async def test_cancel_after_the_transfer_shipped_units_arrive_as_stock(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    baseline = await stock_baseline(engine)
    order = await _place(client, keys, quantity=3)
    transfer_id = await _transfer_of(engine, order["id"])
    assert (await _post(client, keys, f"/v1/transfers/{transfer_id}/ship")).status_code == 200
    resp = await _post(
        client, keys, f"/v1/orders/{order['id']}/transitions", {"to": "cancelled"}, role="admin"
    )
    assert resp.status_code == 200, resp.text
    assert await _level(engine, STORE) == (1, 0)
    assert await _level(engine, NEAR) == (3, 0)
    got = (await client.get(f"/v1/transfers/{transfer_id}", headers=auth(keys["admin"]))).json()
    assert got["status"] == "shipped"  # on its way: it cannot be called back
    avail = await client.get(f"/v1/inventory/availability?sku={SKU}", headers=auth(keys["admin"]))
    assert avail.status_code == 200, avail.text
    assert STORE in avail.text  # now expected at the store as ordinary incoming stock

    resp = await _post(
        client,
        keys,
        f"/v1/transfers/{transfer_id}/receive",
        {"lines": [{"sku": SKU, "quantity": 2}]},
    )
    assert resp.status_code == 200, resp.text
    assert await _level(engine, STORE) == (3, 0)  # ordinary stock: sellable
    await check_order_invariants(engine, order["id"])
    assert await stock_violations_since(engine, baseline) == []
    await _transfers_whole(engine)


async def test_no_source_holds_the_units_refused_as_before(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    body = order_body(
        pickup_store=STORE,
        lines=[{"sku": SKU, "quantity": 16, "unit_price": 2500, "tax_rate_bps": 1900}],
    )
    resp = await client.post("/v1/orders", json=body, headers=auth(keys["storefront"]))
    assert resp.status_code == 409, resp.text
    assert resp.json()["code"] == "insufficient_stock"
    assert await _rows(engine, "SELECT id FROM transfers") == []
    assert await _level(engine, NEAR) == (5, 0)


async def test_a_pickup_order_the_store_fills_takes_no_transfer(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    order = await _place(client, keys, quantity=1)
    assert await _rows(engine, "SELECT id FROM transfers") == []
    assert await _level(engine, STORE) == (1, 1)
    await check_order_invariants(engine, order["id"])


@pytest.mark.parametrize("step", ["ship", "receive"])
async def test_cancel_racing_the_transfer_keeps_stock_whole(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine, step: str
) -> None:
    """The order's cancellation and its transfer's shipment (or receipt) sent at once, with a
    shipping order for the same SKU placed alongside: both take the order lock first, so one
    runs after the other; every answer is a success or a 409, and the invariants hold."""
    baseline = await stock_baseline(engine)
    orders = [await _place(client, keys, quantity=2) for _ in range(3)]  # 1 from the store...
    transfers = [await _transfer_of(engine, o["id"]) for o in orders]
    if step == "receive":
        for t in transfers:
            assert (await _post(client, keys, f"/v1/transfers/{t}/ship")).status_code == 200
    move = {"ship": None, "receive": {"lines": [{"sku": SKU, "quantity": 1}]}}[step]
    shipped_order = order_body(
        lines=[{"sku": SKU, "quantity": 1, "unit_price": 2500, "tax_rate_bps": 1900}]
    )
    calls = []
    for o, t in zip(orders, transfers, strict=True):
        calls += [
            _post(client, keys, f"/v1/orders/{o['id']}/transitions", {"to": "cancelled"}, "admin"),
            _post(client, keys, f"/v1/transfers/{t}/{step}", move),
            client.post("/v1/orders", json=shipped_order, headers=auth(keys["storefront"])),
        ]
    answers = await asyncio.gather(*calls)
    assert all(a.status_code in (200, 201, 409) for a in answers), [a.text for a in answers]
    for o in orders:
        await check_order_invariants(engine, o["id"])
    await _transfers_whole(engine)
    assert await stock_violations_since(engine, baseline) == []
    total = sum(on_hand for on_hand, _ in [await _level(engine, w) for w in (STORE, NEAR, FAR)])
    shipped = await _rows(
        engine,
        "SELECT coalesce(sum(quantity), 0) AS q FROM inventory_movements WHERE quantity < 0 "
        "AND movement_type NOT IN ('transfer_out')",
    )
    in_transit = await _rows(
        engine,
        "SELECT coalesce(sum(l.quantity - (l.received - l.over) - l.short), 0) AS q "
        "FROM transfer_lines l JOIN transfers t ON t.id = l.transfer_id WHERE t.status = 'shipped'",
    )
    # nothing left the company but through a shipment: 15 units = on hand + in transit
    assert total + int(in_transit[0].q) - int(shipped[0].q) == 15
