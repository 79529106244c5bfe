"""Inbound webhooks: connectors, and receive -> verify -> store raw -> process.

Guarantees, and how:
* Stored before processed: the inbox row is inserted first; processing runs in a SAVEPOINT, so
  a processing error rolls back only the processing and the row is kept as ``failed`` with the
  reason (replayable). Deliveries whose signature fails are not stored (unauthenticated input).
* Deduplicated by event id: ``INSERT ... ON CONFLICT DO NOTHING`` on (connector, event id). A
  concurrent identical delivery waits for the first one's transaction, then returns its outcome.
  A duplicate of a *failed* event is processed again (that is how platforms retry).
* One order per (channel, external reference): different deliveries about the same order are
  serialized by a transaction-level advisory lock on that pair, and ``place_order`` refuses a
  second order with the same external reference (treated as "already exists", not a failure).
* Out of order: an event about an order that does not exist yet is kept ``pending`` (HTTP 202)
  and applied when the order is created through a connector, or by the worker's sweep when it
  was created some other way. Pending events are listed by the inbox API: never dropped.
"""

from __future__ import annotations

import base64
import binascii
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from pydantic import ValidationError
from sqlalchemy import delete, func, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

from oms.auth.service import Principal
from oms.orders import service as orders_service
from oms.orders.schemas import OrderCreate
from oms.shared.clock import utcnow
from oms.shared.errors import Conflict, NotFound, ProblemError, Unprocessable
from oms.shared.roles import Role
from oms.webhooks import metrics
from oms.webhooks.inbound.adapters import get_adapter
from oms.webhooks.inbound.adapters.base import EventType, InboundEvent, InvalidPayload
from oms.webhooks.inbound.adapters.oms import validation_errors
from oms.webhooks.inbound.models import Connector, InboxMessage
from oms.webhooks.inbound.schemas import ConnectorCreate, ConnectorUpdate, InboundResult
from oms.webhooks.keys import new_secret

log = logging.getLogger("oms.webhooks.inbound")

WEBHOOK_PATH = "/v1/webhooks/inbound/{name}"
_STORED_PREFIXES = ("webhook-", "x-shopify-", "x-wc-webhook-")
_STORED_NAMES = frozenset({"content-type", "user-agent", "x-request-id", "content-length"})


class ConnectorPrincipal(Principal):
    """A connector acting on orders: admin-equivalent, bound to its channel."""

    __slots__ = ()

    @property
    def actor(self) -> str:
        return f"connector:{self.name}"


def connector_principal(connector: Connector) -> Principal:
    return ConnectorPrincipal(
        key_id=connector.id, name=connector.name, role=Role.ADMIN, channel=connector.channel
    )


def stored_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers worth keeping with a delivery (signatures, ids, topics, content type)."""
    return {
        k: v[:1000]
        for k, v in headers.items()
        if k in _STORED_NAMES or k.startswith(_STORED_PREFIXES)
    }


# ---- connectors ---------------------------------------------------------------------------


def _check_secret(fmt: str, secret: str) -> None:
    if fmt != "oms":
        return
    raw = secret.removeprefix("whsec_")
    try:
        key = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise Unprocessable(
            "an oms-format connector needs a Standard Webhooks secret: whsec_<base64>",
            code="invalid_secret",
        ) from exc
    if len(key) < 24:
        raise Unprocessable("the secret must decode to at least 24 bytes", code="invalid_secret")


async def create_connector(
    session: AsyncSession, *, data: ConnectorCreate
) -> tuple[Connector, str | None]:
    """Store a connector; returns it and the secret when oms generated it (shown once)."""
    generated = None
    secret = data.secret
    if secret is None:
        if data.format != "oms":
            raise Unprocessable(
                f"a {data.format} connector needs the secret configured in {data.format}",
                code="secret_required",
            )
        secret = generated = new_secret()
    _check_secret(data.format, secret)
    now = utcnow()
    connector_id = (
        await session.execute(
            pg_insert(Connector)
            .values(
                id=uuid.uuid4(),
                name=data.name,
                channel=data.channel,
                format=data.format.value,
                secret=secret,
                enabled=data.enabled,
                description=data.description,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=["name"])
            .returning(Connector.id)
        )
    ).scalar_one_or_none()
    if connector_id is None:
        raise Conflict(f"a connector named '{data.name}' exists", code="connector_exists")
    return await get_connector(session, name=data.name), generated


async def list_connectors(session: AsyncSession) -> list[Connector]:
    return list((await session.scalars(select(Connector).order_by(Connector.name))).all())


async def get_connector(session: AsyncSession, *, name: str) -> Connector:
    connector = await session.scalar(select(Connector).where(Connector.name == name))
    if connector is None:
        raise NotFound(f"no connector named '{name}'", code="connector_not_found")
    return connector


async def update_connector(session: AsyncSession, *, name: str, data: ConnectorUpdate) -> Connector:
    """Change a connector's channel, format, secret, enabled flag or description."""
    connector = await get_connector(session, name=name)
    changes = data.model_dump(exclude_unset=True)
    if changes.get("format") is not None:
        changes["format"] = changes["format"].value
    for key in ("channel", "format", "secret", "enabled"):
        if key in changes and changes[key] is None:
            del changes[key]
    _check_secret(changes.get("format", connector.format), changes.get("secret", connector.secret))
    for key, value in changes.items():
        setattr(connector, key, value)
    connector.updated_at = utcnow()
    await session.flush()
    return connector


async def delete_connector(session: AsyncSession, *, name: str) -> None:
    """Delete a connector; its inbox history stays (linked by name)."""
    result = await session.execute(
        delete(Connector).where(Connector.name == name).returning(Connector.id)
    )
    if result.first() is None:
        raise NotFound(f"no connector named '{name}'", code="connector_not_found")


# ---- receiving ----------------------------------------------------------------------------


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


async def receive(
    session: AsyncSession,
    *,
    connector_name: str,
    body: bytes,
    headers: Mapping[str, str],
    tolerance_s: int,
    request_id: str | None,
    path: str,
    apply: Applier,
) -> Reply:
    """Verify, store and process one delivery. Signature problems raise (401, nothing stored)."""
    connector = await session.scalar(select(Connector).where(Connector.name == connector_name))
    if connector is None:
        raise NotFound(f"no connector named '{connector_name}'", code="connector_not_found")
    if not connector.enabled:
        raise ProblemError(
            f"connector '{connector_name}' is disabled; deliveries are refused until it is "
            "enabled again",
            status=503,
            code="connector_disabled",
            title="Connector disabled",
            headers={"Retry-After": "300"},
        )
    adapter = get_adapter(connector.format)
    if adapter.is_ping(body, headers):
        metrics.INBOUND.labels(connector.format, "ping").inc()
        return Reply(200, {"status": "ignored", "detail": "ping acknowledged"})
    try:
        adapter.verify(
            body, headers, secret=connector.secret, tolerance_s=tolerance_s, now=utcnow()
        )
    except ProblemError as exc:
        metrics.INBOUND.labels(connector.format, "rejected").inc()
        log.warning(
            "inbound webhook rejected",
            extra={
                "event": "webhook.inbound.rejected",
                "connector": connector.name,
                "code": exc.code,
            },
        )
        raise
    event_id = adapter.event_id(body, headers)
    now = utcnow()
    inserted = (
        await session.execute(
            pg_insert(InboxMessage)
            .values(
                connector_id=connector.id,
                connector_name=connector.name,
                event_id=event_id,
                topic=adapter.topic(headers),
                status="received",
                channel=connector.channel,
                headers=stored_headers(headers),
                body=body,
                attempts=0,
                received_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=["connector_name", "event_id"])
            .returning(InboxMessage.id)
        )
    ).scalar_one_or_none()
    if inserted is None:
        row = (
            await session.execute(
                select(InboxMessage)
                .where(
                    InboxMessage.connector_name == connector.name,
                    InboxMessage.event_id == event_id,
                )
                .with_for_update()
            )
        ).scalar_one()
        if row.status != "failed":
            metrics.INBOUND.labels(connector.format, "duplicate").inc()
            stored = dict(row.response_body or {})
            if not stored:
                stored = _result(row.id, event_id, row.type, row.status, row.order_id, None)
            stored["duplicate"] = True
            return Reply(row.response_status or 200, stored, problem="code" in stored)
        # a retry of a failed delivery: process it again with what was sent this time
        await session.execute(
            update(InboxMessage)
            .where(InboxMessage.id == row.id)
            .values(body=body, headers=stored_headers(headers), updated_at=now)
        )
        inserted = row.id
    return await process(
        session,
        inbox_id=inserted,
        body=body,
        headers=stored_headers(headers),
        connector=connector,
        request_id=request_id,
        apply=apply,
        path=path,
    )


def _result(
    inbox_id: int,
    event_id: str,
    type_: str | None,
    status: str,
    order_id: uuid.UUID | None,
    detail: str | None,
) -> dict[str, Any]:
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
    event_type_fmt: str, body: bytes, headers: Mapping[str, str], channel: str
) -> tuple[InboundEvent, OrderCreate | None]:
    event = get_adapter(event_type_fmt).parse(body, headers, channel=channel)
    order_data = None
    if event.type is EventType.ORDER_CREATED:
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
        event, order_data = _parse(connector.format, body, headers, connector.channel)
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
        reply = _result(inbox_id, event_id, None, "ignored", None, event.ignored)
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
        if exc.connection_invalidated:
            raise
        del callbacks[mark:]
        log.exception("inbound webhook processing failed", extra={"inbox_id": inbox_id})
        problem = ProblemError(
            "internal error while processing the webhook; it is kept and will be retried",
            status=500,
            code="internal_error",
        )
        return await _fail(session, inbox_id, problem, connector, instance)
    http_status = 202 if applied.status == "pending" else 200
    reply = _result(inbox_id, event_id, type_, applied.status, applied.order_id, applied.detail)
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


# ---- pending events -----------------------------------------------------------------------


async def _connector_for(session: AsyncSession, row: InboxMessage) -> Connector | None:
    if row.connector_id is not None:
        found = await session.get(Connector, row.connector_id)
        if found is not None:
            return found
    return await session.scalar(select(Connector).where(Connector.name == row.connector_name))


async def _reprocess(
    session: AsyncSession, row: InboxMessage, request_id: str | None, apply: Applier
) -> Reply:
    connector = await _connector_for(session, row)
    if connector is None:
        problem = Conflict(
            f"connector '{row.connector_name}' no longer exists; create it again to replay",
            code="connector_not_found",
        )
        return Reply(problem.status, problem.to_dict(), problem=True)
    return await process(
        session,
        inbox_id=row.id,
        body=row.body,
        headers=row.headers,
        connector=connector,
        request_id=request_id,
        apply=apply,
    )


async def apply_pending(
    session: AsyncSession,
    *,
    channel: str,
    external_reference: str,
    request_id: str | None,
    apply: Applier,
) -> int:
    """Apply the pending events waiting for this order (oldest first); returns how many."""
    rows = (
        await session.scalars(
            select(InboxMessage)
            .where(
                InboxMessage.status == "pending",
                InboxMessage.channel == channel,
                InboxMessage.external_reference == external_reference,
            )
            .order_by(InboxMessage.id)
            .with_for_update(skip_locked=True)
        )
    ).all()
    applied = 0
    for row in rows:
        reply = await _reprocess(session, row, request_id, apply)
        applied += int(reply.status < 400 and reply.status != 202)
    return applied


async def sweep_pending(session: AsyncSession, *, apply: Applier, limit: int = 100) -> int:
    """Apply pending events whose order now exists (e.g. it was placed through the API)."""
    has_order = orders_service.order_exists(
        channel=InboxMessage.channel, external_reference=InboxMessage.external_reference
    )
    rows = (
        await session.scalars(
            select(InboxMessage)
            .where(InboxMessage.status == "pending", has_order)
            .order_by(InboxMessage.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    ).all()
    done = 0
    for row in rows:
        reply = await _reprocess(session, row, None, apply)
        done += int(reply.status != 202)
    return done


async def pending_report(session: AsyncSession, *, older_than: datetime) -> int:
    """How many events have waited for their order since before ``older_than``."""
    return int(
        await session.scalar(
            select(func.count())
            .select_from(InboxMessage)
            .where(InboxMessage.status == "pending", InboxMessage.received_at < older_than)
        )
        or 0
    )


# ---- inbox API ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class InboxFilter:
    status: list[str] | None = None
    connector: str | None = None
    type: str | None = None
    external_reference: str | None = None
    order_id: uuid.UUID | None = None
    received_from: datetime | None = None
    received_to: datetime | None = None


async def list_inbox(
    session: AsyncSession, *, filters: InboxFilter, limit: int, cursor: str | None
) -> tuple[list[InboxMessage], str | None]:
    """Inbox messages newest first; the cursor is the last id seen."""
    stmt = select(InboxMessage)
    if filters.status:
        stmt = stmt.where(InboxMessage.status.in_(filters.status))
    if filters.connector:
        stmt = stmt.where(InboxMessage.connector_name == filters.connector)
    if filters.type:
        stmt = stmt.where(InboxMessage.type == filters.type)
    if filters.external_reference:
        stmt = stmt.where(InboxMessage.external_reference == filters.external_reference)
    if filters.order_id:
        stmt = stmt.where(InboxMessage.order_id == filters.order_id)
    if filters.received_from:
        stmt = stmt.where(InboxMessage.received_at >= filters.received_from)
    if filters.received_to:
        stmt = stmt.where(InboxMessage.received_at < filters.received_to)
    if cursor:
        try:
            before = int(cursor)
            if not 0 < before < 2**63:
                raise ValueError(cursor)
        except ValueError as exc:
            raise ProblemError("the cursor is not valid", code="invalid_cursor") from exc
        stmt = stmt.where(InboxMessage.id < before)
    rows = list(
        (await session.scalars(stmt.order_by(InboxMessage.id.desc()).limit(limit + 1))).all()
    )
    next_cursor = None
    if len(rows) > limit:
        rows = rows[:limit]
        next_cursor = str(rows[-1].id)
    return rows, next_cursor


async def get_inbox_message(session: AsyncSession, *, inbox_id: int) -> InboxMessage:
    row = await session.get(InboxMessage, inbox_id, populate_existing=True)
    if row is None:
        raise NotFound(f"inbox message {inbox_id} does not exist", code="inbox_message_not_found")
    return row


async def replay(
    session: AsyncSession, *, inbox_id: int, request_id: str | None, apply: Applier
) -> InboxMessage:
    """Run a failed or pending delivery through its connector's adapter again (no signature
    check: it was verified when it arrived)."""
    row = (
        await session.execute(
            select(InboxMessage).where(InboxMessage.id == inbox_id).with_for_update()
        )
    ).scalar_one_or_none()
    if row is None:
        raise NotFound(f"inbox message {inbox_id} does not exist", code="inbox_message_not_found")
    if row.status not in ("failed", "pending"):
        raise Conflict(
            f"inbox message {inbox_id} is '{row.status}'; only failed or pending ones replay",
            code="inbox_not_replayable",
            current_status=row.status,
        )
    reply = await _reprocess(session, row, request_id, apply)
    if reply.problem and reply.body.get("code") == "connector_not_found":
        raise Conflict(str(reply.body.get("detail")), code="connector_not_found")
    return await get_inbox_message(session, inbox_id=inbox_id)
