"""Processing one stored delivery: parse it with its connector's adapter, apply it to the orders
it is about in a SAVEPOINT (through the ``Applier`` the router or worker gives:
``oms.flows.intake.apply_event``; the inbox knows nothing of orders or payments), and write the
outcome to its inbox row.

A processing error rolls back only the processing: the row is kept as ``failed`` with the
reason (replayable). Deliveries about one (channel, external reference) pair are serialized by
:func:`lock_target`.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import ValidationError
from sqlalchemy import select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from oms.orders.schemas import OrderCreate
from oms.shared.clock import utcnow
from oms.shared.errors import UNSTORABLE_TEXT, UNSTORABLE_TEXT_SQLSTATES, ProblemError
from oms.webhooks import metrics
from oms.webhooks.inbound.adapters import get_adapter
from oms.webhooks.inbound.adapters.base import EventType, InboundEvent, InvalidPayload
from oms.webhooks.inbound.adapters.oms import validation_errors
from oms.webhooks.inbound.models import Connector, InboxMessage
from oms.webhooks.inbound.schemas import InboundResult

# query_canceled (statement timeout), lock_not_available (lock timeout), deadlock_detected,
# serialization_failure, admin shutdown, too_many_connections
TRANSIENT_SQLSTATES = frozenset({"57014", "55P03", "40P01", "40001", "57P01", "53300"})

log = logging.getLogger("oms.webhooks.inbound")


@dataclass(frozen=True, slots=True)
class Reply:
    """The HTTP answer to a delivery: a status and a JSON body (problem+json when ``problem``)."""

    status: int
    body: dict[str, Any]
    problem: bool = False


@dataclass(frozen=True, slots=True)
class Applied:
    """What applying an event did: ``processed`` or ``pending`` (its order does not exist yet)."""

    status: str  # processed | pending
    order_id: uuid.UUID | None
    detail: str


class Applier(Protocol):
    """Applies one parsed event to the orders it is about (``oms.flows.intake.apply_event``,
    given by the router and the worker: the inbox knows nothing of orders or payments)."""

    async def __call__(
        self,
        session: AsyncSession,
        *,
        event: InboundEvent,
        order_data: OrderCreate | None,
        connector: Connector,
        inbox_id: int,
        request_id: str | None,
    ) -> Applied: ...


async def lock_target(session: AsyncSession, *, channel: str, external_reference: str) -> None:
    """Serialize every inbound event about one (channel, external reference) pair: the first
    lock of the lock order (``oms.orders.locking``), taken before the order's own."""
    await session.execute(
        text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))"),
        {"key": f"oms.inbound:{channel}:{external_reference}"},
    )


def result_body(
    inbox_id: int,
    event_id: str,
    type_: str | None,
    status: str,
    order_id: uuid.UUID | None,
    detail: str | None,
) -> dict[str, Any]:
    """The JSON body answering a delivery (and stored with its inbox row)."""
    return InboundResult(
        inbox_id=inbox_id,
        event_id=event_id,
        type=type_,
        status=status,
        order_id=order_id,
        detail=detail,
    ).model_dump(mode="json")


async def _mark(
    session: AsyncSession,
    inbox_id: int,
    *,
    status: str,
    http_status: int,
    body: dict[str, Any],
    order_id: uuid.UUID | None = None,
    error: ProblemError | None = None,
) -> None:
    now = utcnow()
    values: dict[str, Any] = {
        "status": status,
        "response_status": http_status,
        "response_body": body,
        "error_code": error.code if error else None,
        "error": error.detail if error else None,
        "updated_at": now,
        "processed_at": now if status in ("processed", "ignored") else None,
    }
    if order_id is not None:
        values["order_id"] = order_id
    await session.execute(update(InboxMessage).where(InboxMessage.id == inbox_id).values(**values))


def _parse(
    connector: Connector, body: bytes, headers: Mapping[str, str]
) -> tuple[InboundEvent, OrderCreate | None]:
    channel = connector.channel
    event = get_adapter(connector.format).parse(
        body, headers, channel=channel, sku_map=connector.sku_map or {}
    )
    order_data = None
    if event.type in (EventType.ORDER_CREATED, EventType.ORDER_UPDATED):
        try:
            order_data = OrderCreate.model_validate({**(event.order or {}), "channel": channel})
        except ValidationError as exc:
            errors = validation_errors(exc)
            raise InvalidPayload(
                "the order cannot be created: "
                + "; ".join(f"{e['field']}: {e['message']}" for e in errors[:5]),
                errors=errors,
            ) from exc
    return event, order_data


async def process(
    session: AsyncSession,
    *,
    inbox_id: int,
    body: bytes,
    headers: Mapping[str, str],
    connector: Connector,
    request_id: str | None,
    apply: Applier,
    path: str | None = None,
) -> Reply:
    """Parse and apply one stored delivery; the outcome is written to its inbox row."""
    await session.execute(
        update(InboxMessage)
        .where(InboxMessage.id == inbox_id)
        .values(attempts=InboxMessage.attempts + 1, connector_id=connector.id)
    )
    event_id = (
        await session.scalar(select(InboxMessage.event_id).where(InboxMessage.id == inbox_id))
    ) or ""
    instance = path or f"/v1/webhooks/inbox/{inbox_id}"
    try:
        event, order_data = _parse(connector, body, headers)
    except ProblemError as exc:
        return await _fail(session, inbox_id, exc, connector, instance)
    type_ = event.type.value if event.type else None
    await session.execute(
        update(InboxMessage)
        .where(InboxMessage.id == inbox_id)
        .values(
            type=type_,
            channel=connector.channel,
            external_reference=event.external_reference,
        )
    )
    if event.type is None:
        reply = result_body(inbox_id, event_id, None, "ignored", None, event.ignored)
        await _mark(session, inbox_id, status="ignored", http_status=200, body=reply)
        metrics.INBOUND.labels(connector.format, "ignored").inc()
        return Reply(200, reply)
    callbacks = session.info.setdefault("after_commit", [])
    mark = len(callbacks)
    try:
        async with session.begin_nested():
            applied = await apply(
                session,
                event=event,
                order_data=order_data,
                connector=connector,
                inbox_id=inbox_id,
                request_id=request_id,
            )
    except ProblemError as exc:
        del callbacks[mark:]
        return await _fail(session, inbox_id, exc, connector, instance)
    except DBAPIError as exc:
        sqlstate = str(getattr(exc.orig, "sqlstate", None) or "")
        if exc.connection_invalidated or sqlstate in TRANSIENT_SQLSTATES:
            # the database is unavailable or a wait ran out: not the event's fault; the
            # request fails whole (503) and the platform's retry finds the event unprocessed
            raise
        del callbacks[mark:]
        if sqlstate in UNSTORABLE_TEXT_SQLSTATES:
            # the event's text cannot be stored: a 422 as for the API, not an internal error
            unstorable = InvalidPayload(UNSTORABLE_TEXT, code="invalid_character")
            return await _fail(session, inbox_id, unstorable, connector, instance)
        log.exception("inbound webhook processing failed", extra={"inbox_id": inbox_id})
        problem = ProblemError(
            "internal error while processing the webhook; it is kept and will be retried",
            status=500,
            code="internal_error",
        )
        return await _fail(session, inbox_id, problem, connector, instance)
    http_status = 202 if applied.status == "pending" else 200
    reply = result_body(inbox_id, event_id, type_, applied.status, applied.order_id, applied.detail)
    await _mark(
        session,
        inbox_id,
        status=applied.status,
        http_status=http_status,
        body=reply,
        order_id=applied.order_id,
    )
    metrics.INBOUND.labels(connector.format, applied.status).inc()
    log.info(
        "inbound webhook " + applied.status,
        extra={
            "event": "webhook.inbound",
            "connector": connector.name,
            "inbox_id": inbox_id,
            "type": type_,
            "status": applied.status,
            "order_id": str(applied.order_id) if applied.order_id else None,
            "detail": applied.detail,
        },
    )
    return Reply(http_status, reply)


async def _fail(
    session: AsyncSession,
    inbox_id: int,
    problem: ProblemError,
    connector: Connector,
    instance: str,
) -> Reply:
    body = problem.to_dict(instance=instance) | {"inbox_id": inbox_id}
    await _mark(
        session, inbox_id, status="failed", http_status=problem.status, body=body, error=problem
    )
    metrics.INBOUND.labels(connector.format, "failed").inc()
    log.warning(
        "inbound webhook failed",
        extra={
            "event": "webhook.inbound",
            "connector": connector.name,
            "inbox_id": inbox_id,
            "status": "failed",
            "code": problem.code,
            "detail": problem.detail,
        },
    )
    return Reply(problem.status, body, problem=True)
