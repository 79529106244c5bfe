"""Create, look up and revoke API keys. Keys look like ``oms_<prefix>_<secret>``."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from oms.auth.models import ApiKey, ApiKeyWarehouse
from oms.db import driver_connection
from oms.shared.clock import utcnow
from oms.shared.errors import NotFound, Unprocessable
from oms.shared.roles import Role


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the API key's id, name, role and optional channel binding."""

    key_id: uuid.UUID
    name: str
    role: Role
    channel: str | None
    warehouse_ids: frozenset[uuid.UUID] | None = None
    """The warehouses and stores a scoped fulfilment key works in (None: every one)."""

    @property
    def actor(self) -> str:
        return f"apikey:{self.name}"


def visible_warehouses(principal: Principal | None) -> frozenset[uuid.UUID] | None:
    """The warehouse ids ``principal`` may see and move (shipments, pick queues, transfers,
    stock); None when it is not scoped (every warehouse). Anything outside is a 404 for it."""
    if principal is None:
        return None
    return principal.warehouse_ids


def may_see_warehouse(principal: Principal | None, warehouse_id: uuid.UUID) -> bool:
    """Whether ``principal`` may see and move what is in ``warehouse_id``."""
    scope = visible_warehouses(principal)
    return scope is None or warehouse_id in scope


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _split(token: str) -> tuple[str, str] | None:
    parts = token.split("_")
    if len(parts) != 3 or parts[0] != "oms" or not parts[1] or not parts[2]:
        return None
    return parts[1], parts[2]


async def create_api_key(
    session: AsyncSession, *, name: str, role: Role, channel: str | None = None
) -> tuple[ApiKey, str]:
    """Store a new key (hashed) and return it with the plaintext token, shown once."""
    if channel is not None and role not in (Role.STOREFRONT, Role.CONNECTOR):
        raise Unprocessable("only storefront and connector keys can be bound to a channel")
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32).replace("_", "-")
    key = ApiKey(
        id=uuid.uuid4(),
        prefix=prefix,
        secret_hash=_hash(secret),
        name=name,
        role=role.value,
        channel=channel,
    )
    session.add(key)
    await session.flush()
    return key, f"oms_{prefix}_{secret}"


_AUTHENTICATE = """SELECT k.id, k.name, k.role, k.channel, k.secret_hash,
  (SELECT array_agg(s.warehouse_id) FROM api_key_warehouses s WHERE s.api_key_id = k.id)
    AS warehouse_ids
FROM api_keys k WHERE k.prefix = $1 AND k.revoked_at IS NULL"""


async def authenticate(session: AsyncSession, *, token: str) -> Principal | None:
    """The principal for a token, or None if unknown, wrong or revoked (constant-time check).

    Runs on every request: one prepared statement on the request's connection, no ORM.
    """
    parts = _split(token)
    if parts is None:
        return None
    prefix, secret = parts
    conn = await driver_connection(session)
    row = await conn.fetchrow(_AUTHENTICATE, prefix)
    candidate = _hash(secret)
    if row is None:
        hmac.compare_digest(candidate, candidate)  # same work whether or not the prefix exists
        return None
    if not hmac.compare_digest(candidate, row["secret_hash"]):
        return None
    scope = row["warehouse_ids"]
    return Principal(
        key_id=row["id"],
        name=row["name"],
        role=Role(row["role"]),
        channel=row["channel"],
        warehouse_ids=frozenset(scope) if scope else None,
    )


async def list_api_keys(session: AsyncSession) -> list[ApiKey]:
    """Every key, newest first (hashes never leave the database layer)."""
    return list((await session.scalars(select(ApiKey).order_by(ApiKey.created_at.desc()))).all())


async def revoke_api_key(
    session: AsyncSession, *, key_id: uuid.UUID | None = None, prefix: str | None = None
) -> None:
    """Revoke a key by id or prefix; it stops working on the next request."""
    stmt = update(ApiKey).where(ApiKey.revoked_at.is_(None)).values(revoked_at=utcnow())
    if key_id is not None:
        stmt = stmt.where(ApiKey.id == key_id)
    elif prefix is not None:
        stmt = stmt.where(ApiKey.prefix == prefix)
    else:
        raise Unprocessable("give a key id or prefix")
    result = await session.execute(stmt.returning(ApiKey.id))
    if result.first() is None:
        raise NotFound("no active API key with that id or prefix", code="api_key_not_found")


async def set_key_warehouses(
    session: AsyncSession, *, key_id: uuid.UUID, warehouse_ids: list[uuid.UUID]
) -> ApiKey:
    """Scope a fulfilment key to these warehouses/stores (an empty list: unscoped again)."""
    key = await session.scalar(
        select(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None)).with_for_update()
    )
    if key is None:
        raise NotFound("no active API key with that id", code="api_key_not_found")
    if key.role != Role.FULFILLMENT.value:
        raise Unprocessable(
            "only fulfillment keys are scoped to warehouses", code="key_not_scopable"
        )
    await session.execute(delete(ApiKeyWarehouse).where(ApiKeyWarehouse.api_key_id == key_id))
    if warehouse_ids:
        await session.execute(
            insert(ApiKeyWarehouse),
            [{"api_key_id": key_id, "warehouse_id": wid} for wid in sorted(set(warehouse_ids))],
        )
    return key


async def key_warehouses(session: AsyncSession, *, key_id: uuid.UUID) -> list[uuid.UUID]:
    """The warehouses a key is scoped to (empty: unscoped)."""
    rows = await session.scalars(
        select(ApiKeyWarehouse.warehouse_id).where(ApiKeyWarehouse.api_key_id == key_id)
    )
    return list(rows.all())


async def principal_of_key(session: AsyncSession, *, key_id: uuid.UUID) -> Principal | None:
    """The principal of an active key, by id, as :func:`authenticate` builds it (its current
    role, channel and warehouse scope); None when the key is unknown or revoked. For what stands
    in for a key after it was checked once (a console session)."""
    key = await session.scalar(
        select(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
    )
    if key is None:
        return None
    scope = await key_warehouses(session, key_id=key_id)
    return Principal(
        key_id=key.id,
        name=key.name,
        role=Role(key.role),
        channel=key.channel,
        warehouse_ids=frozenset(scope) if scope else None,
    )
