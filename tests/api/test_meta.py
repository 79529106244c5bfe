"""Health, readiness, metrics, request ids, and the committed OpenAPI document."""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from oms.cli import openapi_document
from tests.helpers import auth, order_body

ROOT = Path(__file__).resolve().parents[2]


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["database"] == "ok"


async def test_request_id_is_echoed_or_generated(client: httpx.AsyncClient) -> None:
    given = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    generated = await client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert len(generated.headers["x-request-id"]) == 32


async def test_metrics_count_requests_and_transitions(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    order = (
        await client.post("/v1/orders", json=order_body(), headers=auth(keys["storefront"]))
    ).json()
    await client.post(
        f"/v1/orders/{order['id']}/transitions", json={"to": "paid"}, headers=auth(keys["admin"])
    )
    text = (await client.get("/metrics")).text
    assert 'oms_order_transitions_total{from_status="placed",to_status="paid"}' in text
    assert 'oms_http_requests_total{method="POST",route="/v1/orders",status="201"}' in text
    assert "oms_http_request_duration_seconds_bucket" in text


def test_committed_openapi_is_current() -> None:
    committed = json.loads((ROOT / "openapi" / "openapi.json").read_text())
    assert committed == openapi_document(), "openapi/openapi.json is stale: run `oms openapi`"


def test_every_operation_is_documented() -> None:
    doc = openapi_document()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            assert op.get("summary"), f"{method} {path} has no summary"
            if path.startswith("/v1/") and "security" in op:
                assert "401" in op["responses"], f"{method} {path} documents no 401"
