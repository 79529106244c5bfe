"""Every figure of every report, checked against hand-computed values (see data.py)."""

from __future__ import annotations

import csv
import io
import random
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from oms.reports.service import (
    Pruning,
    Sampling,
    Sort,
    Window,
    customer_bounds,
    fulfilment,
    top_customers,
    top_customers_within,
)
from oms.shared.clock import utcnow
from tests.helpers import assert_stock_invariants, auth, order_body, stock
from tests.reports.data import W_FROM, W_TO, Line, Spec, load, t

W = {"from": W_FROM, "to": W_TO}


async def report(
    client: httpx.AsyncClient, keys: dict[str, str], name: str, **params: Any
) -> dict[str, Any]:
    resp = await client.get(f"/v1/reports/{name}", params=params, headers=auth(keys["admin"]))
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def _at(instant: str) -> datetime:
    return datetime.fromisoformat(instant)


def pick(items: list[dict[str, Any]], *fields: str) -> list[tuple[Any, ...]]:
    return [tuple(item[f] for f in fields) for item in items]


# ---- top lists ----------------------------------------------------------------------------


async def test_top_products_by_revenue_per_currency(
    client: httpx.AsyncClient, keys: dict[str, str], dataset: dict[str, Spec]
) -> None:
    body = await report(client, keys, "top-products", **W)
    assert body["from"] == "2025-03-01T00:00:00Z"
    assert body["to"] == "2025-03-04T00:00:00Z"
    assert body["sort"] == "revenue"
    # EUR sales O1, O2, O5 (O4 cancelled): A-1 2+1 units 2000+1000; D-4 3 units 600;
    # B-2 1 unit 500 and C-3 2 units 500 tie on revenue -> by SKU. USD: O3 A-1 3 x 1100.
    assert pick(body["items"], "currency", "rank", "sku", "units", "orders", "revenue") == [
        ("EUR", 1, "A-1", 3, 2, 3000),
        ("EUR", 2, "D-4", 3, 1, 600),
        ("EUR", 3, "B-2", 1, 1, 500),
        ("EUR", 4, "C-3", 2, 1, 500),
        ("USD", 1, "A-1", 3, 1, 3300),
    ]
    assert body["items"][0]["name"] == "Product A-1"


async def test_top_products_by_units_with_limit(
    client: httpx.AsyncClient, keys: dict[str, str], dataset: dict[str, Spec]
) -> None:
    body = await report(client, keys, "top-products", **W, sort="units", limit=2)
    assert pick(body["items"], "currency", "rank", "sku", "units") == [
        ("EUR", 1, "A-1", 3),
        ("EUR", 2, "D-4", 3),
        ("USD", 1, "A-1", 3),
    ]


async def test_top_products_filtered_by_channel_and_currency(
    client: httpx.AsyncClient, keys: dict[str, str], dataset: dict[str, Spec]
) -> None:
    body = await report(client, keys, "top-products", **W, channel="web", currency="eur")
    assert (body["channel"], body["currency"]) == ("web", "EUR")
    assert pick(body["items"], "sku", "units", "revenue") == [
        ("A-1", 3, 3000),
        ("B-2", 1, 500),
        ("C-3", 2, 500),
    ]
    usd_web = await report(client, keys, "top-products", **W, channel="web", currency="USD")
    assert usd_web["items"] == []


async def test_top_customers(
    client: httpx.AsyncClient, keys: dict[str, str], dataset: dict[str, Spec]
) -> None:
    body = await report(client, keys, "top-customers", **W)
    assert pick(
        body["items"], "currency", "rank", "customer_id", "customer_email", "orders", "revenue"
    ) == [
        ("EUR", 1, "cus_1", "ada@example.com", 2, 3000 + 1500),
        ("EUR", 2, None, "guest@example.com", 1, 1000),
        ("USD", 1, "cus_2", "bob@example.com", 1, 4000),
    ]
    first = body["items"][0]
    assert first["first_order_at"] == "2025-03-01T10:00:00Z"
    assert first["last_order_at"] == "2025-03-01T23:30:00Z"
    guest, bob = body["items"][1], body["items"][2]  # a guest's dates come by email
    assert (guest["first_order_at"], guest["last_order_at"]) == (
        "2025-03-03T09:00:00Z",
        "2025-03-03T09:00:00Z",
    )
    assert (bob["first_order_at"], bob["last_order_at"]) == (
        "2025-03-02T12:00:00Z",
        "2025-03-02T12:00:00Z",
    )
    by_orders = await report(client, keys, "top-customers", **W, sort="orders", limit=1)
    assert pick(by_orders["items"], "currency", "customer_id", "orders") == [
        ("EUR", "cus_1", 2),
        ("USD", "cus_2", 1),
    ]


async def test_top_countries_and_channels(
    client: httpx.AsyncClient, keys: dict[str, str], dataset: dict[str, Spec]
) -> None:
    countries = await report(client, keys, "top-countries", **W)
    # FR had only the cancelled O4
    assert pick(countries["items"], "currency", "rank", "country", "orders", "revenue") == [
        ("EUR", 1, "DE", 2, 4500),
        ("EUR", 2, "AT", 1, 1000),
        ("USD", 1, "US", 1, 4000),
    ]
    channels = await report(client, keys, "top-channels", **W, sort="orders")
    assert pick(channels["items"], "currency", "rank", "channel", "orders", "revenue") == [
        ("EUR", 1, "web", 2, 4500),
        ("EUR", 2, "amazon", 1, 1000),
        ("USD", 1, "app", 1, 4000),
    ]


async def test_the_window_is_inclusive_exclusive(
    client: httpx.AsyncClient, keys: dict[str, str], dataset: dict[str, Spec]
) -> None:
    # O6 was placed exactly at 2025-03-04T00:00Z: outside W, inside the next window
    body = await report(client, keys, "top-channels", **{"from": W_TO, "to": "2025-03-05T00:00Z"})
    assert pick(body["items"], "currency", "channel", "orders", "revenue") == [
        ("EUR", "web", 1, 1000)
    ]


# ---- per day and time zones ---------------------------------------------------------------


async def test_daily_in_utc(
    client: httpx.AsyncClient, keys: dict[str, str], dataset: dict[str, Spec]
) -> None:
    body = await report(client, keys, "daily", **W)
    assert body["tz"] == "UTC"
    assert pick(body["items"], "currency", "day", "orders", "cancelled", "revenue") == [
        ("EUR", "2025-03-01", 2, 0, 4500),  # O1, O2 (23:30)
        ("EUR", "2025-03-02", 0, 1, 0),  # O4 cancelled
        ("EUR", "2025-03-03", 1, 0, 1000),  # O5
        ("USD", "2025-03-01", 0, 0, 0),
        ("USD", "2025-03-02", 1, 0, 4000),  # O3
        ("USD", "2025-03-03", 0, 0, 0),
    ]


async def test_daily_in_berlin_moves_the_late_order_to_the_next_day(
    client: httpx.AsyncClient, keys: dict[str, str], dataset: dict[str, Spec]
) -> None:
    # same UTC window; 00:00Z is 01:00 in Berlin, so the local days run 03-01 .. 03-04
    body = await report(client, keys, "daily", **W, tz="Europe/Berlin")
    assert pick(body["items"], "currency", "day", "orders", "cancelled", "revenue") == [
        ("EUR", "2025-03-01", 1, 0, 3000),  # O1 only
        ("EUR", "2025-03-02", 1, 1, 1500),  # O2 at 00:30 local, O4 cancelled
        ("EUR", "2025-03-03", 1, 0, 1000),
        ("EUR", "2025-03-04", 0, 0, 0),  # 00:00-01:00 local, inside the window, empty
        ("USD", "2025-03-01", 0, 0, 0),
        ("USD", "2025-03-02", 1, 0, 4000),
        ("USD", "2025-03-03", 0, 0, 0),
        ("USD", "2025-03-04", 0, 0, 0),
    ]


async def test_daily_with_local_bounds(
    client: httpx.AsyncClient, keys: dict[str, str], dataset: dict[str, Spec]
) -> None:
    # bounds without an offset are read in tz: [02-28 23:00Z, 03-03 23:00Z) takes in O7
    body = await report(
        client,
        keys,
        "daily",
        **{"from": "2025-03-01T00:00:00", "to": "2025-03-04T00:00:00", "tz": "Europe/Berlin"},
    )
    assert body["from"] == "2025-02-28T23:00:00Z"
    assert body["to"] == "2025-03-03T23:00:00Z"
    assert pick(body["items"], "currency", "day", "orders", "cancelled", "revenue") == [
        ("EUR", "2025-03-01", 1, 0, 3000),
        ("EUR", "2025-03-02", 1, 1, 1500),
        ("EUR", "2025-03-03", 1, 0, 1000),
        ("GBP", "2025-03-01", 1, 0, 900),  # O7: 02-28 23:30Z is 03-01 00:30 in Berlin
        ("GBP", "2025-03-02", 0, 0, 0),
        ("GBP", "2025-03-03", 0, 0, 0),
        ("USD", "2025-03-01", 0, 0, 0),
        ("USD", "2025-03-02", 1, 0, 4000),
        ("USD", "2025-03-03", 0, 0, 0),
    ]


async def test_daily_west_of_utc_starts_a_day_earlier(
    client: httpx.AsyncClient, keys: dict[str, str], dataset: dict[str, Spec]
) -> None:
    body = await report(client, keys, "daily", **W, tz="America/New_York", currency="EUR")
    assert pick(body["items"], "day", "orders", "cancelled", "revenue") == [
        ("2025-02-28", 0, 0, 0),  # 19:00-24:00 local
        ("2025-03-01", 2, 0, 4500),  # O1 05:00, O2 18:30 local
        ("2025-03-02", 0, 1, 0),  # O4 03:00 local
        ("2025-03-03", 1, 0, 1000),  # O5 04:00 local
    ]


async def test_daily_across_a_daylight_saving_change(
    client: httpx.AsyncClient, keys: dict[str, str], dataset: dict[str, Spec]
) -> None:
    # Berlin moved to summer time on 2025-03-30: that local day has 23 hours
    body = await report(
        client,
        keys,
        "daily",
        **{"from": "2025-03-29T00:00:00", "to": "2025-04-01T00:00:00", "tz": "Europe/Berlin"},
    )
    assert body["from"] == "2025-03-28T23:00:00Z"
    assert body["to"] == "2025-03-31T22:00:00Z"
    assert body["items"] == []  # no orders: no rows


# ---- fulfilment ---------------------------------------------------------------------------


async def test_fulfilment_kpis(
    client: httpx.AsyncClient, keys: dict[str, str], dataset: dict[str, Spec]
) -> None:
    body = await report(client, keys, "fulfilment", **W, late_after_hours=48)
    assert body["orders_placed"] == 5
    assert body["orders_cancelled"] == 1
    assert body["cancellation_rate"] == 0.2
    # paid after 1 h, 2 h, 3 h, 30 min: sorted 1800, 3600, 7200, 10800 s
    # median = (3600 + 7200) / 2; p90 at rank 0.9 * 3 = 2.7: 7200 + 0.7 * 3600
    assert body["time_to_paid"] == {"orders": 4, "median_s": 5400.0, "p90_s": 9720.0}
    # shipped after 25 h, 50 h, 5 h: 18000, 90000, 180000; p90 at 1.8: 90000 + 0.8 * 90000
    assert body["time_to_shipped"] == {"orders": 3, "median_s": 90000.0, "p90_s": 162000.0}
    # delivered after 73 h and 29 h: 104400, 262800; p90 at 0.9: 104400 + 0.9 * 158400
    assert body["time_to_delivered"] == {"orders": 2, "median_s": 183600.0, "p90_s": 246960.0}
    # live shipments: O1 1, O2 2, O3 1, O5 1 (O4's was cancelled)
    assert body["split"] == {"orders_with_shipments": 4, "orders_split": 1, "share": 0.25}
    # ordered units of the sales: 3 + 3 + 3 + 3; shipped: O1 3, O2 2 (1 backordered), O3 3
    assert body["fill"] == {
        "units_ordered": 12,
        "units_shipped": 8,
        "rate": 0.666667,
        "units_ordered_of_shipped_orders": 9,
        "units_shipped_of_shipped_orders": 8,
        "rate_of_shipped_orders": 0.888889,
    }
    # returned (not rejected): O3 3 x A-1, O1 1 x B-2; per unit shipped
    assert body["returns"] == {"orders_with_returns": 2, "units_returned": 4, "rate": 0.5}
    # open: O5 (paid, never shipped); shipped late: O2 after 50 h; of 4 sales
    assert body["late"] == {
        "after_hours": 48.0,
        "open": 1,
        "shipped_late": 1,
        "total": 2,
        "rate": 0.5,
    }


async def test_fulfilment_late_threshold_and_filters(
    client: httpx.AsyncClient, keys: dict[str, str], dataset: dict[str, Spec]
) -> None:
    body = await report(client, keys, "fulfilment", **W, late_after_hours=24)
    # O1 shipped after 25 h and O2 after 50 h are late at 24 h; O3 (5 h) is not
    assert body["late"]["shipped_late"] == 2
    assert body["late"]["total"] == 3
    usd = await report(client, keys, "fulfilment", **W, currency="USD")
    assert usd["orders_placed"] == 1
    assert usd["cancellation_rate"] == 0.0
    assert usd["time_to_paid"] == {"orders": 1, "median_s": 10800.0, "p90_s": 10800.0}
    assert usd["fill"]["rate"] == 1.0
    assert usd["returns"] == {"orders_with_returns": 1, "units_returned": 3, "rate": 1.0}
    assert usd["split"]["share"] == 0.0


async def test_empty_window_gives_empty_lists_and_null_ratios(
    client: httpx.AsyncClient, keys: dict[str, str], dataset: dict[str, Spec]
) -> None:
    empty = {"from": "2020-01-01T00:00:00Z", "to": "2020-02-01T00:00:00Z"}
    for name in (
        "top-products",
        "top-customers",
        "top-countries",
        "top-channels",
        "daily",
        "returns/by-product",
        "returns/by-reason",
        "late-orders",
    ):
        assert (await report(client, keys, name, **empty))["items"] == [], name
    body = await report(client, keys, "fulfilment", **empty)
    assert body["orders_placed"] == 0
    assert body["cancellation_rate"] is None
    for step in ("time_to_paid", "time_to_shipped", "time_to_delivered"):
        assert body[step] == {"orders": 0, "median_s": None, "p90_s": None}
    assert body["split"] == {"orders_with_shipments": 0, "orders_split": 0, "share": None}
    assert body["fill"]["rate"] is None
    assert body["fill"]["rate_of_shipped_orders"] is None
    assert body["returns"] == {"orders_with_returns": 0, "units_returned": 0, "rate": None}
    assert body["late"]["total"] == 0
    assert body["late"]["rate"] is None


async def test_empty_database(client: httpx.AsyncClient, keys: dict[str, str]) -> None:
    body = await report(client, keys, "fulfilment")
    assert body["orders_placed"] == 0
    assert (await report(client, keys, "daily"))["items"] == []


# ---- returns and late orders --------------------------------------------------------------


async def test_returns_by_product_and_reason(
    client: httpx.AsyncClient, keys: dict[str, str], dataset: dict[str, Spec]
) -> None:
    products = await report(client, keys, "returns/by-product", **W)
    # A-1 shipped: O1 2, O2 1, O3 3 = 6, returned 3 (O3); B-2 shipped 1 (O1), returned 1
    assert pick(
        products["items"],
        "rank",
        "sku",
        "units_shipped",
        "units_returned",
        "orders_with_returns",
        "return_rate",
    ) == [(1, "A-1", 6, 3, 1, 0.5), (2, "B-2", 1, 1, 1, 1.0)]
    reasons = await report(client, keys, "returns/by-reason", **W)
    assert pick(reasons["items"], "reason", "units_returned", "orders_with_returns", "share") == [
        ("size_or_fit", 3, 1, 0.75),
        ("damaged", 1, 1, 0.25),
    ]
    eur = await report(client, keys, "returns/by-product", **W, currency="EUR", limit=1)
    assert pick(eur["items"], "sku", "units_shipped", "units_returned") == [("B-2", 1, 1)]


async def test_late_orders_oldest_first(
    client: httpx.AsyncClient, keys: dict[str, str], dataset: dict[str, Spec]
) -> None:
    body = await report(client, keys, "late-orders", **W)
    assert [item["id"] for item in body["items"]] == [str(dataset["O5"].id)]
    item = body["items"][0]
    assert (item["status"], item["currency"], item["total"], item["country"]) == (
        "paid",
        "EUR",
        1000,
        "AT",
    )
    assert item["age_hours"] > 48
    assert item["paid_at"] == "2025-03-03T09:30:00Z"
    wide = await report(client, keys, "late-orders", **{"from": "2025-01-01T00:00:00Z", "to": W_TO})
    assert [i["id"] for i in wide["items"]] == [str(dataset["O7"].id), str(dataset["O5"].id)]


# ---- CSV ----------------------------------------------------------------------------------


def _csv(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def _as_text(value: Any) -> str:
    return "" if value is None else str(value)


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("top-products", {}),
        ("top-customers", {}),
        ("top-countries", {}),
        ("top-channels", {}),
        ("daily", {"tz": "Europe/Berlin"}),
        ("returns/by-product", {}),
        ("returns/by-reason", {}),
        ("late-orders", {}),
    ],
)
async def test_csv_matches_json(
    name: str,
    params: dict[str, str],
    client: httpx.AsyncClient,
    keys: dict[str, str],
    dataset: dict[str, Spec],
) -> None:
    body = await report(client, keys, name, **W, **params)
    resp = await client.get(
        f"/v1/reports/{name}", params=W | params | {"format": "csv"}, headers=auth(keys["admin"])
    )
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "text/csv; charset=utf-8"
    assert resp.headers["content-disposition"].startswith("attachment; filename=")
    rows = _csv(resp.text)
    assert body["items"], "the data set should give rows"
    assert len(rows) == len(body["items"])
    header = resp.text.splitlines()[0].split(",")
    assert header == list(body["items"][0])
    for row, item in zip(rows, body["items"], strict=True):
        if name == "late-orders":  # the age grows between the two calls
            row.pop("age_hours"), item.pop("age_hours")
        assert row == {k: _as_text(v) for k, v in item.items()}


async def test_csv_by_accept_header_and_empty_csv_has_a_header(
    client: httpx.AsyncClient, keys: dict[str, str], dataset: dict[str, Spec]
) -> None:
    resp = await client.get(
        "/v1/reports/top-countries",
        params={"from": "2020-01-01T00:00:00Z", "to": "2020-01-02T00:00:00Z"},
        headers=auth(keys["admin"]) | {"Accept": "text/csv"},
    )
    assert resp.status_code == 200
    assert resp.text == "currency,rank,country,orders,revenue\r\n"
    as_json = await client.get(
        "/v1/reports/top-countries",
        params={"format": "json"},
        headers=auth(keys["admin"]) | {"Accept": "text/csv"},
    )
    assert as_json.headers["content-type"] == "application/json"


async def test_fulfilment_csv_is_one_flat_row(
    client: httpx.AsyncClient, keys: dict[str, str], dataset: dict[str, Spec]
) -> None:
    body = await report(client, keys, "fulfilment", **W)
    resp = await client.get(
        "/v1/reports/fulfilment", params=W | {"format": "csv"}, headers=auth(keys["admin"])
    )
    (row,) = _csv(resp.text)
    assert row["orders_placed"] == "5"
    assert row["from"] == "2025-03-01T00:00:00Z"
    assert row["time_to_paid_median_s"] == "5400.0"
    assert row["fill_rate"] == "0.666667"
    assert row["late_shipped_late"] == "1"
    assert row["split_share"] == str(body["split"]["share"])
    assert len(row) == 5 + 2 + 1 + 3 * 3 + 3 + 6 + 3 + 5  # every figure, flattened


# ---- access and bad input -----------------------------------------------------------------


async def test_only_admins(client: httpx.AsyncClient, keys: dict[str, str]) -> None:
    for role in ("storefront", "fulfillment", "connector"):
        resp = await client.get("/v1/reports/daily", headers=auth(keys[role]))
        assert resp.status_code == 403, role
        assert resp.json()["code"] == "role_not_allowed"
    assert (await client.get("/v1/reports/fulfilment")).status_code == 401


BAD = {
    "unknown time zone": {"tz": "Mars/Olympus_Mons"},
    "path-like time zone": {"tz": "../../etc/passwd"},
    "from after to": {"from": "2025-03-04T00:00:00Z", "to": "2025-03-01T00:00:00Z"},
    "empty range": {"from": W_FROM, "to": W_FROM},
    "more than 5 years": {"from": "2019-01-01T00:00:00Z", "to": "2025-01-01T00:00:00Z"},
    "not a date": {"from": "yesterday"},
    "limit zero": {"limit": "0"},
    "limit too big": {"limit": "1001"},
    "unknown currency": {"currency": "XXY"},
    "bad channel": {"channel": "Web Shop"},
    "unknown format": {"format": "xml"},
    "unknown sort": {"sort": "margin"},
}


@pytest.mark.parametrize("case", list(BAD))
async def test_bad_input_is_a_422_problem(
    case: str, client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    resp = await client.get(
        "/v1/reports/top-products", params=BAD[case], headers=auth(keys["admin"])
    )
    assert resp.status_code == 422, resp.text
    assert resp.headers["content-type"] == "application/problem+json"
    problem = resp.json()
    assert problem["code"] == "validation_error"
    assert problem["errors"][0]["field"].startswith("query.")


async def test_late_after_hours_is_checked(client: httpx.AsyncClient, keys: dict[str, str]) -> None:
    for value in ("0", "8761", "soon"):
        resp = await client.get(
            "/v1/reports/fulfilment",
            params={"late_after_hours": value},
            headers=auth(keys["admin"]),
        )
        assert resp.status_code == 422, value


async def test_fulfilment_counts_follow_placement_rerouting_shipping_and_cancellation(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """The split share and fill rate read counts kept on the order row (migration 0008): the
    API's placement, re-routing, shipping and cancellation must keep them equal to the lines,
    consumed allocations and live shipments they stand for."""
    await stock(sessionmaker, "BER", {"TSHIRT-RED-M": 20})
    await stock(sessionmaker, "AMS", {"MUG-01": 20}, country="NL")
    admin = auth(keys["admin"])
    shirts_only = [{"sku": "TSHIRT-RED-M", "quantity": 2, "unit_price": 1999, "tax_rate_bps": 0}]
    placed = {}
    for key, body in (
        ("split", order_body()),  # shirts from BER, the mug from AMS: two shipments
        ("rerouted", order_body(lines=shirts_only)),
        ("cancelled", order_body(lines=shirts_only)),
    ):
        resp = await client.post("/v1/orders", json=body, headers=admin)
        assert resp.status_code == 201, resp.text
        placed[key] = resp.json()
    assert len(placed["split"]["shipments"]) == 2
    resp = await client.post(
        f"/v1/orders/{placed['rerouted']['id']}/reroute", json={}, headers=admin
    )
    assert resp.status_code == 200, resp.text
    resp = await client.post(
        f"/v1/orders/{placed['cancelled']['id']}/transitions",
        json={"to": "cancelled"},
        headers=admin,
    )
    assert resp.status_code == 200, resp.text
    split_id = placed["split"]["id"]
    resp = await client.post(
        f"/v1/orders/{split_id}/transitions", json={"to": "paid"}, headers=admin
    )
    assert resp.status_code == 200, resp.text
    ber = next(s for s in placed["split"]["shipments"] if s["warehouse"] == "BER")
    for step in (
        {"to": "picked"},
        {"to": "packed"},
        {"to": "shipped", "carrier": "DHL", "tracking_number": "JJD0001"},
    ):
        resp = await client.post(f"/v1/shipments/{ber['id']}/transitions", json=step, headers=admin)
        assert resp.status_code == 200, resp.text
    await assert_stock_invariants(engine)  # the counts included
    async with engine.connect() as conn:
        rows = await conn.execute(
            text("SELECT id, units_ordered, units_shipped, live_shipments FROM orders")
        )
        counts = {str(r[0]): tuple(r[1:]) for r in rows}
    assert counts == {
        split_id: (3, 2, 2),  # 2 shirts shipped, the mug's parcel not yet
        placed["rerouted"]["id"]: (2, 0, 1),  # old shipment cancelled, a new one made
        placed["cancelled"]["id"]: (2, 0, 0),
    }
    kpis = await report(client, keys, "fulfilment")
    assert kpis["split"] == {"orders_with_shipments": 2, "orders_split": 1, "share": 0.5}
    assert kpis["fill"] == {
        "units_ordered": 5,  # the cancelled order is not a sale
        "units_shipped": 2,
        "rate": 0.4,
        "units_ordered_of_shipped_orders": 0,  # no order has shipped in full yet
        "units_shipped_of_shipped_orders": 0,
        "rate_of_shipped_orders": None,
    }


async def test_an_order_returned_without_a_return_record_counts_its_shipped_units(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    """The plain admin transition delivered -> returned, with no RMA: reason `unspecified`."""
    specs = [
        Spec("X1", t(1, 10, month=4), "EUR", "web", "DE", ("c", "c@example.com"), "returned",
             [Line("A-1", 2, 100), Line("B-2", 3, 100, backordered=1)],
             paid=timedelta(hours=1), shipped=timedelta(hours=2), delivered=timedelta(hours=3)),
        Spec("X2", t(1, 11, month=4), "EUR", "web", "DE", ("c", "c@example.com"), "returned",
             [Line("A-1", 1, 100)],
             paid=timedelta(hours=1), shipped=timedelta(hours=2), delivered=timedelta(hours=3)),
    ]  # fmt: skip
    # X2 has a (received) return record: only its lines count, with their reason
    await load(engine, specs=specs, returns=[("X2", "received", [("A-1", 1, "defective")])])
    window = {"from": "2025-04-01T00:00:00Z", "to": "2025-04-02T00:00:00Z"}
    reasons = await report(client, keys, "returns/by-reason", **window)
    assert pick(reasons["items"], "reason", "units_returned", "orders_with_returns") == [
        ("unspecified", 4, 1),  # X1: 2 x A-1 and the 2 B-2 that shipped
        ("defective", 1, 1),
    ]
    products = await report(client, keys, "returns/by-product", **window)
    assert pick(products["items"], "sku", "units_shipped", "units_returned", "return_rate") == [
        ("A-1", 3, 3, 1.0),
        ("B-2", 2, 2, 1.0),
    ]
    kpis = await report(client, keys, "fulfilment", **window)
    assert kpis["returns"] == {"orders_with_returns": 2, "units_returned": 5, "rate": 1.0}


@pytest.mark.parametrize(
    ("accept", "csv_expected"),
    [
        ("text/csv", True),
        ("text/csv;q=0.9, application/json;q=0.5", True),
        ("application/json, text/csv;q=0.1", False),
        ("*/*", False),
        ("text/html,application/xhtml+xml,*/*;q=0.8", False),
        ("text/*", True),
    ],
)
async def test_accept_header_negotiation(
    accept: str, csv_expected: bool, client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    resp = await client.get(
        "/v1/reports/top-channels", headers=auth(keys["admin"]) | {"Accept": accept}
    )
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/csv") is csv_expected


async def test_orders_placed_through_the_api_count_in_the_line_reports(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """The product figures read the lines by their copy of the order's placement time, channel
    and currency (migration 0007): what the placement path writes must match the order."""
    await stock(sessionmaker, "BER", {"TSHIRT-RED-M": 50, "MUG-01": 50})
    placed = []
    for channel, currency in (("web", "EUR"), ("app", "EUR"), ("web", "USD")):
        resp = await client.post(
            "/v1/orders",
            json=order_body(channel=channel, currency=currency),
            headers=auth(keys["admin"]),
        )
        assert resp.status_code == 201, resp.text
        placed.append(resp.json())
    cancelled = placed[1]
    resp = await client.post(
        f"/v1/orders/{cancelled['id']}/transitions",
        json={"to": "cancelled", "reason": "customer changed their mind"},
        headers=auth(keys["admin"]),
    )
    assert resp.status_code == 200, resp.text
    async with engine.connect() as conn:
        mismatched = await conn.scalar(
            text(
                "SELECT count(*) FROM order_lines l JOIN orders o ON o.id = l.order_id "
                "WHERE (l.placed_at, l.channel, l.currency) "
                "IS DISTINCT FROM (o.created_at, o.channel, o.currency)"
            )
        )
    assert mismatched == 0
    top = await report(client, keys, "top-products", sort="units")  # the last 30 days
    # the cancelled order (app, EUR) is not a sale: one order per currency remains
    assert pick(top["items"], "currency", "sku", "units", "revenue") == [
        ("EUR", "TSHIRT-RED-M", 2, 4758),
        ("EUR", "MUG-01", 1, 910),
        ("USD", "TSHIRT-RED-M", 2, 4758),
        ("USD", "MUG-01", 1, 910),
    ]
    app_only = await report(client, keys, "top-products", channel="app")
    assert app_only["items"] == []
    kpis = await report(client, keys, "fulfilment")
    assert kpis["fill"]["units_ordered"] == 6  # 3 units in each of the two sales
    assert kpis["fill"]["units_ordered_of_shipped_orders"] == 0


def _percentile_cont(values: list[float], fraction: float) -> float:
    """Postgres' percentile_cont, by hand: interpolate between the two neighbouring ranks."""
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (position - low) * (ordered[high] - ordered[low])


async def _many_durations(engine: AsyncEngine) -> dict[str, list[float]]:
    """600 orders in May 2025 with seeded random times to payment, shipping and delivery."""
    rng = random.Random(7)
    specs = []
    for i in range(600):
        paid = timedelta(seconds=rng.randint(60, 20_000))
        shipped = paid + timedelta(seconds=rng.randint(600, 300_000)) if i % 10 else None
        delivered = shipped + timedelta(seconds=rng.randint(3600, 400_000)) if shipped else None
        status = "delivered" if delivered else "paid"
        specs.append(
            Spec(f"P{i}", t(1 + i % 28, i % 24, i % 60, month=5), "EUR", "web", "DE",
                 (f"cus_{i}", f"c{i}@example.com"), status, [Line("A-1", 1, 100)],
                 paid=paid, shipped=shipped, delivered=delivered)
        )  # fmt: skip
    await load(engine, specs=specs, returns=[])
    return {
        "time_to_paid": [s.paid.total_seconds() for s in specs if s.paid],
        "time_to_shipped": [s.shipped.total_seconds() for s in specs if s.shipped],
        "time_to_delivered": [s.delivered.total_seconds() for s in specs if s.delivered],
    }


@contextmanager
def _recorded_sql(engine: AsyncEngine) -> Iterator[list[str]]:
    """The text of every statement sent on the engine's connections meanwhile (which path ran):
    an event listener on the engine, not a patch of the session."""
    calls: list[str] = []

    def record(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        calls.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        yield calls
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)


MAY = {"from": "2025-05-01T00:00:00Z", "to": "2025-06-01T00:00:00Z"}


SAMPLINGS = {
    "one exact sort": None,  # production's: ~19 of the 600 orders sampled, too few to bracket
    "sample brackets": Sampling(mask=3, min_sample=50),  # ~1 in 4 orders: ~150 sampled
    "missed brackets": Sampling(mask=3, min_sample=50, sigmas=-3.0),  # away from the percentiles
}


@pytest.mark.parametrize("path", list(SAMPLINGS))
async def test_fulfilment_percentiles_are_exact_whichever_way_they_are_found(
    path: str,
    client: httpx.AsyncClient,
    keys: dict[str, str],
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """Large windows bracket each percentile with a sample and read off the exact value; a
    bracket the sample got wrong falls back to the sort. All three give percentile_cont's
    figures (checked by hand here), and so does the API (with production's sampling)."""
    durations = await _many_durations(engine)
    window = Window(start=_at(MAY["from"]), end=_at(MAY["to"]))
    with _recorded_sql(engine) as calls:
        async with sessionmaker() as session, session.begin():
            kpis = await fulfilment(
                session,
                window=window,
                late_after=timedelta(hours=48),
                as_of=utcnow(),
                sampling=SAMPLINGS[path],
            )
    sorted_here = any("percentile_cont" in c for c in calls)
    assert sorted_here is (path != "sample brackets")
    api = await report(client, keys, "fulfilment", **MAY)
    for figure, values in durations.items():
        for found in (kpis, api):
            assert found[figure]["orders"] == len(values)
            assert found[figure]["median_s"] == pytest.approx(
                _percentile_cont(values, 0.5), abs=1e-3
            )
            assert found[figure]["p90_s"] == pytest.approx(_percentile_cont(values, 0.9), abs=1e-3)


APRIL = {"from": "2025-04-01T00:00:00Z", "to": "2025-05-01T00:00:00Z"}


async def _many_customers(engine: AsyncEngine) -> list[Spec]:
    """~400 orders of a few big and many small customers (and guests), in EUR and USD, some
    cancelled; a third placed in March, outside the window but in the customers' totals."""
    rng = random.Random(11)
    specs = []
    for i in range(400):
        who = int(60 * rng.random() ** 3)  # skewed: customer 0 orders most
        customer = (
            (None, f"g{who:03}@example.com")
            if who % 7 == 3
            else (f"cus_{who:03}", f"c{who:03}@example.com")
        )
        month = 3 if i % 3 == 0 else 4
        specs.append(
            Spec(f"C{i}", t(1 + i % 28, i % 24, i % 60, month=month),
                 "USD" if i % 4 == 0 else "EUR", "app" if i % 5 == 0 else "web", "DE", customer,
                 "cancelled" if i % 9 == 0 else "placed",
                 [Line("A-1", 1 + rng.randrange(3), 100 * (1 + rng.randrange(50)))])
        )  # fmt: skip
    await load(engine, specs=specs, returns=[])
    return specs


def _top_customers_by_hand(specs: list[Spec], limit: int, sort: str) -> list[tuple[Any, ...]]:
    sales: dict[tuple[str, str | None, str | None], list[int]] = {}
    for s in specs:
        if s.placed.month == 4 and s.status != "cancelled" and s.channel == "web":
            key = (s.currency, s.customer[0], s.customer[1] if s.customer[0] is None else None)
            figures = sales.setdefault(key, [0, 0])
            figures[0] += 1
            figures[1] += s.total
    rows = []
    for currency in sorted({k[0] for k in sales}):
        ranked = sorted(
            (k for k in sales if k[0] == currency),
            key=lambda k: (
                -sales[k][0 if sort == "orders" else 1],
                k[1] is None,
                k[1] or "",
                k[2] or "",
            ),
        )
        rows += [(c, rank, cid, g, *sales[(c, cid, g)]) for rank, (c, cid, g) in
                 enumerate(ranked[:limit], start=1)]  # fmt: skip
    return rows


async def _top_customers_by(
    session: AsyncSession, path: str, *, sort: Sort, limit: int, currency: str | None = None
) -> list[dict[str, Any]]:
    """April's top customers of channel web, found the way ``path`` says."""
    start, end = _at(APRIL["from"]), _at(APRIL["to"])
    window = Window(start=start, end=end, channel="web", currency=currency)
    if path == "bounded":
        return await top_customers(session, window=window, limit=limit, sort=sort)
    if path == "aggregated":  # no customer may be looked up one by one
        pruning = Pruning(max_candidates=0)
        return await top_customers(session, window=window, limit=limit, sort=sort, pruning=pruning)
    # "bound missed": as if a first-list sale were cancelled between the two statements, the
    # lookup is given bounds above what the customers' sales now reach
    bounds = await customer_bounds(session, window=window, limit=limit, sort=sort)
    missed = {c: None if b is None else b * 100 for c, b in bounds.items()}
    return await top_customers_within(session, window=window, limit=limit, sort=sort, bounds=missed)


CUSTOMER_FIELDS = ("currency", "rank", "customer_id", "customer_email", "orders", "revenue")


@pytest.mark.parametrize("path", ["bounded", "aggregated", "bound missed"])
@pytest.mark.parametrize(("sort", "limit"), [("revenue", 5), ("orders", 3), ("revenue", 60)])
async def test_top_customers_are_exact_whichever_way_they_are_found(
    path: str,
    sort: Sort,
    limit: int,
    client: httpx.AsyncClient,
    keys: dict[str, str],
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    """Top customers look up only the customers whose placed-order totals can reach the list;
    when too many can, or the bound is missing (a list longer than the customers with sales),
    or the list found falls short of the bound, they aggregate the window. Every way gives the
    same, hand-computed list, and so does the API."""
    specs = await _many_customers(engine)
    with _recorded_sql(engine) as calls:
        async with sessionmaker() as session, session.begin():
            rows = await _top_customers_by(session, path, sort=sort, limit=limit)
            usd = await _top_customers_by(session, path, sort=sort, limit=limit, currency="USD")
    expected = _top_customers_by_hand(specs, limit, sort)
    assert len(expected) == 2 * limit if limit < 10 else len(expected) < 2 * limit
    assert (
        pick(rows, *CUSTOMER_FIELDS)
        == [  # fmt: skip
            (c, rank, cid, g or f"c{cid[4:]}@example.com", n, revenue)
            for c, rank, cid, g, n, revenue in expected
        ]
    )
    assert usd == [row for row in rows if row["currency"] == "USD"]
    aggregated = any("GROUP BY o.currency, o.customer_id" in c for c in calls)
    assert aggregated is (path != "bounded" or limit == 60)
    assert any("JOIN customer_order_totals k" in c for c in calls) is (
        path != "aggregated" and limit < 60
    )
    body = await report(client, keys, "top-customers", **APRIL, channel="web", sort=sort,
                        limit=limit)  # fmt: skip
    assert pick(body["items"], *CUSTOMER_FIELDS) == pick(rows, *CUSTOMER_FIELDS)
