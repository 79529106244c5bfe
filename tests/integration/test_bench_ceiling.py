"""The load benchmark's database ceiling and framework floor still place orders as oms does.

``bench/_ceiling.py`` sends oms's own placement statements (``place_order.sql`` with
``place_order_args``, ``oms_reserve`` with ``reserve_args``, the routing snapshot) from raw
asyncpg, building oms's ``NewOrder``/``NewShipment``/``Reservation`` itself; ``bench/_floor_app.py``
serves that same transaction behind one FastAPI route validating oms's ``OrderCreate``. When
those statements, their parameters or the dataclasses change, only a benchmark run used to
notice. Here both run against the migrated test database, set up through oms's HTTP API, and
what they wrote is read back through oms's API and compared with an order oms placed itself.
"""

from __future__ import annotations

import importlib
import json
import random
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import asyncpg
import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from oms.outbox.models import OutboxEvent
from tests.helpers import assert_stock_invariants, auth

BENCH = Path(__file__).resolve().parents[2] / "bench"

# (code, city, postal code, latitude, longitude) and the units each warehouse receives: a line
# of CEIL-A or CEIL-B ships from Berlin, one of CEIL-C from Munich (an order of both is split)
WAREHOUSES = [
    ("BER", "Berlin", "10115", 52.520, 13.405),
    ("MUC", "Munich", "80331", 48.137, 11.575),
]
STOCK = {("BER", "CEIL-A"): 20, ("BER", "CEIL-B"): 20, ("MUC", "CEIL-C"): 10}

LINES = [
    {"sku": "CEIL-A", "name": "Article A", "quantity": 3, "unit_price": 1999, "tax_rate_bps": 1900},
    {"sku": "CEIL-C", "name": "Article C", "quantity": 2, "unit_price": 850, "tax_rate_bps": 700},
]


@dataclass(frozen=True, slots=True)
class World:
    dsn: str
    admin: str
    storefront: str
    floor_spec: dict[str, Any]
    """What ``bench/load.py`` hands the ceiling and the floor about the storefront key."""


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """``bench/_ceiling.py``, imported as ``bench/load.py`` runs it (``bench/`` on the path)."""
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("_ceiling")


@pytest.fixture
async def world(client: httpx.AsyncClient, keys: dict[str, str], migrated: str) -> World:
    """Warehouses and stock created through oms's API (``client`` truncated every table
    first), and the storefront key's row as ``bench/load.py``'s ``create_keys`` reads it."""
    admin = auth(keys["admin"])
    for code, city, postal, lat, lon in WAREHOUSES:
        created = await client.post(
            "/v1/warehouses",
            json={
                "code": code,
                "name": f"{city} fulfilment centre",
                "country": "DE",
                "city": city,
                "postal_code": postal,
                "latitude": lat,
                "longitude": lon,
            },
            headers=admin,
        )
        assert created.status_code == 201, created.text
    for (code, sku), units in STOCK.items():
        received = await client.post(
            "/v1/inventory/adjustments",
            json={"warehouse": code, "sku": sku, "type": "receive", "quantity": units},
            headers=auth(keys["fulfillment"]),
        )
        assert received.status_code == 201, received.text
    dsn = migrated.replace("postgresql+asyncpg://", "postgresql://")
    prefix = keys["storefront"].split("_")[1]
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(
            "SELECT id, secret_hash, role, channel FROM api_keys WHERE prefix = $1", prefix
        )
    finally:
        await conn.close()
    assert row is not None
    assert (row["role"], row["channel"]) == ("storefront", None)
    return World(
        dsn=dsn,
        admin=keys["admin"],
        storefront=keys["storefront"],
        floor_spec={
            "dsn": dsn,
            "pool_size": 2,
            "key_prefix_db": prefix,
            "secret_hash": row["secret_hash"],
            "key_scope": str(row["id"]),  # oms's idempotency scope: the key's id
        },
    )


def _context(bench: ModuleType, world: World) -> Any:
    spec = world.floor_spec
    return bench.Context(
        spec["key_prefix_db"], spec["secret_hash"], spec["key_scope"], bench._sample_explanation()
    )


async def _reserved(client: httpx.AsyncClient, world: World) -> dict[tuple[str, str], int]:
    """Units reserved per (warehouse, SKU), read through oms's API."""
    got = await client.get("/v1/inventory/levels", headers=auth(world.admin))
    assert got.status_code == 200, got.text
    return {(lv["warehouse"], lv["sku"]): lv["reserved"] for lv in got.json()}


async def _order(client: httpx.AsyncClient, world: World, order_id: str) -> dict[str, Any]:
    got = await client.get(f"/v1/orders/{order_id}", headers=auth(world.storefront))
    assert got.status_code == 200, got.text
    order: dict[str, Any] = got.json()
    return order


def _shape(order: dict[str, Any]) -> dict[str, Any]:
    """An order as oms reads it, without what differs between any two placements (ids,
    number, timestamps), between two routers choosing the same warehouses (the ceiling's is
    a stand-in): which shipment comes first, and the delivery promise (worked out in Python
    from cached calendars; the ceiling sends its parameters as null)."""
    moments = {"created_at", "updated_at"}
    unshared = {"id", "order_id", "seq", "lines", "ship_by", "deliver_by"} | moments
    shipments = [
        {
            **{k: v for k, v in sh.items() if k not in unshared},
            "lines": [(ln["sku"], ln["quantity"]) for ln in sh["lines"]],
        }
        for sh in order["shipments"]
    ]
    assert order["routed_to"] == [sh["warehouse"] for sh in shipments]
    return {
        **{k: v for k, v in order.items() if k not in {"id", "number", "routed_to"} | moments},
        "lines": [{k: v for k, v in ln.items() if k != "id"} for ln in order["lines"]],
        "shipments": sorted(shipments, key=lambda sh: sh["warehouse"]),
    }


async def _history(client: httpx.AsyncClient, world: World, order_id: str) -> list[Any]:
    """The order's history through oms's API, without ids, times and request ids."""
    got = await client.get(f"/v1/orders/{order_id}/history", headers=auth(world.storefront))
    assert got.status_code == 200, got.text
    skip = {"id", "created_at", "request_id"}
    return [{k: v for k, v in e.items() if k not in skip} for e in got.json()]


async def _routing(client: httpx.AsyncClient, world: World, order_id: str) -> dict[str, Any]:
    """The stored routing decision through oms's API, but its explanation (the ceiling
    writes one sample explanation of oms's planner with every order)."""
    got = await client.get(f"/v1/orders/{order_id}/routing", headers=auth(world.storefront))
    assert got.status_code == 200, got.text
    routing: dict[str, Any] = got.json()
    assert routing.pop("explanation")
    routing["warehouses"] = sorted(routing["warehouses"])
    routing.pop("order_id")
    return routing


async def _placed_events(engine: AsyncEngine) -> dict[str, dict[str, Any]]:
    """Order id -> the ``order.placed`` outbox event written with it."""
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(
                    OutboxEvent.aggregate_type, OutboxEvent.aggregate_id, OutboxEvent.payload
                ).where(OutboxEvent.type == "order.placed")
            )
        ).all()
    return {aggregate_id: {"aggregate": kind, **payload} for kind, aggregate_id, payload in rows}


def _event_shape(event: dict[str, Any]) -> dict[str, Any]:
    data = dict(event["data"])
    for key in ("order_id", "number", "created_at"):
        data.pop(key, None)
    data["warehouses"] = sorted(data.get("warehouses", []))
    return {**{k: v for k, v in event.items() if k not in {"id", "occurred_at"}}, "data": data}


def _expected_lines(body: dict[str, Any]) -> list[dict[str, Any]]:
    """Each line's amounts worked out here, not by oms's domain code (that both use)."""
    out = []
    for n, ln in enumerate(body["lines"], start=1):
        subtotal = ln["quantity"] * ln["unit_price"]
        tax = (subtotal * ln.get("tax_rate_bps", 0) + 5000) // 10_000
        out.append(
            {
                "line_no": n,
                "sku": ln["sku"],
                "name": ln.get("name"),
                "quantity": ln["quantity"],
                "unit_price": ln["unit_price"],
                "tax_rate_bps": ln.get("tax_rate_bps", 0),
                "backordered": 0,
                "subtotal": subtotal,
                "tax": tax,
                "total": subtotal + tax,
            }
        )
    return out


async def test_the_ceilings_transaction_writes_the_order_oms_would(
    bench: ModuleType, world: World, client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    from _common import cumulative, order_body, zipf_weights

    body = order_body(random.Random(3), cumulative(zipf_weights()), fixed_lines=LINES)
    before = await _reserved(client, world)
    assert set(before.values()) == {0}
    conn = await asyncpg.connect(world.dsn)
    try:
        doc = await bench.place_one(conn, body, f"ceiling-{uuid.uuid4()}", _context(bench, world))
    finally:
        await conn.close()

    order = await _order(client, world, doc["id"])
    expected_lines = _expected_lines(body)
    assert [{k: v for k, v in ln.items() if k != "id"} for ln in order["lines"]] == expected_lines
    subtotal = sum(ln["subtotal"] for ln in expected_lines)
    tax = sum(ln["tax"] for ln in expected_lines)
    assert order["totals"] == {
        "subtotal": subtotal,
        "tax_total": tax,
        "shipping_fee": body["shipping_fee"],
        "total": subtotal + tax + body["shipping_fee"],
    }
    for field in ("channel", "currency", "payment_method"):
        assert order[field] == body[field], field
    for field in ("customer", "shipping_address"):  # oms adds the fields left out as null
        assert {k: order[field][k] for k in body[field]} == body[field], field
    assert order["status"] == "placed"
    assert sorted(
        (sh["warehouse"], [(ln["sku"], ln["quantity"]) for ln in sh["lines"]])
        for sh in order["shipments"]
    ) == [("BER", [("CEIL-A", 3)]), ("MUC", [("CEIL-C", 2)])]
    assert order["routed_to"] == [sh["warehouse"] for sh in order["shipments"]]
    assert await _reserved(client, world) == before | {("BER", "CEIL-A"): 3, ("MUC", "CEIL-C"): 2}

    # the response document the ceiling stores and the floor sends names what oms reads
    same = ("id", "status", "version", "allowed_transitions", "lines", "totals", "routed_to")
    assert {k: doc[k] for k in same} == {k: order[k] for k in same}
    assert [(sh["id"], sh["warehouse"], sh["lines"]) for sh in doc["shipments"]] == [
        (sh["id"], sh["warehouse"], sh["lines"]) for sh in order["shipments"]
    ]

    # oms placing the same body writes the same order, reserves the same units
    placed = await client.post("/v1/orders", json=body, headers=auth(world.storefront))
    assert placed.status_code == 201, placed.text
    by_oms = await _order(client, world, placed.json()["id"])
    assert _shape(order) == _shape(by_oms)
    assert await _history(client, world, order["id"]) == await _history(client, world, by_oms["id"])
    assert await _routing(client, world, order["id"]) == await _routing(client, world, by_oms["id"])
    events = await _placed_events(engine)
    assert set(events) == {order["id"], by_oms["id"]}
    assert _event_shape(events[order["id"]]) == _event_shape(events[by_oms["id"]])
    assert await _reserved(client, world) == before | {("BER", "CEIL-A"): 6, ("MUC", "CEIL-C"): 4}
    # allocations, the order's counts and copies, the customer's totals: as oms keeps them
    await assert_stock_invariants(engine)


@pytest.fixture
async def floor(
    bench: ModuleType, world: World, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[httpx.AsyncClient]:
    """``bench/_floor_app.py``, freshly imported with this database in ``OMS_FLOOR``, its
    lifespan running (its pool open), over httpx."""
    monkeypatch.setenv("OMS_FLOOR", json.dumps(world.floor_spec))
    sys.modules.pop("_floor_app", None)
    try:
        module = importlib.import_module("_floor_app")
        assert module.SPEC == world.floor_spec
        app = module.app
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://floor.test") as c:
                yield c
    finally:
        sys.modules.pop("_floor_app", None)


async def test_the_floor_places_through_the_ceiling_and_validates_with_oms_schema(
    floor: httpx.AsyncClient, world: World, client: httpx.AsyncClient, engine: AsyncEngine
) -> None:
    body = {
        "channel": "web",
        "currency": "EUR",
        "customer": {"id": "cus_floor", "email": "floor@example.com"},
        "shipping_address": {
            "name": "Floor Customer",
            "lines": ["Marienplatz 8"],
            "city": "Munich",
            "postal_code": "80331",
            "country": "DE",
        },
        "shipping_fee": 495,
        "lines": [
            {"sku": "CEIL-B", "quantity": 4, "unit_price": 1250, "tax_rate_bps": 1900},
            {"sku": "CEIL-C", "quantity": 1, "unit_price": 850},
        ],
    }
    headers = {"Authorization": "Bearer x"}
    before = await _reserved(client, world)

    # refused by oms's OrderCreate: nothing runs
    zero = {**body, "lines": [{**body["lines"][0], "quantity": 0}]}
    refused = await floor.post("/v1/orders", json=zero, headers=headers | {"Idempotency-Key": "k1"})
    assert refused.status_code == 422, refused.text
    # more than the stock: the transaction rolls back (the idempotency claim with it)
    short = {**body, "lines": [{**body["lines"][0], "quantity": 21}]}
    rolled = await floor.post("/v1/orders", json=short, headers=headers | {"Idempotency-Key": "k1"})
    assert rolled.status_code == 409, rolled.text
    assert rolled.json()["title"] == "insufficient_stock"
    assert await _reserved(client, world) == before

    created = await floor.post("/v1/orders", json=body, headers=headers | {"Idempotency-Key": "k1"})
    assert created.status_code == 201, created.text
    doc = created.json()
    order = await _order(client, world, doc["id"])
    assert [{k: v for k, v in ln.items() if k != "id"} for ln in order["lines"]] == _expected_lines(
        body
    )
    assert order["lines"] == doc["lines"]
    assert order["totals"] == doc["totals"]
    assert order["totals"]["total"] == sum(ln["total"] for ln in doc["lines"]) + 495
    assert order["status"] == "placed"
    assert sorted(order["routed_to"]) == ["BER", "MUC"]
    assert order["routed_to"] == [sh["warehouse"] for sh in order["shipments"]]
    assert await _reserved(client, world) == before | {("BER", "CEIL-B"): 4, ("MUC", "CEIL-C"): 1}
    await assert_stock_invariants(engine)
