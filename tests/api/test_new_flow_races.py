"""Real concurrent requests on the stores and purchasing flows, stock invariants after each:
till receipts posted in a batch and singly at once make one order each; a transfer shipped
twice, or received while cancelled, moves its units once; a purchase order cancelled while
received never receives beyond what stood."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests.helpers import assert_stock_invariants, auth, order_body, stock

STORE = "STORE-R"
SKU = "SOCKS-3"


@pytest.fixture(autouse=True)
async def store(sessionmaker: async_sessionmaker[AsyncSession], client: httpx.AsyncClient) -> None:
    await stock(
        sessionmaker, STORE, {SKU: 50}, latitude=48.14, longitude=11.58, is_pickup_store=True
    )


def _sale(receipt: str, quantity: int = 1) -> dict[str, Any]:
    return {
        "receipt_id": receipt,
        "currency": "EUR",
        "lines": [{"sku": SKU, "quantity": quantity, "unit_price": 1000, "tax_rate_bps": 1900}],
    }


async def _scalar(engine: AsyncEngine, sql: str) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(text(sql))).scalar_one()


async def _on_hand(engine: AsyncEngine, warehouse: str) -> int:
    return int(
        await _scalar(
            engine,
            "SELECT coalesce(sum(s.on_hand), 0) FROM stock_levels s JOIN warehouses w "
            f"ON w.id = s.warehouse_id WHERE w.code = '{warehouse}' AND s.sku = '{SKU}'",
        )
    )


async def test_one_receipt_eight_times_in_a_batch_and_singly_at_once_is_one_order(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    headers = auth(keys["fulfillment"])
    batch = {"sales": [_sale("R-1") for _ in range(8)]}
    calls = [client.post(f"/v1/stores/{STORE}/sales/batch", json=batch, headers=headers)]
    calls += [
        client.post(f"/v1/stores/{STORE}/sales", json=_sale("R-1"), headers=headers)
        for _ in range(8)
    ]
    answers = await asyncio.gather(*calls)
    assert all(a.status_code in (200, 201) for a in answers), [a.text for a in answers]
    ids = {r["sale"]["order_id"] for r in answers[0].json()["results"]}
    ids |= {a.json()["order_id"] for a in answers[1:]}
    assert len(ids) == 1
    assert await _scalar(engine, "SELECT count(*) FROM orders WHERE channel = 'pos'") == 1
    assert await _on_hand(engine, STORE) == 49
    await assert_stock_invariants(engine)


async def test_a_batch_and_single_retries_of_its_receipts_in_another_order(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    """A till re-sends two sales singly, in the other order, while its batch holding both is
    being recorded: each receipt is one order, none of the requests fails."""
    headers = auth(keys["fulfillment"])
    for n in range(6):
        receipts = [f"R-{n}-{i}" for i in range(6)]
        batch = {"sales": [_sale(r) for r in receipts]}
        calls = [client.post(f"/v1/stores/{STORE}/sales/batch", json=batch, headers=headers)]
        calls += [
            client.post(f"/v1/stores/{STORE}/sales", json=_sale(r), headers=headers)
            for r in reversed(receipts)
        ]
        answers = await asyncio.gather(*calls)
        assert all(a.status_code in (200, 201) for a in answers), [
            (a.status_code, a.text[:200]) for a in answers
        ]
    assert await _scalar(engine, "SELECT count(*) FROM orders WHERE channel = 'pos'") == 36
    assert await _on_hand(engine, STORE) == 14
    await assert_stock_invariants(engine)


async def _transfer(client: httpx.AsyncClient, keys: dict[str, str], quantity: int) -> str:
    body = {
        "from_warehouse": "BER",
        "to_warehouse": STORE,
        "lines": [{"sku": SKU, "quantity": quantity}],
    }
    resp = await client.post("/v1/transfers", json=body, headers=auth(keys["fulfillment"]))
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


async def _ber(sessionmaker: async_sessionmaker[AsyncSession]) -> None:
    await stock(sessionmaker, "BER", {SKU: 30})


async def test_a_transfer_shipped_twice_at_once_moves_its_units_once(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await _ber(sessionmaker)
    headers = auth(keys["fulfillment"])
    tid = await _transfer(client, keys, 10)
    answers = await asyncio.gather(
        *(client.post(f"/v1/transfers/{tid}/ship", json={}, headers=headers) for _ in range(4))
    )
    codes = sorted(a.status_code for a in answers)
    assert codes[0] == 200 and all(c in (200, 409) for c in codes), [a.text for a in answers]
    assert codes.count(200) == 1, [a.text for a in answers]
    assert await _on_hand(engine, "BER") == 20
    await assert_stock_invariants(engine)


async def test_a_transfer_received_while_cancelled(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await _ber(sessionmaker)
    headers = auth(keys["fulfillment"])
    tid = await _transfer(client, keys, 10)
    assert (
        await client.post(f"/v1/transfers/{tid}/ship", json={}, headers=headers)
    ).status_code == 200
    receive = {"lines": [{"sku": SKU, "quantity": 10}], "close": True}
    answers = await asyncio.gather(
        client.post(f"/v1/transfers/{tid}/receive", json=receive, headers=headers),
        client.post(f"/v1/transfers/{tid}/cancel", json={}, headers=headers),
        client.post(f"/v1/transfers/{tid}/receive", json=receive, headers=headers),
    )
    assert all(a.status_code in (200, 409) for a in answers), [a.text for a in answers]
    status = (await client.get(f"/v1/transfers/{tid}", headers=headers)).json()["status"]
    store = await _on_hand(engine, STORE)
    ber = await _on_hand(engine, "BER")
    assert (status, store, ber) in (("received", 60, 20), ("cancelled", 50, 30)), (
        status,
        store,
        ber,
        [a.text for a in answers],
    )
    await assert_stock_invariants(engine)


async def test_a_purchase_order_cancelled_while_received(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    admin = auth(keys["admin"])
    body = {"code": "ACME", "name": "Acme", "lead_time_days": 7}
    assert (await client.post("/v1/suppliers", json=body, headers=admin)).status_code == 201
    po = {"supplier": "ACME", "warehouse": STORE, "lines": [{"sku": SKU, "quantity": 10}]}
    resp = await client.post("/v1/purchase-orders", json=po, headers=admin)
    assert resp.status_code == 201, resp.text
    po_id = resp.json()["id"]
    assert (
        await client.post(f"/v1/purchase-orders/{po_id}/send", headers=admin)
    ).status_code == 200
    receipt = {"lines": [{"sku": SKU, "quantity": 8}]}
    answers = await asyncio.gather(
        client.post(
            f"/v1/purchase-orders/{po_id}/receipts",
            json=receipt | {"reference": "GRN-1"},
            headers=auth(keys["fulfillment"]),
        ),
        client.post(f"/v1/purchase-orders/{po_id}/cancel", json={}, headers=admin),
        client.post(
            f"/v1/purchase-orders/{po_id}/receipts",
            json=receipt | {"reference": "GRN-2"},
            headers=auth(keys["fulfillment"]),
        ),
    )
    assert all(a.status_code < 500 for a in answers), [a.text for a in answers]
    got = (await client.get(f"/v1/purchase-orders/{po_id}", headers=admin)).json()
    received = sum(ln["received"] for ln in got["lines"])
    assert received <= 10
    assert await _on_hand(engine, STORE) == 50 + received
    incoming = await _scalar(
        engine, "SELECT coalesce(sum(quantity), 0) FROM incoming_supply WHERE status = 'expected'"
    )
    if got["status"] in ("cancelled", "received", "closed"):
        assert incoming == 0, got
    await assert_stock_invariants(engine)


async def _ready_pickup(client: httpx.AsyncClient, keys: dict[str, str]) -> tuple[str, str]:
    """A paid pickup order of 2 at STORE, its shipment picked: (order id, shipment id)."""
    body = order_body(
        pickup_store=STORE,
        lines=[{"sku": SKU, "quantity": 2, "unit_price": 850, "tax_rate_bps": 700}],
    )
    resp = await client.post("/v1/orders", json=body, headers=auth(keys["storefront"]))
    assert resp.status_code == 201, resp.text
    order = resp.json()
    [shipment] = order["shipments"]
    pay = {
        "method": "card",
        "provider": "stripe",
        "provider_reference": f"pi_{uuid.uuid4().hex}",
        "amount": order["totals"]["total"],
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
    return order["id"], shipment["id"]


async def _codes(engine: AsyncEngine, order_id: str) -> list[str]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT payload->'data'->>'collection_code' FROM outbox_events "
                "WHERE aggregate_id = :oid AND type = 'pickup.ready' ORDER BY id"
            ),
            {"oid": order_id},
        )
        return [str(c) for c in rows.scalars()]


async def test_ready_at_once_then_wrong_and_right_codes_at_once(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    staff = auth(keys["fulfillment"])
    order_id, shipment_id = await _ready_pickup(client, keys)
    answers = await asyncio.gather(
        *(client.post(f"/v1/pickups/{shipment_id}/ready", headers=staff) for _ in range(4))
    )
    assert all(a.status_code in (200, 409) for a in answers), [a.text for a in answers]
    [code] = await _codes(engine, order_id)  # one code, announced once
    wrong = str((int(code) + 1) % 1_000_000).zfill(6)
    url = f"/v1/pickups/{shipment_id}/collect"
    answers = await asyncio.gather(
        *(client.post(url, json={"code": wrong}, headers=staff) for _ in range(12))
    )
    assert all(a.status_code in (409, 422) for a in answers), [a.text for a in answers]
    pickup = (await client.get(f"/v1/pickups/{shipment_id}", headers=staff)).json()
    assert pickup["attempts"] == 5 and pickup["attempts_left"] == 0, pickup
    assert sum(a.status_code == 422 for a in answers) == 5

    resp = await client.post(f"/v1/pickups/{shipment_id}/code", headers=staff)
    assert resp.status_code == 200, resp.text
    code = (await _codes(engine, order_id))[-1]
    answers = await asyncio.gather(
        *(client.post(url, json={"code": code}, headers=staff) for _ in range(4))
    )
    assert sorted(a.status_code for a in answers) == [200, 409, 409, 409], [a.text for a in answers]
    assert await _on_hand(engine, STORE) == 48
    await assert_stock_invariants(engine)


async def test_a_transfer_out_of_a_store_shipped_while_its_till_sells_the_units(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    """The store has 50: a transfer of 30 ships while the till sells 30, at once. The
    shipment never takes units the till took (409 or shipped in full), on hand never < 0."""
    staff = auth(keys["fulfillment"])
    body = {"from_warehouse": STORE, "to_warehouse": "BER", "lines": [{"sku": SKU, "quantity": 30}]}
    resp = await client.post("/v1/transfers", json=body, headers=staff)
    assert resp.status_code == 201, resp.text
    tid = resp.json()["id"]
    ship, sale = await asyncio.gather(
        client.post(f"/v1/transfers/{tid}/ship", json={}, headers=staff),
        client.post(f"/v1/stores/{STORE}/sales", json=_sale("R-T", 30), headers=staff),
    )
    assert sale.status_code == 201, sale.text
    assert ship.status_code in (200, 409), ship.text
    store = await _on_hand(engine, STORE)
    assert store >= 0
    if ship.status_code == 200:
        uncovered = sum(u["quantity"] for u in sale.json()["uncovered"])
        assert store == 50 - 30 - (30 - uncovered)  # the till took only what was left
    else:
        assert store == 20
    await assert_stock_invariants(engine)


async def test_two_batches_of_the_same_receipts_in_opposite_orders(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    """A till re-sends its offline batch (in another order) while the first is being
    recorded: every receipt once, both answered."""
    headers = auth(keys["fulfillment"])
    url = f"/v1/stores/{STORE}/sales/batch"
    for n in range(4):
        receipts = [f"R-{n}-{i}" for i in range(8)]
        answers = await asyncio.gather(
            client.post(url, json={"sales": [_sale(r) for r in receipts]}, headers=headers),
            client.post(url, json={"sales": [_sale(r) for r in receipts[::-1]]}, headers=headers),
        )
        assert [a.status_code for a in answers] == [200, 200], [a.text[:300] for a in answers]
    assert await _scalar(engine, "SELECT count(*) FROM orders WHERE channel = 'pos'") == 32
    assert await _on_hand(engine, STORE) == 18
    await assert_stock_invariants(engine)
