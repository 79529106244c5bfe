"""Point-of-sale sales (#19): a till sale is placed, paid and handed over in one call, taking
the store's stock at once; retry-safe by receipt id (concurrent retries make one order); an
offline batch is idempotent per receipt; a sale the stock cannot cover is recorded and flagged."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from oms.cli import openapi_document
from oms.orders.schemas import Address
from tests.helpers import assert_stock_invariants, auth, order_body, stock

STORE = "STORE-P"
SKU = "SOCKS-3"


@pytest.fixture(autouse=True)
async def store(sessionmaker: async_sessionmaker[AsyncSession], client: httpx.AsyncClient) -> None:
    await stock(
        sessionmaker,
        STORE,
        {SKU: 5},
        latitude=48.14,
        longitude=11.58,
        city="Munich",
        is_pickup_store=True,
    )


def _sale(receipt: str, quantity: int = 2, **extra: Any) -> dict[str, Any]:
    return {
        "receipt_id": receipt,
        "currency": "EUR",
        "lines": [{"sku": SKU, "quantity": quantity, "unit_price": 1000, "tax_rate_bps": 1900}],
        **extra,
    }


async def _sell(client: httpx.AsyncClient, keys: dict[str, str], body: Any) -> httpx.Response:
    return await client.post(
        f"/v1/stores/{STORE}/sales", json=body, headers=auth(keys["fulfillment"])
    )


async def _scalar(engine: AsyncEngine, sql: str, **params: Any) -> Any:
    async with engine.connect() as conn:
        return (await conn.execute(text(sql), params)).scalar_one()


async def _on_hand(engine: AsyncEngine) -> tuple[int, int]:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text(
                    "SELECT s.on_hand, s.reserved FROM stock_levels s JOIN warehouses w "
                    "ON w.id = s.warehouse_id WHERE w.code = :wh AND s.sku = :sku"
                ),
                {"wh": STORE, "sku": SKU},
            )
        ).one()
    return int(row.on_hand), int(row.reserved)


async def test_a_till_sale_is_placed_paid_and_handed_over(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    resp = await _sell(client, keys, _sale("R-1", customer_email="Bo@Example.com"))
    assert resp.status_code == 201, resp.text
    sale = resp.json()
    assert sale["order_status"] == "delivered" and sale["total"] == 2380
    assert sale["replayed"] is False and sale["stock_discrepancy"] is False
    assert await _on_hand(engine) == (3, 0)  # taken at once, no reservation

    order = (await client.get(f"/v1/orders/{sale['order_id']}", headers=auth(keys["admin"]))).json()
    assert order["channel"] == "pos" and order["status"] == "delivered"
    assert order["customer"]["email"] == "bo@example.com"
    assert [s["status"] for s in order["shipments"]] == ["delivered"]
    history = (
        await client.get(f"/v1/orders/{sale['order_id']}/history", headers=auth(keys["admin"]))
    ).json()
    assert [h["to_status"] for h in history] == ["placed", "paid", "delivered"]
    payments = (
        await client.get(f"/v1/orders/{sale['order_id']}/payments", headers=auth(keys["admin"]))
    ).json()
    assert [(p["provider"], p["captured_amount"]) for p in payments["payments"]] == [("till", 2380)]
    async with engine.connect() as conn:
        types = (
            await conn.execute(
                text("SELECT type FROM outbox_events WHERE aggregate_id = :o ORDER BY id"),
                {"o": sale["order_id"]},
            )
        ).scalars()
        assert [t for t in types if t.startswith("order.")] == [
            "order.placed",
            "order.paid",
            "order.delivered",
        ]
    listed = await client.get("/v1/orders", params={"channel": "pos"}, headers=auth(keys["admin"]))
    assert [o["id"] for o in listed.json()["items"]] == [sale["order_id"]]
    channels = await client.get("/v1/reports/top-channels", headers=auth(keys["admin"]))
    assert channels.status_code == 200, channels.text
    pos = [r for r in channels.json()["items"] if r["channel"] == "pos"]
    assert [(r["orders"], r["revenue"]) for r in pos] == [(1, 2380)]  # in the reports
    await assert_stock_invariants(engine)


async def test_retries_answer_with_the_first_sale(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    first = await _sell(client, keys, _sale("R-2"))
    assert first.status_code == 201
    again = await _sell(client, keys, _sale("R-2"))
    assert again.status_code == 200, again.text
    assert again.json()["replayed"] is True
    assert again.json()["order_id"] == first.json()["order_id"]
    # ...and that 200 is documented (the schema fuzzer found it missing: an undocumented status)
    answers = openapi_document()["paths"]["/v1/stores/{code}/sales"]["post"]["responses"]
    replay = answers["200"]["content"]["application/json"]["schema"]
    assert replay == {"$ref": "#/components/schemas/TillSaleRead"}
    other = await _sell(client, keys, _sale("R-2", quantity=1))
    assert other.status_code == 409
    assert other.json()["code"] == "receipt_conflict"
    assert other.json()["order_id"] == first.json()["order_id"]
    assert await _on_hand(engine) == (3, 0)


async def test_concurrent_retries_make_exactly_one_order(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    answers = await asyncio.gather(*(_sell(client, keys, _sale("R-RACE", 1)) for _ in range(8)))
    assert sorted(a.status_code for a in answers) == [200] * 7 + [201], [a.text for a in answers]
    assert len({a.json()["order_id"] for a in answers}) == 1
    orders = await _scalar(engine, "SELECT count(*) FROM orders WHERE channel = 'pos'")
    assert orders == 1
    assert await _on_hand(engine) == (4, 0)
    await assert_stock_invariants(engine)


async def test_a_sale_the_stock_cannot_cover_is_recorded_and_flagged(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    # 2 of the 5 are reserved for an online pickup order: the till may take 3, not those
    body = order_body(
        pickup_store=STORE,
        lines=[{"sku": SKU, "quantity": 2, "unit_price": 100, "tax_rate_bps": 0}],
    )
    assert (
        await client.post("/v1/orders", json=body, headers=auth(keys["storefront"]))
    ).status_code == 201
    resp = await _sell(client, keys, _sale("R-3", quantity=4))
    assert resp.status_code == 201, resp.text
    sale = resp.json()
    assert sale["stock_discrepancy"] is True
    assert sale["uncovered"] == [{"sku": SKU, "quantity": 1}]
    assert sale["order_status"] == "delivered"
    assert await _on_hand(engine) == (2, 2)  # never below what online orders hold
    event = await _scalar(
        engine,
        "SELECT payload->'data' FROM outbox_events WHERE type = 'store.stock_discrepancy'",
    )
    assert event["store"] == STORE and event["receipt_id"] == "R-3"
    await assert_stock_invariants(engine)


async def test_offline_batch_is_idempotent_per_receipt(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    assert (await _sell(client, keys, _sale("B-1", 1))).status_code == 201
    batch = {
        "sales": [
            _sale("B-1", 1),  # already recorded online: replayed
            _sale("B-2", 1, sold_at="2026-01-02T10:00:00Z"),
            _sale("B-3", 9, sold_at="2026-01-02T10:05:00Z"),  # beyond the stock: flagged
            _sale("B-1", 3),  # other content under a known receipt: refused alone
        ]
    }
    url = f"/v1/stores/{STORE}/sales/batch"
    resp = await client.post(url, json=batch, headers=auth(keys["fulfillment"]))
    assert resp.status_code == 200, resp.text
    got = resp.json()
    assert [r["outcome"] for r in got["results"]] == ["replayed", "recorded", "recorded", "refused"]
    assert got["results"][3]["problem"]["code"] == "receipt_conflict"
    assert got["results"][2]["sale"]["stock_discrepancy"] is True
    assert got["results"][2]["sale"]["uncovered"] == [{"sku": SKU, "quantity": 6}]
    assert got["results"][1]["sale"]["offline"] is True
    assert await _on_hand(engine) == (0, 0)

    again = await client.post(
        url, json={"sales": batch["sales"][:3]}, headers=auth(keys["fulfillment"])
    )
    assert [r["outcome"] for r in again.json()["results"]] == ["replayed"] * 3
    assert await _scalar(engine, "SELECT count(*) FROM orders WHERE channel = 'pos'") == 3
    await assert_stock_invariants(engine)


async def test_bad_sales_change_nothing(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    resp = await client.post(
        "/v1/stores/NOPE/sales", json=_sale("X"), headers=auth(keys["fulfillment"])
    )
    assert resp.status_code == 404
    resp = await _sell(client, keys, _sale("X", sold_at="2999-01-01T00:00:00Z"))
    assert resp.status_code == 422 and resp.json()["code"] == "sold_in_the_future"
    resp = await _sell(client, keys, {**_sale("X"), "lines": []})
    assert resp.status_code == 422
    resp = await client.post(
        f"/v1/stores/{STORE}/sales", json=_sale("X"), headers=auth(keys["storefront"])
    )
    assert resp.status_code == 403
    assert await _scalar(engine, "SELECT count(*) FROM till_sales") == 0
    assert await _on_hand(engine) == (5, 0)


async def test_a_sale_at_a_store_without_street_lines_has_a_whole_address(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    """The order's address is the store's; a store recorded without street lines is named by
    its name there, so the order still answers with the documented address (>= 1 line)."""
    resp = await _sell(client, keys, _sale("R-ADDR"))
    assert resp.status_code == 201, resp.text
    order_id = resp.json()["order_id"]
    order = (await client.get(f"/v1/orders/{order_id}", headers=auth(keys["admin"]))).json()
    address = order["shipping_address"]
    assert (address["name"], address["lines"], address["city"]) == (STORE, [STORE], "Munich")
    Address.model_validate(address)  # the schema every order answer documents
    listed = await client.get("/v1/orders", params={"channel": "pos"}, headers=auth(keys["admin"]))
    assert [o["shipping_address"]["lines"] for o in listed.json()["items"]] == [[STORE]]


async def test_a_customers_total_past_the_bigint_range_stays_at_its_largest(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    """The till sale adds to the customer's running total (top-customers report) as placement
    does, saturating: a total already at the end of the bigint range was a 500 for every
    later sale of that customer."""
    largest = 2**63 - 1
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO customer_order_totals (currency, guest, customer_key, orders, amount) "
                "VALUES ('EUR', false, 'cust-huge', 1, :amount)"
            ),
            {"amount": largest - 5},
        )
    resp = await _sell(client, keys, _sale("R-HUGE", customer_id="cust-huge"))
    assert resp.status_code == 201, resp.text
    row = await _scalar(
        engine,
        "SELECT orders || ':' || amount FROM customer_order_totals "
        "WHERE customer_key = 'cust-huge'",
    )
    assert row == f"2:{largest}"
