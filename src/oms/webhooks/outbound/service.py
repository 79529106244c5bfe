"""Outbound webhooks: subscriptions, fan-out of outbox events into deliveries, claiming and
finishing deliveries (for the worker), the delivery log and manual redelivery.

Every function runs inside the caller's (short) transaction and never commits, and none of them
does network I/O: the worker sends between ``claim`` and ``finish``, outside any transaction.

* Fan-out is crash-safe and idempotent: deliveries are unique per (outbox event, subscription),
  inserted with ON CONFLICT DO NOTHING together with the relay's bookkeeping in one transaction.
  The cursor over the outbox only passes an id gap (a transaction that may still commit) after
  ``outbox_gap_grace_s``; events past a gap are fanned out right away and remembered in
  ``webhook_dispatched``, so nothing is skipped and nothing is fanned out twice.
* Claiming uses ``FOR UPDATE SKIP LOCKED``: concurrent workers share the work. A claimed
  delivery is leased (``next_attempt_at`` = lease expiry); if its worker dies, another one takes
  it after the lease: at least once, never silently dropped.
* Per (subscription, ordering key = order) only the oldest unfinished delivery is eligible, so
  one order's events arrive in the order they were recorded.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    case,
    delete,
    false,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from oms.outbox.models import OutboxEvent
from oms.outbox.service import record_event
from oms.shared.clock import utcnow
from oms.shared.errors import Conflict, NotFound, ProblemError
from oms.webhooks import metrics
from oms.webhooks.events import matches
from oms.webhooks.keys import new_secret
from oms.webhooks.outbound.models import (
    Attempt,
    Delivery,
    DispatchedEvent,
    RelayState,
    Subscription,
)
from oms.webhooks.outbound.schemas import (
    RedeliverRequest,
    SubscriptionCreate,
    SubscriptionUpdate,
)
from oms.webhooks.outbound.sender import SendResult, backoff_s

log = logging.getLogger("oms.webhooks.outbound")


# ---- subscriptions ------------------------------------------------------------------------


async def create_subscription(session: AsyncSession, *, data: SubscriptionCreate) -> Subscription:
    """Store a subscription with a fresh secret; it receives events recorded from now on."""
    now = utcnow()
    sub = Subscription(
        id=uuid.uuid4(),
        url=str(data.url),
        description=data.description,
        event_types=list(dict.fromkeys(data.event_types)),
        secret=new_secret(),
        enabled=data.enabled,
        consecutive_failures=0,
        created_at=now,
        updated_at=now,
    )
    session.add(sub)
    await session.flush()
    return sub


async def list_subscriptions(session: AsyncSession) -> list[Subscription]:
    return list(
        (await session.scalars(select(Subscription).order_by(Subscription.created_at))).all()
    )


async def get_subscription(session: AsyncSession, *, subscription_id: uuid.UUID) -> Subscription:
    sub = await session.get(Subscription, subscription_id, populate_existing=True)
    if sub is None:
        raise NotFound(
            f"subscription {subscription_id} does not exist", code="subscription_not_found"
        )
    return sub


async def update_subscription(
    session: AsyncSession, *, subscription_id: uuid.UUID, data: SubscriptionUpdate
) -> Subscription:
    """Change a subscription; enabling it clears the failure state and resumes its deliveries."""
    sub = await get_subscription(session, subscription_id=subscription_id)
    changes = data.model_dump(exclude_unset=True)
    if changes.get("url") is not None:
        sub.url = str(data.url)
    if changes.get("event_types") is not None:
        sub.event_types = list(dict.fromkeys(changes["event_types"]))
    if "description" in changes:
        sub.description = changes["description"]
    if changes.get("enabled") is True:
        sub.enabled = True
        sub.disabled_reason = None
        sub.disabled_at = None
        sub.consecutive_failures = 0
        sub.failing_since = None
    elif changes.get("enabled") is False:
        sub.enabled = False
        sub.disabled_reason = "disabled by an administrator"
        sub.disabled_at = utcnow()
    sub.updated_at = utcnow()
    await session.flush()
    return sub


async def rotate_secret(session: AsyncSession, *, subscription_id: uuid.UUID) -> str:
    sub = await get_subscription(session, subscription_id=subscription_id)
    sub.secret = new_secret()
    sub.updated_at = utcnow()
    await session.flush()
    return sub.secret


async def delete_subscription(session: AsyncSession, *, subscription_id: uuid.UUID) -> None:
    """Delete a subscription with its deliveries and attempts."""
    result = await session.execute(
        delete(Subscription).where(Subscription.id == subscription_id).returning(Subscription.id)
    )
    if result.first() is None:
        raise NotFound(
            f"subscription {subscription_id} does not exist", code="subscription_not_found"
        )


# ---- fan-out ------------------------------------------------------------------------------


def _ordering_key(aggregate_type: str, aggregate_id: str, order_ref: str | None) -> str:
    """Events that carry an order id are ordered per order; others per aggregate."""
    return f"order:{order_ref}" if order_ref else f"{aggregate_type}:{aggregate_id}"[:128]


async def fan_out(
    session: AsyncSession, *, batch: int, grace: timedelta, now: datetime | None = None
) -> int:
    """Turn newly committed outbox events into deliveries; returns how many events it read.

    Only one worker fans out at a time (the relay-state row is taken with SKIP LOCKED); the
    others return 0 and go on delivering.
    """
    now = now or utcnow()
    await session.execute(
        pg_insert(RelayState).values(id=1, outbox_cursor=0).on_conflict_do_nothing()
    )
    state = (
        await session.execute(
            select(RelayState).where(RelayState.id == 1).with_for_update(skip_locked=True)
        )
    ).scalar_one_or_none()
    if state is None:
        return 0
    cursor = state.outbox_cursor
    done = select(DispatchedEvent.outbox_id).where(DispatchedEvent.outbox_id == OutboxEvent.id)
    events = (
        await session.execute(
            select(
                OutboxEvent.id,
                OutboxEvent.event_id,
                OutboxEvent.type,
                OutboxEvent.aggregate_type,
                OutboxEvent.aggregate_id,
                OutboxEvent.payload["data"]["order_id"].astext.label("order_ref"),
                OutboxEvent.created_at,
            )
            .where(OutboxEvent.id > cursor, ~done.exists())
            .order_by(OutboxEvent.id)
            .limit(batch)
        )
    ).all()
    if events:
        subs = (
            await session.execute(
                select(Subscription.id, Subscription.event_types, Subscription.created_at).where(
                    Subscription.enabled.is_(True)
                )
            )
        ).all()
        rows = [
            {
                "outbox_id": ev.id,
                "event_id": ev.event_id,
                "event_type": ev.type,
                "subscription_id": sub.id,
                "ordering_key": _ordering_key(ev.aggregate_type, ev.aggregate_id, ev.order_ref),
                "status": "pending",
                "attempts": 0,
                "next_attempt_at": now,
                "created_at": now,
                "updated_at": now,
            }
            for ev in events
            for sub in subs
            if ev.created_at >= sub.created_at and matches(sub.event_types, ev.type)
        ]
        if rows:
            await session.execute(
                pg_insert(Delivery).on_conflict_do_nothing(
                    index_elements=["outbox_id", "subscription_id"]
                ),
                rows,
            )
        await session.execute(
            pg_insert(DispatchedEvent).on_conflict_do_nothing(),
            [{"outbox_id": ev.id, "dispatched_at": now} for ev in events],
        )
    await _advance_cursor(session, cursor=cursor, grace=grace, now=now)
    return len(events)


async def _advance_cursor(
    session: AsyncSession, *, cursor: int, grace: timedelta, now: datetime
) -> None:
    """Move the cursor over dispatched events, stopping at a gap younger than ``grace``."""
    marks = (
        await session.execute(
            select(OutboxEvent.id, OutboxEvent.created_at)
            .join(DispatchedEvent, DispatchedEvent.outbox_id == OutboxEvent.id)
            .where(OutboxEvent.id > cursor)
            .order_by(OutboxEvent.id)
            .limit(10_000)
        )
    ).all()
    new_cursor = cursor
    for event_id, created_at in marks:
        # an id below this one was taken earlier; after ``grace`` its transaction is over
        if event_id == new_cursor + 1 or created_at < now - grace:
            new_cursor = event_id
        else:
            break
    if new_cursor > cursor:
        await session.execute(
            update(RelayState)
            .where(RelayState.id == 1)
            .values(outbox_cursor=new_cursor, updated_at=now)
        )
        await session.execute(
            delete(DispatchedEvent).where(DispatchedEvent.outbox_id <= new_cursor)
        )


# ---- claiming and finishing ---------------------------------------------------------------


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
    WITH due AS (
        SELECT d.id, d.status AS prev_status
        FROM webhook_deliveries d
        JOIN webhook_subscriptions s ON s.id = d.subscription_id AND s.enabled
        WHERE d.status IN ('pending', 'delivering', 'failed')
          AND d.next_attempt_at <= :now
          AND NOT EXISTS (
              SELECT 1 FROM webhook_deliveries p
              WHERE p.subscription_id = d.subscription_id
                AND p.ordering_key = d.ordering_key
                AND p.outbox_id < d.outbox_id
                AND p.status IN ('pending', 'delivering', 'failed')
          )
        ORDER BY d.next_attempt_at, d.id
        LIMIT :limit
        FOR UPDATE OF d SKIP LOCKED
    )
    UPDATE webhook_deliveries w
    SET status = 'delivering', attempts = w.attempts + 1, next_attempt_at = :lease_until,
        lease_token = :token, updated_at = :now
    FROM due
    WHERE w.id = due.id
    RETURNING w.id, w.attempts, due.prev_status
    """
)


async def claim(
    session: AsyncSession,
    *,
    limit: int,
    lease: timedelta,
    max_attempts: int,
    worker: str,
    now: datetime | None = None,
) -> list[Claimed]:
    """Lease up to ``limit`` due deliveries to this worker (SKIP LOCKED)."""
    now = now or utcnow()
    for _ in range(10):  # rows whose last attempt was used up by a crash are buried, then retry
        live = await _claim_batch(
            session, limit=limit, lease=lease, max_attempts=max_attempts, worker=worker, now=now
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
    worker: str,
    now: datetime,
) -> list[Claimed] | None:
    """Claim one batch; None when every claimed row had exhausted its attempts."""
    token = uuid.uuid4()
    claimed = (
        await session.execute(
            _CLAIM, {"now": now, "limit": limit, "lease_until": now + lease, "token": token}
        )
    ).all()
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
            "url": sub.url,
            "reason": reason,
        },
    )
    await record_event(
        session,
        type="webhook.endpoint_disabled",
        aggregate_type="webhook_subscription",
        aggregate_id=str(subscription_id),
        data={"subscription_id": str(subscription_id), "url": sub.url, "reason": reason},
    )


# ---- delivery log and redelivery ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeliveryFilter:
    subscription_id: uuid.UUID | None = None
    status: Sequence[str] | None = None
    event_type: str | None = None
    event_id: uuid.UUID | None = None
    order_id: uuid.UUID | None = None


async def list_deliveries(
    session: AsyncSession, *, filters: DeliveryFilter, limit: int, cursor: str | None
) -> tuple[list[Delivery], str | None]:
    """Deliveries newest first; the cursor is the last id seen."""
    stmt = select(Delivery)
    if filters.subscription_id:
        stmt = stmt.where(Delivery.subscription_id == filters.subscription_id)
    if filters.status:
        stmt = stmt.where(Delivery.status.in_(list(filters.status)))
    if filters.event_type:
        stmt = stmt.where(Delivery.event_type == filters.event_type)
    if filters.event_id:
        stmt = stmt.where(Delivery.event_id == filters.event_id)
    if filters.order_id:
        stmt = stmt.where(Delivery.ordering_key == f"order:{filters.order_id}")
    if cursor:
        try:
            before = int(cursor)
            if not 0 < before < 2**63:
                raise ValueError(cursor)
            stmt = stmt.where(Delivery.id < before)
        except ValueError as exc:
            raise ProblemError("the cursor is not valid", code="invalid_cursor") from exc
    rows = list((await session.scalars(stmt.order_by(Delivery.id.desc()).limit(limit + 1))).all())
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = str(rows[-1].id)
    return rows, next_cursor


async def get_delivery(
    session: AsyncSession, *, delivery_id: int
) -> tuple[Delivery, dict[str, Any], list[Attempt]]:
    """A delivery with the event body it sends and its attempt log (oldest first)."""
    delivery = await session.get(Delivery, delivery_id, populate_existing=True)
    if delivery is None:
        raise NotFound(f"delivery {delivery_id} does not exist", code="delivery_not_found")
    payload = await session.scalar(
        select(OutboxEvent.payload).where(OutboxEvent.id == delivery.outbox_id)
    )
    attempts = (
        await session.scalars(
            select(Attempt).where(Attempt.delivery_id == delivery_id).order_by(Attempt.id)
        )
    ).all()
    return delivery, payload or {}, list(attempts)


_REQUEUE: dict[str, Any] = {
    "status": "pending",
    "attempts": 0,
    "lease_token": None,
    "finished_at": None,
}


async def redeliver(session: AsyncSession, *, delivery_id: int) -> Delivery:
    """Queue one delivery again now, with a fresh attempt budget (its log is kept)."""
    now = utcnow()
    moved = (
        await session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id, Delivery.status != "delivering")
            .values(**_REQUEUE, next_attempt_at=now, updated_at=now)
            .returning(Delivery.id)
        )
    ).first()
    if moved is None:
        await get_delivery(session, delivery_id=delivery_id)  # 404 if missing
        raise Conflict(
            "the delivery is being sent right now; retry in a moment",
            code="delivery_in_progress",
        )
    delivery, _, _ = await get_delivery(session, delivery_id=delivery_id)
    return delivery


def _type_filter(patterns: list[str]) -> ColumnElement[bool]:
    clauses: list[ColumnElement[bool]] = []
    for pattern in patterns:
        if pattern == "*":
            return true()
        if pattern.endswith(".*"):
            clauses.append(OutboxEvent.type.startswith(pattern[:-1], autoescape=True))
        else:
            clauses.append(OutboxEvent.type == pattern)
    return or_(*clauses) if clauses else false()


async def redeliver_since(
    session: AsyncSession, *, subscription_id: uuid.UUID, request: RedeliverRequest
) -> int:
    """Queue again every event of the subscription's types recorded in [since, until).

    Events that never had a delivery (e.g. while the endpoint was disabled) get one; existing
    deliveries are reset (unless being sent right now). Order per order is preserved.
    """
    sub = await get_subscription(session, subscription_id=subscription_id)
    now = utcnow()
    conditions = [OutboxEvent.created_at >= request.since, _type_filter(sub.event_types)]
    if request.until is not None:
        conditions.append(OutboxEvent.created_at < request.until)
    order_ref = OutboxEvent.payload["data"]["order_id"].astext
    ordering_key = case(
        (order_ref.is_not(None), literal("order:") + order_ref),
        else_=func.left(OutboxEvent.aggregate_type + literal(":") + OutboxEvent.aggregate_id, 128),
    )
    source = select(
        OutboxEvent.id,
        OutboxEvent.event_id,
        OutboxEvent.type,
        literal(subscription_id),
        ordering_key,
        literal("pending"),
        literal(0),
        literal(now),
        literal(now),
        literal(now),
    ).where(*conditions)
    stmt = pg_insert(Delivery).from_select(
        [
            "outbox_id",
            "event_id",
            "event_type",
            "subscription_id",
            "ordering_key",
            "status",
            "attempts",
            "next_attempt_at",
            "created_at",
            "updated_at",
        ],
        source,
    )
    where = Delivery.status != "delivering"
    if request.only_failed:
        where = Delivery.status.in_(["failed", "dead"])
    upsert = stmt.on_conflict_do_update(
        index_elements=["outbox_id", "subscription_id"],
        set_={**_REQUEUE, "next_attempt_at": now, "updated_at": now},
        where=where,
    ).returning(Delivery.id)
    return len((await session.execute(upsert)).all())
