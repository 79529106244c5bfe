"""Backorders filled as stock arrives: receipts, counts, bulk loads and restocks fill the orders
waiting for the SKU, express first, then oldest first, each reserved and routed under its lock."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from oms.flows import backorders
from oms.inventory import service as inventory
from tests.helpers import assert_stock_invariants, auth, order_body, stock

Keys = dict[str, str]


async def _setup(
    client: httpx.AsyncClient,
    keys: Keys,
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    levels: dict[str, dict[str, int]],
    policy: dict[str, Any] | None = None,
) -> None:
    """Warehouses with these units (0 creates the level: a known SKU without stock), and the
    'web' channel taking backorders."""
    for code, skus in levels.items():
        await stock(sessionmaker, code, {}, latitude=52.52, longitude=13.405)
        async with sessionmaker() as session, session.begin():
            for sku, qty in skus.items():
                await inventory.adjust_stock(
                    session, warehouse_code=code, sku=sku, kind="count", quantity=qty, actor="t"
                )
    resp = await client.put(
        "/v1/routing-policies/web",
        json={"allow_backorder": True, **(policy or {})},
        headers=auth(keys["admin"]),
    )
    assert resp.status_code == 200, resp.text


async def _place(
    client: httpx.AsyncClient, keys: Keys, *lines: tuple[str, int], **extra: Any
) -> dict[str, Any]:
    body = order_body(
        lines=[
            {"sku": sku, "quantity": qty, "unit_price": 1000, "tax_rate_bps": 1900}
            for sku, qty in lines
        ],
        **extra,
    )
    resp = await client.post("/v1/orders", json=body, headers=auth(keys["storefront"]))
    assert resp.status_code == 201, resp.text
    placed: dict[str, Any] = resp.json()
    return placed


async def _receive(
    client: httpx.AsyncClient, keys: Keys, warehouse: str, sku: str, qty: int
) -> httpx.Response:
    return await client.post(
        "/v1/inventory/adjustments",
        json={"warehouse": warehouse, "sku": sku, "type": "receive", "quantity": qty},
        headers=auth(keys["fulfillment"]),
    )


async def _order(client: httpx.AsyncClient, keys: Keys, order_id: str) -> dict[str, Any]:
    resp = await client.get(f"/v1/orders/{order_id}", headers=auth(keys["admin"]))
    assert resp.status_code == 200, resp.text
    got: dict[str, Any] = resp.json()
    return got


def _backordered(order: dict[str, Any]) -> list[int]:
    return [ln["backordered"] for ln in order["lines"]]


async def _lines_balance(engine: AsyncEngine) -> None:
    """Every live order's line: backordered + open or consumed allocations = quantity."""
    async with engine.connect() as conn:
        bad = (
            await conn.execute(
                text(
                    """SELECT count(*) FROM order_lines l JOIN orders o ON o.id = l.order_id
                    WHERE o.status <> 'cancelled' AND l.quantity <> l.backordered + (
                        SELECT coalesce(sum(a.quantity), 0) FROM allocations a
                        WHERE a.order_line_id = l.id AND a.status IN ('open', 'consumed'))"""
                )
            )
        ).scalar_one()
    assert bad == 0


async def test_a_receipt_fills_waiting_orders_express_first_then_oldest(
    client: httpx.AsyncClient,
    keys: Keys,
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    await _setup(client, keys, sessionmaker, levels={"BER": {"A": 0}})
    first = await _place(client, keys, ("A", 2))
    express = await _place(client, keys, ("A", 1), priority="express")
    last = await _place(client, keys, ("A", 2))
    assert [_backordered(o) for o in (first, express, last)] == [[2], [1], [2]]
    assert first["shipments"] == []

    resp = await _receive(client, keys, "BER", "A", 3)
    assert resp.status_code == 201, resp.text
    assert resp.json()["available"] == 0  # the answer is the level after the receipt

    first, express, last = [await _order(client, keys, o["id"]) for o in (first, express, last)]
    assert [_backordered(o) for o in (first, express, last)] == [[0], [0], [2]]
    assert [s["warehouse"] for s in first["shipments"]] == ["BER"]
    assert first["shipments"][0]["status"] == "pending"
    routing = (
        await client.get(f"/v1/orders/{first['id']}/routing", headers=auth(keys["admin"]))
    ).json()
    assert routing["fully_filled"] is True
    assert routing["backorders"] == []
    assert routing["warehouses"] == ["BER"]

    history = (
        await client.get(f"/v1/orders/{first['id']}/history", headers=auth(keys["admin"]))
    ).json()
    fill = [h for h in history if h["kind"] == "backorder_filled"]
    assert len(fill) == 1
    assert fill[0]["data"]["fills"][0]["quantity"] == 2
    assert fill[0]["data"]["explanation"]["candidates"]
    async with engine.connect() as conn:
        events = (
            await conn.execute(
                text(
                    "SELECT aggregate_id, payload -> 'data' AS data FROM outbox_events "
                    "WHERE type = 'order.backorder_filled' ORDER BY id"
                )
            )
        ).all()
    assert [e.aggregate_id for e in events] == [express["id"], first["id"]]
    assert events[1].data["backordered"] == {}

    # a partial fill: one unit for the last order, one still waiting
    assert (await _receive(client, keys, "BER", "A", 1)).status_code == 201
    last = await _order(client, keys, last["id"])
    assert _backordered(last) == [1]
    await assert_stock_invariants(engine)
    await _lines_balance(engine)


async def test_a_fill_joins_the_pending_shipment_of_its_warehouse(
    client: httpx.AsyncClient,
    keys: Keys,
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    await _setup(client, keys, sessionmaker, levels={"BER": {"A": 5, "B": 0}})
    order = await _place(client, keys, ("A", 1), ("B", 2))
    assert len(order["shipments"]) == 1
    assert _backordered(order) == [0, 2]
    count = await client.post(  # a count that raises on hand fills too
        "/v1/inventory/adjustments",
        json={"warehouse": "BER", "sku": "B", "type": "count", "quantity": 2},
        headers=auth(keys["fulfillment"]),
    )
    assert count.status_code == 201, count.text
    after = await _order(client, keys, order["id"])
    assert _backordered(after) == [0, 0]
    assert [s["id"] for s in after["shipments"]] == [order["shipments"][0]["id"]]
    await assert_stock_invariants(engine)
    await _lines_balance(engine)


async def test_cancelled_and_shipped_orders_and_other_channels_warehouses_are_not_filled(
    client: httpx.AsyncClient,
    keys: Keys,
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    await _setup(
        client,
        keys,
        sessionmaker,
        levels={"BER": {"A": 5, "B": 0}, "HAM": {"B": 0}},
        policy={"warehouse_codes": ["BER"]},
    )
    admin = auth(keys["admin"])
    cancelled = await _place(client, keys, ("B", 1))
    shipped = await _place(client, keys, ("A", 1), ("B", 1), payment_method="cash_on_delivery")
    waiting = await _place(client, keys, ("B", 1))
    await _move(client, keys, f"/v1/orders/{cancelled['id']}/transitions", "cancelled", "admin")
    for to in ("picked", "packed", "shipped"):  # shipped with its B backordered: closed
        await _move(client, keys, f"/v1/orders/{shipped['id']}/transitions", to, "admin")

    # HAM is not in the channel's warehouse list: its units fill nothing
    assert (await _receive(client, keys, "HAM", "B", 5)).status_code == 201
    assert _backordered(await _order(client, keys, waiting["id"])) == [1]

    assert (await _receive(client, keys, "BER", "B", 5)).status_code == 201
    assert _backordered(await _order(client, keys, waiting["id"])) == [0]
    assert _backordered(await _order(client, keys, shipped["id"])) == [0, 1]
    assert _backordered(await _order(client, keys, cancelled["id"]))[0] in (0, 1)
    level = (await client.get("/v1/inventory/levels?warehouse=BER&sku=B", headers=admin)).json()[0]
    assert level["reserved"] == 1  # the waiting order's unit only
    await assert_stock_invariants(engine)
    await _lines_balance(engine)


async def test_concurrent_receipts_never_fill_the_same_units_twice(
    client: httpx.AsyncClient,
    keys: Keys,
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    await _setup(client, keys, sessionmaker, levels={"BER": {"A": 0}, "HAM": {"A": 0}})
    orders = [await _place(client, keys, ("A", 1)) for _ in range(8)]
    answers = await asyncio.gather(
        *(_receive(client, keys, ("BER", "HAM")[i % 2], "A", 1) for i in range(6))
    )
    assert [a.status_code for a in answers] == [201] * 6
    after = [await _order(client, keys, o["id"]) for o in orders]
    # first in, first out: the six oldest are filled, the two newest still wait
    assert [_backordered(o)[0] for o in after] == [0] * 6 + [1] * 2
    async with engine.connect() as conn:
        reserved = (
            await conn.execute(
                text("SELECT sum(reserved), sum(on_hand) FROM stock_levels WHERE sku = 'A'")
            )
        ).one()
    assert tuple(reserved) == (6, 6)
    await assert_stock_invariants(engine)
    await _lines_balance(engine)


async def test_a_bulk_load_fills_and_the_sweep_fills_what_was_left(
    client: httpx.AsyncClient,
    keys: Keys,
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    await _setup(client, keys, sessionmaker, levels={"BER": {"A": 0, "B": 0}})
    on_a = await _place(client, keys, ("A", 3))
    on_b = await _place(client, keys, ("B", 1))
    loaded = await client.post(
        "/v1/inventory/bulk",
        json={"rows": [{"warehouse": "BER", "sku": "A", "on_hand": 3}]},
        headers=auth(keys["admin"]),
    )
    assert loaded.status_code == 200, loaded.text
    assert _backordered(await _order(client, keys, on_a["id"])) == [0]

    # stock that arrived without a fill (here: the service called directly, as a crash between
    # the stock change's commit and its fills would leave it) is filled by the worker's sweep
    async with sessionmaker() as session, session.begin():
        await inventory.adjust_stock(
            session, warehouse_code="BER", sku="B", kind="receive", quantity=1, actor="t"
        )
    assert _backordered(await _order(client, keys, on_b["id"])) == [1]
    async with sessionmaker() as session:
        assert await backorders.sweep(session) == 1
    assert _backordered(await _order(client, keys, on_b["id"])) == [0]
    async with sessionmaker() as session:
        assert await backorders.sweep(session) == 0
    await assert_stock_invariants(engine)
    await _lines_balance(engine)


async def test_units_restocked_from_a_return_fill_a_waiting_order(
    client: httpx.AsyncClient,
    keys: Keys,
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    await _setup(client, keys, sessionmaker, levels={"BER": {"A": 1}})
    admin = auth(keys["admin"])
    sold = await _place(client, keys, ("A", 1))
    waiting = await _place(client, keys, ("A", 1))
    assert _backordered(waiting) == [1]
    for step in ("paid", "picked", "packed", "shipped", "delivered"):
        body: dict[str, Any] = {"to": step}
        if step == "shipped":
            body |= {"carrier": "DHL", "tracking_number": "JJD000390007"}
        moved = await client.post(f"/v1/orders/{sold['id']}/transitions", json=body, headers=admin)
        assert moved.status_code == 200, moved.text
    line = {"order_line_id": sold["lines"][0]["id"], "quantity": 1, "reason_code": "other"}
    rma = (
        await client.post(f"/v1/orders/{sold['id']}/returns", json={"lines": [line]}, headers=admin)
    ).json()
    assert (await client.post(f"/v1/returns/{rma['id']}/approve", headers=admin)).status_code == 200
    received = await client.post(
        f"/v1/returns/{rma['id']}/receive",
        json={"lines": [{"return_line_id": rma["lines"][0]["id"], "restock": 1}]},
        headers=auth(keys["fulfillment"]),
    )
    assert received.status_code == 200, received.text
    assert received.json()["status"] == "received"
    assert _backordered(await _order(client, keys, waiting["id"])) == [0]
    await assert_stock_invariants(engine)
    await _lines_balance(engine)


async def test_a_warehouse_that_does_not_serve_the_country_fills_nothing(
    client: httpx.AsyncClient,
    keys: Keys,
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    await _setup(client, keys, sessionmaker, levels={"BER": {"A": 0}})
    await stock(sessionmaker, "VIE", {}, country="AT", ships_to=["AT"])
    waiting = await _place(client, keys, ("A", 1))  # to Berlin, DE
    assert (await _receive(client, keys, "VIE", "A", 5)).status_code == 201
    assert _backordered(await _order(client, keys, waiting["id"])) == [1]
    async with sessionmaker() as session:  # nor does the sweep
        assert await backorders.sweep(session) == 0
    assert (await _receive(client, keys, "BER", "A", 1)).status_code == 201
    after = await _order(client, keys, waiting["id"])
    assert _backordered(after) == [0]
    assert [s["warehouse"] for s in after["shipments"]] == ["BER"]
    await assert_stock_invariants(engine)


async def _move(
    client: httpx.AsyncClient, keys: Keys, url: str, to: str, role: str = "fulfillment"
) -> None:
    body: dict[str, Any] = {"to": to}
    if to == "shipped":
        body |= {"carrier": "DHL", "tracking_number": "JJD000390007"}
    moved = await client.post(url, json=body, headers=auth(keys[role]))
    assert moved.status_code == 200, moved.text


async def _picked_with_a_backordered_unit(
    client: httpx.AsyncClient, keys: Keys, sessionmaker: async_sessionmaker[AsyncSession]
) -> tuple[dict[str, Any], str]:
    """A paid order of 2 A and 1 B from BER, picked; the B is not found at the packing table
    and no other warehouse has one: it is backordered, the A stay picked (the order too)."""
    await _setup(client, keys, sessionmaker, levels={"BER": {"A": 5, "B": 1}})
    order = await _place(client, keys, ("A", 2), ("B", 1))
    shipment = order["shipments"][0]["id"]
    await _move(client, keys, f"/v1/orders/{order['id']}/transitions", "paid", role="admin")
    await _move(client, keys, f"/v1/shipments/{shipment}/transitions", "picked")
    b_line = order["lines"][1]["id"]
    resp = await client.post(
        f"/v1/shipments/{shipment}/exceptions",
        json={"lines": [{"order_line_id": b_line, "quantity": 1, "reason": "not_found"}]},
        headers=auth(keys["fulfillment"]),
    )
    assert resp.status_code == 201, resp.text
    after = resp.json()["order"]
    assert after["status"] == "picked"
    assert _backordered(after) == [0, 1]
    return after, shipment


async def test_a_unit_backordered_by_an_exception_on_a_picked_order_is_filled(
    client: httpx.AsyncClient,
    keys: Keys,
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    """The rest of the order stays picked; the receipt fills the backordered unit in a new
    pending parcel and the order steps back to paid (the new parcel goes through the pick
    queue), as an exception that re-plans units of a picked order does."""
    from tests.races.conftest import check_order_invariants

    order, picked = await _picked_with_a_backordered_unit(client, keys, sessionmaker)
    assert (await _receive(client, keys, "BER", "B", 2)).status_code == 201
    after = await _order(client, keys, order["id"])
    assert _backordered(after) == [0, 0]
    assert after["status"] == "paid"
    live = {s["id"]: s for s in after["shipments"] if s["status"] != "cancelled"}
    assert live[picked]["status"] == "picked"
    (new,) = [s for sid, s in live.items() if sid != picked]
    assert (new["status"], new["warehouse"]) == ("pending", "BER")
    assert [(ln["sku"], ln["quantity"]) for ln in new["lines"]] == [("B", 1)]
    history = (
        await client.get(f"/v1/orders/{order['id']}/history", headers=auth(keys["admin"]))
    ).json()
    last = history[-1]
    assert (last["kind"], last["from_status"], last["to_status"]) == (
        "backorder_filled",
        "picked",
        "paid",
    )
    async with engine.connect() as conn:
        event = (
            await conn.execute(
                text(
                    "SELECT payload -> 'data' FROM outbox_events "
                    "WHERE type = 'order.backorder_filled' AND aggregate_id = :o"
                ),
                {"o": order["id"]},
            )
        ).scalar_one()
    assert (event["status"], event["previous_status"]) == ("paid", "picked")
    routing = (
        await client.get(f"/v1/orders/{order['id']}/routing", headers=auth(keys["admin"]))
    ).json()
    assert (routing["warehouses"], routing["fully_filled"], routing["backorders"]) == (
        ["BER"],
        True,
        [],
    )
    assert routing["change"]["kind"] == "backorder_filled"
    assert routing["placement"]["warehouses"] == ["BER"]
    await check_order_invariants(engine, order["id"])
    await _lines_balance(engine)
    # the new parcel is picked: the order is picked again, and ships whole
    await _move(client, keys, f"/v1/shipments/{new['id']}/transitions", "picked")
    assert (await _order(client, keys, order["id"]))["status"] == "picked"
    for to in ("packed", "shipped"):
        await _move(client, keys, f"/v1/orders/{order['id']}/transitions", to, role="admin")
    await check_order_invariants(engine, order["id"])


async def test_packed_and_partially_shipped_orders_are_filled_shipped_ones_are_not(
    client: httpx.AsyncClient,
    keys: Keys,
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    """An order not yet shipped whole (packed, or one parcel shipped and one packed) is filled
    and steps back to paid; once every live parcel has shipped the order is closed: what is
    still backordered then is not filled (no stock reserved for a shipped order)."""
    from tests.races.conftest import check_order_invariants

    await _setup(client, keys, sessionmaker, levels={"BER": {"A": 5, "B": 0}})
    admin_url = "/v1/orders/{}/transitions"
    # packed: the picked parcel (A) packed while B waits
    packed = await _place(client, keys, ("A", 1), ("B", 1))
    await _move(client, keys, admin_url.format(packed["id"]), "paid", role="admin")
    for to in ("picked", "packed"):
        await _move(client, keys, f"/v1/shipments/{packed['shipments'][0]['id']}/transitions", to)
    # partially shipped: one A parcel split off and shipped, the other packed, B waits
    partial = await _place(client, keys, ("A", 2), ("B", 1))
    first = partial["shipments"][0]["id"]
    await _move(client, keys, admin_url.format(partial["id"]), "paid", role="admin")
    split = await client.post(
        f"/v1/shipments/{first}/split",
        json={"lines": [{"order_line_id": partial["lines"][0]["id"], "quantity": 1}]},
        headers=auth(keys["fulfillment"]),
    )
    assert split.status_code == 201, split.text
    second = split.json()["shipment_id"]
    for to in ("picked", "packed", "shipped"):
        await _move(client, keys, f"/v1/shipments/{first}/transitions", to)
    for to in ("picked", "packed"):
        await _move(client, keys, f"/v1/shipments/{second}/transitions", to)
    # shipped: everything live has left, the B still waits
    shipped = await _place(client, keys, ("A", 1), ("B", 1))
    for to in ("paid", "picked", "packed", "shipped"):
        await _move(client, keys, admin_url.format(shipped["id"]), to, role="admin")
    before = [await _order(client, keys, o["id"]) for o in (packed, partial, shipped)]
    assert [o["status"] for o in before] == ["packed", "packed", "shipped"]

    assert (await _receive(client, keys, "BER", "B", 5)).status_code == 201
    after = [await _order(client, keys, o["id"]) for o in (packed, partial, shipped)]
    assert [_backordered(o) for o in after] == [[0, 0], [0, 0], [0, 1]]
    assert [o["status"] for o in after] == ["paid", "paid", "shipped"]
    level = (
        await client.get("/v1/inventory/levels?warehouse=BER&sku=B", headers=auth(keys["admin"]))
    ).json()[0]
    assert level["reserved"] == 2
    for o in after:
        await check_order_invariants(engine, o["id"])
    async with sessionmaker() as session:  # the sweep leaves the shipped order alone too
        assert await backorders.sweep(session) == 0
    await _lines_balance(engine)


async def test_a_receipt_racing_the_ship_of_a_packed_order_with_a_backorder(
    client: httpx.AsyncClient,
    keys: Keys,
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    """A packed order whose B waits, shipped while the B arrives: shipped first (closed: the
    B is not filled, the receipt's unit stays free) or filled first (paid again with a new
    pending parcel: the ship is refused with a problem), never both; invariants hold."""
    from tests.races.conftest import at_once, check_order_invariants

    rounds = 4  # a SKU of its own each round (a unit left free by one is not the next's)
    b = [f"B{n}" for n in range(rounds)]
    await _setup(client, keys, sessionmaker, levels={"BER": {"A": 10} | dict.fromkeys(b, 0)})
    url = "/v1/orders/{}/transitions"
    for n in range(rounds):
        order = await _place(client, keys, ("A", 1), (b[n], 1))
        assert _backordered(order) == [0, 1]
        for to in ("paid", "picked", "packed"):
            await _move(client, keys, url.format(order["id"]), to, role="admin")

        def ship(order_id: str = order["id"]) -> Any:
            body = {"to": "shipped", "carrier": "DHL", "tracking_number": "JJD000390007"}
            return client.post(url.format(order_id), json=body, headers=auth(keys["admin"]))

        def receive(sku: str = b[n]) -> Any:
            return _receive(client, keys, "BER", sku, 1)

        ship_out, receipt = await at_once(("ship", ship), ("receive", receive))
        assert receipt.status == 201, receipt
        after = await _order(client, keys, order["id"])
        if ship_out.status == 200:
            assert (after["status"], _backordered(after)) == ("shipped", [0, 1])
        else:
            assert (ship_out.status, ship_out.code) == (409, "illegal_transition"), ship_out
            assert (after["status"], _backordered(after)) == ("paid", [0, 0])
        await check_order_invariants(engine, order["id"])
    await _lines_balance(engine)


async def test_units_still_waiting_are_counted_per_sku_over_all_its_lines(
    client: httpx.AsyncClient,
    keys: Keys,
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    """Two lines of one SKU, both waiting: after a partial fill the history and the event say
    how many units of the SKU still wait in all (not one line's figure)."""
    await _setup(client, keys, sessionmaker, levels={"BER": {"A": 0}})
    order = await _place(client, keys, ("A", 2), ("A", 3))
    assert _backordered(order) == [2, 3]
    assert (await _receive(client, keys, "BER", "A", 1)).status_code == 201
    order = await _order(client, keys, order["id"])
    assert sum(_backordered(order)) == 4
    history = (
        await client.get(f"/v1/orders/{order['id']}/history", headers=auth(keys["admin"]))
    ).json()
    [fill] = [h for h in history if h["kind"] == "backorder_filled"]
    assert fill["data"]["backordered"] == {"A": 4}
    async with engine.connect() as conn:
        data = (
            await conn.execute(
                text(
                    "SELECT payload -> 'data' FROM outbox_events "
                    "WHERE type = 'order.backorder_filled' AND aggregate_id = :id"
                ),
                {"id": order["id"]},
            )
        ).scalar_one()
    assert data["backordered"] == {"A": 4}
    await _lines_balance(engine)
