"""Async engine, session factory, declarative Base with a constraint naming convention."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import MetaData
from sqlalchemy import exc as sa_exc
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
        pool_size=settings.effective_db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_s,
        pool_pre_ping=settings.db_pool_pre_ping,
        pool_recycle=settings.db_pool_recycle_s,
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


_DRIVER_KEY = "oms.driver_connection"
# asyncpg's private transaction states, read defensively: should a release drop or rename them,
# execute_and_commit falls back to sending BEGIN after COMMIT instead of failing at import
_TRANSACTION: Any = getattr(getattr(asyncpg, "transaction", None), "Transaction", None)
_STATES: Any = getattr(getattr(asyncpg, "transaction", None), "TransactionState", None)
_STARTED: Any = getattr(_STATES, "STARTED", None)
_COMMITTED: Any = getattr(_STATES, "COMMITTED", None)


class DriverConnection:
    """The asyncpg connection under a session's transaction, for hot paths that send
    hand-written SQL through asyncpg's prepared-statement cache instead of building
    SQLAlchemy statements per request (order placement).

    JSON/JSONB parameters are passed as JSON text and come back decoded (SQLAlchemy's codecs
    on the connection). Errors are raised as SQLAlchemy's would be, so the app's handlers
    answer as for any other query (503 ``database_unavailable`` for a lost connection or a
    timeout), and a broken connection is invalidated rather than returned to the pool.
    """

    __slots__ = ("_conn", "_pooled")

    def __init__(self, conn: Any, pooled: Any) -> None:
        self._conn = conn
        self._pooled = pooled

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        try:
            rows: list[Any] = await self._conn.fetch(sql, *args)
        except Exception as exc:
            raise self._translate(exc, sql, args) from exc
        return rows

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        try:
            return await self._conn.fetchrow(sql, *args)
        except Exception as exc:
            raise self._translate(exc, sql, args) from exc

    async def fetchval(self, sql: str, *args: Any) -> Any:
        try:
            return await self._conn.fetchval(sql, *args)
        except Exception as exc:
            raise self._translate(exc, sql, args) from exc

    async def execute(self, sql: str, *args: Any) -> str:
        try:
            status: str = await self._conn.execute(sql, *args)
        except Exception as exc:
            raise self._translate(exc, sql, args) from exc
        return status

    async def execute_and_commit(self, sql: str) -> None:
        """Send ``sql`` and COMMIT in one simple-protocol message: the session's transaction
        ends on the server with the statement, in one round trip.

        SQLAlchemy's asyncpg adapter and asyncpg's transaction object are then told that the
        transaction is over, so the session's own commit that follows sends nothing (one round
        trip fewer). Should their internals ever differ from what this expects, ``BEGIN`` rides
        along instead, leaving an empty transaction for the session to commit. On an error the
        transaction stays open and aborted (roll back to a savepoint, or roll back).
        """
        adapted = self._pooled.dbapi_connection
        transaction: Any = getattr(adapted, "_transaction", None)
        end = (
            _TRANSACTION is not None
            and isinstance(transaction, _TRANSACTION)
            and getattr(self._conn, "_top_xact", None) is transaction
            and _STARTED is not None
            and _COMMITTED is not None
            and getattr(transaction, "_state", None) is _STARTED
        )
        await self.execute(sql + (";\nCOMMIT" if end else ";\nCOMMIT;\nBEGIN"))
        if end:
            self._conn._top_xact = None
            transaction._state = _COMMITTED
            adapted._transaction = None

    def _translate(self, exc: Exception, sql: str, args: tuple[Any, ...]) -> Exception:
        lost = isinstance(
            exc,
            asyncpg.InterfaceError | asyncpg.PostgresConnectionError | OSError | ConnectionError,
        )
        if lost:
            self._pooled.invalidate(exc)
            return sa_exc.OperationalError(sql, args, exc, connection_invalidated=True)
        if isinstance(
            exc,
            asyncpg.QueryCanceledError
            | asyncpg.LockNotAvailableError
            | asyncpg.TooManyConnectionsError
            | asyncpg.CannotConnectNowError,
        ):
            return sa_exc.OperationalError(sql, args, exc)
        if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
            return sa_exc.IntegrityError(sql, args, exc)
        if isinstance(exc, asyncpg.PostgresError):
            return sa_exc.DBAPIError(sql, args, exc)
        return exc


async def driver_connection(session: AsyncSession) -> DriverConnection:
    """The :class:`DriverConnection` of the session's transaction, beginning it if needed."""
    transaction = session.sync_session.get_transaction()
    cached = session.info.get(_DRIVER_KEY)
    if cached is not None and transaction is not None and cached[0] is transaction:
        driver: DriverConnection = cached[1]
        if driver._conn.is_in_transaction():
            return driver
    conn = await session.connection()
    pooled = await conn.get_raw_connection()
    raw: Any = pooled.driver_connection
    if not raw.is_in_transaction():
        # SQLAlchemy's adapter begins lazily on its first statement; begin it the same way so
        # that the session's commit/rollback still apply to what we send.
        start = getattr(pooled.dbapi_connection, "_start_transaction", None)
        if start is not None:
            await start()
        else:  # pragma: no cover - other SQLAlchemy versions
            await conn.exec_driver_sql("SELECT 1")
    if not raw.is_in_transaction():  # pragma: no cover - never send SQL outside it
        raise RuntimeError("the session's transaction did not begin")
    driver = DriverConnection(raw, pooled)
    session.info[_DRIVER_KEY] = (session.sync_session.get_transaction(), driver)
    return driver


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


def after_commit(session: AsyncSession, callback: Callable[[], Any]) -> None:
    """Run ``callback`` once the request's transaction has committed (metrics, logs)."""
    session.info.setdefault("after_commit", []).append(callback)


def run_after_commit(session: AsyncSession) -> None:
    for callback in session.info.pop("after_commit", []):
        callback()
