"""HTTP routes: webhook subscriptions, the delivery log, and manual redelivery (admin only)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from oms.auth.service import Principal
from oms.deps import Session, require
from oms.shared.openapi import AUTH_PROBLEMS, BigId, IdCursor, problems
from oms.webhooks.events import EVENT_TYPES
from oms.webhooks.outbound import service
from oms.webhooks.outbound.models import Attempt, Delivery, Subscription
from oms.webhooks.outbound.schemas import (
    AttemptRead,
    DeliveryDetail,
    DeliveryPage,
    DeliveryRead,
    DeliveryStatus,
    EventTypeRead,
    RedeliverRequest,
    RedeliverResult,
    SecretRotated,
    SubscriptionCreate,
    SubscriptionCreated,
    SubscriptionRead,
    SubscriptionUpdate,
)
from oms.webhooks.outbound.targets import redact

TAG = "outbound-webhooks"
URL_PROBLEM = (
    "Invalid request, or a URL that may not receive webhooks (`webhook_url_not_allowed`, "
    "`reason`: loopback, private, link_local, metadata, not_global, credentials...)"
)
router = APIRouter(prefix="/v1/webhooks", tags=[TAG])
Admin = Annotated[Principal, Depends(require())]


def _sub_read(sub: Subscription) -> SubscriptionRead:
    read = SubscriptionRead.model_validate(sub, from_attributes=True)
    read.url = redact(read.url)  # a URL saved with credentials before they were refused
    return read


def _allow_private(request: Request) -> bool:
    return bool(request.app.state.settings.webhook_allow_private_targets)


def _delivery_read(d: Delivery) -> DeliveryRead:
    return DeliveryRead(
        id=d.id,
        event_id=d.event_id,
        event_type=d.event_type,
        subscription_id=d.subscription_id,
        ordering_key=d.ordering_key,
        status=DeliveryStatus(d.status),
        attempts=d.attempts,
        next_attempt_at=d.next_attempt_at if d.status in ("pending", "failed") else None,
        last_status_code=d.last_status_code,
        last_error=d.last_error,
        created_at=d.created_at,
        updated_at=d.updated_at,
        finished_at=d.finished_at,
    )


@router.get(
    "/event-types",
    response_model=list[EventTypeRead],
    summary="The event types oms sends",
    description="Subscribe to these, to `<family>.*` (e.g. `shipment.*`), or to `*`.",
    responses=problems(*AUTH_PROBLEMS),
)
async def event_types(_: Admin) -> list[EventTypeRead]:
    return [EventTypeRead(type=t, description=d) for t, d in EVENT_TYPES.items()]


@router.post(
    "/subscriptions",
    status_code=201,
    response_model=SubscriptionCreated,
    summary="Subscribe an endpoint to events",
    description=(
        "oms POSTs each matching event (recorded from now on) to `url` as JSON "
        "`{id, type, occurred_at, data}`, signed per the Standard Webhooks spec with the "
        "`secret` returned here once (`webhook-id` = event id, stable across retries; "
        "`webhook-timestamp`; `webhook-signature`). Verify with any Standard Webhooks library. "
        "Delivery is at least once: deduplicate on `webhook-id`. Events of one order arrive in "
        "order. Failed attempts are retried with exponential backoff and jitter (a 4xx other "
        "than 408/429 is not retried); an endpoint that keeps failing is disabled. An attempt "
        "with no answer within `OMS_WEBHOOK_TIMEOUT_S` (10 s by default) has failed and is "
        "retried; one answered 2xx within it is never sent again.\n\n"
        "The URL must be a public internet address: loopback, private, link-local and cloud "
        "metadata addresses (in any spelling), `localhost`, and URLs with credentials "
        "(`user:pass@`) are refused with 422 `webhook_url_not_allowed` and a `reason`. Names "
        "are resolved and checked again at every delivery, which goes to the checked address."
    ),
    responses=problems(*AUTH_PROBLEMS, d422=URL_PROBLEM),
)
async def create_subscription(
    data: SubscriptionCreate, session: Session, _: Admin, response: Response, request: Request
) -> SubscriptionCreated:
    sub = await service.create_subscription(
        session, data=data, allow_private=_allow_private(request)
    )
    response.headers["Location"] = f"/v1/webhooks/subscriptions/{sub.id}"
    return SubscriptionCreated(**_sub_read(sub).model_dump(), secret=sub.secret)


@router.get(
    "/subscriptions",
    response_model=list[SubscriptionRead],
    summary="List subscriptions (disabled ones show why)",
    responses=problems(*AUTH_PROBLEMS),
)
async def list_subscriptions(session: Session, _: Admin) -> list[SubscriptionRead]:
    return [_sub_read(s) for s in await service.list_subscriptions(session)]


@router.get(
    "/subscriptions/{subscription_id}",
    response_model=SubscriptionRead,
    summary="Get a subscription",
    responses=problems(404, *AUTH_PROBLEMS),
)
async def get_subscription(
    subscription_id: uuid.UUID, session: Session, _: Admin
) -> SubscriptionRead:
    return _sub_read(await service.get_subscription(session, subscription_id=subscription_id))


@router.patch(
    "/subscriptions/{subscription_id}",
    response_model=SubscriptionRead,
    summary="Change a subscription, or enable / disable it",
    responses=problems(404, *AUTH_PROBLEMS, d422=URL_PROBLEM),
)
async def update_subscription(
    subscription_id: uuid.UUID,
    data: SubscriptionUpdate,
    session: Session,
    _: Admin,
    request: Request,
) -> SubscriptionRead:
    sub = await service.update_subscription(
        session,
        subscription_id=subscription_id,
        data=data,
        allow_private=_allow_private(request),
    )
    return _sub_read(sub)


@router.delete(
    "/subscriptions/{subscription_id}",
    status_code=204,
    summary="Delete a subscription with its delivery log",
    responses=problems(404, *AUTH_PROBLEMS),
)
async def delete_subscription(subscription_id: uuid.UUID, session: Session, _: Admin) -> Response:
    await service.delete_subscription(session, subscription_id=subscription_id)
    return Response(status_code=204)


@router.post(
    "/subscriptions/{subscription_id}/rotate-secret",
    response_model=SecretRotated,
    summary="Replace a subscription's signing secret",
    responses=problems(404, *AUTH_PROBLEMS),
)
async def rotate_secret(subscription_id: uuid.UUID, session: Session, _: Admin) -> SecretRotated:
    return SecretRotated(
        secret=await service.rotate_secret(session, subscription_id=subscription_id)
    )


@router.post(
    "/subscriptions/{subscription_id}/redeliver",
    response_model=RedeliverResult,
    summary="Send again every event since a time",
    description=(
        "Queues again every event of the subscription's types recorded in [`since`, `until`): "
        "already delivered ones too, unless `only_failed`. Events recorded while the endpoint "
        "was disabled are included. Per-order order is kept."
    ),
    responses=problems(404, *AUTH_PROBLEMS),
)
async def redeliver_since(
    subscription_id: uuid.UUID, body: RedeliverRequest, session: Session, _: Admin
) -> RedeliverResult:
    queued = await service.redeliver_since(session, subscription_id=subscription_id, request=body)
    return RedeliverResult(queued=queued)


@router.get(
    "/deliveries",
    response_model=DeliveryPage,
    summary="The delivery log",
    description="Deliveries newest first; filter by subscription, status, event or order.",
    responses=problems(400, *AUTH_PROBLEMS),
)
async def list_deliveries(
    session: Session,
    _: Admin,
    subscription_id: uuid.UUID | None = None,
    status: Annotated[list[DeliveryStatus] | None, Query(description="Repeatable")] = None,
    event_type: Annotated[str | None, Query(max_length=64)] = None,
    event_id: uuid.UUID | None = None,
    order_id: uuid.UUID | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: IdCursor = None,
) -> DeliveryPage:
    rows, next_cursor = await service.list_deliveries(
        session,
        filters=service.DeliveryFilter(
            subscription_id=subscription_id,
            status=[s.value for s in status] if status else None,
            event_type=event_type,
            event_id=event_id,
            order_id=order_id,
        ),
        limit=limit,
        cursor=cursor,
    )
    return DeliveryPage(items=[_delivery_read(d) for d in rows], next_cursor=next_cursor)


def _attempt_read(a: Attempt) -> AttemptRead:
    return AttemptRead.model_validate(a, from_attributes=True)


@router.get(
    "/deliveries/{delivery_id}",
    response_model=DeliveryDetail,
    summary="One delivery with its payload and every attempt",
    description="Each attempt: HTTP status, duration, error and the start of the response.",
    responses=problems(404, *AUTH_PROBLEMS),
)
async def get_delivery(delivery_id: BigId, session: Session, _: Admin) -> DeliveryDetail:
    delivery, payload, attempts = await service.get_delivery(session, delivery_id=delivery_id)
    return DeliveryDetail(
        **_delivery_read(delivery).model_dump(),
        payload=payload,
        attempt_log=[_attempt_read(a) for a in attempts],
    )


@router.post(
    "/deliveries/{delivery_id}/redeliver",
    response_model=DeliveryRead,
    summary="Send one delivery again",
    description="Queues it now with a fresh attempt budget; its attempt log is kept.",
    responses=problems(
        404, 409, *AUTH_PROBLEMS, d409="Being sent right now (`delivery_in_progress`)"
    ),
)
async def redeliver(delivery_id: BigId, session: Session, _: Admin) -> DeliveryRead:
    return _delivery_read(await service.redeliver(session, delivery_id=delivery_id))
