"""Request-scoped dependencies: one transaction per request, and API key authentication."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session as OrmSession

from oms.auth.service import Principal, authenticate
from oms.db import COMMITTED_BY_SERVER, run_after_commit
from oms.shared.errors import Forbidden, Unauthorized
from oms.shared.roles import Role

log = logging.getLogger("oms.db")


def _commit_and_close(session: OrmSession) -> None:
    try:
        session.commit()
    finally:
        session.close()


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    """One session and one transaction per request: commit on success, roll back on error.

    The transaction begins with the first statement (autobegin); commit and close go to
    SQLAlchemy's sync layer in one hop (``run_sync``), not two: ~0.1 ms less per request than
    ``async with sessionmaker() as session, session.begin()`` (measured on order placement).
    """
    session: AsyncSession = request.app.state.sessionmaker()
    try:
        yield session
    except BaseException:
        await session.close()  # rolls the transaction back
        raise
    try:
        await session.run_sync(_commit_and_close)
    except DBAPIError:
        # the server already committed the work with the request's last statement (order
        # placement's reservation carries the COMMIT): only the empty transaction after it
        # failed to end, on a connection that is now discarded. The work stands: answer so.
        if not session.info.get(COMMITTED_BY_SERVER):
            raise
        log.warning("commit after a server-side commit failed; the work was committed")
    run_after_commit(session)


Session = Annotated[AsyncSession, Depends(get_session, scope="function")]

_bearer = HTTPBearer(auto_error=False, description="`Authorization: Bearer oms_<prefix>_<secret>`")
_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="Alternative to Bearer")


CHALLENGE = {"WWW-Authenticate": "Bearer"}
"""Sent with every 401 for an API key (RFC 9110: a 401 names the scheme to authenticate with)."""


def require(*roles: Role) -> Callable[..., Awaitable[Principal]]:
    """A dependency admitting API keys of the given roles (admin is always admitted)."""
    allowed = frozenset(roles) | {Role.ADMIN}

    async def dependency(
        session: Session,
        bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        header_key: Annotated[str | None, Depends(_header)],
    ) -> Principal:
        token = bearer.credentials if bearer else header_key
        if not token:
            raise Unauthorized(
                "send an API key: Authorization: Bearer <key>",
                code="missing_api_key",
                headers=dict(CHALLENGE),
            )
        principal = await authenticate(session, token=token)
        if principal is None:
            raise Unauthorized(
                "the API key is unknown or revoked", code="invalid_api_key", headers=dict(CHALLENGE)
            )
        if principal.role not in allowed:
            raise Forbidden(
                f"role '{principal.role}' may not call this operation; needs one of: "
                + ", ".join(sorted(allowed)),
                code="role_not_allowed",
            )
        return principal

    return dependency
