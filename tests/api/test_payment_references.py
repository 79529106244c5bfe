"""Payment and refund references are identities a provider retries with: a repeat never fails
with a 500 and never moves money twice."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.helpers import auth, order_body


async def _place(client: httpx.AsyncClient, keys: dict[str, str]) -> dict[str, Any]:
    resp = await client.post("/v1/orders", json=order_body(), headers=auth(keys["storefront"]))
    assert resp.status_code == 201, resp.text
    body: dict[str, Any] = resp.json()
    return body


def _payment(order: dict[str, Any], reference: str) -> dict[str, Any]:
    return {
        "method": "card",
        "provider": "stripe",
        "provider_reference": reference,
        "amount": order["totals"]["total"],
        "currency": "EUR",
    }


async def test_a_repeated_refund_reference_returns_the_first_refund(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    admin = auth(keys["admin"])
    order = await _place(client, keys)
    paid = await client.post(
        f"/v1/orders/{order['id']}/payments", json=_payment(order, "pi_1"), headers=admin
    )
    assert paid.status_code == 201, paid.text
    url = f"/v1/orders/{order['id']}/refunds"
    body = {"amount": 100, "reason": "damaged", "provider_reference": "re_1"}
    first = await client.post(url, json=body, headers=admin)
    again = await client.post(url, json=body, headers=admin)
    assert first.status_code == 201, first.text
    assert again.status_code == 201, again.text
    assert again.json() == first.json()
    other = await client.post(url, json=body | {"amount": 200}, headers=admin)
    assert other.status_code == 409, other.text
    assert other.json()["code"] == "refund_reference_conflict"
    async with engine.connect() as conn:
        refunded = await conn.scalar(text("SELECT sum(amount) FROM refunds"))
    assert refunded == 100


async def test_one_payment_reference_on_two_orders_at_once_is_one_payment_and_a_409(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    admin = auth(keys["admin"])
    for _ in range(5):
        a, b = await _place(client, keys), await _place(client, keys)
        reference = f"pi_{uuid.uuid4().hex}"
        answers = await asyncio.gather(
            *(
                client.post(
                    f"/v1/orders/{o['id']}/payments", json=_payment(o, reference), headers=admin
                )
                for o in (a, b)
            )
        )
        codes = sorted(r.status_code for r in answers)
        assert codes == [201, 409], [r.text for r in answers]
        loser = next(r for r in answers if r.status_code == 409)
        assert loser.json()["code"] == "payment_reference_conflict"
        async with engine.connect() as conn:
            count = await conn.scalar(
                text("SELECT count(*) FROM payments WHERE provider_reference = :r"),
                {"r": reference},
            )
        assert count == 1
