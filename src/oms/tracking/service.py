"""The tracking page's data: what a customer holding a signed link may see of their order.

Shown: the order number, status and placement day, the destination city and country (or the
pickup store), each shipment (status, carrier, tracking number and the carrier's tracking link,
shipped/delivered days, the promised ship-by/deliver-by days when stored) and each return
(status, requested/received days). Never: prices, the customer's name, email, phone or street
address, internal ids, notes or attributes.
"""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from oms.auth.service import Principal
from oms.config import Settings
from oms.orders import service as orders_service
from oms.returns import service as returns_service
from oms.shared.errors import NotFound, ProblemError
from oms.shared.roles import Role
from oms.tracking import token as tokens
from oms.tracking.models import TrackingKey
from oms.tracking.views import shipment_context

READER = Principal(key_id=uuid.UUID(int=0), name="tracking-link", role=Role.ADMIN, channel=None)
"""Who reads an order for a tracking link: the link itself is the authorisation."""


class LinkExpired(ProblemError):
    status = 410
    code = "tracking_link_expired"
    title = "This tracking link has expired"


def link_invalid() -> NotFound:
    return NotFound(
        "no order is tracked at this link (mistyped or altered)",
        code="tracking_link_invalid",
        title="Tracking link not found",
    )


async def signing_key(session: AsyncSession, *, settings: Settings) -> bytes:
    """``OMS_TRACKING_SECRET``, or the random key made once and kept in the database."""
    if settings.tracking_secret is not None:
        return tokens.derive_key(settings.tracking_secret.get_secret_value())
    secret = await session.scalar(select(TrackingKey.secret).where(TrackingKey.id == 1))
    if secret is None:
        await session.execute(
            pg_insert(TrackingKey)
            .values(id=1, secret=secrets.token_urlsafe(48))
            .on_conflict_do_nothing()
        )
        secret = await session.scalar(select(TrackingKey.secret).where(TrackingKey.id == 1))
    assert secret is not None
    return tokens.derive_key(secret)


async def link_for(
    session: AsyncSession,
    *,
    settings: Settings,
    order_id: uuid.UUID,
    now: datetime,
    key: bytes | None = None,
) -> str:
    """The customer's tracking page for ``order_id``, valid ``tracking_link_ttl_days``
    (``key``: :func:`signing_key`, when the caller read it already)."""
    key = key or await signing_key(session, settings=settings)
    expires = now + timedelta(days=settings.tracking_link_ttl_days)
    base = settings.public_base_url.rstrip("/")
    return f"{base}/track/{tokens.sign(order_id, expires, key)}"


@dataclass(frozen=True, slots=True)
class TrackingView:
    data: dict[str, Any]
    language: str


async def view(
    session: AsyncSession, *, settings: Settings, token: str, now: datetime
) -> TrackingView:
    """What the link shows; 404 ``tracking_link_invalid``, 410 ``tracking_link_expired``."""
    key = await signing_key(session, settings=settings)
    try:
        order_id, expires_at = tokens.verify(token, key, now=now)
    except tokens.ExpiredToken as exc:
        raise LinkExpired(
            "this tracking link has expired; the latest message about the order has a new one",
            expired_at=exc.expired_at.isoformat(),
        ) from None
    except tokens.InvalidToken:
        raise link_invalid() from None
    try:
        order = await orders_service.get_order(session, order_id=order_id, principal=READER)
    except NotFound:
        raise link_invalid() from None
    shipments = (await orders_service.shipments_for(session, order_ids=[order_id]))[order_id]
    returns = await returns_service.returns_of(session, order_id=order_id, principal=READER)
    pickup = order.fulfillment == "pickup"
    data: dict[str, Any] = {
        "order_number": order.number,
        "status": order.status,
        "placed_on": order.created_at.date().isoformat(),
        "fulfillment": order.fulfillment,
        "destination": {
            "city": None if pickup else order.ship_city,
            "country": order.ship_country,
            "pickup_store": order.pickup_warehouse_code if pickup else None,
        },
        "shipments": [
            {"number": i, **shipment_context(v.shipment)}
            for i, v in enumerate(
                (v for v in shipments if v.shipment.status != "cancelled"), start=1
            )
        ],
        "returns": [
            {
                "status": r.status,
                "requested_on": r.created_at.date().isoformat(),
                "received_on": r.received_at.date().isoformat() if r.received_at else None,
            }
            for r in returns
        ],
        "link_expires_at": expires_at.isoformat(),
    }
    language = (order.locale or "en").split("-")[0].lower()
    return TrackingView(data=data, language=language)
