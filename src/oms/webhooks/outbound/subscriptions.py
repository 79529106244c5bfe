"""Outbound webhook subscriptions: create, change, rotate the secret, delete. A subscription
receives the events of its types recorded after it was created (see ``fanout``). Its URL must be
one webhooks may go to (``targets.check_url``): 422 ``webhook_url_not_allowed`` otherwise."""

from __future__ import annotations

import uuid

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from oms.shared.clock import utcnow
from oms.shared.errors import NotFound, Unprocessable
from oms.webhooks.keys import new_secret
from oms.webhooks.outbound.models import Subscription
from oms.webhooks.outbound.schemas import SubscriptionCreate, SubscriptionUpdate
from oms.webhooks.outbound.targets import TargetRefused, check_url


def _allowed_url(url: str, *, allow_private: bool) -> str:
    """``url`` if webhooks may be sent there; else a 422 naming why (never echoing credentials)."""
    try:
        check_url(url, allow_private=allow_private)
    except TargetRefused as exc:
        raise Unprocessable(
            f"this URL may not receive webhooks: {exc.detail}",
            code="webhook_url_not_allowed",
            title="Webhook URL not allowed",
            reason=exc.reason,
        ) from None
    return url


async def create_subscription(
    session: AsyncSession, *, data: SubscriptionCreate, allow_private: bool
) -> Subscription:
    """Store a subscription with a fresh secret; it receives events recorded from now on.
    ``allow_private``: loopback and private addresses are allowed (local development)."""
    now = utcnow()
    sub = Subscription(
        id=uuid.uuid4(),
        url=_allowed_url(str(data.url), allow_private=allow_private),
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
    session: AsyncSession,
    *,
    subscription_id: uuid.UUID,
    data: SubscriptionUpdate,
    allow_private: bool,
) -> Subscription:
    """Change a subscription; enabling it clears the failure state and resumes its deliveries."""
    sub = await get_subscription(session, subscription_id=subscription_id)
    changes = data.model_dump(exclude_unset=True)
    if changes.get("url") is not None:
        sub.url = _allowed_url(str(data.url), allow_private=allow_private)
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
