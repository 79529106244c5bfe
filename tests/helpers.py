"""Helpers shared by the API tests."""

from __future__ import annotations

import copy
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms.shared.roles import Role


async def make_key(
    sessionmaker: async_sessionmaker[AsyncSession], role: Role, channel: str | None = None
) -> str:
    from oms.auth.service import create_api_key

    async with sessionmaker() as session, session.begin():
        _, token = await create_api_key(session, name=f"test-{role}", role=role, channel=channel)
    return token


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


ORDER: dict[str, Any] = {
    "channel": "web",
    "currency": "EUR",
    "customer": {"id": "cus_1", "email": "Ada@Example.com"},
    "shipping_address": {
        "name": "Ada Lovelace",
        "lines": ["Unter den Linden 1"],
        "city": "Berlin",
        "postal_code": "10117",
        "country": "DE",
    },
    "payment_method": "card",
    "shipping_fee": 495,
    "lines": [
        {"sku": "TSHIRT-RED-M", "quantity": 2, "unit_price": 1999, "tax_rate_bps": 1900},
        {"sku": "MUG-01", "quantity": 1, "unit_price": 850, "tax_rate_bps": 700},
    ],
}


def order_body(**changes: Any) -> dict[str, Any]:
    body = copy.deepcopy(ORDER)
    body.update(changes)
    return body
