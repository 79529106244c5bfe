"""Console sign-in sessions: an API key exchanged for a session, its CSRF token, expiry, sign-out.

The browser holds a random session id in an HttpOnly cookie; the database holds only its
SHA-256, so a leaked table lets nobody in. A session ends at sign-out, when it was not used for
``console_session_idle_minutes``, ``console_session_max_hours`` after sign-in, or as soon as its
API key is revoked (checked on every request: the key's current role, channel binding and
warehouse scope are read with the session, so a changed or revoked key takes effect at once).

Every function takes the request's session and never commits; ``now`` is injected (tests move
the clock instead of waiting).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, update
from sqlalchemy.ext.asyncio import AsyncSession

from oms.auth.service import Principal, authenticate, principal_of_key
from oms.console.models import ConsoleSession
from oms.shared.roles import Role

CONSOLE_ROLES = frozenset({Role.ADMIN, Role.FULFILLMENT, Role.STOREFRONT})
"""Roles that may sign in to the console (connector keys are for machines)."""


@dataclass(frozen=True, slots=True)
class Lifetime:
    """How long a session lasts: unused (``idle``) and at most (``absolute``)."""

    idle: timedelta
    absolute: timedelta


@dataclass(frozen=True, slots=True)
class SignedIn:
    """A session just created: the id for the cookie (shown once) and its CSRF token."""

    session_id: str
    csrf_token: str
    principal: Principal


@dataclass(frozen=True, slots=True)
class Viewer:
    """Who is using the console in this request, and the CSRF token their forms carry."""

    principal: Principal
    csrf_token: str
    expires_at: datetime

    @property
    def role(self) -> Role:
        return self.principal.role


def hash_id(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


def same_token(sent: str | None, expected: str) -> bool:
    """Constant-time comparison of a CSRF token sent with a form to the expected one."""
    if not sent:
        return False
    return hmac.compare_digest(sent.encode(), expected.encode())


async def sign_in(
    session: AsyncSession, *, token: str, lifetime: Lifetime, now: datetime
) -> SignedIn | None:
    """Exchange an API key for a new session; None when the key is unknown, revoked or of a
    role the console does not serve. Expired sessions are purged on the way."""
    principal = await authenticate(session, token=token)
    if principal is None or principal.role not in CONSOLE_ROLES:
        return None
    await session.execute(
        delete(ConsoleSession).where(
            (ConsoleSession.expires_at <= now)
            | (ConsoleSession.last_seen_at <= now - lifetime.idle)
        )
    )
    session_id = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    session.add(
        ConsoleSession(
            id_hash=hash_id(session_id),
            key_id=principal.key_id,
            csrf_token=csrf,
            created_at=now,
            last_seen_at=now,
            expires_at=now + lifetime.absolute,
        )
    )
    await session.flush()
    return SignedIn(session_id=session_id, csrf_token=csrf, principal=principal)


async def load(
    session: AsyncSession, *, session_id: str, lifetime: Lifetime, now: datetime
) -> Viewer | None:
    """The viewer of a live session (and its idle clock restarted); None when the id is
    unknown, the session expired (idle or absolute) or its key was revoked. The key's current
    role, channel and warehouse scope come from ``oms.auth.service`` on every request."""
    if not session_id or len(session_id) > 128:
        return None
    id_hash = hash_id(session_id)
    row = await session.get(ConsoleSession, id_hash)
    if row is None:
        return None
    if row.expires_at <= now or row.last_seen_at <= now - lifetime.idle:
        await session.execute(delete(ConsoleSession).where(ConsoleSession.id_hash == id_hash))
        return None
    principal = await principal_of_key(session, key_id=row.key_id)
    if principal is None or principal.role not in CONSOLE_ROLES:
        return None
    if now - row.last_seen_at > timedelta(seconds=30):  # one write per half minute at most
        await session.execute(
            update(ConsoleSession).where(ConsoleSession.id_hash == id_hash).values(last_seen_at=now)
        )
    return Viewer(principal=principal, csrf_token=row.csrf_token, expires_at=row.expires_at)


async def sign_out(session: AsyncSession, *, session_id: str) -> None:
    """End the session (its cookie no longer opens anything)."""
    await session.execute(
        delete(ConsoleSession).where(ConsoleSession.id_hash == hash_id(session_id))
    )
