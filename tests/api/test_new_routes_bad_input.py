"""Bad input on the stores, purchasing, promises and stock feed routes: always a 4xx
problem+json that changes nothing, never a 500."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests.helpers import auth, stock

STORE = "STORE-Q"
SKU = "SOCKS-3"
TABLES = (
    "orders",
    "till_sales",
    "transfers",
    "transfer_lines",
    "suppliers",
    "purchase_orders",
    "purchase_order_lines",
    "purchase_order_receipts",
    "reorder_policies",
    "warehouse_calendars",
    "transit_times",
    "inventory_movements",
    "store_policies",
)


@pytest.fixture(autouse=True)
async def store(sessionmaker: async_sessionmaker[AsyncSession], client: httpx.AsyncClient) -> None:
    await stock(
        sessionmaker, STORE, {SKU: 5}, latitude=48.14, longitude=11.58, is_pickup_store=True
    )


async def _state(engine: AsyncEngine) -> dict[str, Any]:
    async with engine.connect() as conn:
        out: dict[str, Any] = {
            t: (await conn.execute(text(f"SELECT count(*) FROM {t}"))).scalar_one() for t in TABLES
        }
        out["stock"] = (
            await conn.execute(text("SELECT sum(on_hand), sum(reserved) FROM stock_levels"))
        ).one()
    return out


def _line(**changes: Any) -> dict[str, Any]:
    return {"sku": SKU, "quantity": 1, "unit_price": 1000, "tax_rate_bps": 1900} | changes


def _sale(**changes: Any) -> dict[str, Any]:
    return {"receipt_id": "R-1", "currency": "EUR", "lines": [_line()]} | changes


SALES = f"/v1/stores/{STORE}/sales"
BATCH = f"/v1/stores/{STORE}/sales/batch"

# (method, path, body or query, role)
CASES: dict[str, tuple[str, str, Any, str]] = {
    "sale NUL receipt": ("POST", SALES, _sale(receipt_id="R\x00"), "fulfillment"),
    "sale NUL sku": ("POST", SALES, _sale(lines=[_line(sku="S\x00")]), "fulfillment"),
    "sale NUL name": ("POST", SALES, _sale(lines=[_line(name="a\x00b")]), "fulfillment"),
    "sale huge quantity": ("POST", SALES, _sale(lines=[_line(quantity=10**12)]), "fulfillment"),
    "sale zero quantity": ("POST", SALES, _sale(lines=[_line(quantity=0)]), "fulfillment"),
    "sale negative quantity": ("POST", SALES, _sale(lines=[_line(quantity=-1)]), "fulfillment"),
    "sale unknown currency": ("POST", SALES, _sale(currency="XXY"), "fulfillment"),
    "sale naive sold_at": ("POST", SALES, _sale(sold_at="2026-01-01T10:00:00"), "fulfillment"),
    "sale sold_at year 1": (
        "POST",
        SALES,
        _sale(sold_at="0001-01-01T00:00:00+14:00"),
        "fulfillment",
    ),
    "sale sold in the future": (
        "POST",
        SALES,
        _sale(sold_at="9999-12-31T23:59:59Z"),
        "fulfillment",
    ),
    "sale unknown store": ("POST", "/v1/stores/NOPE/sales", _sale(), "fulfillment"),
    "sale NUL store": ("POST", "/v1/stores/A%00B/sales", _sale(), "fulfillment"),
    "sale storefront key": ("POST", SALES, _sale(), "storefront"),
    "batch empty": ("POST", BATCH, {"sales": []}, "fulfillment"),
    "batch 10000": (
        "POST",
        BATCH,
        {"sales": [_sale(receipt_id=f"R-{i}") for i in range(10_000)]},
        "fulfillment",
    ),
    "batch naive sold_at": (
        "POST",
        BATCH,
        {"sales": [_sale(sold_at="2026-01-01T10:00:00")]},
        "fulfillment",
    ),
    "batch NUL receipt": ("POST", BATCH, {"sales": [_sale(receipt_id="\x00")]}, "fulfillment"),
    "transfer huge quantity": (
        "POST",
        "/v1/transfers",
        {
            "from_warehouse": "BER",
            "to_warehouse": STORE,
            "lines": [{"sku": SKU, "quantity": 10**12}],
        },
        "fulfillment",
    ),
    "transfer unknown warehouse": (
        "POST",
        "/v1/transfers",
        {"from_warehouse": "NOPE", "to_warehouse": STORE, "lines": [{"sku": SKU, "quantity": 1}]},
        "fulfillment",
    ),
    "transfer to itself": (
        "POST",
        "/v1/transfers",
        {"from_warehouse": STORE, "to_warehouse": STORE, "lines": [{"sku": SKU, "quantity": 1}]},
        "fulfillment",
    ),
    "transfer NUL reference": (
        "POST",
        "/v1/transfers",
        {
            "from_warehouse": "BER",
            "to_warehouse": STORE,
            "lines": [{"sku": SKU, "quantity": 1}],
            "reference": "\x00",
        },
        "fulfillment",
    ),
    "transfer expected 9999+": (
        "POST",
        "/v1/transfers",
        {
            "from_warehouse": "BER",
            "to_warehouse": STORE,
            "lines": [{"sku": SKU, "quantity": 1}],
            "expected_on": "10000-01-01",
        },
        "fulfillment",
    ),
    # year 9999: the supply it creates would overflow every promise computed from it
    "transfer expected 9999-12-31": (
        "POST",
        "/v1/transfers",
        {
            "from_warehouse": "BER",
            "to_warehouse": STORE,
            "lines": [{"sku": SKU, "quantity": 1}],
            "expected_on": "9999-12-31",
        },
        "fulfillment",
    ),
    "transfer expected year 1": (
        "POST",
        "/v1/transfers",
        {
            "from_warehouse": "BER",
            "to_warehouse": STORE,
            "lines": [{"sku": SKU, "quantity": 1}],
            "expected_on": "0001-01-01",
        },
        "fulfillment",
    ),
    "transfer storefront key": (
        "POST",
        "/v1/transfers",
        {"from_warehouse": "BER", "to_warehouse": STORE, "lines": [{"sku": SKU, "quantity": 1}]},
        "storefront",
    ),
    "transfer bad id": ("POST", "/v1/transfers/not-a-uuid/ship", {}, "fulfillment"),
    "transfers limit 2^70": ("GET", f"/v1/transfers?limit={2**70}", None, "fulfillment"),
    "transfers status bogus": ("GET", "/v1/transfers?status=%00", None, "fulfillment"),
    "supplier NUL name": (
        "POST",
        "/v1/suppliers",
        {"code": "ACME", "name": "A\x00", "lead_time_days": 1},
        "admin",
    ),
    "supplier negative lead": (
        "POST",
        "/v1/suppliers",
        {"code": "ACME", "name": "A", "lead_time_days": -1},
        "admin",
    ),
    "supplier fulfilment key": (
        "POST",
        "/v1/suppliers",
        {"code": "ACME", "name": "A", "lead_time_days": 1},
        "storefront",
    ),
    "po unknown supplier": (
        "POST",
        "/v1/purchase-orders",
        {"supplier": "NOPE", "warehouse": "BER", "lines": [{"sku": SKU, "quantity": 1}]},
        "admin",
    ),
    "po huge quantity": (
        "POST",
        "/v1/purchase-orders",
        {"supplier": "NOPE", "warehouse": "BER", "lines": [{"sku": SKU, "quantity": 10**12}]},
        "admin",
    ),
    "po list supplier NUL": ("GET", "/v1/purchase-orders?supplier=%00", None, "admin"),
    "po list warehouse NUL": ("GET", "/v1/purchase-orders?warehouse=%00", None, "admin"),
    "po bad id": ("GET", "/v1/purchase-orders/12", None, "admin"),
    "suppliers NUL code": ("GET", "/v1/suppliers/A%00", None, "admin"),
    "reorder policy NUL wh": (
        "PUT",
        "/v1/reorder-policies/A%00",
        {"supplier": "ACME"},
        "admin",
    ),
    "reorder policy NUL sku": (
        "PUT",
        "/v1/reorder-policies/BER/A%00",
        {"supplier": "ACME"},
        "admin",
    ),
    "reorder suggestions NUL": ("GET", "/v1/reorder-suggestions?warehouse=%00", None, "admin"),
    "reorder suggestions sku NUL": ("GET", "/v1/reorder-suggestions?sku=%00", None, "admin"),
    "calendar Mars": (
        "PUT",
        "/v1/warehouses/BER/calendar",
        {"timezone": "Mars/Base", "cutoff": "14:00", "handling_days": 1},
        "admin",
    ),
    "calendar NUL tz": (
        "PUT",
        "/v1/warehouses/BER/calendar",
        {"timezone": "Europe/\x00", "cutoff": "14:00", "handling_days": 1},
        "admin",
    ),
    "calendar path tz": (
        "PUT",
        "/v1/warehouses/BER/calendar",
        {"timezone": "../../etc/passwd", "cutoff": "14:00", "handling_days": 1},
        "admin",
    ),
    "calendar 25:00": (
        "PUT",
        "/v1/warehouses/BER/calendar",
        {"timezone": "Europe/Berlin", "cutoff": "25:00", "handling_days": 1},
        "admin",
    ),
    "calendar holiday 9999-12-31": (
        "PUT",
        "/v1/warehouses/BER/calendar",
        {
            "timezone": "Europe/Berlin",
            "cutoff": "14:00",
            "handling_days": 1,
            "holidays": ["9999-12-31"],
        },
        "admin",
    ),
    "calendar no working days": (
        "PUT",
        "/v1/warehouses/BER/calendar",
        {"timezone": "Europe/Berlin", "cutoff": "14:00", "handling_days": 1, "working_days": []},
        "admin",
    ),
    "calendar unknown warehouse": (
        "PUT",
        "/v1/warehouses/NOPE/calendar",
        {"timezone": "Europe/Berlin", "cutoff": "14:00", "handling_days": 1},
        "admin",
    ),
    "transit NUL country": (
        "PUT",
        "/v1/transit-times/D%00",
        {"bands": [{"from_band": 0, "min_days": 1, "max_days": 2}]},
        "admin",
    ),
    "transit min above max": (
        "PUT",
        "/v1/transit-times/DE",
        {"bands": [{"from_band": 0, "min_days": 3, "max_days": 2}]},
        "admin",
    ),
    "transit duplicate bands": (
        "PUT",
        "/v1/transit-times/DE",
        {
            "bands": [
                {"from_band": 0, "min_days": 1, "max_days": 2},
                {"from_band": 0, "min_days": 2, "max_days": 3},
            ]
        },
        "admin",
    ),
    "changes cursor garbage": ("GET", "/v1/inventory/changes?cursor=abc", None, "fulfillment"),
    "changes cursor 2^70": (
        "GET",
        f"/v1/inventory/changes?cursor={2**70}.{2**70}",
        None,
        "fulfillment",
    ),
    "changes cursor negative": ("GET", "/v1/inventory/changes?cursor=-1.-1", None, "fulfillment"),
    "changes cursor NUL": ("GET", "/v1/inventory/changes?cursor=1.%00", None, "fulfillment"),
    "changes cursor unicode digits": (
        "GET",
        "/v1/inventory/changes?cursor=%D9%A1.1",
        None,
        "fulfillment",
    ),
    "changes channel NUL": ("GET", "/v1/inventory/changes?channel=%00", None, "fulfillment"),
    "changes other channel": ("GET", "/v1/inventory/changes?channel=app", None, "storefront_web"),
    "ledger after_seq -1": ("GET", "/v1/inventory/ledger?after_seq=-1", None, "fulfillment"),
    "ledger after_seq 2^70": (
        "GET",
        f"/v1/inventory/ledger?after_seq={2**70}",
        None,
        "fulfillment",
    ),
    "verify from 2^70": (
        "GET",
        f"/v1/inventory/ledger/verify?from_seq={2**70}",
        None,
        "fulfillment",
    ),
    "levels as_of no offset": (
        "GET",
        "/v1/inventory/levels?as_of=2026-01-01T00:00:00",
        None,
        "fulfillment",
    ),
    "levels as_of before year 1": (
        "GET",
        "/v1/inventory/levels?as_of=0001-01-01T00:00:00%2B14:00",
        None,
        "fulfillment",
    ),
    "levels as_of year 9999 west": (
        "GET",
        "/v1/inventory/levels?as_of=9999-12-31T23:00:00-14:00",
        None,
        "fulfillment",
    ),
    "levels as_of NUL warehouse": (
        "GET",
        "/v1/inventory/levels?as_of=2026-01-01T00:00:00Z&warehouse=%00",
        None,
        "fulfillment",
    ),
    "levels as_of NUL sku": (
        "GET",
        "/v1/inventory/levels?as_of=2026-01-01T00:00:00Z&sku=A%00",
        None,
        "fulfillment",
    ),
    "levels as_of offset 2^70": (
        "GET",
        f"/v1/inventory/levels?as_of=2026-01-01T00:00:00Z&offset={2**70}",
        None,
        "fulfillment",
    ),
    "changes limit 0": ("GET", "/v1/inventory/changes?limit=0", None, "fulfillment"),
    "changes limit 2^70": ("GET", f"/v1/inventory/changes?limit={2**70}", None, "fulfillment"),
    "pickup collect NUL code": (
        "POST",
        "/v1/pickups/00000000-0000-0000-0000-000000000000/collect",
        {"code": "1\x00"},
        "fulfillment",
    ),
    "levels as_of garbage": ("GET", "/v1/inventory/levels?as_of=yesterday", None, "fulfillment"),
    "pickup bad id": ("GET", "/v1/pickups/123", None, "fulfillment"),
    "policy NUL store": (
        "PUT",
        "/v1/stores/A%00/policy",
        {"pickup_window_hours": 1, "uncollected_action": "cancel"},
        "admin",
    ),
    "policy huge window": (
        "PUT",
        f"/v1/stores/{STORE}/policy",
        {"pickup_window_hours": 10**12, "uncollected_action": "cancel"},
        "admin",
    ),
    "scope key NUL code": (
        "PUT",
        "/v1/api-keys/00000000-0000-0000-0000-000000000000/warehouses",
        {"warehouses": ["A\x00"]},
        "admin",
    ),
}


@pytest.mark.parametrize("name", list(CASES))
async def test_bad_input_is_a_4xx_problem_and_changes_nothing(
    name: str, client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    method, path, body, role = CASES[name]
    before = await _state(engine)
    resp = await client.request(method, path, json=body, headers=auth(keys[role]))
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.text[:500])
    assert resp.headers["content-type"] == "application/problem+json", resp.text[:300]
    assert await _state(engine) == before


@pytest.fixture
async def ids(client: httpx.AsyncClient, keys: dict[str, str]) -> dict[str, str]:
    """A sent purchase order and a shipped transfer to aim bad requests at."""
    admin, staff = auth(keys["admin"]), auth(keys["fulfillment"])
    body = {"code": "ACME", "name": "Acme", "lead_time_days": 7}
    assert (await client.post("/v1/suppliers", json=body, headers=admin)).status_code == 201
    po = {"supplier": "ACME", "warehouse": "BER", "lines": [{"sku": SKU, "quantity": 10}]}
    resp = await client.post("/v1/purchase-orders", json=po, headers=admin)
    po_id = resp.json()["id"]
    assert (
        await client.post(f"/v1/purchase-orders/{po_id}/send", headers=admin)
    ).status_code == 200
    transfer = {
        "from_warehouse": "BER",
        "to_warehouse": STORE,
        "lines": [{"sku": "MUG-01", "quantity": 3}],
    }
    resp = await client.post("/v1/transfers", json=transfer, headers=staff)
    tid = resp.json()["id"]
    assert (
        await client.post(f"/v1/transfers/{tid}/ship", json={}, headers=staff)
    ).status_code == 200
    return {"po": po_id, "transfer": tid}


def _receipt(*lines: tuple[str, int], reference: str = "GRN-1") -> dict[str, Any]:
    return {"reference": reference, "lines": [{"sku": s, "quantity": q} for s, q in lines]}


STATEFUL: dict[str, tuple[str, str, Any, str]] = {
    "po receipt unknown sku": (
        "POST",
        "/v1/purchase-orders/{po}/receipts",
        _receipt(("NOPE", 1)),
        "fulfillment",
    ),
    "po receipt NUL sku": (
        "POST",
        "/v1/purchase-orders/{po}/receipts",
        _receipt(("S\x00", 1)),
        "fulfillment",
    ),
    "po receipt NUL reference": (
        "POST",
        "/v1/purchase-orders/{po}/receipts",
        _receipt((SKU, 1), reference="G\x00"),
        "fulfillment",
    ),
    "po receipt huge": (
        "POST",
        "/v1/purchase-orders/{po}/receipts",
        _receipt((SKU, 10**12)),
        "fulfillment",
    ),
    "po receipt zero": (
        "POST",
        "/v1/purchase-orders/{po}/receipts",
        _receipt((SKU, 0)),
        "fulfillment",
    ),
    "po receipt negative": (
        "POST",
        "/v1/purchase-orders/{po}/receipts",
        _receipt((SKU, -5)),
        "fulfillment",
    ),
    "po receipt storefront": (
        "POST",
        "/v1/purchase-orders/{po}/receipts",
        _receipt((SKU, 1)),
        "storefront",
    ),
    "po send again": ("POST", "/v1/purchase-orders/{po}/send", None, "admin"),
    "po send 9999": (
        "POST",
        "/v1/purchase-orders/{po}/send",
        {"expected_on": "9999-12-31"},
        "admin",
    ),
    "transfer receive unknown sku": (
        "POST",
        "/v1/transfers/{transfer}/receive",
        {"lines": [{"sku": "NOPE-X", "quantity": 1}]},
        "fulfillment",
    ),
    "transfer receive NUL sku": (
        "POST",
        "/v1/transfers/{transfer}/receive",
        {"lines": [{"sku": "M\x00", "quantity": 1}]},
        "fulfillment",
    ),
    "transfer receive huge": (
        "POST",
        "/v1/transfers/{transfer}/receive",
        {"lines": [{"sku": "MUG-01", "quantity": 10**12}]},
        "fulfillment",
    ),
    "transfer ship again": ("POST", "/v1/transfers/{transfer}/ship", {}, "fulfillment"),
    "transfer ship 10000": (
        "POST",
        "/v1/transfers/{transfer}/ship",
        {"expected_on": "10000-01-01"},
        "fulfillment",
    ),
    "transfer cancel storefront": ("POST", "/v1/transfers/{transfer}/cancel", {}, "storefront"),
}


@pytest.mark.parametrize("name", list(STATEFUL))
async def test_bad_moves_on_real_resources_are_4xx_and_change_nothing(
    name: str,
    client: httpx.AsyncClient,
    keys: dict[str, str],
    engine: AsyncEngine,
    ids: dict[str, str],
) -> None:
    method, path, body, role = STATEFUL[name]
    before = await _state(engine)
    resp = await client.request(method, path.format(**ids), json=body, headers=auth(keys[role]))
    assert 400 <= resp.status_code < 500, (resp.status_code, resp.text[:500])
    assert resp.headers["content-type"] == "application/problem+json", resp.text[:300]
    assert await _state(engine) == before


async def test_shipping_a_transfer_for_year_9999_is_422_and_changes_nothing(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    """Shipped, a transfer is incoming supply at its destination on ``expected_on``; a date
    past 9000 made every delivery promise from that supply (``POST /v1/routing/preview`` of a
    backordered line) overflow Python's dates: a 500."""
    staff = auth(keys["fulfillment"])
    transfer = {
        "from_warehouse": STORE,
        "to_warehouse": "BER",
        "lines": [{"sku": SKU, "quantity": 5}],
    }
    resp = await client.post("/v1/transfers", json=transfer, headers=staff)
    assert resp.status_code == 201, resp.text
    ship = f"/v1/transfers/{resp.json()['id']}/ship"
    before = await _state(engine)
    for day in ("9999-12-31", "0001-01-01"):
        resp = await client.post(ship, json={"expected_on": day}, headers=staff)
        assert resp.status_code == 422, resp.text[:300]
        assert resp.headers["content-type"] == "application/problem+json"
    assert await _state(engine) == before
