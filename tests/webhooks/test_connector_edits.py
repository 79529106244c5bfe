"""Edits from the sales channel by line id: Shopify ``orders/edited`` (units added to and
removed from line items, by id), ``orders/updated`` matched by line id, WooCommerce updates of
paid orders; each applied once, as an order edit, or failed with the reason (nothing applied)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.helpers import assert_stock_invariants
from tests.webhooks.conftest import fixture_json, make_connector, shopify_headers, woo_headers

SHOP = "/v1/webhooks/inbound/shop"
WOO = "/v1/webhooks/inbound/woo"
LINE_1, LINE_2 = "866550311766439020", "141249953214522974"  # the fixture's line item ids


async def _shopify(
    client: httpx.AsyncClient, topic: str, payload: dict[str, Any]
) -> httpx.Response:
    body = json.dumps(payload).encode()
    return await client.post(
        SHOP, content=body, headers=shopify_headers("shpss_c1", body, topic=topic)
    )


async def _woo(
    client: httpx.AsyncClient, payload: dict[str, Any], topic: str = "order.updated"
) -> httpx.Response:
    body = json.dumps(payload).encode()
    return await client.post(
        WOO, content=body, headers=woo_headers("woo-secret-c1", body, topic=topic)
    )


async def _order(client: httpx.AsyncClient, admin: dict[str, str], order_id: str) -> Any:
    resp = await client.get(f"/v1/orders/{order_id}", headers=admin)
    assert resp.status_code == 200, resp.text
    return resp.json()


async def _line_ids(engine: AsyncEngine, order_id: str) -> list[tuple[str, int, str | None]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            text(
                "SELECT sku, quantity, external_line_id FROM order_lines WHERE order_id = :o "
                "ORDER BY line_no"
            ),
            {"o": order_id},
        )
        return [tuple(r) for r in rows.all()]  # type: ignore[misc]


async def _last_inbox(engine: AsyncEngine) -> tuple[str, str | None]:
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                text("SELECT status, error_code FROM webhook_inbox ORDER BY id DESC LIMIT 1")
            )
        ).one()
    return row[0], row[1]


def _edit(
    committed_at: str,
    additions: list[tuple[Any, int]] = (),  # type: ignore[assignment]
    removals: list[tuple[Any, int]] = (),  # type: ignore[assignment]
    edit_id: int = 1,
) -> dict[str, Any]:
    """An ``orders/edited`` body as Shopify sends it (REST webhook format)."""
    return {
        "order_edit": {
            "id": edit_id,
            "app_id": None,
            "created_at": committed_at,
            "committed_at": committed_at,
            "notify_customer": False,
            "order_id": fixture_json("shopify_orders_create.json")["id"],
            "staff_note": "",
            "user_id": None,
            "line_items": {
                "additions": [{"id": i, "delta": d} for i, d in additions],
                "removals": [{"id": i, "delta": d} for i, d in removals],
            },
            "discounts": {"line_item": {"additions": [], "removals": []}},
            "shipping_lines": {"additions": [], "removals": []},
        }
    }


async def _shopify_order(client: httpx.AsyncClient, admin: dict[str, str]) -> str:
    await make_connector(client, admin, name="shop", fmt="shopify", secret="shpss_c1")
    created = await _shopify(client, "orders/create", fixture_json("shopify_orders_create.json"))
    assert created.status_code == 200, created.text
    return str(created.json()["order_id"])


async def test_shopify_orders_edited_by_line_item_id(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    order_id = await _shopify_order(client, admin)
    # the two lines have the same SKU: only their Shopify ids tell them apart
    assert await _line_ids(engine, order_id) == [
        ("IPOD2008PINK", 1, LINE_1),
        ("IPOD2008PINK", 1, LINE_2),
    ]
    edit = _edit("2022-04-06T09:00:00-04:00", additions=[(LINE_2, 2)], removals=[(LINE_1, 1)])
    resp = await _shopify(client, "orders/edited", edit)
    assert resp.status_code == 200, resp.text
    assert resp.json()["type"] == "order.edited"
    assert resp.json()["detail"] == "order edited (2 line(s) changed by edit 1)"
    order = await _order(client, admin, order_id)
    assert [ln["quantity"] for ln in order["lines"]] == [0, 3]
    assert order["version"] == 2
    history = (await client.get(f"/v1/orders/{order_id}/history", headers=admin)).json()
    assert (history[-1]["kind"], history[-1]["reason"]) == ("edited", "edit 1 in the sales channel")
    # Shopify retries the edit (a new delivery id): applied once
    again = await _shopify(client, "orders/edited", edit)
    assert again.status_code == 200, again.text
    assert "not applied again" in again.json()["detail"]
    # an orders/updated from before the edit, delivered late: not applied over it
    late = await _shopify(client, "orders/updated", fixture_json("shopify_orders_create.json"))
    assert late.status_code == 200, late.text
    assert "older than the one applied" in late.json()["detail"]
    assert [ln["quantity"] for ln in (await _order(client, admin, order_id))["lines"]] == [0, 3]
    await assert_stock_invariants(engine)


async def test_shopify_edit_naming_an_unknown_line_fails_whole(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    order_id = await _shopify_order(client, admin)
    before = await _order(client, admin, order_id)
    edit = _edit(
        "2022-04-06T09:00:00-04:00", additions=[(LINE_2, 1), (99_001, 1)], removals=[(LINE_1, 1)]
    )
    resp = await _shopify(client, "orders/edited", edit)
    assert resp.status_code == 422, resp.text
    problem = resp.json()
    assert problem["code"] == "unknown_line_items"
    assert problem["unknown_line_items"] == ["99001"]
    assert await _last_inbox(engine) == ("failed", "unknown_line_items")
    after = await _order(client, admin, order_id)
    assert (after["version"], after["lines"]) == (before["version"], before["lines"])
    # more units removed than the line has: refused the same way
    too_many = _edit("2022-04-06T09:00:00-04:00", removals=[(LINE_1, 2)], edit_id=2)
    resp = await _shopify(client, "orders/edited", too_many)
    assert resp.status_code == 422, resp.text
    assert resp.json()["code"] == "invalid_line_change"
    assert (await _order(client, admin, order_id))["version"] == before["version"]
    # a malformed edit is a 422 invalid_payload, stored as failed
    bad = _edit("2022-04-06T09:00:00-04:00", additions=[(LINE_1, 0)], edit_id=3)
    resp = await _shopify(client, "orders/edited", bad)
    assert resp.status_code == 422, resp.text
    assert resp.json()["code"] == "invalid_payload"


async def test_shopify_update_and_edit_of_one_change_apply_once(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """Shopify sends orders/updated and orders/edited for one edit, in any order: the units
    change once, and a line item the edit adds arrives (with its SKU and price, and its id)
    in the update."""
    order_id = await _shopify_order(client, admin)
    update = fixture_json("shopify_orders_create.json")
    update["updated_at"] = "2022-04-06T10:00:05-04:00"
    update["line_items"][0]["current_quantity"] = 0  # removed by the edit
    added = dict(update["line_items"][1]) | {"id": 77_001, "quantity": 2, "current_quantity": 2}
    update["line_items"].append(added)
    resp = await _shopify(client, "orders/updated", update)
    assert resp.status_code == 200, resp.text
    assert resp.json()["detail"] == "order edited (2 line(s) changed)"
    assert await _line_ids(engine, order_id) == [
        ("IPOD2008PINK", 0, LINE_1),
        ("IPOD2008PINK", 1, LINE_2),
        ("IPOD2008PINK", 2, "77001"),
    ]
    edit = _edit("2022-04-06T10:00:00-04:00", additions=[(77_001, 2)], removals=[(LINE_1, 1)])
    resp = await _shopify(client, "orders/edited", edit)
    assert resp.status_code == 200, resp.text
    assert "not applied again" in resp.json()["detail"]
    assert [ln["quantity"] for ln in (await _order(client, admin, order_id))["lines"]] == [0, 1, 2]
    # the other way round: the edit first (the line it adds is unknown yet: failed, nothing
    # applied), then the update brings everything
    order_2 = fixture_json("shopify_orders_create.json") | {"id": 450789470, "name": "#1002"}
    created = await _shopify(client, "orders/create", order_2)
    assert created.status_code == 200, created.text
    edit_2 = _edit("2022-04-06T10:00:00-04:00", additions=[(77_002, 1)], edit_id=5)
    edit_2["order_edit"]["order_id"] = 450789470
    assert (await _shopify(client, "orders/edited", edit_2)).status_code == 422
    update_2 = order_2 | {"updated_at": "2022-04-06T10:00:05-04:00"}
    update_2["line_items"] = [*order_2["line_items"], added | {"id": 77_002, "quantity": 1}]
    update_2["line_items"][-1]["current_quantity"] = 1
    resp = await _shopify(client, "orders/updated", update_2)
    assert resp.status_code == 200, resp.text
    lines = await _line_ids(engine, str(created.json()["order_id"]))
    assert [(q, ext) for _, q, ext in lines] == [(1, LINE_1), (1, LINE_2), (1, "77002")]
    await assert_stock_invariants(engine)


async def test_shopify_edit_of_picked_units_fails_with_the_reason(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    order_id = await _shopify_order(client, admin)
    paid = await _shopify(client, "orders/paid", fixture_json("shopify_orders_create.json"))
    assert paid.status_code == 200, paid.text
    picked = await client.post(
        f"/v1/orders/{order_id}/transitions", json={"to": "picked"}, headers=admin
    )
    assert picked.status_code == 200, picked.text
    resp = await _shopify(
        client, "orders/edited", _edit("2022-04-06T09:00:00-04:00", removals=[(LINE_1, 1)])
    )
    assert resp.status_code == 409, resp.text
    assert resp.json()["code"] == "units_not_editable"
    assert await _last_inbox(engine) == ("failed", "units_not_editable")
    order = await _order(client, admin, order_id)
    assert ([ln["quantity"] for ln in order["lines"]], order["status"]) == ([1, 1], "picked")
    # shipped: what the channel then removes from a line (a refund there) is not an edit here
    for to in ("packed", "shipped"):
        body: dict[str, Any] = {"to": to, "carrier": "UPS", "tracking_number": "1Z999"}
        moved = await client.post(f"/v1/orders/{order_id}/transitions", json=body, headers=admin)
        assert moved.status_code == 200, moved.text
    refunded = fixture_json("shopify_orders_create.json") | {
        "updated_at": "2022-04-09T10:00:00-04:00"
    }
    refunded["line_items"][0]["current_quantity"] = 0
    resp = await _shopify(client, "orders/updated", refunded)
    assert resp.status_code == 200, resp.text
    assert resp.json()["detail"] == "order is 'shipped'; the update is not applied"


async def _woo_connector(client: httpx.AsyncClient, admin: dict[str, str]) -> None:
    await make_connector(client, admin, name="woo", fmt="woocommerce", secret="woo-secret-c1")
    mapped = await client.patch(
        "/v1/connectors/woo", json={"sku_map": {"product:93": "MUG-01"}}, headers=admin
    )
    assert mapped.status_code == 200, mapped.text


async def test_woocommerce_update_of_a_paid_order_is_an_edit(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """WooCommerce reports a paid order's changes as order.updated with status processing:
    until now oms read only the payment in them. Now the lines (by line item id) and the
    address are applied as an edit, the payment recorded once."""
    await _woo_connector(client, admin)
    sample = fixture_json("woocommerce_order.json")  # processing, paid
    created = await _woo(client, sample, topic="order.created")
    assert created.status_code == 200, created.text
    order_id = created.json()["order_id"]
    assert (await _order(client, admin, order_id))["status"] == "paid"
    assert [ext for _, _, ext in await _line_ids(engine, order_id)] == ["315", "316"]
    update = json.loads(json.dumps(sample))
    update["date_modified_gmt"] = "2017-03-23T09:00:00"
    update["line_items"][0] |= {"quantity": 1, "total": "3.00", "total_tax": "0.23"}
    update["shipping"]["city"] = "Oakland"
    resp = await _woo(client, update)
    assert resp.status_code == 200, resp.text
    assert resp.json()["type"] == "order.updated"
    assert resp.json()["detail"] == (
        "order edited (1 line(s) changed, shipping address changed); payment was already recorded"
    )
    order = await _order(client, admin, order_id)
    assert [(ln["sku"], ln["quantity"]) for ln in order["lines"]] == [("MUG-01", 1), ("Bar3", 1)]
    assert order["shipping_address"]["city"] == "Oakland"
    assert order["status"] == "paid"
    # an older update arriving late changes nothing
    late = await _woo(client, sample)
    assert late.status_code == 200, late.text
    assert "older than the one applied" in late.json()["detail"]
    # once picked, a change of its lines fails with the reason, nothing applied
    picked = await client.post(
        f"/v1/orders/{order_id}/transitions", json={"to": "picked"}, headers=admin
    )
    assert picked.status_code == 200, picked.text
    update["date_modified_gmt"] = "2017-03-24T09:00:00"
    update["line_items"] = update["line_items"][1:]
    resp = await _woo(client, update)
    assert resp.status_code == 409, resp.text
    assert resp.json()["code"] == "units_not_editable"
    assert await _last_inbox(engine) == ("failed", "units_not_editable")
    after = await _order(client, admin, order_id)
    assert [ln["quantity"] for ln in after["lines"]] == [1, 1]
    await assert_stock_invariants(engine)


async def test_woocommerce_update_that_pays_and_changes_lines(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    await _woo_connector(client, admin)
    sample = fixture_json("woocommerce_order.json") | {
        "status": "on-hold",
        "date_paid": None,
        "date_paid_gmt": None,
    }
    created = await _woo(client, sample, topic="order.created")
    assert created.status_code == 200, created.text
    order_id = created.json()["order_id"]
    assert (await _order(client, admin, order_id))["status"] == "placed"
    update = fixture_json("woocommerce_order.json")  # processing, paid: the whole total
    update["date_modified_gmt"] = "2017-03-23T09:00:00"
    update["line_items"][1]["quantity"] = 2
    update["line_items"][1] |= {"total": "24.00", "total_tax": "1.80"}
    update["total"] = "42.25"  # the new total, paid
    resp = await _woo(client, update)
    assert resp.status_code == 200, resp.text
    assert resp.json()["detail"] == "order edited (1 line(s) changed); payment captured; order paid"
    order = await _order(client, admin, order_id)
    assert [(ln["sku"], ln["quantity"]) for ln in order["lines"]] == [("MUG-01", 2), ("Bar3", 2)]
    assert order["status"] == "paid"
    await assert_stock_invariants(engine)


async def test_update_and_edit_racing_apply_the_change_once(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """The orders/updated and orders/edited of one edit delivered at the same moment, on
    fresh orders: serialized per order, the units change once whichever comes first."""
    await make_connector(client, admin, name="shop", fmt="shopify", secret="shpss_c1")
    for n in range(4):
        shopify_id = 820_982_000 + n
        placed = fixture_json("shopify_orders_create.json") | {"id": shopify_id}
        created = await _shopify(client, "orders/create", placed)
        assert created.status_code == 200, created.text
        update = json.loads(json.dumps(placed)) | {"updated_at": "2022-04-06T10:00:05-04:00"}
        update["line_items"][0]["current_quantity"] = 0
        update["line_items"][1] |= {"quantity": 3, "current_quantity": 3}
        edit = _edit("2022-04-06T10:00:00-04:00", additions=[(LINE_2, 2)], removals=[(LINE_1, 1)])
        edit["order_edit"]["order_id"] = shopify_id
        answers = await asyncio.gather(
            _shopify(client, "orders/updated", update), _shopify(client, "orders/edited", edit)
        )
        assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
        order = await _order(client, admin, created.json()["order_id"])
        assert [ln["quantity"] for ln in order["lines"]] == [0, 3]
        assert order["version"] == 2  # one edit
    await assert_stock_invariants(engine)


async def test_edit_racing_a_pick(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """orders/edited and a pick at once: the edit comes first (and the picked order carries
    it) or after (and fails with units_not_editable, nothing applied); never half of each."""
    await make_connector(client, admin, name="shop", fmt="shopify", secret="shpss_c1")
    for n in range(4):
        shopify_id = 830_982_000 + n
        placed = fixture_json("shopify_orders_create.json") | {"id": shopify_id}
        created = await _shopify(client, "orders/create", placed)
        assert created.status_code == 200, created.text
        order_id = created.json()["order_id"]
        paid = await _shopify(client, "orders/paid", placed)
        assert paid.status_code == 200, paid.text
        edit = _edit("2022-04-06T10:00:00-04:00", removals=[(LINE_1, 1)])
        edit["order_edit"]["order_id"] = shopify_id
        edited, picked = await asyncio.gather(
            _shopify(client, "orders/edited", edit),
            client.post(f"/v1/orders/{order_id}/transitions", json={"to": "picked"}, headers=admin),
        )
        assert picked.status_code == 200, picked.text
        order = await _order(client, admin, order_id)
        quantities = [ln["quantity"] for ln in order["lines"]]
        if edited.status_code == 200:
            assert quantities == [0, 1], edited.text
        else:
            assert (edited.status_code, edited.json()["code"]) == (409, "units_not_editable")
            assert quantities == [1, 1]
        assert order["status"] == "picked"
    await assert_stock_invariants(engine)


async def _snapshot(engine: AsyncEngine, order_id: str) -> Any:
    """What an applied change would move: the order, its lines, shipments and allocations."""
    async with engine.connect() as conn:
        out = []
        for sql in (
            "SELECT status, version, currency, total_amount FROM orders WHERE id = :o",
            "SELECT sku, quantity, unit_price, external_line_id FROM order_lines "
            "WHERE order_id = :o ORDER BY line_no",
            "SELECT id, status FROM shipments WHERE order_id = :o ORDER BY seq",
            "SELECT id, status, quantity FROM allocations WHERE order_id = :o ORDER BY id",
        ):
            out.append((await conn.execute(text(sql), {"o": order_id})).all())
        return out


async def test_an_update_in_another_currency_is_refused_whole(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """A USD order's orders/updated whose prices are in EUR (the shop's currency changed, or
    a line priced in another currency) is not an edit of that order: 422, nothing applied,
    the inbox row failed with the reason. (Before: the new line was added at its EUR price
    to the USD order.)"""
    order_id = await _shopify_order(client, admin)
    update = fixture_json("shopify_orders_create.json")
    update["updated_at"] = "2022-04-06T10:00:05-04:00"
    update["currency"] = "EUR"
    added = dict(update["line_items"][1]) | {"id": 77_003, "quantity": 1, "current_quantity": 1}
    update["line_items"].append(added)
    before = await _snapshot(engine, order_id)
    resp = await _shopify(client, "orders/updated", update)
    assert resp.status_code == 422, resp.text
    assert resp.json()["code"] == "currency_mismatch"
    assert await _last_inbox(engine) == ("failed", "currency_mismatch")
    assert await _snapshot(engine, order_id) == before
    # the same update in the order's currency applies
    update["currency"] = "USD"
    resp = await _shopify(client, "orders/updated", update)
    assert resp.status_code == 200, resp.text
    assert [q for _, q, _ in await _line_ids(engine, order_id)] == [1, 1, 1]
    await assert_stock_invariants(engine)


async def test_an_edit_taking_a_line_past_the_line_limit_is_refused(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """orders/edited adds at most 10000 units per change, but many changes of one line item
    add up: a line may not hold more than an order line may (10000, as POST /v1/orders and
    the edits API say): 422 ``invalid_line_change``, nothing applied."""
    order_id = await _shopify_order(client, admin)
    allowed = await client.put(
        "/v1/routing-policies/web", json={"allow_backorder": True}, headers=admin
    )
    assert allowed.status_code == 200, allowed.text
    edit = _edit("2022-04-06T09:00:00-04:00", additions=[(LINE_2, 10_000)] * 3)
    before = await _snapshot(engine, order_id)
    resp = await _shopify(client, "orders/edited", edit)
    assert resp.status_code == 422, resp.text
    assert resp.json()["code"] == "invalid_line_change"
    assert await _snapshot(engine, order_id) == before
    # an update with more units of one line item than a line may hold: refused the same way
    update = fixture_json("shopify_orders_create.json")
    update["updated_at"] = "2022-04-06T10:00:05-04:00"
    update["line_items"].append(dict(update["line_items"][1]) | {"quantity": 10_000})
    resp = await _shopify(client, "orders/updated", update)
    assert resp.status_code == 422, resp.text
    assert resp.json()["code"] == "invalid_line_change"
    assert await _snapshot(engine, order_id) == before
    await assert_stock_invariants(engine)


async def test_one_edit_delivered_twice_at_once_applies_once(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """The same orders/edited delivered concurrently, with one webhook id (a retry racing the
    first delivery) and with two (two subscriptions): the units change once, every answer is
    a 2xx or a 4xx problem, the stock invariants hold."""
    await make_connector(client, admin, name="shop", fmt="shopify", secret="shpss_c1")
    for n, same_id in enumerate((True, False, True, False)):
        shopify_id = 840_982_000 + n
        placed = fixture_json("shopify_orders_create.json") | {"id": shopify_id}
        created = await _shopify(client, "orders/create", placed)
        assert created.status_code == 200, created.text
        edit = _edit("2022-04-06T10:00:00-04:00", additions=[(LINE_2, 2)], removals=[(LINE_1, 1)])
        edit["order_edit"]["order_id"] = shopify_id
        body = json.dumps(edit).encode()
        webhook = f"wh-{n}" if same_id else None
        answers = await asyncio.gather(
            *(
                client.post(
                    SHOP,
                    content=body,
                    headers=shopify_headers(
                        "shpss_c1", body, topic="orders/edited", webhook_id=webhook
                    ),
                )
                for _ in range(3)
            )
        )
        assert all(a.status_code < 500 for a in answers), [a.text for a in answers]
        assert any(a.status_code == 200 for a in answers), [a.text for a in answers]
        order = await _order(client, admin, created.json()["order_id"])
        assert [ln["quantity"] for ln in order["lines"]] == [0, 3]
        assert order["version"] == 2  # one edit
    await assert_stock_invariants(engine)


async def test_edits_delivered_out_of_order_then_the_update(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """Edit 2 arrives before edit 1: edit 1 is taken as already applied (its time is before
    the channel time applied), and the orders/updated Shopify sends after edit 2 brings the
    order to the channel's state: the units end as the channel has them, changed by edits
    and the update without loss or double counting."""
    order_id = await _shopify_order(client, admin)
    first = _edit("2022-04-06T09:00:00-04:00", removals=[(LINE_1, 1)], edit_id=1)
    second = _edit("2022-04-06T09:05:00-04:00", additions=[(LINE_2, 2)], edit_id=2)
    assert (await _shopify(client, "orders/edited", second)).status_code == 200
    assert (await _shopify(client, "orders/edited", first)).status_code == 200
    update = fixture_json("shopify_orders_create.json")
    update["updated_at"] = "2022-04-06T09:05:01-04:00"
    update["line_items"][0]["current_quantity"] = 0
    update["line_items"][1] |= {"quantity": 3, "current_quantity": 3}
    resp = await _shopify(client, "orders/updated", update)
    assert resp.status_code == 200, resp.text
    assert [q for _, q, _ in await _line_ids(engine, order_id)] == [0, 3]
    await assert_stock_invariants(engine)


async def test_a_huge_update_is_refused_cleanly(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """An orders/updated with more line items than an order may have (250), or a body over
    the limit: a 4xx problem, nothing applied."""
    order_id = await _shopify_order(client, admin)
    before = await _snapshot(engine, order_id)
    update = fixture_json("shopify_orders_create.json")
    update["updated_at"] = "2022-04-06T10:00:05-04:00"
    item = update["line_items"][1]
    update["line_items"] = [dict(item) | {"id": 90_000 + i} for i in range(300)]
    resp = await _shopify(client, "orders/updated", update)
    assert 400 <= resp.status_code < 500, resp.text
    assert resp.headers["content-type"].startswith("application/problem+json")
    update["note"] = "x" * 300_000
    resp = await _shopify(client, "orders/updated", update)
    assert resp.status_code == 413, resp.text
    assert await _snapshot(engine, order_id) == before


async def test_order_ids_that_are_not_ids_are_refused(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """An orders/edited (or orders/cancelled, orders/paid, refunds/create, WooCommerce update)
    naming its order by an id longer than oms keeps (128 characters) or by an object: 422
    ``invalid_payload``, not a 500 nor an event kept pending forever for an order that can
    never arrive; an edit id is an id too."""
    await _shopify_order(client, admin)
    await _woo_connector(client, admin)
    long_id, object_id = "9" * 200, {"id": 1}
    cases: list[tuple[str, dict[str, Any]]] = []
    for bad in (long_id, object_id):
        edit = _edit("2022-04-06T09:00:00-04:00", removals=[(LINE_1, 1)])
        edit["order_edit"]["order_id"] = bad
        cases.append(("orders/edited", edit))
        order = fixture_json("shopify_orders_create.json") | {"id": bad}
        cases += [("orders/cancelled", order), ("orders/paid", order)]
        refund = {"id": 1, "order_id": bad, "transactions": [_REFUND]}
        cases.append(("refunds/create", refund))
    edit = _edit("2022-04-06T09:00:00-04:00", removals=[(LINE_1, 1)])
    edit["order_edit"]["id"] = "e" * 5000
    cases.append(("orders/edited", edit))
    for topic, payload in cases:
        resp = await _shopify(client, topic, payload)
        assert resp.status_code == 422, (topic, resp.text)
        assert resp.json()["code"] == "invalid_payload", (topic, resp.text)
    for bad in (long_id, object_id):
        woo = fixture_json("woocommerce_order.json") | {"id": bad}
        for status in ("processing", "cancelled"):
            resp = await _woo(client, woo | {"status": status})
            assert resp.status_code == 422, (bad, status, resp.text)
            assert resp.json()["code"] == "invalid_payload"
    async with engine.connect() as conn:
        pending = (
            await conn.execute(text("SELECT count(*) FROM webhook_inbox WHERE status = 'pending'"))
        ).scalar_one()
    assert pending == 0


_REFUND = {"kind": "refund", "status": "success", "amount": "10.00", "currency": "USD"}


async def test_an_update_that_only_geocodes_the_address_changes_nothing(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """Shopify geocodes a shipping address after the order is created: the next
    orders/updated carries the same address with a latitude and longitude. That is not an
    address change: the paid order keeps its shipments (no re-plan, no new parcel ids), and a
    picked one does not fail the delivery with units_not_editable."""
    order_id = await _shopify_order(client, admin)
    paid = await _shopify(client, "orders/paid", fixture_json("shopify_orders_create.json"))
    assert paid.status_code == 200, paid.text
    update = fixture_json("shopify_orders_create.json")
    update["updated_at"] = "2022-04-06T10:00:05-04:00"
    update["shipping_address"] |= {"latitude": 38.2, "longitude": -85.7}
    before = await _snapshot(engine, order_id)
    resp = await _shopify(client, "orders/updated", update)
    assert resp.status_code == 200, resp.text
    assert resp.json()["detail"] == "no change to the lines or the shipping address"
    assert await _snapshot(engine, order_id) == before
    picked = await client.post(
        f"/v1/orders/{order_id}/transitions", json={"to": "picked"}, headers=admin
    )
    assert picked.status_code == 200, picked.text
    update["updated_at"] = "2022-04-06T11:00:05-04:00"
    update["shipping_address"] |= {"latitude": 38.21, "longitude": -85.71}
    resp = await _shopify(client, "orders/updated", update)
    assert resp.status_code == 200, resp.text
    assert await _last_inbox(engine) == ("processed", None)
    # a real change of the address still is one (refused on a picked order, with the reason)
    update["updated_at"] = "2022-04-06T12:00:05-04:00"
    update["shipping_address"]["address1"] = "1 Other Street"
    resp = await _shopify(client, "orders/updated", update)
    assert resp.status_code == 409, resp.text
    assert resp.json()["code"] == "units_not_editable"


async def test_two_updates_at_once_end_in_the_newer(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """Two orders/updated of one order delivered at the same moment (the older one retried
    late): serialized per order, whichever is applied first, the order ends as the newer one
    says; every answer a 2xx."""
    await make_connector(client, admin, name="shop", fmt="shopify", secret="shpss_c1")
    for n in range(4):
        shopify_id = 850_982_000 + n
        placed = fixture_json("shopify_orders_create.json") | {"id": shopify_id}
        created = await _shopify(client, "orders/create", placed)
        assert created.status_code == 200, created.text
        older = json.loads(json.dumps(placed)) | {"updated_at": "2022-04-06T10:00:00-04:00"}
        older["line_items"][1] |= {"quantity": 2, "current_quantity": 2}
        newer = json.loads(json.dumps(placed)) | {"updated_at": "2022-04-06T10:05:00-04:00"}
        newer["line_items"][0]["current_quantity"] = 0
        newer["line_items"][1] |= {"quantity": 3, "current_quantity": 3}
        pair = [_shopify(client, "orders/updated", u) for u in (older, newer)]
        answers = await asyncio.gather(*(pair if n % 2 else reversed(pair)))
        assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
        order = await _order(client, admin, created.json()["order_id"])
        assert [ln["quantity"] for ln in order["lines"]] == [0, 3]
    await assert_stock_invariants(engine)
