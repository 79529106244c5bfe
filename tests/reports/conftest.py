"""Reports tests start from the fixed data set of ``tests/reports/data.py``."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from tests.reports.data import Spec, load


@pytest.fixture
async def dataset(client: httpx.AsyncClient, engine: AsyncEngine) -> dict[str, Spec]:
    return await load(engine)
