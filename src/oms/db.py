"""Async engine, session factory, declarative Base with a constraint naming convention."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase

from oms.config import Settings

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def create_engine(settings: Settings, url: str | None = None) -> AsyncEngine:
    """An asyncpg engine with bounded pool waits, connect and statement timeouts."""
    target = url or settings.database_url
    if not target:
        raise RuntimeError("no database URL: set OMS_DATABASE_URL or use `oms serve` (embedded)")
    return create_async_engine(
        target,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_s,
        pool_pre_ping=True,
        connect_args={
            "timeout": settings.db_connect_timeout_s,
            "command_timeout": settings.db_statement_timeout_ms / 1000 + 5,
            "server_settings": {
                "statement_timeout": str(settings.db_statement_timeout_ms),
                "lock_timeout": str(settings.db_statement_timeout_ms),
                "idle_in_transaction_session_timeout": "60000",
                "application_name": "oms",
            },
        },
    )


async def driver_connection(session: AsyncSession) -> Any:
    """The asyncpg connection under the session's transaction, for hot paths that send
    hand-written SQL with asyncpg's prepared-statement cache instead of building SQLAlchemy
    statements per request (order placement). Starts the transaction if it has not begun.

    Through this connection JSON/JSONB parameters are passed as JSON text and come back decoded
    (SQLAlchemy's codecs), timestamps are aware datetimes, UUIDs are ``uuid.UUID``.
    """
    conn = await session.connection()
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection
    if not driver.is_in_transaction():
        # SQLAlchemy's adapter begins lazily on its first statement; begin it the same way so
        # that the session's commit/rollback still apply to what we send.
        start = getattr(raw.dbapi_connection, "_start_transaction", None)
        if start is not None:
            await start()
        else:  # pragma: no cover - other SQLAlchemy versions
            await conn.exec_driver_sql("SELECT 1")
    if not driver.is_in_transaction():  # pragma: no cover - never send SQL outside it
        raise RuntimeError("the session's transaction did not begin")
    return driver


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


def after_commit(session: AsyncSession, callback: Callable[[], Any]) -> None:
    """Run ``callback`` once the request's transaction has committed (metrics, logs)."""
    session.info.setdefault("after_commit", []).append(callback)


def run_after_commit(session: AsyncSession) -> None:
    for callback in session.info.pop("after_commit", []):
        callback()
