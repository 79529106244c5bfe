"""Inbound webhooks: signatures, replay window, dedup, concurrency, out-of-order, malformed
input, replay, and the connector / inbox API."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from oms.orders.models import Order
from oms.outbox.models import OutboxEvent
from oms.payments.models import Payment
from oms.webhooks.inbound.models import InboxMessage
from tests.helpers import auth, order_body
from tests.webhooks.conftest import (
    RelayFactory,
    canonical,
    count,
    hmac_b64,
    make_connector,
    oms_headers,
    order_data,
    shopify_headers,
    woo_headers,
)

URL = "/v1/webhooks/inbound/{}"


async def _post(
    client: httpx.AsyncClient, name: str, body: bytes, headers: dict[str, str]
) -> httpx.Response:
    return await client.post(URL.format(name), content=body, headers=headers)


async def _order(client: httpx.AsyncClient, admin: dict[str, str], order_id: str) -> dict[str, Any]:
    resp = await client.get(f"/v1/orders/{order_id}", headers=admin)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


# ---- signatures and replay window ----------------------------------------------------------


async def test_oms_signature_matrix(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    secret = await make_connector(client, admin, name="psp", fmt="oms")
    body = canonical("order.created", **order_data())
    good = oms_headers(secret, body)
    now = datetime.now(UTC)
    wrong_secret = oms_headers("whsec_" + "A" * 44, body)
    tampered = body.replace(b"SHOP-1", b"SHOP-2")
    cases: list[tuple[str, bytes, dict[str, str], str]] = [
        ("no headers", body, {"content-type": "application/json"}, "missing_signature"),
        (
            "no signature",
            body,
            {k: v for k, v in good.items() if k != "webhook-signature"},
            "missing_signature",
        ),
        ("wrong secret", body, wrong_secret, "invalid_signature"),
        ("tampered body", tampered, good, "invalid_signature"),
        (
            "garbage signature",
            body,
            good | {"webhook-signature": "v1,not-base64!!"},
            "invalid_signature",
        ),
        (
            "unknown version only",
            body,
            good | {"webhook-signature": good["webhook-signature"].replace("v1,", "v9,")},
            "invalid_signature",
        ),
        (
            "timestamp not a number",
            body,
            good | {"webhook-timestamp": "yesterday"},
            "invalid_signature",
        ),
        (
            "too old (replay)",
            body,
            oms_headers(secret, body, at=now - timedelta(seconds=330)),
            "timestamp_out_of_tolerance",
        ),
        (
            "too far in the future",
            body,
            oms_headers(secret, body, at=now + timedelta(seconds=330)),
            "timestamp_out_of_tolerance",
        ),
    ]
    for label, payload, headers, code in cases:
        resp = await _post(client, "psp", payload, headers)
        assert resp.status_code == 401, label
        assert resp.headers["content-type"].startswith("application/problem+json")
        assert resp.json()["code"] == code, label
    assert await count(engine, InboxMessage) == 0  # unauthenticated input is never stored
    # a key rotated by the sender: several signatures, one of them valid
    multi = good | {"webhook-signature": f"v1,{'A' * 44} {good['webhook-signature']}"}
    ok = await _post(client, "psp", body, multi)
    assert ok.status_code == 200, ok.text
    # inside the window (4 minutes old) is fine
    fresh = oms_headers(secret, body, at=datetime.now(UTC) - timedelta(seconds=240))
    assert (await _post(client, "psp", body, fresh)).status_code == 200


async def test_shopify_and_woocommerce_signature_matrix(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    await make_connector(client, admin, name="shop", fmt="shopify", secret="shpss_test_secret")
    await make_connector(client, admin, name="woo", fmt="woocommerce", secret="woo-secret-1")
    body = b'{"id": 1}'
    for name, header in (("shop", "X-Shopify-Hmac-Sha256"), ("woo", "X-WC-Webhook-Signature")):
        missing = await _post(client, name, body, {"content-type": "application/json"})
        assert missing.status_code == 401
        assert missing.json()["code"] == "missing_signature"
        wrong = await _post(
            client, name, body, {"content-type": "application/json", header: hmac_b64("x", body)}
        )
        assert wrong.status_code == 401
        assert wrong.json()["code"] == "invalid_signature"
    stale = shopify_headers("shpss_test_secret", body) | {
        "X-Shopify-Triggered-At": (datetime.now(UTC) - timedelta(hours=49)).isoformat()
    }
    resp = await _post(client, "shop", body, stale)
    assert resp.status_code == 401
    assert resp.json()["code"] == "timestamp_out_of_tolerance"
    assert await count(engine, InboxMessage) == 0
    # Shopify retries for hours with the original trigger time: 3 hours old is accepted
    retried = shopify_headers("shpss_test_secret", body, topic="shop/update") | {
        "X-Shopify-Triggered-At": (datetime.now(UTC) - timedelta(hours=3)).strftime(
            "%Y-%m-%dT%H:%M:%S.123456789Z"
        )
    }
    resp = await _post(client, "shop", body, retried)
    assert resp.status_code == 200, resp.text
    assert resp.json()["status"] == "ignored"


async def test_woocommerce_setup_ping_is_acknowledged_and_not_stored(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    await make_connector(client, admin, name="woo", fmt="woocommerce", secret="woo-secret-1")
    resp = await client.post(
        URL.format("woo"),
        content=b"webhook_id=3",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert resp.status_code == 200, resp.text
    assert await count(engine, InboxMessage) == 0


async def test_unknown_and_disabled_connectors(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    body = canonical("order.created", **order_data())
    assert (await _post(client, "nope", body, {})).json()["code"] == "connector_not_found"
    secret = await make_connector(client, admin, name="psp", fmt="oms")
    off = await client.patch("/v1/connectors/psp", json={"enabled": False}, headers=admin)
    assert off.status_code == 200
    resp = await _post(client, "psp", body, oms_headers(secret, body))
    assert resp.status_code == 503
    assert resp.json()["code"] == "connector_disabled"


# ---- deduplication and concurrency ------------------------------------------------------------


async def test_duplicate_deliveries_create_one_order(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    secret = await make_connector(client, admin, name="psp", fmt="oms")
    body = canonical("order.created", **order_data("DUP-1"))
    headers = oms_headers(secret, body, msg_id="msg_dup")
    replies = [await _post(client, "psp", body, headers) for _ in range(5)]
    assert [r.status_code for r in replies] == [200] * 5
    first = replies[0].json()
    assert first["status"] == "processed" and first["duplicate"] is False
    assert all(r.json()["duplicate"] for r in replies[1:])
    assert {r.json()["order_id"] for r in replies} == {first["order_id"]}
    assert await count(engine, Order) == 1
    assert await count(engine, InboxMessage) == 1


async def test_concurrent_identical_deliveries_create_one_order(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    secret = await make_connector(client, admin, name="psp", fmt="oms")
    body = canonical("order.created", **order_data("RACE-1"))
    headers = oms_headers(secret, body, msg_id="msg_race")
    replies = await asyncio.gather(*(_post(client, "psp", body, headers) for _ in range(5)))
    assert [r.status_code for r in replies] == [200] * 5, [r.text for r in replies]
    assert len({r.json()["order_id"] for r in replies}) == 1
    assert sum(not r.json()["duplicate"] for r in replies) == 1
    assert await count(engine, Order) == 1
    assert await count(engine, InboxMessage) == 1


async def test_concurrent_deliveries_with_different_ids_create_one_order(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    """A connector that re-sends the same order as new events (new ids): still one order."""
    secret = await make_connector(client, admin, name="psp", fmt="oms")
    body = canonical("order.created", **order_data("RACE-2"))
    replies = await asyncio.gather(
        *(_post(client, "psp", body, oms_headers(secret, body)) for _ in range(5))
    )
    assert [r.status_code for r in replies] == [200] * 5, [r.text for r in replies]
    assert len({r.json()["order_id"] for r in replies}) == 1
    details = sorted(r.json()["detail"] for r in replies)
    assert details.count("order created") == 1
    assert await count(engine, Order) == 1
    assert await count(engine, InboxMessage, InboxMessage.status == "processed") == 5


# ---- out of order -------------------------------------------------------------------------


async def test_payment_before_order_is_kept_and_applied(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    secret = await make_connector(client, admin, name="psp", fmt="oms")
    total = 2 * 1999 + 495
    pay = canonical(
        "payment.captured",
        external_reference="LATE-1",
        amount=total,
        currency="EUR",
        reference="pi_1",
    )
    early = await _post(client, "psp", pay, oms_headers(secret, pay))
    assert early.status_code == 202, early.text
    assert early.json()["status"] == "pending"
    pending = await client.get("/v1/webhooks/inbox", params={"status": "pending"}, headers=admin)
    assert [m["external_reference"] for m in pending.json()["items"]] == ["LATE-1"]
    create = canonical("order.created", **order_data("LATE-1"))
    created = await _post(client, "psp", create, oms_headers(secret, create))
    assert created.status_code == 200, created.text
    assert "1 pending event(s) applied" in created.json()["detail"]
    order = await _order(client, admin, created.json()["order_id"])
    assert order["status"] == "paid"
    history = (await client.get(f"/v1/orders/{order['id']}/history", headers=admin)).json()
    assert history[-1]["actor"] == "connector:psp"
    left = await client.get("/v1/webhooks/inbox", params={"status": "pending"}, headers=admin)
    assert left.json()["items"] == []
    assert await count(engine, Payment) == 1
    # the same capture again (new event id, same provider reference) changes nothing
    again = await _post(client, "psp", pay, oms_headers(secret, pay))
    assert again.json()["detail"] == "payment was already recorded"
    assert await count(engine, Payment) == 1


async def test_cancel_and_refund_before_order_apply_in_arrival_order(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    secret = await make_connector(client, admin, name="psp", fmt="oms")
    events = [
        canonical("payment.captured", external_reference="LATE-2", amount=4493, currency="EUR"),
        canonical(
            "payment.refunded",
            external_reference="LATE-2",
            amount=4493,
            currency="EUR",
            reference="re_1",
        ),
        canonical("order.cancelled", external_reference="LATE-2", reason="fraud"),
    ]
    for body in events:
        assert (await _post(client, "psp", body, oms_headers(secret, body))).status_code == 202
    create = canonical("order.created", **order_data("LATE-2"))
    created = (await _post(client, "psp", create, oms_headers(secret, create))).json()
    assert "3 pending event(s) applied" in created["detail"]
    order = await _order(client, admin, created["order_id"])
    assert order["status"] == "cancelled"
    history = (await client.get(f"/v1/orders/{order['id']}/history", headers=admin)).json()
    assert [h["to_status"] for h in history] == ["placed", "paid", "cancelled"]
    async with engine.connect() as conn:
        types = (
            (await conn.execute(select(OutboxEvent.type).order_by(OutboxEvent.id))).scalars().all()
        )
    assert types == [
        "order.placed",
        "payment.captured",
        "order.paid",
        "refund.issued",
        "order.cancelled",
    ]


async def test_pending_event_applied_by_worker_when_order_comes_from_the_api(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    keys: dict[str, str],
    relay_factory: RelayFactory,
) -> None:
    secret = await make_connector(client, admin, name="psp", fmt="oms")
    pay = canonical("payment.captured", external_reference="API-1", amount=4493, currency="EUR")
    assert (await _post(client, "psp", pay, oms_headers(secret, pay))).status_code == 202
    placed = await client.post(
        "/v1/orders",
        json=order_body(
            external_reference="API-1",
            lines=[{"sku": "TSHIRT-RED-M", "quantity": 2, "unit_price": 1999}],
        ),
        headers=auth(keys["storefront"]),
    )
    assert placed.status_code == 201, placed.text
    assert placed.json()["totals"]["total"] == 4493
    applied = await relay_factory().sweep_inbox(force=True)
    assert applied == 1
    assert (await _order(client, admin, placed.json()["id"]))["status"] == "paid"


# ---- malformed input, failures, replay ----------------------------------------------------------


async def test_malformed_payloads_are_kept_as_failed_and_replayable(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    secret = await make_connector(client, admin, name="psp", fmt="oms")
    cases = [
        (b"{not json", 400, "malformed_payload"),
        (b'{"type": "order.exploded", "data": {}}', 422, "invalid_payload"),
        (canonical("order.created", **order_data(lines=[])), 422, "invalid_payload"),
        (
            canonical("payment.captured", external_reference="X", amount=-5, currency="EUR"),
            422,
            "invalid_payload",
        ),
        (canonical("order.created", **order_data(channel="other")), 422, "channel_mismatch"),
    ]
    for body, status, code in cases:
        resp = await _post(client, "psp", body, oms_headers(secret, body))
        assert resp.status_code == status, resp.text
        problem = resp.json()
        assert problem["code"] == code
        assert problem["inbox_id"] > 0
    failed = await client.get("/v1/webhooks/inbox", params={"status": "failed"}, headers=admin)
    items = failed.json()["items"]
    assert len(items) == len(cases)
    assert all(i["error"] and i["error_code"] for i in items)
    detail = await client.get(f"/v1/webhooks/inbox/{items[-1]['id']}", headers=admin)
    assert detail.json()["body"] == "{not json"
    assert "webhook-signature" in detail.json()["headers"]
    assert await count(engine, Order) == 0


async def test_failed_delivery_replays_after_a_fix(
    client: httpx.AsyncClient,
    admin: dict[str, str],
    engine: AsyncEngine,
    sessionmaker: async_sessionmaker[AsyncSession],
) -> None:
    secret = await make_connector(client, admin, name="psp", fmt="oms")
    body = canonical(
        "order.created",
        **order_data("NOSTOCK-1", lines=[{"sku": "UNSTOCKED-1", "quantity": 1, "unit_price": 5}]),
    )
    resp = await _post(client, "psp", body, oms_headers(secret, body))
    assert resp.status_code == 422, resp.text
    assert resp.json()["code"] == "unknown_sku"  # no warehouse has a level for it (yet)
    inbox_id = resp.json()["inbox_id"]
    assert await count(engine, Order) == 0
    from tests.helpers import stock

    await stock(sessionmaker, "BER", {"UNSTOCKED-1": 5})
    replayed = await client.post(f"/v1/webhooks/inbox/{inbox_id}/replay", headers=admin)
    assert replayed.status_code == 200, replayed.text
    assert replayed.json()["status"] == "processed"
    assert replayed.json()["attempts"] == 2
    assert replayed.json()["order_id"]
    again = await client.post(f"/v1/webhooks/inbox/{inbox_id}/replay", headers=admin)
    assert again.status_code == 409
    assert again.json()["code"] == "inbox_not_replayable"


async def test_platform_retry_of_a_failed_event_is_processed_again(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    secret = await make_connector(client, admin, name="psp", fmt="oms")
    bad = canonical("order.created", **order_data("RETRY-1", channel="elsewhere"))
    first = await _post(client, "psp", bad, oms_headers(secret, bad, msg_id="msg_r"))
    assert first.status_code == 422
    await client.patch("/v1/connectors/psp", json={"channel": "elsewhere"}, headers=admin)
    retry = await _post(client, "psp", bad, oms_headers(secret, bad, msg_id="msg_r"))
    assert retry.status_code == 200, retry.text
    assert retry.json()["status"] == "processed"
    assert await count(engine, InboxMessage) == 1


async def test_cancel_of_a_shipped_order_fails_visibly(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    secret = await make_connector(client, admin, name="psp", fmt="oms")
    create = canonical("order.created", **order_data("LOCKED-1"))
    order_id = (await _post(client, "psp", create, oms_headers(secret, create))).json()["order_id"]
    done = await client.post(
        f"/v1/orders/{order_id}/transitions", json={"to": "cancelled"}, headers=admin
    )
    assert done.status_code == 200
    cancel = canonical("order.cancelled", order_id=order_id)
    again = await _post(client, "psp", cancel, oms_headers(secret, cancel))
    assert again.status_code == 200
    assert again.json()["detail"] == "order was already cancelled"
    pay = canonical("payment.captured", order_id=order_id, amount=100, currency="USD")
    mismatch = await _post(client, "psp", pay, oms_headers(secret, pay))
    assert mismatch.status_code == 422
    assert mismatch.json()["code"] == "currency_mismatch"


# ---- real formats with the platforms' sample payloads ---------------------------------------


async def test_shopify_sample_orders_create_cancel(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    from tests.webhooks.conftest import load_fixture

    await make_connector(
        client, admin, name="shopify-us", fmt="shopify", channel="shopify-us", secret="shpss_x1"
    )
    body = load_fixture("shopify_orders_create.json")
    resp = await _post(client, "shopify-us", body, shopify_headers("shpss_x1", body))
    assert resp.status_code == 200, resp.text
    assert resp.json()["type"] == "order.created"
    order = await _order(client, admin, resp.json()["order_id"])
    assert order["channel"] == "shopify-us"
    assert order["external_reference"] == "820982911946154508"
    assert order["currency"] == "USD"
    assert order["customer"] == {
        "id": "115310627314723954",
        "email": "jon@doe.ca",
        "phone": None,  # the sample's customer has none (its addresses' phones are not its own)
        "anonymous": False,
    }
    address = order["shipping_address"]
    assert address["name"] == "Steve Shipper"
    assert address["lines"] == ["123 Shipping Street"]
    assert (address["city"], address["postal_code"], address["region"], address["country"]) == (
        "Shippington",
        "40003",
        "KY",
        "US",
    )
    assert order["payment_method"] == "card"
    lines = [(ln["sku"], ln["quantity"], ln["unit_price"]) for ln in order["lines"]]
    assert lines == [("IPOD2008PINK", 1, 19900), ("IPOD2008PINK", 1, 19400)]  # 5.00 discount
    assert order["totals"]["shipping_fee"] == 1000
    assert order["totals"]["total"] == 40300  # Shopify's total_price "403.00", to the cent
    assert order["attributes"]["source_order_name"] == "#9999"
    # the same order, re-sent with a new webhook id: no second order
    again = await _post(client, "shopify-us", body, shopify_headers("shpss_x1", body))
    assert again.json()["order_id"] == order["id"]
    assert again.json()["detail"] == "order exists"
    paid = await _post(
        client, "shopify-us", body, shopify_headers("shpss_x1", body, topic="orders/paid")
    )
    assert paid.json()["detail"] == "payment captured; order paid", paid.text
    cancelled = await _post(
        client, "shopify-us", body, shopify_headers("shpss_x1", body, topic="orders/cancelled")
    )
    assert cancelled.status_code == 200, cancelled.text
    assert (await _order(client, admin, order["id"]))["status"] == "cancelled"
    assert await count(engine, Order) == 1


async def test_shopify_paid_order_and_refund(
    client: httpx.AsyncClient, admin: dict[str, str], engine: AsyncEngine
) -> None:
    from tests.webhooks.conftest import fixture_json

    await make_connector(client, admin, name="shop", fmt="shopify", secret="shpss_x1")
    sample = fixture_json("shopify_orders_create.json")
    sample.update(id=5551, financial_status="paid", cancelled_at=None)
    body = json.dumps(sample).encode()
    created = await _post(client, "shop", body, shopify_headers("shpss_x1", body))
    assert created.status_code == 200, created.text
    assert (await _order(client, admin, created.json()["order_id"]))["status"] == "paid"
    refund = json.dumps(
        {
            "id": 929361462,
            "order_id": 5551,
            "transactions": [
                {"kind": "refund", "status": "success", "amount": "41.00", "currency": "USD"}
            ],
        }
    ).encode()
    resp = await _post(
        client, "shop", refund, shopify_headers("shpss_x1", refund, topic="refunds/create")
    )
    assert resp.status_code == 200, resp.text
    assert resp.json()["type"] == "payment.refunded"
    async with engine.connect() as conn:
        event = (
            await conn.execute(
                select(OutboxEvent.payload).where(OutboxEvent.type == "refund.issued")
            )
        ).scalar_one()
    assert event["data"]["amount"] == 4100
    assert event["data"]["order_id"] == created.json()["order_id"]
    payments = (
        await client.get(f"/v1/orders/{created.json()['order_id']}/payments", headers=admin)
    ).json()
    assert payments["refunded"] == 4100
    assert payments["refunds"][0]["reason"]
    again = await _post(
        client, "shop", refund, shopify_headers("shpss_x1", refund, topic="refunds/create")
    )
    assert again.status_code == 200
    assert again.json()["detail"] == "refund was already recorded"
    assert (
        await client.get(f"/v1/orders/{created.json()['order_id']}/payments", headers=admin)
    ).json()["refunded"] == 4100


async def test_woocommerce_sample_order_created_paid_then_cancelled(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    from tests.webhooks.conftest import fixture_json, load_fixture

    await make_connector(
        client, admin, name="woo", fmt="woocommerce", channel="woo-us", secret="woo-secret-1"
    )
    # the sample's first line has no SKU: the connector maps its product (see
    # test_inbound_orders.py for what happens without the mapping)
    mapped = await client.patch(
        "/v1/connectors/woo", json={"sku_map": {"product:93": "MUG-01"}}, headers=admin
    )
    assert mapped.status_code == 200, mapped.text
    body = load_fixture("woocommerce_order.json")
    resp = await _post(client, "woo", body, woo_headers("woo-secret-1", body))
    assert resp.status_code == 200, resp.text
    order = await _order(client, admin, resp.json()["order_id"])
    assert order["status"] == "paid"  # processing + date_paid: captured at creation
    assert order["external_reference"] == "727"
    assert order["customer"] == {
        "id": None,
        "email": "john.doe@example.com",
        "phone": "5555555555",  # billing phone "(555) 555-5555"
        "anonymous": False,
    }
    assert order["payment_method"] == "bank_transfer"
    lines = [
        (ln["sku"], ln["name"], ln["quantity"], ln["unit_price"], ln["tax_rate_bps"])
        for ln in order["lines"]
    ]
    assert lines == [
        ("MUG-01", "Woo Single #1", 2, 300, 750),  # the sample's empty SKU, mapped
        ("Bar3", "Ship Your Idea \u2013 Color: Black, Size: M Test", 1, 1200, 750),
    ]
    assert order["totals"] == {
        "subtotal": 1800,
        "tax_total": 135,
        "shipping_fee": 1000,
        "total": 2935,
    }  # "29.35"
    assert order["shipping_address"]["region"] == "CA"
    update = fixture_json("woocommerce_order.json") | {"status": "cancelled"}
    raw = json.dumps(update).encode()
    resp = await _post(client, "woo", raw, woo_headers("woo-secret-1", raw, topic="order.updated"))
    assert resp.status_code == 200, resp.text
    assert (await _order(client, admin, order["id"]))["status"] == "cancelled"
    noise = fixture_json("woocommerce_order.json") | {"status": "on-hold", "date_paid": None}
    raw = json.dumps(noise).encode()
    resp = await _post(client, "woo", raw, woo_headers("woo-secret-1", raw, topic="order.updated"))
    # an unpaid order's update is applied as an edit (issue 17), but not to a cancelled order
    assert resp.json()["status"] == "processed", resp.text
    assert resp.json()["detail"] == "order is 'cancelled'; the update is not applied"


# ---- connectors API -----------------------------------------------------------------------


async def test_connector_api(
    client: httpx.AsyncClient, admin: dict[str, str], keys: dict[str, str]
) -> None:
    created = await client.post(
        "/v1/connectors", json={"name": "psp", "channel": "web", "format": "oms"}, headers=admin
    )
    assert created.status_code == 201
    assert created.json()["secret"].startswith("whsec_")
    assert created.json()["webhook_url"] == "/v1/webhooks/inbound/psp"
    listed = await client.get("/v1/connectors", headers=admin)
    assert "secret" not in listed.json()[0]
    assert "secret" not in (await client.get("/v1/connectors/psp", headers=admin)).json()
    dup = await client.post(
        "/v1/connectors", json={"name": "psp", "channel": "web", "format": "oms"}, headers=admin
    )
    assert dup.status_code == 409
    no_secret = await client.post(
        "/v1/connectors", json={"name": "s", "channel": "web", "format": "shopify"}, headers=admin
    )
    assert no_secret.status_code == 422
    assert no_secret.json()["code"] == "secret_required"
    bad = await client.post(
        "/v1/connectors",
        json={"name": "o", "channel": "web", "format": "oms", "secret": "not-a-whsec"},
        headers=admin,
    )
    assert bad.json()["code"] == "invalid_secret"
    for role in ("connector", "storefront", "fulfillment"):
        denied = await client.get("/v1/connectors", headers=auth(keys[role]))
        assert denied.status_code == 403, role
        denied = await client.get("/v1/webhooks/inbox", headers=auth(keys[role]))
        assert denied.status_code == 403, role
    assert (await client.delete("/v1/connectors/psp", headers=admin)).status_code == 204
    assert (await client.get("/v1/connectors/psp", headers=admin)).status_code == 404


@pytest.mark.parametrize("limit", [1, 2])
async def test_inbox_pagination(
    client: httpx.AsyncClient, admin: dict[str, str], limit: int
) -> None:
    secret = await make_connector(client, admin, name="psp", fmt="oms")
    for i in range(3):
        body = canonical("order.cancelled", external_reference=f"P-{i}")
        await _post(client, "psp", body, oms_headers(secret, body))
    seen: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": limit} | ({"cursor": cursor} if cursor else {})
        page = (await client.get("/v1/webhooks/inbox", params=params, headers=admin)).json()
        seen += [m["id"] for m in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(seen, reverse=True)
    assert len(seen) == 3
