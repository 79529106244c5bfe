"""Receiving a delivery: find its connector, verify the signature, store the raw delivery in
the inbox (deduplicated by event id), then process it (``processing``).

* Stored before processed: the inbox row is inserted first. Deliveries whose signature fails are
  not stored (unauthenticated input).
* Deduplicated by event id: ``INSERT ... ON CONFLICT DO NOTHING`` on (connector, event id). A
  concurrent identical delivery waits for the first one's transaction, then returns its outcome.
  A duplicate of a *failed* event is processed again (that is how platforms retry). The id is
  an identity: compared whole, never cut; an id longer than ``EVENT_ID_MAX`` is refused with
  400 ``invalid_delivery_id`` and nothing is stored.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from oms.shared.clock import utcnow
from oms.shared.errors import NotFound, ProblemError
from oms.webhooks import metrics
from oms.webhooks.inbound.adapters import get_adapter
from oms.webhooks.inbound.models import EVENT_ID_MAX, TOPIC_MAX, Connector, InboxMessage
from oms.webhooks.inbound.processing import Applier, Reply, process, result_body

log = logging.getLogger("oms.webhooks.inbound")


WEBHOOK_PATH = "/v1/webhooks/inbound/{name}"
_STORED_PREFIXES = ("webhook-", "x-shopify-", "x-wc-webhook-")
_STORED_NAMES = frozenset({"content-type", "user-agent", "x-request-id", "content-length"})


def stored_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The headers worth keeping with a delivery (signatures, ids, topics, content type)."""
    return {
        k: v[:1000]
        for k, v in headers.items()
        if k in _STORED_NAMES or k.startswith(_STORED_PREFIXES)
    }


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
    if len(event_id) > EVENT_ID_MAX:
        metrics.INBOUND.labels(connector.format, "rejected").inc()
        raise ProblemError(
            f"the delivery id is {len(event_id)} characters long; oms deduplicates deliveries "
            f"on their whole id and stores ids of at most {EVENT_ID_MAX} characters",
            status=400,
            code="invalid_delivery_id",
            title="Delivery id too long",
        )
    topic = adapter.topic(headers)
    now = utcnow()
    inserted = (
        await session.execute(
            pg_insert(InboxMessage)
            .values(
                connector_id=connector.id,
                connector_name=connector.name,
                event_id=event_id,
                topic=topic[:TOPIC_MAX] if topic else None,
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
                stored = result_body(row.id, event_id, row.type, row.status, row.order_id, None)
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
