"""Shipment exceptions (rejected units re-planned elsewhere, backordered or refused), moves,
splits and merges of pending shipments: through the API, against the real database."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests.helpers import assert_stock_invariants, auth, order_body, stock


@pytest.fixture
async def network(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    """BER (nearest to Berlin) and MUC both stock X; only BER stocks Y; EMPTY stocks
    nothing."""
    await stock(sessionmaker, "BER", {"X": 10, "Y": 5})
    await stock(sessionmaker, "MUC", {"X": 10}, latitude=48.14, longitude=11.58)
    await stock(sessionmaker, "EMPTY", {}, latitude=50.11, longitude=8.68)


async def _place(client: httpx.AsyncClient, keys: dict[str, str], **lines: int) -> Any:
    body = order_body(
        lines=[{"sku": sku, "quantity": q, "unit_price": 1000} for sku, q in lines.items()]
    )
    resp = await client.post("/v1/orders", json=body, headers=auth(keys["storefront"]))
    assert resp.status_code == 201, resp.text
    return resp.json()


async def _one(engine: AsyncEngine, sql: str, **params: Any) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(text(sql), params)).one()


async def _level(engine: AsyncEngine, wh: str, sku: str) -> tuple[int, int]:
    row = await _one(
        engine,
        "SELECT s.on_hand, s.reserved FROM stock_levels s JOIN warehouses w "
        "ON w.id = s.warehouse_id WHERE w.code = :wh AND s.sku = :sku",
        wh=wh,
        sku=sku,
    )
    return int(row[0]), int(row[1])


async def _snapshot(engine: AsyncEngine, order_id: str) -> Any:
    """Everything an exception may change, to check that a refused one changed nothing."""
    async with engine.connect() as conn:
        out = []
        for sql in (
            "SELECT id, status, live_shipments, version FROM orders WHERE id = :o",
            "SELECT id, status FROM shipments WHERE order_id = :o ORDER BY seq",
            "SELECT id, status, quantity, shipment_id FROM allocations WHERE order_id = :o "
            "ORDER BY id",
            "SELECT backordered FROM order_lines WHERE order_id = :o ORDER BY line_no",
            "SELECT count(*) FROM order_events WHERE order_id = :o",
            "SELECT count(*) FROM inventory_movements",
            "SELECT count(*) FROM stock_blocks",
        ):
            out.append((await conn.execute(text(sql), {"o": order_id})).all())
        return out


def _live(order: Any) -> list[Any]:
    return [s for s in order["shipments"] if s["status"] != "cancelled"]


async def _check(engine: AsyncEngine, order: Any) -> None:
    row = await _one(engine, "SELECT live_shipments FROM orders WHERE id = :o", o=order["id"])
    assert row[0] == len(_live(order))
    await assert_stock_invariants(engine)


@pytest.mark.usefixtures("network")
async def test_exception_replans_only_the_rejected_units(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    order = await _place(client, keys, X=3, Y=1)
    assert order["routed_to"] == ["BER"]
    shipment = order["shipments"][0]
    x_line = next(ln["id"] for ln in order["lines"] if ln["sku"] == "X")
    resp = await client.post(
        f"/v1/shipments/{shipment['id']}/exceptions",
        json={
            "lines": [{"order_line_id": x_line, "quantity": 1, "reason": "not_found"}],
            "block_for_hours": 24,
            "note": "bin A-14 empty",
        },
        headers=auth(keys["fulfillment"]),
    )
    assert resp.status_code == 201, resp.text
    exc = resp.json()
    assert exc["warehouse"] == "BER"
    assert [s["warehouse"] for s in exc["replan"]["shipments"]] == ["MUC"]
    assert exc["replan"]["shipments"][0]["lines"][0]["quantity"] == 1
    assert exc["replan"]["written_off"] == [{"order_line_id": x_line, "sku": "X", "quantity": 1}]
    candidates = {c["code"]: c for c in exc["replan"]["routing"]["explanation"]["candidates"]}
    assert candidates["BER"]["reason"] == "excluded"
    # the BER shipment keeps its other units; the new parcel carries the rejected one
    live = {s["warehouse"]: s for s in _live(exc["order"])}
    assert {ln["sku"]: ln["quantity"] for ln in live["BER"]["lines"]} == {"X": 2, "Y": 1}
    assert {ln["sku"]: ln["quantity"] for ln in live["MUC"]["lines"]} == {"X": 1}
    # stock: released in BER and written off there through the ledger; reserved in MUC
    assert await _level(engine, "BER", "X") == (9, 2)
    assert await _level(engine, "MUC", "X") == (10, 1)
    mv = await _one(
        engine,
        "SELECT movement_type, quantity, reference_type, reference_id FROM inventory_movements "
        "WHERE reference_type = 'shipment_exception'",
    )
    assert tuple(mv) == ("correction", -1, "shipment_exception", exc["id"])
    history = (
        await client.get(f"/v1/orders/{order['id']}/history", headers=auth(keys["admin"]))
    ).json()
    assert history[-1]["kind"] == "shipment_exception"
    assert history[-1]["reason"] == "bin A-14 empty"
    event = await _one(
        engine,
        "SELECT payload->'data' FROM outbox_events WHERE type = 'shipment.exception' "
        "AND aggregate_id = :o",
        o=order["id"],
    )
    assert event[0]["exception_id"] == exc["id"]
    await _check(engine, exc["order"])
    listed = await client.get(
        f"/v1/orders/{order['id']}/shipment-exceptions", headers=auth(keys["storefront"])
    )
    assert listed.status_code == 200, listed.text
    assert [(e["id"], e["replan"]) for e in listed.json()] == [(exc["id"], exc["replan"])]
    # the (BER, X) block keeps the next order away from the empty shelf
    nxt = await _place(client, keys, X=1)
    assert nxt["routed_to"] == ["MUC"]
    routing = (
        await client.get(f"/v1/orders/{nxt['id']}/routing", headers=auth(keys["admin"]))
    ).json()
    assert {c["code"]: c["reason"] for c in routing["explanation"]["candidates"]}[
        "BER"
    ] == "blocked"


@pytest.mark.usefixtures("network")
async def test_exception_refused_or_backordered_when_no_warehouse_has_the_units(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    order = await _place(client, keys, Y=2)
    shipment = order["shipments"][0]
    line = order["lines"][0]["id"]
    body = {"lines": [{"order_line_id": line, "quantity": 2, "reason": "damaged"}]}
    url = f"/v1/shipments/{shipment['id']}/exceptions"
    before = await _snapshot(engine, order["id"])
    resp = await client.post(url, json=body, headers=auth(keys["fulfillment"]))
    assert resp.status_code == 409, resp.text
    assert resp.json()["code"] == "insufficient_stock"
    assert resp.json()["short_lines"][0]["sku"] == "Y"
    assert await _snapshot(engine, order["id"]) == before
    # a channel that takes backorders: the units wait on their line, the empty shipment goes
    policy = await client.put(
        "/v1/routing-policies/web", json={"allow_backorder": True}, headers=auth(keys["admin"])
    )
    assert policy.status_code == 200, policy.text
    resp = await client.post(url, json=body, headers=auth(keys["fulfillment"]))
    assert resp.status_code == 201, resp.text
    exc = resp.json()
    assert exc["replan"]["shipments"] == []
    assert exc["replan"]["backordered"] == [{"order_line_id": line, "sku": "Y", "quantity": 2}]
    assert exc["replan"]["shipment_cancelled"] is True
    assert exc["order"]["lines"][0]["backordered"] == 2
    assert [s["status"] for s in exc["order"]["shipments"]] == ["cancelled"]
    assert await _level(engine, "BER", "Y") == (3, 0)  # 2 damaged written off
    await _check(engine, exc["order"])


@pytest.mark.usefixtures("network")
async def test_exception_bad_requests_change_nothing(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    order = await _place(client, keys, X=2)
    shipment = order["shipments"][0]
    line = order["lines"][0]["id"]
    url = f"/v1/shipments/{shipment['id']}/exceptions"
    fh = auth(keys["fulfillment"])
    before = await _snapshot(engine, order["id"])
    too_many = {"lines": [{"order_line_id": line, "quantity": 3, "reason": "short_pick"}]}
    resp = await client.post(url, json=too_many, headers=fh)
    assert resp.status_code == 422
    assert resp.json()["code"] == "shipment_lines_invalid"
    bad_reason = {"lines": [{"order_line_id": line, "quantity": 1, "reason": "lost"}]}
    assert (await client.post(url, json=bad_reason, headers=fh)).status_code == 422
    unknown = "/v1/shipments/00000000-0000-0000-0000-000000000000/exceptions"
    one = {"lines": [{"order_line_id": line, "quantity": 1, "reason": "short_pick"}]}
    assert (await client.post(unknown, json=one, headers=fh)).status_code == 404
    assert (await client.post(url, json=one, headers=auth(keys["storefront"]))).status_code == 403
    assert await _snapshot(engine, order["id"]) == before
    # a packed shipment: the parcel is sealed, what it carries ships
    admin = auth(keys["admin"])
    for to in ("paid", "picked", "packed"):
        moved = await client.post(
            f"/v1/orders/{order['id']}/transitions", json={"to": to}, headers=admin
        )
        assert moved.status_code == 200, moved.text
    before = await _snapshot(engine, order["id"])
    resp = await client.post(url, json=one, headers=fh)
    assert resp.status_code == 409
    assert resp.json()["code"] == "shipment_change_not_allowed"  # the order is packed
    assert await _snapshot(engine, order["id"]) == before


async def _history(client: httpx.AsyncClient, keys: dict[str, str], order_id: str) -> Any:
    resp = await client.get(f"/v1/orders/{order_id}/history", headers=auth(keys["admin"]))
    assert resp.status_code == 200, resp.text
    return resp.json()


async def _routing(client: httpx.AsyncClient, keys: dict[str, str], order_id: str) -> Any:
    resp = await client.get(f"/v1/orders/{order_id}/routing", headers=auth(keys["storefront"]))
    assert resp.status_code == 200, resp.text
    return resp.json()


@pytest.mark.usefixtures("network")
async def test_exception_on_a_picked_shipment(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    """A damaged unit found at the packing table: the units found stay in the picked parcel,
    the missing one is written off in BER (short_pick too: the pick was the count) and
    re-planned to MUC; the picked order steps back to paid until the new parcel is picked."""
    order = await _place(client, keys, X=3, Y=1)
    shipment = order["shipments"][0]
    x_line = next(ln["id"] for ln in order["lines"] if ln["sku"] == "X")
    fh, admin = auth(keys["fulfillment"]), auth(keys["admin"])
    paid = await client.post(
        f"/v1/orders/{order['id']}/transitions", json={"to": "paid"}, headers=admin
    )
    assert paid.status_code == 200, paid.text
    picked = await client.post(
        f"/v1/shipments/{shipment['id']}/transitions", json={"to": "picked"}, headers=fh
    )
    assert picked.status_code == 200, picked.text
    url = f"/v1/shipments/{shipment['id']}/exceptions"
    body = {
        "lines": [
            {"order_line_id": x_line, "quantity": 1, "reason": "damaged"},
            {"order_line_id": x_line, "quantity": 1, "reason": "short_pick"},
        ],
        "block_for_hours": 2,
        "note": "found at packing",
    }
    resp = await client.post(url, json=body, headers=fh)
    assert resp.status_code == 201, resp.text
    exc = resp.json()
    assert [ln["written_off"] for ln in exc["lines"]] == [True, True]
    assert exc["replan"]["shipment_status"] == "picked"
    assert exc["replan"]["written_off"] == [{"order_line_id": x_line, "sku": "X", "quantity": 2}]
    assert [s["warehouse"] for s in exc["replan"]["shipments"]] == ["MUC"]
    live = {s["warehouse"]: s for s in _live(exc["order"])}
    assert live["BER"]["status"] == "picked"
    assert {ln["sku"]: ln["quantity"] for ln in live["BER"]["lines"]} == {"X": 1, "Y": 1}
    assert live["MUC"]["status"] == "pending"
    assert {ln["sku"]: ln["quantity"] for ln in live["MUC"]["lines"]} == {"X": 2}
    assert exc["order"]["status"] == "paid"
    assert await _level(engine, "BER", "X") == (8, 1)  # 2 written off, 1 still reserved
    assert await _level(engine, "MUC", "X") == (10, 2)
    moves = await _one(
        engine,
        "SELECT count(*), sum(quantity) FROM inventory_movements "
        "WHERE reference_type = 'shipment_exception' AND reference_id = :e",
        e=exc["id"],
    )
    assert tuple(moves) == (2, -2)
    last = (await _history(client, keys, order["id"]))[-1]
    assert (last["kind"], last["from_status"], last["to_status"]) == (
        "shipment_exception",
        "picked",
        "paid",
    )
    assert last["data"]["order_status"] == {"from": "picked", "to": "paid"}
    event = await _one(
        engine,
        "SELECT payload->'data' FROM outbox_events WHERE type = 'shipment.exception' "
        "AND aggregate_id = :o",
        o=order["id"],
    )
    assert (event[0]["order_status"], event[0]["previous_order_status"]) == ("paid", "picked")
    assert event[0]["written_off"] == exc["replan"]["written_off"]
    # the stored routing is the current plan; placement's stays readable
    routing = await _routing(client, keys, order["id"])
    assert routing["warehouses"] == ["BER", "MUC"]
    assert routing["change"]["kind"] == "shipment_exception"
    assert {c["code"]: c["reason"] for c in routing["explanation"]["candidates"]}[
        "BER"
    ] == "excluded"
    assert routing["placement"]["warehouses"] == ["BER"]
    assert routing["placement"]["explanation"]["summary"].startswith("Ship from BER")
    await _check(engine, exc["order"])
    # the new parcel is picked: the order is picked again
    muc = live["MUC"]["id"]
    resp = await client.post(f"/v1/shipments/{muc}/transitions", json={"to": "picked"}, headers=fh)
    assert resp.status_code == 200, resp.text
    got = await client.get(f"/v1/orders/{order['id']}", headers=admin)
    assert got.json()["status"] == "picked"
    # packed: no more exceptions on that parcel
    packed = await client.post(
        f"/v1/shipments/{muc}/transitions", json={"to": "packed"}, headers=fh
    )
    assert packed.status_code == 200, packed.text
    before = await _snapshot(engine, order["id"])
    one = {"lines": [{"order_line_id": x_line, "quantity": 1, "reason": "damaged"}]}
    resp = await client.post(f"/v1/shipments/{muc}/exceptions", json=one, headers=fh)
    assert resp.status_code == 409, resp.text
    assert resp.json()["code"] == "shipment_past_picking"
    assert await _snapshot(engine, order["id"]) == before


@pytest.mark.usefixtures("network")
async def test_picked_parcel_rejected_whole_is_backordered(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    """Every unit of the only (picked) parcel is missing and no other warehouse has Y: on a
    channel that takes backorders the units wait on their line, the parcel is cancelled and
    the order is paid again (what a receipt fills); without backorders, nothing changes."""
    order = await _place(client, keys, Y=2)
    shipment = order["shipments"][0]
    line = order["lines"][0]["id"]
    fh, admin = auth(keys["fulfillment"]), auth(keys["admin"])
    for to in ("paid", "picked"):
        moved = await client.post(
            f"/v1/orders/{order['id']}/transitions", json={"to": to}, headers=admin
        )
        assert moved.status_code == 200, moved.text
    url = f"/v1/shipments/{shipment['id']}/exceptions"
    body = {"lines": [{"order_line_id": line, "quantity": 2, "reason": "not_found"}]}
    before = await _snapshot(engine, order["id"])
    refused = await client.post(url, json=body, headers=fh)
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "insufficient_stock"
    assert await _snapshot(engine, order["id"]) == before
    policy = await client.put(
        "/v1/routing-policies/web", json={"allow_backorder": True}, headers=admin
    )
    assert policy.status_code == 200, policy.text
    resp = await client.post(url, json=body, headers=fh)
    assert resp.status_code == 201, resp.text
    exc = resp.json()
    assert exc["replan"]["shipment_cancelled"] is True
    assert exc["order"]["status"] == "paid"
    assert exc["order"]["lines"][0]["backordered"] == 2
    assert await _level(engine, "BER", "Y") == (3, 0)
    routing = await _routing(client, keys, order["id"])
    assert (routing["warehouses"], routing["fully_filled"]) == ([], False)
    assert routing["backorders"] == [{"line_id": line, "sku": "Y", "quantity": 2}]
    await _check(engine, exc["order"])


@pytest.mark.usefixtures("network")
async def test_move_a_shipment_or_refuse_with_the_reason(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    order = await _place(client, keys, X=3)
    shipment = order["shipments"][0]
    admin = auth(keys["admin"])
    url = f"/v1/shipments/{shipment['id']}/move"
    before = await _snapshot(engine, order["id"])
    refused = await client.post(url, json={"warehouse": "EMPTY"}, headers=admin)
    assert refused.status_code == 409, refused.text
    assert refused.json()["code"] == "move_not_possible"
    assert refused.json()["reason"] == "no_stock"
    assert (await client.post(url, json={"warehouse": "BER"}, headers=admin)).status_code == 409
    assert (await client.post(url, json={"warehouse": "NOPE"}, headers=admin)).status_code == 404
    assert await _snapshot(engine, order["id"]) == before
    resp = await client.post(url, json={"warehouse": "MUC", "reason": "BER busy"}, headers=admin)
    assert resp.status_code == 200, resp.text
    moved = resp.json()
    live = _live(moved["order"])
    assert [(s["id"], s["warehouse"]) for s in live] == [(moved["shipment_id"], "MUC")]
    assert await _level(engine, "BER", "X") == (10, 0)
    assert await _level(engine, "MUC", "X") == (10, 3)
    history = (await client.get(f"/v1/orders/{order['id']}/history", headers=admin)).json()
    assert history[-1]["kind"] == "shipment_moved"
    assert history[-1]["data"]["to_warehouse"] == "MUC"
    routing = await _routing(client, keys, order["id"])
    assert (routing["warehouses"], routing["change"]["kind"]) == (["MUC"], "shipment_moved")
    assert routing["explanation"]["summary"].startswith("Ship from MUC")
    assert routing["placement"]["warehouses"] == ["BER"]
    again = await client.post(url, json={"warehouse": "BER"}, headers=admin)
    assert again.status_code == 409
    assert again.json()["code"] == "shipment_not_pending"
    await _check(engine, moved["order"])


@pytest.mark.usefixtures("network")
async def test_split_then_merge(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    order = await _place(client, keys, X=3, Y=1)
    shipment = order["shipments"][0]
    x_line = next(ln["id"] for ln in order["lines"] if ln["sku"] == "X")
    fh = auth(keys["fulfillment"])
    url = f"/v1/shipments/{shipment['id']}/split"
    everything = {
        "lines": [{"order_line_id": ln["id"], "quantity": ln["quantity"]} for ln in order["lines"]]
    }
    resp = await client.post(url, json=everything, headers=fh)
    assert resp.status_code == 422
    assert resp.json()["code"] == "split_takes_everything"
    resp = await client.post(
        url, json={"lines": [{"order_line_id": x_line, "quantity": 2}]}, headers=fh
    )
    assert resp.status_code == 201, resp.text
    split = resp.json()
    live = {s["id"]: s for s in _live(split["order"])}
    assert len(live) == 2
    assert {ln["sku"]: ln["quantity"] for ln in live[split["shipment_id"]]["lines"]} == {"X": 2}
    assert {ln["sku"]: ln["quantity"] for ln in live[shipment["id"]]["lines"]} == {"X": 1, "Y": 1}
    assert await _level(engine, "BER", "X") == (10, 3)
    await _check(engine, split["order"])
    resp = await client.post(
        f"/v1/shipments/{shipment['id']}/merge",
        json={"shipment_id": split["shipment_id"]},
        headers=fh,
    )
    assert resp.status_code == 200, resp.text
    merged = resp.json()
    live_after = _live(merged["order"])
    assert [s["id"] for s in live_after] == [shipment["id"]]
    assert sorted((ln["sku"], ln["quantity"]) for ln in live_after[0]["lines"]) == [
        ("X", 1),
        ("X", 2),
        ("Y", 1),
    ]
    admin = auth(keys["admin"])
    history = (await client.get(f"/v1/orders/{order['id']}/history", headers=admin)).json()
    assert [h["kind"] for h in history[-2:]] == ["shipment_split", "shipment_merged"]
    routing = await _routing(client, keys, order["id"])
    assert (routing["warehouses"], routing["change"]["kind"]) == (["BER"], "shipment_merged")
    assert routing["explanation"] == routing["placement"]["explanation"]  # nothing re-decided
    self_merge = await client.post(
        f"/v1/shipments/{shipment['id']}/merge", json={"shipment_id": shipment["id"]}, headers=fh
    )
    assert self_merge.status_code == 422
    await _check(engine, merged["order"])


@pytest.mark.usefixtures("network")
async def test_cash_on_delivery_order_steps_back_to_placed(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    """An unpaid cash-on-delivery order, picked: a damaged unit re-planned to MUC puts it back
    to placed (what it was before the pick), not to paid."""
    body = order_body(
        payment_method="cash_on_delivery",
        lines=[{"sku": "X", "quantity": 2, "unit_price": 1000}],
    )
    placed = await client.post("/v1/orders", json=body, headers=auth(keys["storefront"]))
    assert placed.status_code == 201, placed.text
    order = placed.json()
    fh = auth(keys["fulfillment"])
    shipment = order["shipments"][0]
    picked = await client.post(
        f"/v1/shipments/{shipment['id']}/transitions", json={"to": "picked"}, headers=fh
    )
    assert picked.status_code == 200, picked.text
    line = order["lines"][0]["id"]
    resp = await client.post(
        f"/v1/shipments/{shipment['id']}/exceptions",
        json={"lines": [{"order_line_id": line, "quantity": 1, "reason": "damaged"}]},
        headers=fh,
    )
    assert resp.status_code == 201, resp.text
    assert resp.json()["order"]["status"] == "placed"
    last = (await _history(client, keys, order["id"]))[-1]
    assert (last["from_status"], last["to_status"]) == ("picked", "placed")
    await _check(engine, resp.json()["order"])


@pytest.mark.usefixtures("network")
async def test_a_full_reroute_keeps_the_placement_plan(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    """Placement routes X to BER; an exception moves one unit to MUC; a re-route plans the
    order whole again: the current plan is the re-route's, placement's stays readable (as it
    does after an exception, a move or an edit), and a second re-route keeps it too."""
    order = await _place(client, keys, X=2)
    shipment = order["shipments"][0]
    fh, admin = auth(keys["fulfillment"]), auth(keys["admin"])
    placed = await _routing(client, keys, order["id"])
    assert (placed["change"], placed["placement"]) == (None, None)
    resp = await client.post(
        f"/v1/shipments/{shipment['id']}/exceptions",
        json={
            "lines": [
                {"order_line_id": order["lines"][0]["id"], "quantity": 1, "reason": "short_pick"}
            ]
        },
        headers=fh,
    )
    assert resp.status_code == 201, resp.text
    for attempt in range(2):
        rerouted = await client.post(
            f"/v1/orders/{order['id']}/reroute", json={"reason": f"try {attempt}"}, headers=admin
        )
        assert rerouted.status_code == 200, rerouted.text
        routing = await _routing(client, keys, order["id"])
        assert routing["warehouses"] == rerouted.json()["routed_to"]
        assert routing["change"]["kind"] == "rerouted"
        assert routing["explanation"]["candidates"]
        assert routing["placement"] == {
            "warehouses": placed["warehouses"],
            "fully_filled": placed["fully_filled"],
            "backorders": placed["backorders"],
            "explanation": placed["explanation"],
        }
    await _check(engine, rerouted.json())


@pytest.mark.usefixtures("network")
async def test_one_exception_raised_twice_at_once_on_a_picked_shipment(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    """Two packers report the same damaged unit of a picked parcel at the same moment (and,
    on a second order, each rejects everything the parcel carries): serialized by the order
    lock, each answer is a 201 or a 4xx problem, the units are rejected at most as many times
    as the parcel carried them, and the order's and the stock's invariants hold."""
    from tests.races.conftest import at_once, check_order_invariants

    fh, admin = auth(keys["fulfillment"]), auth(keys["admin"])
    for rejected in (1, 3):
        order = await _place(client, keys, X=3)
        shipment = order["shipments"][0]["id"]
        for to in ("paid", "picked"):
            moved = await client.post(
                f"/v1/orders/{order['id']}/transitions", json={"to": to}, headers=admin
            )
            assert moved.status_code == 200, moved.text
        body = {
            "lines": [
                {
                    "order_line_id": order["lines"][0]["id"],
                    "quantity": rejected,
                    "reason": "damaged",
                }
            ]
        }
        url = f"/v1/shipments/{shipment}/exceptions"

        def post(url: str = url, body: dict[str, Any] = body) -> Any:
            return client.post(url, json=body, headers=fh)

        outcomes = await at_once(("first", post), ("second", post))
        assert all(o.status in (201, 409, 422) for o in outcomes), [str(o) for o in outcomes]
        won = [o for o in outcomes if o.status == 201]
        # a unit rejected once leaves the parcel: the second report finds it (1 of 3: the
        # parcel still carries 2, so it is a second damaged unit) or not (3 of 3: gone)
        assert len(won) == (2 if rejected == 1 else 1), [str(o) for o in outcomes]
        assert all(o.code is not None for o in outcomes if o.status != 201)
        got = (await client.get(f"/v1/orders/{order['id']}", headers=admin)).json()
        carried = sum(
            ln["quantity"]
            for s in got["shipments"]
            if s["status"] != "cancelled"
            for ln in s["lines"]
        )
        assert carried == 3  # every unit is somewhere: in BER's parcel or re-planned to MUC
        await check_order_invariants(engine, order["id"])


@pytest.mark.usefixtures("network")
async def test_exception_input_at_the_edges(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    """Zero, negative and absurd quantities, a line of another order, duplicate entries adding
    up to more than the parcel carries, a malformed id, too many lines: 422 each, nothing
    changed."""
    order = await _place(client, keys, X=2)
    other = await _place(client, keys, X=1)
    shipment = order["shipments"][0]["id"]
    line = order["lines"][0]["id"]
    fh = auth(keys["fulfillment"])
    url = f"/v1/shipments/{shipment}/exceptions"
    before = await _snapshot(engine, order["id"])

    def one(**changes: Any) -> dict[str, Any]:
        return {"order_line_id": line, "quantity": 1, "reason": "damaged"} | changes

    bodies: list[Any] = [
        {"lines": [one(quantity=0)]},
        {"lines": [one(quantity=-1)]},
        {"lines": [one(quantity=10**12)]},
        {"lines": [one(quantity=1.5)]},
        {"lines": [one(order_line_id=other["lines"][0]["id"])]},
        {"lines": [one(), one(), one()]},
        {"lines": [one(order_line_id="not-a-uuid")]},
        {"lines": [one()] * 101},
        {"lines": []},
        {"lines": [one()], "block_for_hours": 0},
        {"lines": [one()], "block_for_hours": 10**9},
    ]
    for body in bodies:
        resp = await client.post(url, json=body, headers=fh)
        assert resp.status_code == 422, (body, resp.text)
        assert resp.headers["content-type"].startswith("application/problem+json")
    assert await _snapshot(engine, order["id"]) == before


@pytest.mark.usefixtures("network")
async def test_reroute_of_an_order_with_a_cancelled_line(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    """A line cancelled whole (quantity 0: it stays on the order) is not routed again: the
    re-route plans the other lines (before: the router refused a 0-unit line, a 500)."""
    from tests.races.conftest import check_order_invariants

    order = await _place(client, keys, X=2, Y=1)
    admin = auth(keys["admin"])
    y_line = next(ln["id"] for ln in order["lines"] if ln["sku"] == "Y")
    cancelled = await client.post(
        f"/v1/orders/{order['id']}/cancel-lines",
        json={"lines": [{"line_id": y_line, "quantity": 1}]},
        headers=admin,
    )
    assert cancelled.status_code == 200, cancelled.text
    resp = await client.post(f"/v1/orders/{order['id']}/reroute", json={}, headers=admin)
    assert resp.status_code == 200, resp.text
    rerouted = resp.json()
    assert [(ln["sku"], ln["quantity"], ln["backordered"]) for ln in rerouted["lines"]] == [
        ("X", 2, 0),
        ("Y", 0, 0),
    ]
    live = _live(rerouted)
    assert [[(ln["sku"], ln["quantity"]) for ln in s["lines"]] for s in live] == [[("X", 2)]]
    routing = await _routing(client, keys, order["id"])
    assert (routing["warehouses"], routing["backorders"]) == (["BER"], [])
    assert routing["change"]["kind"] == "rerouted"
    await check_order_invariants(engine, order["id"])
