"""Guest orders: a customer is known by id, email or phone, or is explicitly anonymous (a
walk-in sale). The same rule holds over the API and through connectors."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from oms.orders.idempotency import request_fingerprint
from oms.orders.models import Order
from oms.orders.schemas import OrderCreate
from tests.helpers import ORDER, auth, order_body


async def _place(client: httpx.AsyncClient, keys: dict[str, str], customer: Any) -> httpx.Response:
    return await client.post(
        "/v1/orders", json=order_body(customer=customer), headers=auth(keys["storefront"])
    )


async def test_guest_by_phone_and_anonymous_orders(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    by_phone = await _place(client, keys, {"phone": "+49 (30) 1234-5678"})
    assert by_phone.status_code == 201, by_phone.text
    assert by_phone.json()["customer"] == {
        "id": None,
        "email": None,
        "phone": "+493012345678",
        "anonymous": False,
    }
    anonymous = await _place(client, keys, {"anonymous": True})
    assert anonymous.status_code == 201, anonymous.text
    expected = {"id": None, "email": None, "phone": None, "anonymous": True}
    assert anonymous.json()["customer"] == expected
    read = await client.get(f"/v1/orders/{anonymous.json()['id']}", headers=auth(keys["admin"]))
    assert read.json()["customer"] == expected
    known = await _place(client, keys, {"id": "cus_9", "phone": "+4930999"})
    assert known.json()["customer"] == {
        "id": "cus_9",
        "email": None,
        "phone": "+4930999",
        "anonymous": False,
    }
    # the placed-order totals (top customers' bound) are per customer id or guest email only
    async with engine.connect() as conn:
        totals = (
            await conn.execute(text("SELECT guest, customer_key FROM customer_order_totals"))
        ).all()
    assert sorted(tuple(r) for r in totals) == [(False, "cus_9")]
    top = await client.get("/v1/reports/top-customers", headers=auth(keys["admin"]))
    assert top.status_code == 200, top.text
    assert [(r["customer_id"], r["customer_email"]) for r in top.json()["items"]] == [
        ("cus_9", None)
    ]


async def test_a_customer_must_be_identified_or_anonymous(
    client: httpx.AsyncClient, keys: dict[str, str], engine: AsyncEngine
) -> None:
    for bad in (
        {},
        {"anonymous": False},
        {"anonymous": True, "email": "ada@example.com"},
        {"anonymous": True, "phone": "+4930123"},
        {"phone": "call me"},
        {"phone": "12"},
    ):
        resp = await _place(client, keys, bad)
        assert resp.status_code == 422, bad
        assert resp.json()["code"] == "validation_error", bad
    async with engine.connect() as conn:
        assert (await conn.execute(select(func.count()).select_from(Order))).scalar_one() == 0


def test_fingerprints_of_bodies_without_the_new_customer_fields_are_unchanged() -> None:
    """A retry carrying an Idempotency-Key stored before guests existed (a deploy in between)
    still matches its first request: the new fields left at their defaults (no phone, not
    anonymous) do not change a body's fingerprint (this value is the one the release before
    computed for ``tests.helpers.ORDER``)."""
    data = OrderCreate.model_validate(ORDER)
    assert request_fingerprint(data) == (
        "912fdfcedbf92a63a9c29382f140c600990301be39fba727a6c595d5d237c3bb"
    )
    guest = OrderCreate.model_validate(ORDER | {"customer": {"phone": "+4930123"}})
    anonymous = OrderCreate.model_validate(ORDER | {"customer": {"anonymous": True}})
    assert len({request_fingerprint(d) for d in (data, guest, anonymous)}) == 3
