"""Idempotency-Key storage for order placement: claim a key, or replay the committed response
of its first use (keys are scoped per API key; a body that differs is refused)."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from oms.db import driver_connection
from oms.orders.schemas import OrderCreate
from oms.shared.clock import utcnow
from oms.shared.errors import Conflict, Unprocessable

log = logging.getLogger("oms.orders")


def request_fingerprint(data: OrderCreate) -> str:
    """SHA-256 of the validated body in canonical JSON (formatting differences don't count)."""
    body = data.model_dump(mode="json")
    # fields added later count only when set: a key stored before they existed still matches
    # a retry of its request (migration 0011: a customer's phone, anonymous)
    for name, default in (("phone", None), ("anonymous", False)):
        if body["customer"].get(name, default) == default:
            body["customer"].pop(name, None)
    if body.get("locale") is None:  # migration 0023: the customer's language
        body.pop("locale", None)
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status: int
    body: dict[str, Any]


_CLAIM = """INSERT INTO idempotency_keys (scope, key, request_hash) VALUES ($1, $2, $3)
ON CONFLICT (scope, key) DO NOTHING RETURNING id"""
_CLAIMED = """SELECT request_hash, response_status, response_body, created_at
FROM idempotency_keys WHERE scope = $1 AND key = $2 FOR UPDATE"""
_RECLAIM = """UPDATE idempotency_keys
SET request_hash = $3, created_at = $4, response_status = NULL, response_body = NULL,
    order_id = NULL
WHERE scope = $1 AND key = $2"""


async def claim_idempotency_key(
    session: AsyncSession, *, scope: str, key: str, fingerprint: str, ttl: timedelta
) -> StoredResponse | None:
    """Claim ``key`` for this request, or return the committed response of its first use.

    The INSERT waits for a concurrent request holding the same key to finish, so exactly one
    of them proceeds; the others replay its response (or proceed if it rolled back).
    """
    conn = await driver_connection(session)
    if await conn.fetchval(_CLAIM, scope, key, fingerprint) is not None:
        return None
    row = await conn.fetchrow(_CLAIMED, scope, key)
    if row is None:  # pragma: no cover - deleted (pruned) between the two statements
        raise Conflict(
            "a request with this Idempotency-Key is in progress", code="idempotency_in_progress"
        )
    now = utcnow()
    if row["created_at"] < now - ttl:
        await conn.execute(_RECLAIM, scope, key, fingerprint, now)
        return None
    if row["request_hash"] != fingerprint:
        raise Unprocessable(
            "this Idempotency-Key was already used with a different request body",
            code="idempotency_key_reused",
        )
    if row["response_status"] is None or row["response_body"] is None:
        raise Conflict(
            "a request with this Idempotency-Key is in progress", code="idempotency_in_progress"
        )
    return StoredResponse(row["response_status"], row["response_body"])
