"""Order edits and partial cancellation, through the real app on a real Postgres: a preview
writes nothing and says what applying does; applying is atomic, version-guarded and
idempotent; picked units are refused by name; partial cancellation releases stock, reports (or
issues) the refund due, and cancels the order when nothing is left."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from tests.helpers import assert_stock_invariants, auth, order_body, stock

_TABLES = (
    "orders",
    "order_lines",
    "shipments",
    "allocations",
    "stock_levels",
    "order_events",
    "outbox_events",
    "customer_order_totals",
    "idempotency_keys",
    "payments",
    "refunds",
)


async def _snapshot(engine: AsyncEngine) -> dict[str, list[str]]:
    """Every row of the tables an edit could touch, as text."""
    out = {}
    async with engine.connect() as conn:
        for t in _TABLES:
            rows = (await conn.execute(text(f"SELECT t::text FROM {t} t"))).scalars().all()
            out[t] = sorted(rows)
    return out


async def _place(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    sessionmaker: async_sessionmaker[AsyncSession],
) -> dict[str, Any]:
    await stock(sessionmaker, "BER", {"TSHIRT-RED-M": 10, "CAP-1": 5})
    await stock(sessionmaker, "HAM", {"PLATE-1": 10}, latitude=53.55, longitude=9.99)
    lines = [
        {"sku": "TSHIRT-RED-M", "quantity": 2, "unit_price": 1999, "tax_rate_bps": 1900},
        {"sku": "PLATE-1", "quantity": 1, "unit_price": 850, "tax_rate_bps": 700},
    ]  # two parcels: T-shirts from BER, the plate from HAM
    resp = await client.post(
        "/v1/orders", json=order_body(lines=lines), headers=auth(keys["storefront"])
    )
    assert resp.status_code == 201, resp.text
    return dict(resp.json())


def _line(order: dict[str, Any], sku: str) -> str:
    return str(next(ln["id"] for ln in order["lines"] if ln["sku"] == sku))


async def test_preview_writes_nothing_and_apply_does_what_it_said(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    order = await _place(client, keys, sessionmaker)
    front = auth(keys["storefront"])
    edit = {
        "expected_version": order["version"],
        "lines": [{"line_id": _line(order, "PLATE-1"), "quantity": 3}],
        "add_lines": [{"sku": "CAP-1", "quantity": 2, "unit_price": 1000, "tax_rate_bps": 1900}],
        "reason": "customer called",
    }
    before = await _snapshot(engine)
    preview = await client.post(
        f"/v1/orders/{order['id']}/edits?dry_run=true", json=edit, headers=front
    )
    assert preview.status_code == 200, preview.text
    assert await _snapshot(engine) == before  # nothing written
    p = preview.json()
    assert p["dry_run"] is True
    changes = {ln["sku"]: ln for ln in p["lines"]}
    assert changes["PLATE-1"]["change"] == "quantity"
    assert changes["PLATE-1"]["quantity_after"] == 3
    assert changes["CAP-1"]["change"] == "added"
    assert changes["TSHIRT-RED-M"]["change"] == "unchanged"
    # 3 mugs at 850 + 7% tax, 2 caps at 1000 + 19%, 2 shirts at 1999 + 19%, fee 495
    expected = 3 * 850 + 179 + 2 * 1000 + 380 + 2 * 1999 + 760 + 495
    assert p["totals_after"]["total"] == expected
    assert p["totals_before"]["total"] == order["totals"]["total"]
    assert p["balance"] == {
        "total": expected,
        "captured": 0,
        "refunded": 0,
        "amount_due": expected,
        "refund_due": 0,
        "refunded_now": 0,
    }
    assert [s["warehouse"] for s in p["shipments_cancelled"]] == ["HAM"]
    assert sorted(s["warehouse"] for s in p["shipments_planned"]) == ["BER", "HAM"]
    assert p["routing"]["explanation"]
    stock_moves = {(s["warehouse"], s["sku"]): s for s in p["stock"]}
    assert stock_moves[("HAM", "PLATE-1")] == {
        "warehouse": "HAM",
        "sku": "PLATE-1",
        "reserved": 3,
        "released": 1,
    }
    assert stock_moves[("BER", "CAP-1")]["reserved"] == 2

    applied = await client.post(f"/v1/orders/{order['id']}/edits", json=edit, headers=front)
    assert applied.status_code == 200, applied.text
    a = applied.json()
    assert a["dry_run"] is False
    assert a["version_after"] == order["version"] + 1
    for key in ("totals_after", "stock", "balance"):
        assert a[key] == p[key], key
    same = [{k: v for k, v in ln.items() if k != "line_id"} for ln in a["lines"]]
    assert same == [{k: v for k, v in ln.items() if k != "line_id"} for ln in p["lines"]]
    got = (await client.get(f"/v1/orders/{order['id']}", headers=front)).json()
    assert got["version"] == order["version"] + 1
    assert got["totals"]["total"] == expected
    assert {ln["sku"]: ln["quantity"] for ln in got["lines"]} == {
        "TSHIRT-RED-M": 2,
        "PLATE-1": 3,
        "CAP-1": 2,
    }
    live = [s for s in got["shipments"] if s["status"] != "cancelled"]
    assert sum(ln["quantity"] for s in live for ln in s["lines"]) == 7
    history = (await client.get(f"/v1/orders/{order['id']}/history", headers=front)).json()
    assert history[-1]["kind"] == "edited"
    assert history[-1]["reason"] == "customer called"
    async with engine.connect() as conn:
        types = (
            await conn.execute(
                text("SELECT type FROM outbox_events WHERE aggregate_id = :o ORDER BY id"),
                {"o": order["id"]},
            )
        ).scalars()
        assert list(types)[-1] == "order.edited"
    # the stored routing is the order's plan now; placement's stays readable
    routing = (await client.get(f"/v1/orders/{order['id']}/routing", headers=front)).json()
    assert routing["change"]["kind"] == "order_edited"
    assert sorted(routing["warehouses"]) == ["BER", "HAM"]
    assert routing["explanation"]["summary"] == p["routing"]["explanation"]["summary"]
    assert routing["placement"]["warehouses"] == order["routed_to"]
    await assert_stock_invariants(engine)


async def test_version_guard_and_idempotency_key(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    order = await _place(client, keys, sessionmaker)
    front = auth(keys["storefront"])
    url = f"/v1/orders/{order['id']}/edits"
    edit = {
        "expected_version": order["version"] + 5,
        "lines": [{"line_id": _line(order, "PLATE-1"), "quantity": 2}],
    }
    before = await _snapshot(engine)
    stale = await client.post(url, json=edit, headers=front)
    assert stale.status_code == 409, stale.text
    assert stale.json()["code"] == "version_conflict"
    assert stale.json()["current_version"] == order["version"]
    assert await _snapshot(engine) == before
    edit["expected_version"] = order["version"]
    keyed = {**front, "Idempotency-Key": "edit-1"}
    first = await client.post(url, json=edit, headers=keyed)
    again = await client.post(url, json=edit, headers=keyed)
    assert first.status_code == again.status_code == 200, again.text
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.json() == first.json()
    got = (await client.get(f"/v1/orders/{order['id']}", headers=front)).json()
    assert got["version"] == order["version"] + 1  # applied once
    other = await client.post(url, json={**edit, "reason": "different"}, headers=keyed)
    assert other.status_code == 422, other.text
    assert other.json()["code"] == "idempotency_key_reused"
    # without the key, the same body again is a stale version
    assert (await client.post(url, json=edit, headers=front)).json()["code"] == ("version_conflict")
    await assert_stock_invariants(engine)


async def test_picked_units_are_refused_by_name(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    order = await _place(client, keys, sessionmaker)
    admin, front = auth(keys["admin"]), auth(keys["storefront"])
    resp = await client.post(
        f"/v1/orders/{order['id']}/payments",
        json={
            "method": "card",
            "provider": "stripe",
            "provider_reference": "pi_edit_picked",
            "amount": order["totals"]["total"],
            "currency": "EUR",
            "status": "captured",
        },
        headers=admin,
    )
    assert resp.status_code in (200, 201), resp.text
    ber = next(s for s in order["shipments"] if s["warehouse"] == "BER")
    resp = await client.post(
        f"/v1/shipments/{ber['id']}/transitions",
        json={"to": "picked"},
        headers=auth(keys["fulfillment"]),
    )
    assert resp.status_code == 200, resp.text
    version = (await client.get(f"/v1/orders/{order['id']}", headers=front)).json()["version"]
    url = f"/v1/orders/{order['id']}/edits"
    before = await _snapshot(engine)
    shirt = {
        "expected_version": version,
        "lines": [{"line_id": _line(order, "TSHIRT-RED-M"), "quantity": 3}],
    }
    refused = await client.post(url, json=shirt, headers=front)
    assert refused.status_code == 409, refused.text
    problem = refused.json()
    assert problem["code"] == "units_not_editable"
    assert problem["lines"][0]["sku"] == "TSHIRT-RED-M"
    assert problem["lines"][0]["shipments"][0]["shipment_id"] == ber["id"]
    moved = {"expected_version": version, "shipping_address": order_body()["shipping_address"]}
    moved["shipping_address"]["city"] = "Potsdam"
    refused = await client.post(url, json=moved, headers=front)
    assert refused.status_code == 409
    assert refused.json()["shipments"][0]["id"] == ber["id"]
    assert await _snapshot(engine) == before
    # the mug's shipment is still pending: it may change
    mug = {
        "expected_version": version,
        "lines": [{"line_id": _line(order, "PLATE-1"), "quantity": 2}],
    }
    ok = await client.post(url, json=mug, headers=front)
    assert ok.status_code == 200, ok.text
    # one more plate: 2 x 850 + 7% (119) - (850 + 60)
    assert ok.json()["balance"]["amount_due"] == 1700 + 119 - 850 - 60
    await assert_stock_invariants(engine)


async def test_bad_edits_are_clear_4xx_and_change_nothing(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    order = await _place(client, keys, sessionmaker)
    front = auth(keys["storefront"])
    url = f"/v1/orders/{order['id']}/edits"
    v = order["version"]
    mug = _line(order, "PLATE-1")
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"lines": [{"line_id": mug, "quantity": 2}]}, 422, "validation_error"),
        ({"expected_version": v}, 422, "empty_edit"),
        ({"expected_version": v, "lines": [{"line_id": mug, "quantity": 1}]}, 422, "empty_edit"),
        (
            {"expected_version": v, "lines": [{"line_id": order["id"], "quantity": 1}]},
            422,
            "unknown_line",
        ),
        (
            {"expected_version": v, "remove_lines": [mug, _line(order, "TSHIRT-RED-M")]},
            422,
            "empty_order",
        ),
        (
            {
                "expected_version": v,
                "lines": [{"line_id": mug, "quantity": 2}],
                "remove_lines": [mug],
            },
            422,
            "validation_error",
        ),
        (
            {
                "expected_version": v,
                "add_lines": [{"sku": "GHOST-9", "quantity": 1, "unit_price": 1}],
            },
            422,
            "unknown_sku",
        ),
        (
            {
                "expected_version": v,
                "add_lines": [{"sku": "CAP-1", "quantity": 50, "unit_price": 1}],
            },
            409,
            "insufficient_stock",
        ),
    ]
    before = await _snapshot(engine)
    for body, status, code in cases:
        resp = await client.post(url, json=body, headers=front)
        assert resp.status_code == status, (body, resp.text)
        assert resp.json()["code"] == code, (body, resp.text)
    cancel = f"/v1/orders/{order['id']}/cancel-lines"
    for body, code in (
        ({"lines": [{"line_id": mug, "quantity": 2}]}, "cancel_exceeds_quantity"),
        ({"lines": [{"line_id": order["id"], "quantity": 1}]}, "unknown_line"),
        ({"lines": []}, "validation_error"),
    ):
        resp = await client.post(cancel, json=body, headers=front)
        assert resp.status_code == 422, resp.text
        assert resp.json()["code"] == code
    resp = await client.post(
        cancel, json={"lines": [{"line_id": mug, "quantity": 1}], "refund": True}, headers=front
    )
    assert resp.status_code == 403  # refunds are for admin keys
    assert await _snapshot(engine) == before


async def test_partial_cancellation_then_the_rest(
    client: httpx.AsyncClient,
    keys: dict[str, str],
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    order = await _place(client, keys, sessionmaker)
    admin = auth(keys["admin"])
    paid = await client.post(
        f"/v1/orders/{order['id']}/payments",
        json={
            "method": "card",
            "provider": "stripe",
            "provider_reference": "pi_edit_1",
            "amount": order["totals"]["total"],
            "currency": "EUR",
            "status": "captured",
        },
        headers=admin,
    )
    assert paid.status_code in (200, 201), paid.text
    shirt, mug = _line(order, "TSHIRT-RED-M"), _line(order, "PLATE-1")
    cancel = f"/v1/orders/{order['id']}/cancel-lines"
    one = await client.post(
        cancel, json={"lines": [{"line_id": shirt, "quantity": 1}]}, headers=admin
    )
    assert one.status_code == 200, one.text
    body = one.json()
    assert body["status"] == "paid"
    assert body["balance"]["refund_due"] == 1999 + 380
    assert body["balance"]["refunded_now"] == 0
    line = next(ln for ln in body["lines"] if ln["sku"] == "TSHIRT-RED-M")
    assert (line["quantity_after"], line["cancelled"]) == (1, 1)
    assert body["stock"] == [
        {"warehouse": "BER", "sku": "TSHIRT-RED-M", "reserved": 1, "released": 2}
    ]
    rest = await client.post(
        cancel,
        json={
            "lines": [{"line_id": shirt, "quantity": 1}, {"line_id": mug, "quantity": 1}],
            "refund": True,
            "reason": "customer changed their mind",
        },
        headers=admin,
    )
    assert rest.status_code == 200, rest.text
    body = rest.json()
    assert body["order_cancelled"] is True
    assert body["status"] == "cancelled"
    assert body["balance"]["refunded_now"] == order["totals"]["total"] - 495
    assert body["balance"]["refund_due"] == 0  # the shipping fee stays
    got = (await client.get(f"/v1/orders/{order['id']}", headers=admin)).json()
    assert got["status"] == "cancelled"
    assert all(s["status"] == "cancelled" for s in got["shipments"])
    history = (await client.get(f"/v1/orders/{order['id']}/history", headers=admin)).json()
    assert [h["kind"] for h in history[-3:]] == ["lines_cancelled", "lines_cancelled", "transition"]
    assert history[-1]["to_status"] == "cancelled"
    await assert_stock_invariants(engine)
