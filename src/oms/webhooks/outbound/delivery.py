"""Delivering (for the worker): claiming due deliveries, and finishing them once sent: the
attempt recorded, the delivery moved on (succeeded, retried with backoff, or dead), the
endpoint's health updated, a failing endpoint disabled. The worker sends between ``claim`` and
``finish``, outside any transaction.

* Claiming uses ``FOR UPDATE SKIP LOCKED``: concurrent workers share the work. A claimed
  delivery is leased (``next_attempt_at`` = lease expiry); if its worker dies, another one takes
  it after the lease: at least once, never silently dropped. The worker claims only what it
  starts sending at once, with a lease longer than an attempt can take, so a delivery in flight
  is never taken over.
* Claims are made per subscription, each up to its free in-flight slots (``endpoint_limit``
  minus its deliveries in flight under a live lease, all workers together; two workers claiming
  at the same instant may briefly exceed it), taken round-robin across subscriptions: a slow or
  hanging endpoint only ever holds its own slots.
* Per (subscription, ordering key = order) only the oldest unfinished delivery is eligible, so
  one order's events arrive in the order they were recorded.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, insert, or_, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession

from oms.outbox.models import OutboxEvent
from oms.outbox.service import record_event
from oms.shared.clock import utcnow
from oms.webhooks import metrics
from oms.webhooks.outbound.models import Attempt, Delivery, Subscription
from oms.webhooks.outbound.sender import SendResult, backoff_s
from oms.webhooks.outbound.targets import redact

log = logging.getLogger("oms.webhooks.outbound")


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery leased to one worker, with everything needed to send it."""

    id: int
    attempt: int
    lease_token: uuid.UUID
    event_id: uuid.UUID
    event_type: str
    subscription_id: uuid.UUID
    url: str
    secret: str
    payload: dict[str, Any]


_CLAIM = text(
    """
    WITH busy AS (  -- in flight: claimed, lease not expired (any worker)
        SELECT f.subscription_id, count(*) AS n
        FROM webhook_deliveries f
        WHERE f.status = 'delivering' AND f.next_attempt_at > :now
        GROUP BY f.subscription_id
    ),
    quota AS (
        SELECT s.id, :endpoint_limit - coalesce(b.n, 0) AS free
        FROM webhook_subscriptions s
        LEFT JOIN busy b ON b.subscription_id = s.id
        WHERE s.enabled
    ),
    due AS (
        SELECT c.id, c.prev_status, c.next_attempt_at,
               row_number() OVER (PARTITION BY q.id ORDER BY c.next_attempt_at, c.id) AS turn
        FROM (SELECT * FROM quota WHERE free > 0) q
        CROSS JOIN LATERAL (
            SELECT d.id, d.status AS prev_status, d.next_attempt_at
            FROM webhook_deliveries d
            WHERE d.subscription_id = q.id
              AND d.status IN ('pending', 'delivering', 'failed')
              AND d.next_attempt_at <= :now
              AND NOT EXISTS (
                  SELECT 1 FROM webhook_deliveries p
                  WHERE p.subscription_id = d.subscription_id
                    AND p.ordering_key = d.ordering_key
                    AND p.outbox_id < d.outbox_id
                    AND p.status IN ('pending', 'delivering', 'failed')
              )
            -- one range of ix_webhook_deliveries_subscription_due (migration 0012): this
            -- endpoint's own open rows in due order, never another endpoint's backlog
            ORDER BY d.next_attempt_at, d.id
            LIMIT q.free
            FOR UPDATE OF d SKIP LOCKED
        ) c
    ),
    picked AS (
        SELECT id, prev_status FROM due ORDER BY turn, next_attempt_at, id LIMIT :limit
    )
    UPDATE webhook_deliveries w
    SET status = 'delivering', attempts = w.attempts + 1, next_attempt_at = :lease_until,
        lease_token = :token, updated_at = :now
    FROM picked
    WHERE w.id = picked.id
    RETURNING w.id, w.attempts, picked.prev_status
    """
)


async def claim(
    session: AsyncSession,
    *,
    limit: int,
    lease: timedelta,
    max_attempts: int,
    worker: str,
    endpoint_limit: int,
    now: datetime | None = None,
) -> list[Claimed]:
    """Lease up to ``limit`` due deliveries to this worker (SKIP LOCKED), at most
    ``endpoint_limit`` in flight per subscription."""
    now = now or utcnow()
    for _ in range(10):  # rows whose last attempt was used up by a crash are buried, then retry
        live = await _claim_batch(
            session,
            limit=limit,
            lease=lease,
            max_attempts=max_attempts,
            endpoint_limit=endpoint_limit,
            worker=worker,
            now=now,
        )
        if live is not None:
            return live
    return []


async def _claim_batch(
    session: AsyncSession,
    *,
    limit: int,
    lease: timedelta,
    max_attempts: int,
    endpoint_limit: int,
    worker: str,
    now: datetime,
) -> list[Claimed] | None:
    """Claim one batch; None when every claimed row had exhausted its attempts."""
    token = uuid.uuid4()
    params = {
        "now": now,
        "limit": limit,
        "endpoint_limit": endpoint_limit,
        "lease_until": now + lease,
        "token": token,
    }
    claimed = (await session.execute(_CLAIM, params)).all()
    if not claimed:
        return []
    expired = [(row.id, row.attempts) for row in claimed if row.prev_status == "delivering"]
    if expired:
        await session.execute(
            insert(Attempt),
            [
                {
                    "delivery_id": delivery_id,
                    "attempt": attempts - 1,
                    "outcome": "lease_expired",
                    "error": "the worker holding this delivery stopped before recording a "
                    "result (crash or shutdown); sending again",
                    "worker": worker,
                    "created_at": now,
                }
                for delivery_id, attempts in expired
            ],
        )
        metrics.OUTBOUND_ATTEMPTS.labels("lease_expired").inc(len(expired))
    exhausted = [row.id for row in claimed if row.attempts > max_attempts]
    if exhausted:
        await session.execute(
            update(Delivery)
            .where(Delivery.id.in_(exhausted))
            .values(
                status="dead",
                lease_token=None,
                finished_at=now,
                updated_at=now,
                last_error=f"gave up after {max_attempts} attempts",
            )
        )
    live = [row.id for row in claimed if row.attempts <= max_attempts]
    if not live:
        return None
    details = (
        await session.execute(
            select(
                Delivery.id,
                Delivery.attempts,
                Delivery.event_id,
                Delivery.event_type,
                Delivery.subscription_id,
                Subscription.url,
                Subscription.secret,
                OutboxEvent.payload,
            )
            .join(Subscription, Subscription.id == Delivery.subscription_id)
            .join(OutboxEvent, OutboxEvent.id == Delivery.outbox_id)
            .where(Delivery.id.in_(live))
            .order_by(Delivery.id)
        )
    ).all()
    return [
        Claimed(
            id=d.id,
            attempt=d.attempts,
            lease_token=token,
            event_id=d.event_id,
            event_type=d.event_type,
            subscription_id=d.subscription_id,
            url=d.url,
            secret=d.secret,
            payload=d.payload,
        )
        for d in details
    ]


SUCCESS_STAMP_EVERY = timedelta(seconds=5)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int
    backoff_base_s: float
    backoff_max_s: float
    disable_after_failures: int
    disable_after: timedelta


async def finish(
    session: AsyncSession,
    *,
    claimed: Claimed,
    result: SendResult,
    policy: RetryPolicy,
    worker: str,
    now: datetime | None = None,
) -> str:
    """Record the attempt and move the delivery on; returns the outcome.

    Outcomes: ``succeeded``; ``retry`` (retryable failure, next attempt scheduled with backoff);
    ``dead`` (a 4xx other than 408/429, a redirect, or the last attempt failed).
    """
    now = now or utcnow()
    if result.ok:
        outcome = "succeeded"
        values: dict[str, Any] = {"status": "succeeded", "finished_at": now}
    elif result.retryable and claimed.attempt < policy.max_attempts:
        outcome = "retry"
        delay = backoff_s(claimed.attempt, base=policy.backoff_base_s, cap=policy.backoff_max_s)
        if result.retry_after_s is not None:
            delay = min(max(delay, result.retry_after_s), policy.backoff_max_s)
        values = {"status": "failed", "next_attempt_at": now + timedelta(seconds=delay)}
    else:
        outcome = "dead"
        values = {"status": "dead", "finished_at": now}
    session.add(
        Attempt(
            delivery_id=claimed.id,
            attempt=claimed.attempt,
            outcome=outcome,
            status_code=result.status_code,
            duration_ms=result.duration_ms,
            error=result.error,
            response_body=result.response_body,
            worker=worker[:64],
            created_at=now,
        )
    )
    moved = (
        await session.execute(
            update(Delivery)
            .where(Delivery.id == claimed.id, Delivery.lease_token == claimed.lease_token)
            .values(
                **values,
                lease_token=None,
                last_status_code=result.status_code,
                last_error=result.error,
                updated_at=now,
            )
            .returning(Delivery.id)
        )
    ).first()
    await session.flush()
    metrics.OUTBOUND_ATTEMPTS.labels(outcome).inc()
    metrics.OUTBOUND_LATENCY.observe(result.duration_ms / 1000)
    if moved is None:
        # our lease expired and another worker took the delivery over: it decides
        log.warning(
            "webhook attempt finished after its lease expired",
            extra={"delivery_id": claimed.id, "outcome": outcome},
        )
        return outcome
    if outcome == "dead":
        log.warning(
            "webhook delivery dead",
            extra={
                "event": "webhook.delivery.dead",
                "delivery_id": claimed.id,
                "event_id": str(claimed.event_id),
                "event_type": claimed.event_type,
                "subscription_id": str(claimed.subscription_id),
                "status_code": result.status_code,
                "error": result.error,
                "attempts": claimed.attempt,
            },
        )
    await _endpoint_health(session, claimed=claimed, ok=result.ok, policy=policy, now=now)
    return outcome


async def _endpoint_health(
    session: AsyncSession, *, claimed: Claimed, ok: bool, policy: RetryPolicy, now: datetime
) -> None:
    if ok:
        # The subscription row is shared by all of its deliveries: touch (and lock) it only when
        # something changes, and refresh last_success_at at most every few seconds, so that
        # concurrent successes do not queue on one row lock held until each commit.
        await session.execute(
            update(Subscription)
            .where(
                Subscription.id == claimed.subscription_id,
                or_(
                    Subscription.consecutive_failures != 0,
                    Subscription.last_success_at.is_(None),
                    Subscription.last_success_at < now - SUCCESS_STAMP_EVERY,
                ),
            )
            .values(consecutive_failures=0, failing_since=None, last_success_at=now)
        )
        return
    row = (
        await session.execute(
            update(Subscription)
            .where(Subscription.id == claimed.subscription_id)
            .values(
                consecutive_failures=Subscription.consecutive_failures + 1,
                failing_since=func.coalesce(Subscription.failing_since, now),
                last_failure_at=now,
            )
            .returning(
                Subscription.enabled,
                Subscription.consecutive_failures,
                Subscription.failing_since,
                Subscription.url,
            )
        )
    ).first()
    if row is None or not row.enabled:
        return
    if (
        row.consecutive_failures >= policy.disable_after_failures
        and now - row.failing_since >= policy.disable_after
    ):
        await disable_endpoint(
            session,
            subscription_id=claimed.subscription_id,
            reason=f"{row.consecutive_failures} failed attempts in a row since "
            f"{row.failing_since.isoformat()}",
            now=now,
        )


async def disable_endpoint(
    session: AsyncSession, *, subscription_id: uuid.UUID, reason: str, now: datetime
) -> None:
    """Disable a failing endpoint, and report it (log line, metric, webhook.endpoint_disabled)."""
    sub = (
        await session.execute(
            update(Subscription)
            .where(Subscription.id == subscription_id, Subscription.enabled.is_(True))
            .values(enabled=False, disabled_reason=reason, disabled_at=now, updated_at=now)
            .returning(Subscription.id, Subscription.url)
        )
    ).first()
    if sub is None:
        return
    metrics.ENDPOINTS_DISABLED.inc()
    log.error(
        "webhook endpoint disabled",
        extra={
            "event": "webhook.endpoint_disabled",
            "subscription_id": str(subscription_id),
            "url": redact(sub.url),
            "reason": reason,
        },
    )
    await record_event(
        session,
        type="webhook.endpoint_disabled",
        aggregate_type="webhook_subscription",
        aggregate_id=str(subscription_id),
        data={"subscription_id": str(subscription_id), "url": redact(sub.url), "reason": reason},
    )
