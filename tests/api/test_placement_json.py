"""Placement's JSON (oms.shared.jsonenc, orjson): every JSON value the API accepts in an order's
free-form `attributes` is stored, answered and replayed as it came. orjson refuses integers past
64 bits, which JSON and jsonb hold without limit (and the standard library's encoder, used
before, encoded): such an order answered 500."""

from __future__ import annotations

import httpx
import pytest

from tests.helpers import auth, order_body

ATTRIBUTES = {
    "loyalty_id": 123456789012345678901234567890,  # past 64 bits
    "balance": -(2**64),
    "max_u64": 2**64 - 1,
    "nested": {"ids": [2**70, {"deep": -(2**65)}], "ok": 1.5},
    "text": "Grüße 😀 \u2028 \u2029",
}


@pytest.mark.usefixtures("default_stock")
async def test_attributes_with_integers_past_64_bits_are_stored_answered_and_replayed(
    client: httpx.AsyncClient, keys: dict[str, str]
) -> None:
    headers = auth(keys["storefront"]) | {"Idempotency-Key": "big-ints"}
    body = order_body(attributes=ATTRIBUTES)
    first = await client.post("/v1/orders", json=body, headers=headers)
    assert first.status_code == 201, first.text
    assert first.json()["attributes"] == ATTRIBUTES
    replay = await client.post("/v1/orders", json=body, headers=headers)
    assert replay.status_code == 201, replay.text
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == first.json()
    read = await client.get(f"/v1/orders/{first.json()['id']}", headers=auth(keys["admin"]))
    assert read.status_code == 200
    assert read.json()["attributes"] == ATTRIBUTES
