"""Delivery promises through the API on real Postgres: warehouse calendars and the transit
table, `POST /v1/routing/preview` promising each parcel and line (cut-offs, working days and
holidays, time zones, transit by country and distance band, backorders from incoming supply),
placement storing `ship_by` / `deliver_by` per shipment, the SLA worker (`shipment.at_risk`,
`shipment.late`, once each, injected clock) and the late-orders report by promise.

The service reads the real clock, so the tests pick their calendars around it: a time zone in
which the local time now is safely before (or after) a cut-off, "weekends" on the next days.
Dates are computed here independently of oms.promises."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from oms.config import Settings
from oms.flows.promises import check_sla
from oms.promises import service as promises_service
from oms.worker import Relay
from tests.helpers import auth, order_body, stock

Keys = dict[str, str]


@pytest.fixture(autouse=True)
def fresh_promise_tables() -> Iterator[None]:
    """Each test starts from its own calendars (the tables are cached per process for 5 s),
    and leaves none cached for the next test module's (whose parcels would be promised from
    calendars its database no longer has)."""
    promises_service.CACHE.clear()
    yield
    promises_service.CACHE.clear()


ALL_DAYS = [1, 2, 3, 4, 5, 6, 7]
BERLIN = {"latitude": 52.52, "longitude": 13.405, "city": "Berlin"}
DEST = order_body()["shipping_address"]  # Berlin: band 0 from BER


def zone_at_local_hours(lo: float, hi: float) -> str:
    """A fixed-offset IANA zone in which the local time now is in [lo, hi) hours."""
    now = datetime.now(UTC)
    for h in range(-12, 15):
        local = now + timedelta(hours=h)
        if lo <= local.hour + local.minute / 60 < hi:
            return "Etc/GMT" if h == 0 else f"Etc/GMT{-h:+d}"
    raise AssertionError(f"no zone has a local time in [{lo}, {hi}) now")


def local_today(zone: str) -> date:
    return datetime.now(UTC).astimezone(ZoneInfo(zone)).date()


def carrier_days(day: date, n: int) -> date:
    """``n`` Monday-to-Friday days after ``day``."""
    d = day
    while n:
        d += timedelta(days=1)
        if d.isoweekday() <= 5:
            n -= 1
    return d


async def put_calendar(
    client: httpx.AsyncClient, keys: Keys, code: str, **body: Any
) -> dict[str, Any]:
    body = {"working_days": ALL_DAYS, "handling_days": 0, "cutoff": "12:00"} | body
    resp = await client.put(
        f"/v1/warehouses/{code}/calendar", json=body, headers=auth(keys["admin"])
    )
    assert resp.status_code == 200, resp.text
    got: dict[str, Any] = resp.json()
    return got


async def put_transit(
    client: httpx.AsyncClient, keys: Keys, country: str, *bands: tuple[int, int, int]
) -> None:
    resp = await client.put(
        f"/v1/transit-times/{country}",
        json={"bands": [{"from_band": b, "min_days": lo, "max_days": hi} for b, lo, hi in bands]},
        headers=auth(keys["admin"]),
    )
    assert resp.status_code == 200, resp.text


async def preview(
    client: httpx.AsyncClient, keys: Keys, *lines: tuple[str, int], address: Any = None
) -> dict[str, Any]:
    resp = await client.post(
        "/v1/routing/preview",
        json={
            "channel": "web",
            "shipping_address": address or DEST,
            "lines": [{"sku": s, "quantity": q} for s, q in lines],
        },
        headers=auth(keys["storefront"]),
    )
    assert resp.status_code == 200, resp.text
    got: dict[str, Any] = resp.json()
    return got


def by_warehouse(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["warehouse"]: s["promise"] for s in body["shipments"]}


async def test_cutoff_decides_today_or_the_next_working_day(
    client: httpx.AsyncClient, keys: Keys, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    zone = zone_at_local_hours(8, 16)  # local time now: between 08:00 and 16:00
    await stock(sessionmaker, "EARLY", {"E-1": 5}, **BERLIN)
    await stock(sessionmaker, "LATE", {"L-1": 5}, **BERLIN)
    await put_calendar(client, keys, "EARLY", timezone=zone, cutoff="20:00")  # still before it
    await put_calendar(client, keys, "LATE", timezone=zone, cutoff="04:00")  # already past it
    today = local_today(zone)
    body = await preview(client, keys, ("E-1", 1), ("L-1", 1))
    promises = by_warehouse(body)
    assert promises["EARLY"]["ship_date"] == today.isoformat()
    assert promises["LATE"]["ship_date"] == (today + timedelta(days=1)).isoformat()
    # ship_by: the end of the local ship date, as an instant
    end = datetime.combine(today + timedelta(days=1), time(0), tzinfo=ZoneInfo(zone))
    assert datetime.fromisoformat(promises["EARLY"]["ship_by"]) == end
    # each line is promised with its parcel
    lines = {ln["sku"]: ln["promise"] for ln in body["lines"]}
    assert lines["E-1"] == promises["EARLY"] and lines["L-1"] == promises["LATE"]


async def test_the_warehouse_time_zone_decides_the_day(
    client: httpx.AsyncClient, keys: Keys, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    east = zone_at_local_hours(14, 22)  # after a 12:00 cut-off there now
    west = zone_at_local_hours(4, 10)  # before it there now
    await stock(sessionmaker, "EAST", {"X-1": 5}, **BERLIN)
    await stock(sessionmaker, "WEST", {"Y-1": 5}, **BERLIN)
    await put_calendar(client, keys, "EAST", timezone=east, cutoff="12:00")
    await put_calendar(client, keys, "WEST", timezone=west, cutoff="12:00")
    promises = by_warehouse(await preview(client, keys, ("X-1", 1), ("Y-1", 1)))
    assert promises["EAST"]["ship_date"] == (local_today(east) + timedelta(days=1)).isoformat()
    assert promises["WEST"]["ship_date"] == local_today(west).isoformat()
    # the same calendar in UTC answers by the UTC clock instead
    await put_calendar(client, keys, "EAST", timezone="UTC", cutoff="00:00")
    promises = by_warehouse(await preview(client, keys, ("X-1", 1)))
    assert promises["EAST"]["ship_date"] == (local_today("UTC") + timedelta(days=1)).isoformat()


async def test_weekends_holidays_and_handling_days_push_the_ship_date(
    client: httpx.AsyncClient, keys: Keys
) -> None:
    zone = zone_at_local_hours(6, 18)
    today = local_today(zone)
    closed = {(today + timedelta(days=d)).isoweekday() for d in (1, 2)}  # a "weekend" next
    await put_calendar(
        client,
        keys,
        "BER",
        timezone=zone,
        cutoff="23:00",  # before it now: handling starts today
        handling_days=1,
        working_days=[d for d in ALL_DAYS if d not in closed],
    )
    promises = by_warehouse(await preview(client, keys, ("MUG-01", 1)))
    assert promises["BER"]["ship_date"] == (today + timedelta(days=3)).isoformat()
    # a holiday on that day: one more day
    await put_calendar(
        client,
        keys,
        "BER",
        timezone=zone,
        cutoff="23:00",
        handling_days=1,
        working_days=[d for d in ALL_DAYS if d not in closed],
        holidays=[(today + timedelta(days=3)).isoformat()],
    )
    promises = by_warehouse(await preview(client, keys, ("MUG-01", 1)))
    assert promises["BER"]["ship_date"] == (today + timedelta(days=4)).isoformat()
    # a holiday today: handling starts after the weekend, then one working day
    await put_calendar(
        client,
        keys,
        "BER",
        timezone=zone,
        cutoff="23:00",
        handling_days=1,
        working_days=[d for d in ALL_DAYS if d not in closed],
        holidays=[today.isoformat()],
    )
    promises = by_warehouse(await preview(client, keys, ("MUG-01", 1)))
    assert promises["BER"]["ship_date"] == (today + timedelta(days=4)).isoformat()


async def test_delivery_window_by_country_and_distance_band(
    client: httpx.AsyncClient, keys: Keys, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    zone = zone_at_local_hours(6, 18)
    await put_calendar(client, keys, "BER", timezone=zone, cutoff="23:00")
    # Madrid is ~1,870 km from Berlin: band 4 of 400 km
    await stock(sessionmaker, "MAD", {"FAR-1": 5}, latitude=40.4168, longitude=-3.7038)
    await put_calendar(client, keys, "MAD", timezone=zone, cutoff="23:00")
    await put_transit(client, keys, "DE", (0, 1, 2), (3, 3, 5))
    await put_transit(client, keys, "*", (0, 4, 8))
    today = local_today(zone)
    promises = by_warehouse(await preview(client, keys, ("MUG-01", 1), ("FAR-1", 1)))
    near, far = promises["BER"], promises["MAD"]
    assert (near["ship_date"], far["ship_date"]) == (today.isoformat(), today.isoformat())
    assert (near["deliver_from"], near["deliver_by"]) == (
        carrier_days(today, 1).isoformat(),
        carrier_days(today, 2).isoformat(),
    )
    assert (far["deliver_from"], far["deliver_by"]) == (
        carrier_days(today, 3).isoformat(),
        carrier_days(today, 5).isoformat(),
    )
    # a country without rows of its own takes the `*` rows
    paris = {"lines": ["1 rue de Rivoli"], "city": "Paris", "postal_code": "75001", "country": "FR"}
    resp = await client.put(
        "/v1/routing-policies/web", json={"warehouse_codes": ["BER"]}, headers=auth(keys["admin"])
    )
    assert resp.status_code == 200
    promises = by_warehouse(await preview(client, keys, ("MUG-01", 1), address=paris))
    assert promises["BER"]["deliver_by"] == carrier_days(today, 8).isoformat()
    # no row at all: a ship date, no window
    resp = await client.delete("/v1/transit-times/*", headers=auth(keys["admin"]))
    assert resp.status_code == 204
    promises = by_warehouse(await preview(client, keys, ("MUG-01", 1), address=paris))
    assert promises["BER"]["ship_date"] == today.isoformat()
    assert promises["BER"]["deliver_from"] is None and promises["BER"]["deliver_by"] is None


async def test_placing_an_order_stores_the_promise_per_shipment(
    client: httpx.AsyncClient, keys: Keys, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    zone = zone_at_local_hours(6, 18)
    await put_calendar(client, keys, "BER", timezone=zone, cutoff="23:00", handling_days=0)
    await stock(sessionmaker, "MUC", {"M-1": 5}, latitude=48.137, longitude=11.575)
    await put_calendar(client, keys, "MUC", timezone=zone, cutoff="01:00", handling_days=0)
    await put_transit(client, keys, "DE", (0, 1, 2), (1, 2, 3))
    today = local_today(zone)
    lines = [
        {"sku": "MUG-01", "quantity": 1, "unit_price": 850, "tax_rate_bps": 1900},
        {"sku": "M-1", "quantity": 1, "unit_price": 850, "tax_rate_bps": 1900},
    ]
    resp = await client.post(
        "/v1/orders", json=order_body(lines=lines), headers=auth(keys["storefront"])
    )
    assert resp.status_code == 201, resp.text
    order = resp.json()
    shipments = {s["warehouse"]: s for s in order["shipments"]}
    end = datetime.combine(today + timedelta(days=1), time(0), tzinfo=ZoneInfo(zone))
    assert datetime.fromisoformat(shipments["BER"]["ship_by"]) == end
    assert shipments["BER"]["deliver_by"] == carrier_days(today, 2).isoformat()
    # Munich (~500 km, band 1) is past its cut-off: ships tomorrow, 2-3 carrier days
    assert datetime.fromisoformat(shipments["MUC"]["ship_by"]) == end + timedelta(days=1)
    assert shipments["MUC"]["deliver_by"] == carrier_days(today + timedelta(days=1), 3).isoformat()
    # the order's read view shows the same
    got = await client.get(f"/v1/orders/{order['id']}", headers=auth(keys["admin"]))
    assert {s["warehouse"]: (s["ship_by"], s["deliver_by"]) for s in got.json()["shipments"]} == {
        w: (s["ship_by"], s["deliver_by"]) for w, s in shipments.items()
    }


async def test_backorders_are_promised_from_incoming_supply_after_those_waiting(
    client: httpx.AsyncClient, keys: Keys, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    zone = zone_at_local_hours(6, 18)
    today = local_today(zone)
    await put_calendar(client, keys, "BER", timezone=zone, cutoff="23:00", handling_days=1)
    await put_transit(client, keys, "DE", (0, 1, 2))
    resp = await client.post(  # a known SKU without stock
        "/v1/inventory/adjustments",
        json={"warehouse": "BER", "sku": "BO-1", "type": "count", "quantity": 0},
        headers=auth(keys["admin"]),
    )
    assert resp.status_code == 201, resp.text
    resp = await client.put(
        "/v1/routing-policies/web", json={"allow_backorder": True}, headers=auth(keys["admin"])
    )
    assert resp.status_code == 200
    # nothing expected: no promise for the backordered units
    body = await preview(client, keys, ("BO-1", 3), ("MUG-01", 1))
    assert body["lines"][0]["backordered"] == 3 and body["lines"][0]["promise"] is None
    # two expected receipts: 4 units in 10 days, 10 units in 20 days
    first, second = today + timedelta(days=10), today + timedelta(days=20)
    for qty, when in ((4, first), (10, second)):
        resp = await client.post(
            "/v1/inventory/incoming",
            json={"warehouse": "BER", "sku": "BO-1", "quantity": qty, "expected_on": str(when)},
            headers=auth(keys["admin"]),
        )
        assert resp.status_code == 201, resp.text
    body = await preview(client, keys, ("BO-1", 3), ("MUG-01", 1))
    line, mug = body["lines"]
    assert line["promise"]["source"] == "incoming"
    assert line["promise"]["supply_expected_on"] == first.isoformat()
    ship = first + timedelta(days=1)  # handled from its arrival, one handling day
    assert line["promise"]["ship_date"] == ship.isoformat()
    assert line["promise"]["deliver_by"] == carrier_days(ship, 2).isoformat()
    assert (
        mug["promise"]["source"] == "stock"
        and mug["promise"]["ship_date"] == (today + timedelta(days=1)).isoformat()
    )
    # an order placed now waits for 3 of the first 4 units: the next 3 come with the second
    resp = await client.post(
        "/v1/orders",
        json=order_body(
            lines=[{"sku": "BO-1", "quantity": 3, "unit_price": 100, "tax_rate_bps": 0}]
        ),
        headers=auth(keys["storefront"]),
    )
    assert resp.status_code == 201, resp.text
    body = await preview(client, keys, ("BO-1", 3))
    assert body["lines"][0]["promise"]["supply_expected_on"] == second.isoformat()


async def test_sla_at_risk_then_late_once_each_and_never_once_shipped(
    client: httpx.AsyncClient,
    keys: Keys,
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    orders = []
    for _ in range(2):
        resp = await client.post("/v1/orders", json=order_body(), headers=auth(keys["storefront"]))
        assert resp.status_code == 201, resp.text
        orders.append(resp.json())
    late_one, shipped_one = orders
    ship_by = datetime.fromisoformat(late_one["shipments"][0]["ship_by"])
    assert ship_by > datetime.now(UTC)
    for step in ({"to": "paid"}, {"to": "picked"}, {"to": "packed"}):
        resp = await client.post(
            f"/v1/orders/{shipped_one['id']}/transitions", json=step, headers=auth(keys["admin"])
        )
        assert resp.status_code == 200, resp.text
    resp = await client.post(
        f"/v1/orders/{shipped_one['id']}/transitions",
        json={"to": "shipped", "carrier": "DHL", "tracking_number": "T1"},
        headers=auth(keys["admin"]),
    )
    assert resp.status_code == 200, resp.text

    lead = timedelta(hours=4)

    async def sla(now: datetime) -> tuple[int, int]:
        stats = await check_sla(sessionmaker, now=now, at_risk_lead=lead)
        return stats.at_risk, stats.late

    assert await sla(ship_by - timedelta(hours=5)) == (0, 0)  # not yet within the lead
    assert await sla(ship_by - timedelta(hours=3)) == (1, 0)  # the late one only: the other shipped
    assert await sla(ship_by - timedelta(hours=2)) == (0, 0)  # once
    assert await sla(ship_by + timedelta(minutes=1)) == (0, 1)
    assert await sla(ship_by + timedelta(hours=5)) == (0, 0)  # once
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT type, payload->'data'->>'shipment_id', payload->'data'->>'ship_by' "
                    "FROM outbox_events WHERE type LIKE 'shipment.%' ORDER BY id"
                )
            )
        ).all()
    shipment_id = late_one["shipments"][0]["id"]
    assert [(r[0], r[1]) for r in rows if r[0] in ("shipment.at_risk", "shipment.late")] == [
        ("shipment.at_risk", shipment_id),
        ("shipment.late", shipment_id),
    ]


async def test_a_shipment_first_seen_late_is_announced_late_only(
    client: httpx.AsyncClient, keys: Keys, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    resp = await client.post("/v1/orders", json=order_body(), headers=auth(keys["storefront"]))
    assert resp.status_code == 201
    ship_by = datetime.fromisoformat(resp.json()["shipments"][0]["ship_by"])
    stats = await check_sla(
        sessionmaker, now=ship_by + timedelta(days=1), at_risk_lead=timedelta(hours=4)
    )
    assert (stats.at_risk, stats.late) == (0, 1)


async def test_late_orders_report_uses_the_promise(
    client: httpx.AsyncClient, keys: Keys, engine: AsyncEngine
) -> None:
    placed = []
    for _ in range(2):
        resp = await client.post("/v1/orders", json=order_body(), headers=auth(keys["storefront"]))
        assert resp.status_code == 201
        placed.append(resp.json())
    broken, kept = placed
    async with engine.begin() as conn:  # the first one's promise has passed
        await conn.execute(
            text("UPDATE shipments SET ship_by = now() - interval '1 hour' WHERE order_id = :o"),
            {"o": broken["id"]},
        )
    resp = await client.get(
        "/v1/reports/late-orders", params={"late_after_hours": 48}, headers=auth(keys["admin"])
    )
    assert resp.status_code == 200, resp.text
    items = resp.json()["items"]
    assert [i["id"] for i in items] == [broken["id"]]  # late by its promise, 0 hours old
    assert items[0]["late_by"] == "promise" and items[0]["ship_by"] is not None


async def test_calendar_and_transit_validation(client: httpx.AsyncClient, keys: Keys) -> None:
    resp = await client.get("/v1/warehouses/BER/calendar", headers=auth(keys["fulfillment"]))
    assert resp.status_code == 200
    assert resp.json()["default"] is True and resp.json()["working_days"] == [1, 2, 3, 4, 5]
    bad = await client.put(
        "/v1/warehouses/BER/calendar",
        json={"timezone": "Mars/Olympus", "cutoff": "14:00", "handling_days": 1},
        headers=auth(keys["admin"]),
    )
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_calendar"
    assert bad.headers["content-type"] == "application/problem+json"
    bad = await client.put(
        "/v1/warehouses/BER/calendar",
        json={"timezone": "UTC", "cutoff": "14:00", "handling_days": 1, "working_days": [0]},
        headers=auth(keys["admin"]),
    )
    assert bad.status_code == 422
    missing = await client.put(
        "/v1/warehouses/NOPE/calendar",
        json={"timezone": "UTC", "cutoff": "14:00", "handling_days": 1},
        headers=auth(keys["admin"]),
    )
    assert missing.status_code == 404
    bad = await client.put(
        "/v1/transit-times/DE",
        json={"bands": [{"from_band": 0, "min_days": 3, "max_days": 1}]},
        headers=auth(keys["admin"]),
    )
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_transit"
    bad = await client.put(
        "/v1/transit-times/de",
        json={"bands": [{"from_band": 0, "min_days": 1, "max_days": 1}]},
        headers=auth(keys["admin"]),
    )
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_country"
    forbidden = await client.put(
        "/v1/transit-times/DE",
        json={"bands": [{"from_band": 0, "min_days": 1, "max_days": 1}]},
        headers=auth(keys["storefront"]),
    )
    assert forbidden.status_code == 403
    got = await client.get("/v1/transit-times", headers=auth(keys["storefront"]))
    assert got.status_code == 200 and got.json() == []


async def test_the_worker_announces_late_shipments_on_its_schedule(
    client: httpx.AsyncClient,
    keys: Keys,
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    resp = await client.post("/v1/orders", json=order_body(), headers=auth(keys["storefront"]))
    assert resp.status_code == 201
    ship_by = datetime.fromisoformat(resp.json()["shipments"][0]["ship_by"])
    clock = {"now": ship_by - timedelta(hours=3)}
    tuned = settings.model_copy(update={"sla_at_risk_hours": 2.0, "sla_sweep_interval_s": 60.0})
    async with httpx.AsyncClient() as http:
        relay = Relay(
            sessionmaker=sessionmaker, client=http, settings=tuned, clock=lambda: clock["now"]
        )
        assert await relay.promises_and_reorder() == 0  # 3 h before: not within the 2 h lead
        clock["now"] = ship_by + timedelta(minutes=2)
        assert await relay.run_once() >= 1  # a worker round: the shipment is late
        assert (relay.stats.shipments_at_risk, relay.stats.shipments_late) == (0, 1)
        assert await relay.promises_and_reorder(force=True) == 0  # once


async def test_a_rerouted_order_is_promised_again_from_the_reroute(
    client: httpx.AsyncClient, keys: Keys, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    zone = zone_at_local_hours(6, 18)
    await stock(sessionmaker, "MUC", {"MUG-01": 10}, latitude=48.137, longitude=11.575)
    await put_calendar(client, keys, "MUC", timezone=zone, cutoff="01:00")  # past: tomorrow
    resp = await client.post(
        "/v1/orders",
        json=order_body(
            lines=[{"sku": "MUG-01", "quantity": 1, "unit_price": 850, "tax_rate_bps": 1900}]
        ),
        headers=auth(keys["storefront"]),
    )
    assert resp.status_code == 201
    order = resp.json()
    assert [s["warehouse"] for s in order["shipments"]] == ["BER"]
    resp = await client.patch(
        "/v1/warehouses/BER", json={"active": False}, headers=auth(keys["admin"])
    )
    assert resp.status_code == 200
    resp = await client.post(
        f"/v1/orders/{order['id']}/reroute", json={}, headers=auth(keys["admin"])
    )
    assert resp.status_code == 200, resp.text
    live = [s for s in resp.json()["shipments"] if s["status"] == "pending"]
    assert [s["warehouse"] for s in live] == ["MUC"]
    end = datetime.combine(local_today(zone) + timedelta(days=2), time(0), tzinfo=ZoneInfo(zone))
    assert datetime.fromisoformat(live[0]["ship_by"]) == end


# ---- parcels made after placement get a promise (issue 18 gaps) ------------------------------


async def _promise_events(engine: AsyncEngine, order_id: str) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                text(
                    "SELECT payload->'data' FROM outbox_events "
                    "WHERE type = 'shipment.promise_changed' AND aggregate_id = :o ORDER BY id"
                ),
                {"o": order_id},
            )
        ).all()
    return [r[0] for r in rows]


async def _two_warehouses(
    client: httpx.AsyncClient, keys: Keys, sessionmaker: async_sessionmaker[AsyncSession]
) -> tuple[str, date]:
    """BER ships today (cut-off 23:00 local), MUC (band 1, ~500 km) tomorrow (cut-off 01:00
    local, passed); transit in DE: band 0 1-2 days, band 1 2-3 days. MUC stocks MUG-01."""
    zone = zone_at_local_hours(6, 18)
    await put_calendar(client, keys, "BER", timezone=zone, cutoff="23:00")
    await stock(sessionmaker, "MUC", {"MUG-01": 10}, latitude=48.137, longitude=11.575)
    await put_calendar(client, keys, "MUC", timezone=zone, cutoff="01:00")
    await put_transit(client, keys, "DE", (0, 1, 2), (1, 2, 3))
    return zone, local_today(zone)


async def _place_mugs(client: httpx.AsyncClient, keys: Keys, quantity: int) -> dict[str, Any]:
    lines = [{"sku": "MUG-01", "quantity": quantity, "unit_price": 850, "tax_rate_bps": 1900}]
    resp = await client.post(
        "/v1/orders", json=order_body(lines=lines), headers=auth(keys["storefront"])
    )
    assert resp.status_code == 201, resp.text
    order: dict[str, Any] = resp.json()
    assert [s["warehouse"] for s in order["shipments"]] == ["BER"]
    return order


def _promised(order: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    return {
        s["id"]: (s["ship_by"], s["deliver_by"])
        for s in order["shipments"]
        if s["status"] != "cancelled"
    }


async def test_a_split_keeps_the_promise_a_merge_keeps_the_earlier_one(
    client: httpx.AsyncClient,
    keys: Keys,
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    await _two_warehouses(client, keys, sessionmaker)
    order = await _place_mugs(client, keys, 3)
    first = order["shipments"][0]
    promised = (first["ship_by"], first["deliver_by"])
    assert None not in promised
    fh = auth(keys["fulfillment"])
    resp = await client.post(
        f"/v1/shipments/{first['id']}/split",
        json={"lines": [{"order_line_id": order["lines"][0]["id"], "quantity": 1}]},
        headers=fh,
    )
    assert resp.status_code == 201, resp.text
    split = resp.json()
    assert _promised(split["order"]) == {first["id"]: promised, split["shipment_id"]: promised}
    # the split parcel was promised a later date meanwhile (made up here): merged into the
    # first one, the parcel keeps the earlier promise of the two
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "UPDATE shipments SET ship_by = ship_by + interval '3 days', "
                "deliver_by = deliver_by + 3 WHERE id = :s"
            ),
            {"s": split["shipment_id"]},
        )
    resp = await client.post(
        f"/v1/shipments/{split['shipment_id']}/merge", json={"shipment_id": first["id"]}, headers=fh
    )
    assert resp.status_code == 200, resp.text
    merged = resp.json()
    assert _promised(merged["order"]) == {split["shipment_id"]: promised}
    assert await _promise_events(engine, order["id"]) == []  # no promise moved later


async def test_a_move_is_promised_afresh_and_a_later_promise_is_announced(
    client: httpx.AsyncClient,
    keys: Keys,
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    zone, today = await _two_warehouses(client, keys, sessionmaker)
    order = await _place_mugs(client, keys, 2)
    first = order["shipments"][0]
    resp = await client.post(
        f"/v1/shipments/{first['id']}/move", json={"warehouse": "MUC"}, headers=auth(keys["admin"])
    )
    assert resp.status_code == 200, resp.text
    moved = resp.json()
    tomorrow_end = datetime.combine(today + timedelta(days=2), time(0), tzinfo=ZoneInfo(zone))
    new = next(s for s in moved["order"]["shipments"] if s["id"] == moved["shipment_id"])
    assert datetime.fromisoformat(new["ship_by"]) == tomorrow_end
    assert new["deliver_by"] == carrier_days(today + timedelta(days=1), 3).isoformat()
    (event,) = await _promise_events(engine, order["id"])
    assert event["shipment_id"] == moved["shipment_id"]
    assert event["cause"] == "shipment_moved"
    assert (event["previous_ship_by"], event["previous_deliver_by"]) == (
        datetime.fromisoformat(first["ship_by"]).isoformat(),
        first["deliver_by"],
    )
    assert event["deliver_by"] == new["deliver_by"]
    history = (
        await client.get(f"/v1/orders/{order['id']}/history", headers=auth(keys["admin"]))
    ).json()
    changed = [h for h in history if h["kind"] == "promise_changed"]
    assert len(changed) == 1
    assert changed[0]["data"]["shipments"][0]["shipment_id"] == moved["shipment_id"]


async def test_an_exception_replan_is_promised_from_now(
    client: httpx.AsyncClient,
    keys: Keys,
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    zone, today = await _two_warehouses(client, keys, sessionmaker)
    order = await _place_mugs(client, keys, 2)
    first = order["shipments"][0]
    resp = await client.post(
        f"/v1/shipments/{first['id']}/exceptions",
        json={
            "lines": [
                {"order_line_id": order["lines"][0]["id"], "quantity": 1, "reason": "damaged"}
            ]
        },
        headers=auth(keys["fulfillment"]),
    )
    assert resp.status_code == 201, resp.text
    exc = resp.json()
    (replanned,) = exc["replan"]["shipments"]
    assert replanned["warehouse"] == "MUC"
    promised = _promised(exc["order"])
    assert promised[first["id"]] == (first["ship_by"], first["deliver_by"])  # units found stay
    ship_by, deliver_by = promised[replanned["shipment_id"]]
    assert datetime.fromisoformat(ship_by) == datetime.combine(
        today + timedelta(days=2), time(0), tzinfo=ZoneInfo(zone)
    )
    assert deliver_by == carrier_days(today + timedelta(days=1), 3).isoformat()
    (event,) = await _promise_events(engine, order["id"])
    assert (event["shipment_id"], event["cause"]) == (
        replanned["shipment_id"],
        "shipment_exception",
    )
    # the SLA tracks the new parcel: late once its own ship_by has passed
    stats = await check_sla(
        sessionmaker,
        now=datetime.fromisoformat(ship_by) + timedelta(minutes=1),
        at_risk_lead=timedelta(hours=1),
    )
    assert stats.late == 2  # the first parcel (its promise passed a day before) and the new one


async def test_an_edit_promises_its_new_parcels_from_now(
    client: httpx.AsyncClient,
    keys: Keys,
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    _zone, today = await _two_warehouses(client, keys, sessionmaker)
    order = await _place_mugs(client, keys, 1)
    first = order["shipments"][0]
    resp = await client.post(
        f"/v1/orders/{order['id']}/edits",
        json={
            "expected_version": order["version"],
            "lines": [{"line_id": order["lines"][0]["id"], "quantity": 2}],
        },
        headers=auth(keys["storefront"]),
    )
    assert resp.status_code == 200, resp.text
    got = (await client.get(f"/v1/orders/{order['id']}", headers=auth(keys["admin"]))).json()
    live = [s for s in got["shipments"] if s["status"] == "pending"]
    assert [s["id"] for s in live] != [first["id"]]  # re-planned into a new parcel
    assert [(s["ship_by"], s["deliver_by"]) for s in live] == [
        (first["ship_by"], carrier_days(today, 2).isoformat())
    ]
    assert await _promise_events(engine, order["id"]) == []  # same day: not later


async def test_fulfilment_report_counts_late_by_the_promise(
    client: httpx.AsyncClient, keys: Keys, engine: AsyncEngine
) -> None:
    placed = []
    for _ in range(6):
        resp = await client.post("/v1/orders", json=order_body(), headers=auth(keys["storefront"]))
        assert resp.status_code == 201
        placed.append(resp.json())
    passed, passed_too, old_but_promised, old_unpromised, on_time, shipped = placed
    for step in ({"to": "paid"}, {"to": "picked"}, {"to": "packed"}):
        resp = await client.post(
            f"/v1/orders/{shipped['id']}/transitions", json=step, headers=auth(keys["admin"])
        )
        assert resp.status_code == 200, resp.text
    resp = await client.post(
        f"/v1/orders/{shipped['id']}/transitions",
        json={"to": "shipped", "carrier": "DHL", "tracking_number": "T1"},
        headers=auth(keys["admin"]),
    )
    assert resp.status_code == 200, resp.text
    async with engine.begin() as conn:
        for o in (passed, passed_too):  # young, but their promise has passed: late
            await conn.execute(
                text(
                    "UPDATE shipments SET ship_by = now() - interval '1 hour' WHERE order_id = :o"
                ),
                {"o": o["id"]},
            )
        for o in (old_but_promised, old_unpromised):  # placed 3 days ago
            await conn.execute(
                text("UPDATE orders SET created_at = now() - interval '3 days' WHERE id = :o"),
                {"o": o["id"]},
            )
        await conn.execute(  # old, no promise: late by its age
            text("UPDATE shipments SET ship_by = NULL, deliver_by = NULL WHERE order_id = :o"),
            {"o": old_unpromised["id"]},
        )
        await conn.execute(  # shipped within the hour, but after its promise: shipped late
            text(
                "UPDATE shipments SET ship_by = shipped_at - interval '1 minute' "
                "WHERE order_id = :o"
            ),
            {"o": shipped["id"]},
        )
    window = {
        "from": (datetime.now(UTC) - timedelta(days=5)).isoformat(),
        "to": (datetime.now(UTC) + timedelta(hours=1)).isoformat(),
        "late_after_hours": 48,
    }
    resp = await client.get("/v1/reports/fulfilment", params=window, headers=auth(keys["admin"]))
    assert resp.status_code == 200, resp.text
    late = resp.json()["late"]
    # by age alone: 2 open (the old ones), 0 shipped late; by the promise where there is one:
    # the two passed ones and the old one without a promise, and the one shipped after it
    assert (late["open"], late["shipped_late"], late["total"]) == (3, 1, 4)
    listed = await client.get("/v1/reports/late-orders", params=window, headers=auth(keys["admin"]))
    assert {i["id"] for i in listed.json()["items"]} == {
        passed["id"],
        passed_too["id"],
        old_unpromised["id"],
    }
    assert on_time["id"] not in {i["id"] for i in listed.json()["items"]}


async def test_a_wave_keeps_the_promise_of_the_parcels_it_replaces(
    client: httpx.AsyncClient, keys: Keys, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    """Two orders routed across each other; the wave swaps their warehouses: each new parcel
    keeps the date its order was promised."""
    munich_at = {"latitude": 48.137, "longitude": 11.576}
    resp = await client.put(
        "/v1/wave-policies/web", json={"enabled": True}, headers=auth(keys["admin"])
    )
    assert resp.status_code == 200, resp.text
    await stock(sessionmaker, "BRL", {"WAVE-01": 1}, **BERLIN)
    await stock(sessionmaker, "MNC", {}, **munich_at)

    async def place(city: str, point: dict[str, float]) -> dict[str, Any]:
        body = order_body(
            shipping_address={"lines": ["Street 1"], "city": city, "country": "DE", **point},
            lines=[{"sku": "WAVE-01", "quantity": 1, "unit_price": 850, "tax_rate_bps": 700}],
        )
        resp = await client.post("/v1/orders", json=body, headers=auth(keys["storefront"]))
        assert resp.status_code == 201, resp.text
        got: dict[str, Any] = resp.json()
        return got

    munich = await place("Munich", munich_at)  # takes Berlin's unit (Munich has none yet)
    await stock(sessionmaker, "MNC", {"WAVE-01": 1})
    berlin = await place("Berlin", {"latitude": 52.52, "longitude": 13.405})
    before = {o["id"]: _promised(o) for o in (munich, berlin)}
    resp = await client.post("/v1/waves", json={"channel": "web"}, headers=auth(keys["admin"]))
    assert resp.status_code == 201, resp.text
    assert resp.json()["moved"] == 2
    for oid, promised in before.items():
        got = (await client.get(f"/v1/orders/{oid}", headers=auth(keys["admin"]))).json()
        after = _promised(got)
        assert after.keys() != promised.keys()  # new parcels
        assert list(after.values()) == list(promised.values())
        assert None not in next(iter(after.values()))[:1]


async def test_an_address_edit_promises_afresh_and_announces_a_later_promise(
    client: httpx.AsyncClient,
    keys: Keys,
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    _zone, today = await _two_warehouses(client, keys, sessionmaker)
    await put_transit(client, keys, "FR", (0, 4, 6))
    order = await _place_mugs(client, keys, 1)
    first = order["shipments"][0]
    paris = {"lines": ["1 Rue de Rivoli"], "city": "Paris", "postal_code": "75001"}
    edit = {
        "expected_version": order["version"],
        "shipping_address": paris | {"country": "FR", "latitude": 48.86, "longitude": 2.35},
    }
    url, front = f"/v1/orders/{order['id']}/edits", auth(keys["storefront"])
    preview = await client.post(f"{url}?dry_run=true", json=edit, headers=front)
    assert preview.status_code == 200, preview.text
    assert await _promise_events(engine, order["id"]) == []  # a preview records nothing
    resp = await client.post(url, json=edit, headers=front)
    assert resp.status_code == 200, resp.text
    got = (await client.get(f"/v1/orders/{order['id']}", headers=auth(keys["admin"]))).json()
    (live,) = [s for s in got["shipments"] if s["status"] == "pending"]
    assert live["deliver_by"] == carrier_days(today, 6).isoformat()  # France's transit
    (event,) = await _promise_events(engine, order["id"])
    assert (event["shipment_id"], event["cause"]) == (live["id"], "order_edited")
    assert (event["previous_deliver_by"], event["deliver_by"]) == (
        first["deliver_by"],
        live["deliver_by"],
    )
    history = (await client.get(f"/v1/orders/{order['id']}/history", headers=front)).json()
    assert [h["kind"] for h in history].count("promise_changed") == 1


async def test_a_reroute_to_a_later_promise_is_announced(
    client: httpx.AsyncClient,
    keys: Keys,
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    _zone, today = await _two_warehouses(client, keys, sessionmaker)
    order = await _place_mugs(client, keys, 1)
    admin = auth(keys["admin"])
    resp = await client.patch("/v1/warehouses/BER", json={"active": False}, headers=admin)
    assert resp.status_code == 200
    resp = await client.post(f"/v1/orders/{order['id']}/reroute", json={}, headers=admin)
    assert resp.status_code == 200, resp.text
    (live,) = [s for s in resp.json()["shipments"] if s["status"] == "pending"]
    assert live["deliver_by"] == carrier_days(today + timedelta(days=1), 3).isoformat()
    (event,) = await _promise_events(engine, order["id"])
    assert (event["shipment_id"], event["cause"]) == (live["id"], "rerouted")
    assert event["previous_deliver_by"] == order["shipments"][0]["deliver_by"]
