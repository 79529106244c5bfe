"""Test fixtures: a real Postgres (OMS_TEST_DATABASE_URL, else a throwaway embedded one),
migrated once per session, truncated between tests; the real ASGI app over httpx."""

from __future__ import annotations

import asyncio
import os
import shutil
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from oms.config import Settings
from oms.db import create_sessionmaker
from oms.main import create_app
from oms.orders import hold_rules
from oms.promises import service as promises_service
from oms.routing import service as routing_service
from oms.schema import upgrade_head
from oms.shared.roles import Role
from tests.helpers import make_key


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    url = os.environ.get("OMS_TEST_DATABASE_URL")
    if url:
        yield url
        return
    from oms.embedded import EmbeddedPostgres, temp_data_dir

    tmp = temp_data_dir(prefix="oms-test-")
    pg = EmbeddedPostgres(tmp, database="oms_test")
    try:
        yield pg.start()
    finally:
        pg.stop()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
async def migrated(database_url: str) -> str:
    """Drop everything in the test database and run every migration from scratch."""
    engine = create_async_engine(database_url)
    async with engine.begin() as conn:
        await conn.execute(text("DROP SCHEMA public CASCADE"))
        await conn.execute(text("CREATE SCHEMA public"))
    await engine.dispose()
    await asyncio.to_thread(upgrade_head, database_url)
    return database_url


@pytest.fixture(scope="session")
def settings(migrated: str) -> Settings:
    return Settings(
        database_url=migrated, db_pool_size=10, db_max_overflow=10, db_pool_timeout_s=30
    )


@pytest.fixture(scope="session")
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture(scope="session")
def engine(app: FastAPI) -> AsyncEngine:
    engine: AsyncEngine = app.state.engine
    return engine


@pytest.fixture(scope="session")
def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine)


@pytest.fixture
async def clean_db(engine: AsyncEngine) -> AsyncEngine:
    """Empty every table (but the migration stamp) before the test."""
    async with engine.begin() as conn:
        tables = (
            await conn.execute(
                text(
                    "SELECT tablename FROM pg_tables WHERE schemaname='public' "
                    "AND tablename <> 'alembic_version'"
                )
            )
        ).scalars()
        names = ", ".join(f'"{t}"' for t in tables)
        if names:
            await conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
    # the per-process caches of what was just truncated (each lives for seconds otherwise)
    hold_rules.CACHE.clear()
    promises_service.CACHE.clear()
    routing_service.forget_policies()
    return engine


@pytest.fixture
async def client(app: FastAPI, clean_db: AsyncEngine) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://oms.test") as c:
        yield c


@pytest.fixture
async def keys(
    sessionmaker: async_sessionmaker[AsyncSession], client: httpx.AsyncClient
) -> dict[str, str]:
    """One API key per role, plus a storefront key bound to channel 'web'."""
    out = {role.value: await make_key(sessionmaker, role) for role in Role}
    out["storefront_web"] = await make_key(sessionmaker, Role.STOREFRONT, "web")
    return out
