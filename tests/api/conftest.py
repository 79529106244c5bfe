"""API tests start with one stocked warehouse so the default order lines can be placed."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from tests.helpers import stock


@pytest.fixture(autouse=True)
async def default_stock(
    client: httpx.AsyncClient, sessionmaker: async_sessionmaker[AsyncSession]
) -> None:
    await stock(
        sessionmaker,
        "BER",
        {"TSHIRT-RED-M": 10_000, "MUG-01": 10_000},
        latitude=52.52,
        longitude=13.405,
        city="Berlin",
    )
