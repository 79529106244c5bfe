"""Waves through the real ASGI app against real Postgres: orders wait out of the pick queue,
a wave re-optimises them together and releases them; orders that change while it solves are
never moved."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from oms.config import Settings
from oms.flows import waves as waves_flow
from oms.outbox.models import OutboxEvent
from oms.worker import Relay
from tests.helpers import assert_stock_invariants, auth, order_body, stock

BERLIN = {"latitude": 52.52, "longitude": 13.405}
MUNICH = {"latitude": 48.137, "longitude": 11.576}


def _to(city: str, point: dict[str, float], **changes: Any) -> dict[str, Any]:
    return order_body(
        shipping_address={
            "name": "Ada",
            "lines": ["Street 1"],
            "city": city,
            "country": "DE",
            **point,
        },
        lines=[{"sku": "WAVE-01", "quantity": 1, "unit_price": 850, "tax_rate_bps": 700}],
        **changes,
    )


async def _crossed(
    client: httpx.AsyncClient, keys: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> tuple[str, str]:
    """Two waiting orders routed across each other: the Munich order took Berlin's mug (Munich
    had none yet), the Berlin order then Munich's (Berlin had none left)."""
    await stock(sessionmaker, "BRL", {"WAVE-01": 1}, **BERLIN)
    await stock(sessionmaker, "MNC", {}, **MUNICH)
    munich = await client.post(
        "/v1/orders", json=_to("Munich", MUNICH), headers=auth(keys["storefront"])
    )
    assert munich.status_code == 201, munich.text
    assert munich.json()["routing"]["warehouses"] == ["BRL"] if "routing" in munich.json() else True
    await stock(sessionmaker, "MNC", {"WAVE-01": 1})
    berlin = await client.post(
        "/v1/orders", json=_to("Berlin", BERLIN), headers=auth(keys["storefront"])
    )
    assert berlin.status_code == 201, berlin.text
    return munich.json()["id"], berlin.json()["id"]


async def _pay(client: httpx.AsyncClient, keys: dict[str, str], oid: str) -> None:
    resp = await client.post(
        f"/v1/orders/{oid}/transitions", json={"to": "paid"}, headers=auth(keys["admin"])
    )
    assert resp.status_code == 200, resp.text


async def _queue(client: httpx.AsyncClient, keys: dict[str, str], code: str) -> set[str]:
    resp = await client.get(f"/v1/warehouses/{code}/pick-queue", headers=auth(keys["fulfillment"]))
    assert resp.status_code == 200, resp.text
    return {item["order_id"] for item in resp.json()}


async def _enable(client: httpx.AsyncClient, keys: dict[str, str], **values: Any) -> None:
    resp = await client.put(
        "/v1/wave-policies/web", json={"enabled": True, **values}, headers=auth(keys["admin"])
    )
    assert resp.status_code == 200, resp.text


async def _routed_to(client: httpx.AsyncClient, keys: dict[str, str], oid: str) -> list[str]:
    resp = await client.get(f"/v1/orders/{oid}/routing", headers=auth(keys["admin"]))
    assert resp.status_code == 200, resp.text
    return list(resp.json()["warehouses"])


async def test_a_wave_swaps_crossed_orders_and_releases_them(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    await _enable(client, keys)
    munich, berlin = await _crossed(client, keys, sessionmaker)
    assert await _routed_to(client, keys, munich) == ["BRL"]
    assert await _routed_to(client, keys, berlin) == ["MNC"]
    for oid in (munich, berlin):
        await _pay(client, keys, oid)
    # paid, but waiting for the wave: not in any pick queue
    assert await _queue(client, keys, "BRL") == set()
    assert await _queue(client, keys, "MNC") == set()

    resp = await client.post("/v1/waves", json={"channel": "web"}, headers=auth(keys["admin"]))
    assert resp.status_code == 201, resp.text
    wave = resp.json()
    assert wave["solver_status"] == "optimal" and wave["proven"] and wave["applied"]
    assert (wave["pool_size"], wave["moved"], wave["skipped"]) == (2, 2, 0)
    assert wave["objective_after"] < wave["objective_before"]
    by_order = {o["order_id"]: o for o in wave["orders"]}
    moved = by_order[munich]
    assert moved["outcome"] == "moved"
    assert moved["plan"]["before"]["allocations"][0]["warehouse"] == "BRL"
    assert moved["plan"]["after"]["allocations"][0]["warehouse"] == "MNC"
    assert moved["plan"]["saved"]["band_sum"] == 1 and moved["plan"]["saved"]["cost"] > 0

    # each ships from its own city now, released to the pick queue
    assert await _routed_to(client, keys, munich) == ["MNC"]
    assert await _routed_to(client, keys, berlin) == ["BRL"]
    assert await _queue(client, keys, "MNC") == {munich}
    assert await _queue(client, keys, "BRL") == {berlin}
    routing = (await client.get(f"/v1/orders/{munich}/routing", headers=auth(keys["admin"]))).json()
    assert routing["change"]["kind"] == "wave"
    assert routing["placement"]["warehouses"] == ["BRL"]  # the placement plan is kept
    assert routing["placement"]["explanation"]["chosen_cost"]["shipments"] == 1
    history = await client.get(f"/v1/orders/{munich}/history", headers=auth(keys["admin"]))
    assert any(e["kind"] == "rerouted" and e["reason"].startswith("wave") for e in history.json())

    listed = await client.get("/v1/waves", headers=auth(keys["fulfillment"]))
    assert [w["id"] for w in listed.json()] == [wave["id"]]
    read = await client.get(f"/v1/waves/{wave['id']}", headers=auth(keys["fulfillment"]))
    assert read.status_code == 200 and read.json()["moved"] == 2
    async with engine.connect() as conn:
        events = (
            await conn.execute(
                select(OutboxEvent.payload).where(OutboxEvent.type == "wave.completed")
            )
        ).all()
    assert [e[0]["data"]["moved"] for e in events] == [2]
    await assert_stock_invariants(engine)


async def test_express_orders_skip_waves_and_disabling_releases_everyone(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await stock(sessionmaker, "BRL", {"WAVE-01": 5}, **BERLIN)
    await _enable(client, keys)
    normal = (
        await client.post("/v1/orders", json=_to("Berlin", BERLIN), headers=auth(keys["admin"]))
    ).json()["id"]
    express = (
        await client.post(
            "/v1/orders",
            json=_to("Berlin", BERLIN, priority="express"),
            headers=auth(keys["admin"]),
        )
    ).json()["id"]
    for oid in (normal, express):
        await _pay(client, keys, oid)
    assert await _queue(client, keys, "BRL") == {express}
    resp = await client.put(
        "/v1/wave-policies/web", json={"enabled": False}, headers=auth(keys["admin"])
    )
    assert resp.status_code == 200
    assert await _queue(client, keys, "BRL") == {normal, express}


async def test_an_order_changed_while_the_wave_solves_is_never_moved(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    """Between solve and apply, the Munich order is cancelled and the Berlin order re-routed
    (its version moves): the wave skips both and leaves their stock alone."""
    await _enable(client, keys)
    munich, berlin = await _crossed(client, keys, sessionmaker)

    async def meanwhile() -> None:
        cancel = await client.post(
            f"/v1/orders/{munich}/transitions",
            json={"to": "cancelled"},
            headers=auth(keys["admin"]),
        )
        assert cancel.status_code == 200, cancel.text
        reroute = await client.post(
            f"/v1/orders/{berlin}/reroute", json={}, headers=auth(keys["admin"])
        )
        assert reroute.status_code == 200, reroute.text

    wave_id = await waves_flow.run_wave(
        sessionmaker, channel="web", trigger="manual", between=meanwhile
    )
    read = (await client.get(f"/v1/waves/{wave_id}", headers=auth(keys["admin"]))).json()
    assert read["moved"] == 0 and read["applied"] is False
    outcomes = {o["order_id"]: o["outcome"] for o in read["orders"]}
    assert outcomes == {berlin: "skipped"}  # the cancelled one has nothing to release
    # the re-route (after the cancellation freed Berlin's mug) stands, untouched by the wave
    assert await _routed_to(client, keys, berlin) == ["BRL"]
    await assert_stock_invariants(engine)


async def test_an_order_edited_while_the_wave_solves_keeps_its_edit(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    await _enable(client, keys)
    munich, berlin = await _crossed(client, keys, sessionmaker)
    await stock(sessionmaker, "MNC", {"WAVE-01": 2})

    async def meanwhile() -> None:
        order = (await client.get(f"/v1/orders/{berlin}", headers=auth(keys["admin"]))).json()
        line = order["lines"][0]["id"]
        edit = await client.post(
            f"/v1/orders/{berlin}/edits",
            json={
                "expected_version": order["version"],
                "lines": [{"line_id": line, "quantity": 2}],
            },
            headers=auth(keys["admin"]),
        )
        assert edit.status_code in (200, 201), edit.text

    wave_id = await waves_flow.run_wave(
        sessionmaker, channel="web", trigger="manual", between=meanwhile
    )
    read = (await client.get(f"/v1/waves/{wave_id}", headers=auth(keys["admin"]))).json()
    outcomes = {o["order_id"]: o["outcome"] for o in read["orders"]}
    assert outcomes[berlin] == "skipped"
    order = (await client.get(f"/v1/orders/{berlin}", headers=auth(keys["admin"]))).json()
    assert order["lines"][0]["quantity"] == 2
    await assert_stock_invariants(engine)


async def test_due_waves_by_size_schedule_and_cutoff(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    await stock(sessionmaker, "BRL", {"WAVE-01": 5}, **BERLIN)
    await _enable(client, keys, max_pool=2, interval_s=7 * 86_400, cutoffs=["14:00"])
    async with sessionmaker() as session:
        enabled_at = (
            await session.execute(text("SELECT enabled_at FROM wave_policies WHERE channel='web'"))
        ).scalar_one()
    now = enabled_at + timedelta(seconds=1)
    async with sessionmaker() as session:
        assert await waves_flow.due_waves(session, now=now) == []  # nobody waits
    await client.post("/v1/orders", json=_to("Berlin", BERLIN), headers=auth(keys["admin"]))
    async with sessionmaker() as session:
        assert await waves_flow.due_waves(session, now=now) == []
        assert await waves_flow.due_waves(session, now=now + timedelta(days=7)) == [
            ("web", "schedule")
        ]
        day = enabled_at.astimezone(UTC).date()
        cutoff = datetime(day.year, day.month, day.day, 14, 0, tzinfo=UTC)
        if cutoff <= enabled_at:
            cutoff += timedelta(days=1)
        assert await waves_flow.due_waves(session, now=cutoff) == [("web", "cutoff")]
    await client.post("/v1/orders", json=_to("Berlin", BERLIN), headers=auth(keys["admin"]))
    async with sessionmaker() as session:
        assert await waves_flow.due_waves(session, now=now) == [("web", "size")]
    ran = await waves_flow.run_due_waves(sessionmaker, now=now)
    assert ran == 1
    async with sessionmaker() as session:
        assert await waves_flow.due_waves(session, now=now + timedelta(hours=2)) == []
    # the wave released both: nobody waits, so nothing is due even past the interval
    async with sessionmaker() as session:
        assert await waves_flow.due_waves(session, now=now + timedelta(days=8)) == []


async def test_wave_requests_are_checked(client: httpx.AsyncClient, keys: dict[str, str]) -> None:
    admin = auth(keys["admin"])
    resp = await client.post("/v1/waves", json={"channel": "web"}, headers=admin)
    assert resp.status_code == 404 and resp.json()["code"] == "wave_policy_not_found"
    bad = await client.put(
        "/v1/wave-policies/web", json={"enabled": True, "cutoffs": ["25:00"]}, headers=admin
    )
    assert bad.status_code == 422
    resp = await client.put(
        "/v1/wave-policies/web", json={"enabled": True, "time_limit_s": 0}, headers=admin
    )
    assert resp.status_code == 422
    resp = await client.post("/v1/waves", json={"channel": "web"}, headers=auth(keys["storefront"]))
    assert resp.status_code == 403
    missing = await client.get("/v1/waves/00000000-0000-0000-0000-000000000000", headers=admin)
    assert missing.status_code == 404 and missing.json()["code"] == "wave_not_found"


async def test_the_worker_runs_a_due_wave_on_its_clock(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    """The worker's round runs the wave once the schedule is due (injected clock)."""
    await stock(sessionmaker, "BRL", {"WAVE-01": 5}, **BERLIN)
    await _enable(client, keys, interval_s=600)
    order = await client.post("/v1/orders", json=_to("Berlin", BERLIN), headers=auth(keys["admin"]))
    oid = order.json()["id"]
    await _pay(client, keys, oid)
    assert await _queue(client, keys, "BRL") == set()
    clock = {"now": datetime.now(UTC) + timedelta(minutes=5)}
    async with httpx.AsyncClient() as http:
        relay = Relay(
            sessionmaker=sessionmaker, client=http, settings=settings, clock=lambda: clock["now"]
        )
        assert await relay.run_waves() == 0  # five minutes: not yet
        clock["now"] += timedelta(minutes=6)
        assert await relay.run_waves(force=True) == 1
        assert relay.stats.waves_run == 1
    assert await _queue(client, keys, "BRL") == {oid}
    waves = (await client.get("/v1/waves", headers=auth(keys["admin"]))).json()
    assert [w["trigger"] for w in waves] == ["schedule"]


async def test_the_rest_of_the_plan_applies_when_it_still_saves(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    """The Munich order is cancelled while the wave solves: the Berlin order's move to Berlin
    (a band closer, with the unit the cancellation gave back) still saves, so it applies."""
    await _enable(client, keys)
    munich, berlin = await _crossed(client, keys, sessionmaker)

    async def meanwhile() -> None:
        cancel = await client.post(
            f"/v1/orders/{munich}/transitions",
            json={"to": "cancelled"},
            headers=auth(keys["admin"]),
        )
        assert cancel.status_code == 200, cancel.text

    wave_id = await waves_flow.run_wave(
        sessionmaker, channel="web", trigger="manual", between=meanwhile
    )
    read = (await client.get(f"/v1/waves/{wave_id}", headers=auth(keys["admin"]))).json()
    assert {o["order_id"]: o["outcome"] for o in read["orders"]} == {berlin: "moved"}
    saved = read["objective_before"] - read["objective_after"]
    assert saved == pytest.approx(1.5, abs=0.01)  # one band (and ~500 km of tie break)
    assert await _routed_to(client, keys, berlin) == ["BRL"]
    await assert_stock_invariants(engine)


async def _backordered_pool(
    client: httpx.AsyncClient, keys: dict[str, str], sessionmaker: async_sessionmaker[AsyncSession]
) -> tuple[str, str]:
    """Whole lines, backorders allowed. The Berlin order took Munich's only mug (Berlin had
    none yet); then Berlin got one and Munich one more: the Munich order for 2 finds no
    warehouse with 2, takes Munich's and waits for the second. Moving the Berlin order home
    frees Munich's other mug for it."""
    resp = await client.put(
        "/v1/routing-policies/web",
        json={"allow_backorder": True, "allow_line_split": False},
        headers=auth(keys["admin"]),
    )
    assert resp.status_code == 200, resp.text
    await _enable(client, keys)
    await stock(sessionmaker, "BRL", {}, **BERLIN)
    await stock(sessionmaker, "MNC", {"WAVE-01": 1}, **MUNICH)
    berlin = await client.post(
        "/v1/orders", json=_to("Berlin", BERLIN), headers=auth(keys["storefront"])
    )
    assert berlin.status_code == 201, berlin.text
    await stock(sessionmaker, "BRL", {"WAVE-01": 1})  # no backorder fill: not through the API
    await stock(sessionmaker, "MNC", {"WAVE-01": 1})
    body = _to("Munich", MUNICH)
    body["lines"][0]["quantity"] = 2
    munich = await client.post("/v1/orders", json=body, headers=auth(keys["storefront"]))
    assert munich.status_code == 201, munich.text
    assert [ln["backordered"] for ln in munich.json()["lines"]] == [1]
    return berlin.json()["id"], munich.json()["id"]


async def test_a_wave_fills_a_backorder_with_the_stock_its_moves_free(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    berlin, munich = await _backordered_pool(client, keys, sessionmaker)
    assert await _routed_to(client, keys, berlin) == ["MNC"]

    resp = await client.post("/v1/waves", json={"channel": "web"}, headers=auth(keys["admin"]))
    assert resp.status_code == 201, resp.text
    wave = resp.json()
    assert wave["applied"] and (wave["pool_size"], wave["moved"]) == (2, 2)
    by_order = {o["order_id"]: o for o in wave["orders"]}
    assert by_order[munich]["plan"]["filled"] == 1
    after = by_order[munich]["plan"]["after"]["allocations"]
    assert [(a["warehouse"], a["quantity"]) for a in after] == [("MNC", 2)]

    assert await _routed_to(client, keys, berlin) == ["BRL"]
    order = (await client.get(f"/v1/orders/{munich}", headers=auth(keys["admin"]))).json()
    assert [ln["backordered"] for ln in order["lines"]] == [0]
    live = [s for s in order["shipments"] if s["status"] != "cancelled"]
    assert [(s["warehouse"], s["status"]) for s in live] == [("MNC", "pending")]
    routing = (await client.get(f"/v1/orders/{munich}/routing", headers=auth(keys["admin"]))).json()
    assert routing["backorders"] == [] and routing["fully_filled"] is True
    assert routing["change"]["kind"] == "wave"
    history = (await client.get(f"/v1/orders/{munich}/history", headers=auth(keys["admin"]))).json()
    fill = next(e for e in history if e["kind"] == "backorder_filled")
    assert fill["reason"].startswith("wave")
    async with engine.connect() as conn:
        events = (
            await conn.execute(
                select(OutboxEvent.payload).where(OutboxEvent.type == "order.backorder_filled")
            )
        ).all()
    assert [[f["quantity"] for f in e[0]["data"]["fills"]] for e in events] == [[1]]
    await assert_stock_invariants(engine)
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


async def test_a_backorder_filled_while_the_wave_solves_is_not_filled_twice(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
    engine: AsyncEngine,
) -> None:
    """A receipt at Munich fills the Munich order's backorder between solve and apply: the
    wave skips it (its backorders changed under it) and the Berlin order's move home still
    saves on its own, so it applies; no unit is reserved twice."""
    berlin, munich = await _backordered_pool(client, keys, sessionmaker)

    async def meanwhile() -> None:
        resp = await client.post(
            "/v1/inventory/adjustments",
            json={"warehouse": "MNC", "sku": "WAVE-01", "type": "receive", "quantity": 1},
            headers=auth(keys["fulfillment"]),
        )
        assert resp.status_code == 201, resp.text

    wave_id = await waves_flow.run_wave(
        sessionmaker, channel="web", trigger="manual", between=meanwhile
    )
    read = (await client.get(f"/v1/waves/{wave_id}", headers=auth(keys["admin"]))).json()
    outcomes = {o["order_id"]: o["outcome"] for o in read["orders"]}
    assert outcomes == {munich: "skipped", berlin: "moved"}
    order = (await client.get(f"/v1/orders/{munich}", headers=auth(keys["admin"]))).json()
    assert [ln["backordered"] for ln in order["lines"]] == [0]  # by the receipt's fill
    assert await _routed_to(client, keys, berlin) == ["BRL"]
    await assert_stock_invariants(engine)
