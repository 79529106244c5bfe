"""Async engine, session factory, declarative Base with a constraint naming convention."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, NoReturn

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import MetaData, event
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Session, SessionTransaction

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
    """An asyncpg engine whose every wait on the database is bounded (pool, connect, each
    round trip; ``Settings.db_request_bound_s``) and whose connections are discarded after an
    error that leaves their state unknown (see :func:`breaks_connection`)."""
    target = url or settings.database_url
    if not target:
        raise RuntimeError("no database URL: set OMS_DATABASE_URL or use `oms serve` (embedded)")
    engine = create_async_engine(
        target,
        pool_size=settings.effective_db_pool_size,
        max_overflow=settings.db_max_overflow,
        pool_timeout=settings.db_pool_timeout_s,
        pool_pre_ping=settings.db_pool_pre_ping,
        pool_recycle=settings.db_pool_recycle_s,
        connect_args={
            "timeout": settings.db_connect_timeout_s,
            "command_timeout": settings.effective_db_command_timeout_s,
            "server_settings": {
                "statement_timeout": str(settings.db_statement_timeout_ms),
                "lock_timeout": str(settings.db_statement_timeout_ms),
                "idle_in_transaction_session_timeout": "60000",
                "application_name": "oms",
            },
        },
    )
    event.listen(engine.sync_engine, "handle_error", _discard_broken_connection)
    return engine


def breaks_connection(exc: BaseException, raw: Any = None) -> bool:
    """Whether, after ``exc``, nobody knows what state the connection is in.

    A round trip that timed out on the client (``command_timeout``: the server may still run
    the statement, or a BEGIN or COMMIT, later), was cancelled, or failed in the socket or the
    protocol: the session and the server may disagree on whether a transaction is open. Such
    a connection is discarded, never reused. An error the server reported (a constraint, its
    own statement or lock timeout) leaves the connection in step: the transaction is aborted
    and the session rolls it back as usual.
    """
    for error in (exc, exc.__cause__):
        if isinstance(
            error,
            OSError  # TimeoutError (asyncpg's command_timeout) is one
            | asyncio.CancelledError
            | asyncpg.PostgresConnectionError
            | asyncpg.InternalClientError,  # ProtocolError is one
        ):
            return True
    return raw is not None and bool(raw.is_closed())


def _discard_broken_connection(context: ExceptionContext) -> BaseException | None:
    """``handle_error``: have SQLAlchemy invalidate (close, not pool) a connection that
    :func:`breaks_connection` names; by default it does so only for one already closed.

    Only that connection: the others may be fine (each one that times out is discarded in
    turn), whereas pool-wide invalidation would close them all on their next checkout. It is
    terminated here because SQLAlchemy's invalidation first tries a graceful close, which
    waits up to 2 s for a database that may not be answering. A client-side timeout, raised
    bare by the driver, becomes an ``OperationalError`` like any other loss of the database.
    """
    connection = context.connection
    if connection is None or connection.invalidated or connection.closed:
        return None
    raw = connection.connection.driver_connection
    exc = context.original_exception
    if raw is None or not breaks_connection(exc, raw):
        return None
    if not context.is_disconnect:  # else SQLAlchemy's own choice (a closed connection)
        context.is_disconnect = True
        context.invalidate_pool_on_disconnect = False
    raw.terminate()
    if context.sqlalchemy_exception is None and isinstance(exc, Exception):
        return sa_exc.OperationalError(
            context.statement, context.parameters, exc, connection_invalidated=True
        )
    return None


_DRIVER_KEY = "oms.driver_connection"
COMMITTED_BY_SERVER = "oms.committed_by_server"
"""``session.info`` key: the request's work was committed by the server with its last
statement (:meth:`DriverConnection.execute_then_commit`); only an empty transaction is left,
so a failure to end it loses nothing (the request dependency answers as committed)."""


class _Record:
    """A row read through SQLAlchemy, read like an asyncpg ``Record``: ``r["col"]``, ``r[0]``,
    ``r.items()``, ``r.get("col")``."""

    __slots__ = ("_row",)

    def __init__(self, row: Any) -> None:
        self._row = row

    def __getitem__(self, key: str | int) -> Any:
        return self._row._mapping[key] if isinstance(key, str) else self._row[key]

    def get(self, key: str, default: Any = None) -> Any:
        return self._row._mapping.get(key, default)

    def items(self) -> Any:
        return self._row._mapping.items()

    def keys(self) -> Any:
        return self._row._mapping.keys()


class DriverConnection:
    """The asyncpg connection under a session's transaction, for hot paths that send
    hand-written SQL through asyncpg's prepared-statement cache instead of building
    SQLAlchemy statements per request (authentication, order placement).

    Public asyncpg calls only, inside the transaction SQLAlchemy began: the session's commit
    and rollback apply to what is sent here. The first statement of a transaction goes through
    SQLAlchemy (``exec_driver_sql``), which begins the transaction with it; later ones go to
    asyncpg directly. Transaction control is SQLAlchemy's (savepoints through
    ``session.begin_nested()``), with one exception: :meth:`execute_then_commit`.

    JSON/JSONB parameters are passed as JSON text and come back decoded (SQLAlchemy's codecs
    on the connection). Errors are raised as SQLAlchemy's would be, so the app's handlers
    answer as for any other query (503 ``database_unavailable`` for a lost connection or a
    timeout), and a connection :func:`breaks_connection` names is invalidated (closed, not
    returned to the pool) through SQLAlchemy, which then skips the rollback.
    """

    __slots__ = ("_conn", "_connection", "_begun")

    def __init__(self, conn: Any, connection: AsyncConnection, *, begun: bool) -> None:
        self._conn = conn
        self._connection = connection
        self._begun = begun

    async def _first(self, sql: str, args: tuple[Any, ...]) -> list[Any]:
        """The transaction's first statement, through SQLAlchemy: it begins the transaction
        (BEGIN) and runs ``sql`` (with asyncpg's prepared statements underneath)."""
        result = await self._connection.exec_driver_sql(sql, args)
        self._begun = True
        if not result.returns_rows:
            return []
        return [_Record(row) for row in result.fetchall()]

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        if not self._begun:
            return await self._first(sql, args)
        try:
            rows: list[Any] = await self._conn.fetch(sql, *args)
        except Exception as exc:
            await self._raise(exc, sql, args)
        except asyncio.CancelledError as exc:
            await self._discard(exc)
            raise
        return rows

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        if not self._begun:
            rows = await self._first(sql, args)
            return rows[0] if rows else None
        try:
            return await self._conn.fetchrow(sql, *args)
        except Exception as exc:
            await self._raise(exc, sql, args)
        except asyncio.CancelledError as exc:
            await self._discard(exc)
            raise

    async def fetchval(self, sql: str, *args: Any) -> Any:
        if not self._begun:
            rows = await self._first(sql, args)
            return rows[0][0] if rows else None
        try:
            return await self._conn.fetchval(sql, *args)
        except Exception as exc:
            await self._raise(exc, sql, args)
        except asyncio.CancelledError as exc:
            await self._discard(exc)
            raise

    async def execute(self, sql: str, *args: Any) -> str:
        if not self._begun:
            await self._first(sql, args)
            return ""
        try:
            status: str = await self._conn.execute(sql, *args)
        except Exception as exc:
            await self._raise(exc, sql, args)
        except asyncio.CancelledError as exc:
            await self._discard(exc)
            raise
        return status

    async def execute_then_commit(self, sql: str) -> None:
        """Run ``sql`` (no parameters: literals only), COMMIT the transaction and BEGIN an
        empty one, in one simple-protocol message: the transaction's work is committed by the
        server right after ``sql`` and its row locks are released then, not one round trip
        (and a turn of a busy event loop) later. The empty transaction keeps the server where
        asyncpg and SQLAlchemy believe it is (in a transaction), so the session's own commit,
        which follows, ends it as usual. Public asyncpg API only.

        For order placement's reservation, the contended statement, when nothing follows it.
        On an error nothing after ``sql`` runs: the transaction is aborted, as with
        :meth:`execute`.
        """
        if not self._begun:
            raise RuntimeError("execute_then_commit needs a transaction with work in it")
        await self.execute(sql + ";\nCOMMIT;\nBEGIN")

    async def _discard(self, exc: BaseException) -> None:
        """Close the connection at once (a graceful close would wait on the server) and
        invalidate it through SQLAlchemy: not returned to the pool, no rollback sent."""
        self._conn.terminate()
        if not (self._connection.invalidated or self._connection.closed):
            await self._connection.invalidate(exc)

    async def _raise(self, exc: Exception, sql: str, args: tuple[Any, ...]) -> NoReturn:
        """Raise ``exc`` as SQLAlchemy would have, discarding the connection if it broke."""
        if breaks_connection(exc, self._conn):
            await self._discard(exc)
            raise sa_exc.OperationalError(sql, args, exc, connection_invalidated=True) from exc
        if isinstance(
            exc,
            asyncpg.QueryCanceledError
            | asyncpg.LockNotAvailableError
            | asyncpg.TooManyConnectionsError
            | asyncpg.CannotConnectNowError,
        ):
            raise sa_exc.OperationalError(sql, args, exc) from exc
        if isinstance(exc, asyncpg.IntegrityConstraintViolationError):
            raise sa_exc.IntegrityError(sql, args, exc) from exc
        if isinstance(exc, asyncpg.PostgresError):
            raise sa_exc.DBAPIError(sql, args, exc) from exc
        raise exc


async def driver_connection(session: AsyncSession) -> DriverConnection:
    """The :class:`DriverConnection` of the session's transaction.

    If SQLAlchemy has not begun the transaction on the connection yet, the first statement
    sent through the driver connection goes through SQLAlchemy and begins it (no extra round
    trip). Later calls in the same transaction reuse the connection (forgotten when the
    session's transaction ends, :func:`_forget_driver`).
    """
    driver: DriverConnection | None = session.info.get(_DRIVER_KEY)
    if driver is None:
        conn = await session.connection()
        raw: Any = (await conn.get_raw_connection()).driver_connection
        begun = bool(raw.is_in_transaction())
        driver = session.info[_DRIVER_KEY] = DriverConnection(raw, conn, begun=begun)
    return driver


@event.listens_for(Session, "after_transaction_end")
def _forget_driver(session: Session, transaction: SessionTransaction) -> None:
    """A session's transaction ended (commit, rollback, close): its connection may go back to
    the pool and serve another session, so the next :func:`driver_connection` starts over."""
    if transaction.parent is None:
        session.info.pop(_DRIVER_KEY, None)


def create_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False, autoflush=False)


def after_commit(session: AsyncSession, callback: Callable[[], Any]) -> None:
    """Run ``callback`` once the request's transaction has committed (metrics, logs)."""
    session.info.setdefault("after_commit", []).append(callback)


def run_after_commit(session: AsyncSession) -> None:
    for callback in session.info.pop("after_commit", []):
        callback()
