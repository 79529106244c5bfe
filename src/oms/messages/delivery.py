"""Sending (for the worker): claiming due messages with a lease, and recording each attempt.

* Claim: ``FOR UPDATE SKIP LOCKED``, status ``sending``, ``attempts + 1``, ``next_attempt_at`` =
  the lease's end, a fresh ``lease_token``. Per (order, channel) only the oldest open message
  is eligible, so a customer gets an order's messages in the order its events happened.
* The worker sends between ``claim`` and ``finish``, outside any transaction.
* Finish: the attempt is logged (outcome, provider id, error, duration), the message moves to
  ``sent``, back to ``failed`` with a backoff, or to ``dead``. Only the holder of the lease may
  finish it (``lease_token``): a worker that outlived its lease records its attempt but does not
  move the message.
* A ``sending`` message whose lease ran out (its worker died) is claimed again, logged as
  ``lease_expired``: at least once. Whether the first attempt reached the customer cannot be
  known; the retry carries the same Message-ID / Idempotency-Key (README: "Messages to
  customers").
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import insert, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from oms.messages import metrics
from oms.messages.models import Message, MessageAttempt
from oms.messages.providers import SendOutcome


@dataclass(frozen=True, slots=True)
class ClaimedMessage:
    id: int
    attempt: int
    lease_token: uuid.UUID
    event_type: str
    channel: str
    recipient: str
    subject: str | None
    body_text: str
    body_html: str | None
    idempotency_key: str


_CLAIM = text(
    """
    WITH picked AS (
        SELECT m.id, m.status AS prev_status
        FROM messages m
        WHERE m.status IN ('pending', 'sending', 'failed')
          AND m.next_attempt_at <= :now
          AND m.channel = ANY(:channels)
          AND NOT EXISTS (
              SELECT 1 FROM messages p
              WHERE p.order_id = m.order_id AND p.channel = m.channel
                AND p.status IN ('pending', 'sending', 'failed')
                AND (p.outbox_id, p.id) < (m.outbox_id, m.id)
          )
        ORDER BY m.next_attempt_at, m.id
        LIMIT :limit
        FOR UPDATE OF m SKIP LOCKED
    )
    UPDATE messages w
    SET status = 'sending', attempts = w.attempts + 1, next_attempt_at = :lease_until,
        lease_token = :token, updated_at = :now
    FROM picked
    WHERE w.id = picked.id
    RETURNING w.id, w.attempts, picked.prev_status, w.event_type, w.channel, w.recipient,
              w.subject, w.body_text, w.body_html, w.idempotency_key
    """
)


async def claim(
    session: AsyncSession,
    *,
    limit: int,
    lease: timedelta,
    max_attempts: int,
    worker: str,
    now: datetime,
    channels: list[str],
) -> list[ClaimedMessage]:
    """Lease up to ``limit`` due messages of ``channels`` (those with a provider)."""
    token = uuid.uuid4()
    params = {
        "now": now,
        "limit": limit,
        "lease_until": now + lease,
        "token": token,
        "channels": channels,
    }
    rows = (await session.execute(_CLAIM, params)).all()
    expired = [r for r in rows if r.prev_status == "sending"]
    for r in expired:
        metrics.ATTEMPTS.labels(r.channel, "lease_expired").inc()
    if expired:
        await session.execute(
            insert(MessageAttempt),
            [
                {
                    "message_id": r.id,
                    "attempt": r.attempts - 1,
                    "outcome": "lease_expired",
                    "error": "the worker sending this message stopped before recording a result "
                    "(crash or shutdown); it may or may not have been delivered",
                    "worker": worker,
                    "created_at": now,
                }
                for r in expired
            ],
        )
    exhausted = [r.id for r in rows if r.attempts > max_attempts]
    if exhausted:
        await session.execute(
            update(Message)
            .where(Message.id.in_(exhausted))
            .values(
                status="dead",
                lease_token=None,
                updated_at=now,
                last_error=f"gave up after {max_attempts} attempts",
            )
        )
    return [
        ClaimedMessage(
            id=r.id,
            attempt=r.attempts,
            lease_token=token,
            event_type=r.event_type,
            channel=r.channel,
            recipient=r.recipient,
            subject=r.subject,
            body_text=r.body_text,
            body_html=r.body_html,
            idempotency_key=r.idempotency_key,
        )
        for r in rows
        if r.attempts <= max_attempts
    ]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int
    backoff_base_s: float
    backoff_max_s: float


def backoff(attempt: int, policy: RetryPolicy) -> timedelta:
    """``base * 2^(attempt-1)`` with +-20 % jitter, never more than ``backoff_max_s``."""
    exponent = min(max(0, attempt - 1), 60)  # (2.0**1100 would overflow the float)
    delay = policy.backoff_base_s * 2.0**exponent * random.uniform(0.8, 1.2)  # noqa: S311
    return timedelta(seconds=min(policy.backoff_max_s, delay))


async def finish(
    session: AsyncSession,
    *,
    claimed: ClaimedMessage,
    outcome: SendOutcome,
    policy: RetryPolicy,
    duration_ms: int,
    worker: str,
    now: datetime,
) -> str:
    """Log the attempt and move the message on; returns ``sent``, ``retry`` or ``dead``."""
    if outcome.ok:
        result = "sent"
        values: dict[str, object] = {
            "status": "sent",
            "sent_at": now,
            "provider_message_id": outcome.provider_id,
            "last_error": None,
        }
    elif outcome.retry and claimed.attempt < policy.max_attempts:
        result = "retry"
        values = {
            "status": "failed",
            "next_attempt_at": now + backoff(claimed.attempt, policy),
            "last_error": outcome.error,
        }
    else:
        result = "dead"
        values = {"status": "dead", "last_error": outcome.error}
    await session.execute(
        insert(MessageAttempt).values(
            message_id=claimed.id,
            attempt=claimed.attempt,
            outcome=result,
            provider_message_id=outcome.provider_id,
            error=outcome.error,
            duration_ms=duration_ms,
            worker=worker[:64],
            created_at=now,
        )
    )
    await session.execute(
        update(Message)
        .where(Message.id == claimed.id, Message.lease_token == claimed.lease_token)
        .values(lease_token=None, updated_at=now, **values)
    )
    return result
