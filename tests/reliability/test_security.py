"""API keys and what they may do: constant-time comparison, never logged or stored in clear,
channel isolation, connector keys limited to webhooks, immediate revocation (as an operator
does it, with `oms apikey revoke`)."""

from __future__ import annotations

import hmac
import io
import json
import logging
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from oms.auth import service as auth_service
from oms.shared.logging import JsonFormatter
from tests.helpers import auth, order_body
from tests.reliability.conftest import OMS, World, inbound_order, signed
from tests.reliability.test_documented_errors import MISSING_UUID, OPERATIONS, _fill


@pytest.fixture
def all_logs() -> Iterator[io.StringIO]:
    """Every log record of every logger, formatted as production formats it (JSON + traces)."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def _secrets(token: str) -> list[str]:
    """The whole key and its secret part (the prefix is public, like a username)."""
    return [token, token.split("_", 2)[2]]


async def test_key_hashes_are_compared_in_constant_time(
    client: httpx.AsyncClient, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Valid key, wrong secret for a real prefix, unknown prefix: each request compares exactly
    one pair of SHA-256 hex digests with hmac.compare_digest (the same work in every case)."""
    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth_service.hmac, "compare_digest", spy)
    token = world.keys["admin"]
    prefix = token.split("_")[1]
    for candidate, status in (
        (token, 200),
        (f"oms_{prefix}_wrong-secret", 401),
        ("oms_000000000000_whatever", 401),
    ):
        calls.clear()
        resp = await client.get("/v1/warehouses", headers=auth(candidate))
        assert resp.status_code == status
        assert len(calls) == 1, calls
        a, b = calls[0]
        assert len(a) == len(b) == 64 and int(a, 16) >= 0 and int(b, 16) >= 0


async def test_keys_are_stored_only_as_hashes(world: World, engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        dump = json.dumps(
            [list(r) for r in (await conn.execute(text("SELECT * FROM api_keys"))).all()],
            default=str,
        )
    for token in world.keys.values():
        for secret in _secrets(token):
            assert secret not in dump


async def test_api_keys_never_appear_in_logs(
    client: httpx.AsyncClient, world: World, all_logs: io.StringIO
) -> None:
    """Successes, 401/403/404/409/422s and a database error path, with the key in either
    header: the JSON log output (access lines, warnings, tracebacks) holds no key."""
    admin, web = world.keys["admin"], world.keys["storefront_web"]
    prefix = admin.split("_")[1]
    requests: list[tuple[str, str, dict[str, str], Any]] = [
        ("GET", "/v1/orders", auth(admin), None),
        ("GET", "/v1/orders", {"X-API-Key": web}, None),
        ("POST", "/v1/orders", auth(admin), order_body()),
        ("POST", "/v1/orders", auth(web), order_body(channel="pos")),  # 403
        ("GET", f"/v1/orders/{MISSING_UUID}", auth(admin), None),  # 404
        ("POST", "/v1/orders", auth(admin), order_body(currency="XXX")),  # 422
        ("POST", "/v1/orders", auth(admin), order_body(notes="nul \x00")),  # 422 from Postgres
        ("GET", "/v1/orders", auth(f"oms_{prefix}_{admin.split('_', 2)[2][::-1]}"), None),  # 401
        ("GET", "/v1/orders", auth(world.keys["connector"]), None),  # 403
    ]
    for method, path, headers, body in requests:
        resp = await client.request(method, path, headers=headers, json=body)
        assert resp.status_code < 500, resp.text
    output = all_logs.getvalue()
    assert '"logger": "oms.access"' in output, "the access log was not captured"
    for token in world.keys.values():
        for secret in _secrets(token):
            assert secret not in output
    assert admin.split("_", 2)[2][::-1] not in output  # nor a wrong secret someone sent


async def test_storefront_key_bound_to_a_channel_sees_nothing_of_another(
    client: httpx.AsyncClient, world: World
) -> None:
    """A key bound to 'web' gets 404 on every operation about a 'pos' order (no existence
    leak), finds none in lists, and cannot place, move or replay one."""
    admin, web = world.headers("admin"), world.headers("storefront_web")
    pos = (await client.post("/v1/orders", json=order_body(channel="pos"), headers=admin)).json()
    line = pos["lines"][0]["id"]
    bodies = {
        "transitions": {"to": "cancelled"},
        "returns": {"lines": [{"order_line_id": line, "quantity": 1, "reason_code": "other"}]},
        "payments": {
            "method": "card",
            "provider": "x",
            "provider_reference": "y",
            "amount": 1,
            "currency": "EUR",
            "status": "captured",
        },
        "refunds": {"amount": 1, "reason": "x"},
        "holds": {"reason": "other"},
        "edits": {"expected_version": 1, "lines": [{"line_id": line, "quantity": 1}]},
        "cancel-lines": {"lines": [{"line_id": line, "quantity": 1}]},
    }
    seen = []
    for method, template in OPERATIONS:
        if "{order_id}" not in template:
            continue
        path = _fill(template, {"order_id": pos["id"], "hold_id": MISSING_UUID})
        body = bodies.get(template.rsplit("/", 1)[1], {}) if method != "GET" else None
        resp = await client.request(method, path, headers=web, json=body)
        assert resp.status_code in (403, 404), (method, path, resp.status_code, resp.text)
        seen.append(resp.status_code)
    assert 404 in seen
    shipment = pos["shipments"][0]["id"]
    resp = await client.post(
        f"/v1/shipments/{shipment}/transitions", json={"to": "picked"}, headers=web
    )
    assert resp.status_code in (403, 404)
    for params in ({}, {"channel": "pos"}, {"customer_id": "cus_1"}):
        listed = await client.get("/v1/orders", params=params, headers=web)
        assert pos["id"] not in {o["id"] for o in listed.json()["items"]}
    customer = await client.get("/v1/customers/cus_1/orders", headers=web)
    assert pos["id"] not in {o["id"] for o in customer.json()["items"]}
    # the same Idempotency-Key under another key is another request: never a replay of pos
    key = {"Idempotency-Key": "checkout-1"}
    first = await client.post("/v1/orders", json=order_body(channel="pos"), headers=admin | key)
    assert first.status_code == 201
    replay = await client.post("/v1/orders", json=order_body(channel="pos"), headers=web | key)
    assert replay.status_code == 403 and replay.json()["code"] == "channel_not_allowed"
    own = await client.post("/v1/orders", json=order_body(), headers=web | key)
    assert own.status_code == 201 and own.json()["id"] != first.json()["id"]
    assert own.json()["channel"] == "web"


async def test_connector_keys_can_do_nothing_but_post_webhooks(
    client: httpx.AsyncClient, world: World
) -> None:
    """Every API-key operation refuses a connector key (403); the one thing a connector does,
    posting a signed webhook, needs its signature and no API key at all."""
    connector = world.headers("connector")
    allowed = []
    for (method, template), op in OPERATIONS.items():
        if not op.get("security"):
            continue
        params = {name: values[0] for name, values in world.ids.items()}
        resp = await client.request(method, _fill(template, params), headers=connector)
        if resp.status_code != 403 or resp.json()["code"] != "role_not_allowed":
            allowed.append((method, template, resp.status_code))
    assert not allowed, allowed
    secured = [k for k, op in OPERATIONS.items() if op.get("security")]
    assert len(secured) > 50
    body = inbound_order("SHOP-SEC-1")
    url = f"/v1/webhooks/inbound/{world.named['connector']}"
    unsigned = await client.post(url, content=body, headers=connector)
    assert unsigned.status_code == 401  # the API key is no substitute for the signature
    ok = await client.post(
        url, content=body, headers=signed(world.named["connector_secret"], body, "msg_sec_1")
    )
    assert ok.status_code == 200, ok.text
    assert ok.json()["status"] == "processed"


def _cli(args: list[str], database_url: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"OMS_DATABASE_URL": database_url}
    return subprocess.run(
        OMS + args, env=env, capture_output=True, text=True, timeout=60, check=False
    )


async def test_revoked_key_stops_working_at_once(
    client: httpx.AsyncClient, world: World, migrated: str
) -> None:
    """`oms apikey revoke` (the operator's tool) while the service runs: the next request with
    that key is 401; other keys are unaffected; `oms apikey list` shows no secrets."""
    token = world.keys["storefront"]
    prefix = token.split("_")[1]
    assert (await client.get("/v1/orders", headers=auth(token))).status_code == 200
    result = await _run_cli(["apikey", "revoke", prefix], migrated)
    assert result.returncode == 0, result.stderr
    resp = await client.get("/v1/orders", headers=auth(token))
    assert resp.status_code == 401 and resp.json()["code"] == "invalid_api_key"
    assert (await client.get("/v1/orders", headers=world.headers("admin"))).status_code == 200
    listed = await _run_cli(["apikey", "list"], migrated)
    assert listed.returncode == 0
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert {r["prefix"]: r["revoked"] for r in rows}[prefix] is True
    for secret in _secrets(token):
        assert secret not in listed.stdout + listed.stderr + result.stdout + result.stderr


async def _run_cli(args: list[str], database_url: str) -> subprocess.CompletedProcess[str]:
    import asyncio

    return await asyncio.to_thread(_cli, args, database_url)
