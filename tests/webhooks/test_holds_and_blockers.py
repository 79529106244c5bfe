"""Holds and connectors: a marketplace's risk level holds the order it creates (hold rules);
an inbound event still waiting for an order is one of its blockers."""

from __future__ import annotations

import json
from typing import Any

import httpx

from oms.webhooks.inbound.adapters.shopify import _risk_level
from tests.helpers import order_body
from tests.webhooks.conftest import (
    RelayFactory,
    canonical,
    fixture_json,
    make_connector,
    oms_headers,
    shopify_headers,
)
from tests.webhooks.receiver import Receiver


def _shopify(order_id: int, **changes: Any) -> bytes:
    sample = fixture_json("shopify_orders_create.json")
    sample.update(id=order_id, cancelled_at=None, **changes)
    return json.dumps(sample).encode()


def test_shopify_risk_level_is_the_highest_assessment() -> None:
    assert _risk_level({}) is None
    assert _risk_level({"risk": {"assessments": [{"riskLevel": "LOW"}]}}) == "low"
    assert (
        _risk_level(
            {
                "risk": {"assessments": [{"riskLevel": "MEDIUM"}, {"riskLevel": "NONE"}]},
                "risks": [{"recommendation": "cancel"}],
            }
        )
        == "high"
    )
    assert _risk_level({"risks": [{"recommendation": "maybe"}], "risk": "x"}) is None


async def test_a_risky_marketplace_order_is_held_by_the_rule(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    rule = {"reason": "fraud_review", "risk_levels": ["high"]}
    resp = await client.put("/v1/hold-rules/web/risky", json=rule, headers=admin)
    assert resp.status_code == 201, resp.text
    await make_connector(client, admin, name="shop", fmt="shopify", secret="shpss_x1")
    ids = {}
    for n, risk in ((1, "HIGH"), (2, "LOW")):
        body = _shopify(7000 + n, risk={"assessments": [{"riskLevel": risk}]})
        resp = await client.post(
            "/v1/webhooks/inbound/shop",
            content=body,
            headers=shopify_headers("shpss_x1", body, webhook_id=f"risk-{n}"),
        )
        assert resp.status_code == 200, resp.text
        ids[risk] = resp.json()["order_id"]
    held = (await client.get(f"/v1/orders/{ids['HIGH']}", headers=admin)).json()
    assert [(h["rule"], h["reason"]) for h in held["holds"]] == [("risky", "fraud_review")]
    calm = (await client.get(f"/v1/orders/{ids['LOW']}", headers=admin)).json()
    assert calm["holds"] == []
    # (rules are cached per process: delete, not truncate, so later tests don't see it)
    assert (await client.delete("/v1/hold-rules/web/risky", headers=admin)).status_code == 204


async def test_a_pending_inbound_event_is_a_blocker(
    client: httpx.AsyncClient, admin: dict[str, str]
) -> None:
    secret = await make_connector(client, admin, name="psp", fmt="oms")
    pay = canonical(
        "payment.captured", external_reference="PEND-1", amount=1, currency="EUR", reference="p1"
    )
    early = await client.post(
        "/v1/webhooks/inbound/psp", content=pay, headers=oms_headers(secret, pay)
    )
    assert early.status_code == 202 and early.json()["status"] == "pending", early.text
    # placed through the API (not the connector): the event waits for the worker's sweep
    body = order_body(external_reference="PEND-1")
    order = (await client.post("/v1/orders", json=body, headers=admin)).json()
    found = (await client.get(f"/v1/orders/{order['id']}/blockers", headers=admin)).json()
    kinds = {b["kind"]: b for b in found["blockers"]}
    assert set(kinds) == {"payment", "inbound_pending"}, found
    assert kinds["inbound_pending"]["data"]["connector"] == "psp"
    assert kinds["inbound_pending"]["data"]["type"] == "payment.captured"


async def test_a_dead_delivery_of_its_events_is_a_blocker(
    client: httpx.AsyncClient, admin: dict[str, str], relay_factory: RelayFactory
) -> None:
    async with Receiver(default_status=503) as receiver:
        resp = await client.post(
            "/v1/webhooks/subscriptions",
            json={"url": receiver.url, "event_types": ["order.placed"]},
            headers=admin,
        )
        assert resp.status_code == 201, resp.text
        order = (await client.post("/v1/orders", json=order_body(), headers=admin)).json()
        relay = relay_factory(webhook_max_attempts=1)
        for _ in range(50):
            await relay.run_once()
            found = (await client.get(f"/v1/orders/{order['id']}/blockers", headers=admin)).json()
            failed = [b for b in found["blockers"] if b["kind"] == "delivery_failed"]
            if failed:
                break
    assert failed and failed[0]["data"]["status"] == "dead", found
    assert failed[0]["data"]["event_type"] == "order.placed"
    assert failed[0]["clears_when"].endswith("/redeliver")
