"""The promise's service level, checked by the worker: a shipment not shipped by its
``ship_by`` (the promise made at placement) is late. ``shipment.at_risk`` is announced when
``ship_by`` is less than the configured lead (``OMS_SLA_AT_RISK_HOURS``) away,
``shipment.late`` once it has passed; each once per shipment (``at_risk_notified_at``,
``late_notified_at``), and only ``late`` for a shipment first seen already late. Shipments
that shipped, were delivered or cancelled meanwhile are skipped.

Each shipment in a transaction of its own, under THE order lock (the shipment is the order's):
its state is read again after the lock, so a shipment shipped concurrently is never announced
late. The clock is injected (``now``)."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from oms.orders.domain import ShipmentStatus
from oms.orders.events import shipment_payload
from oms.orders.locking import lock_order_of_shipment
from oms.orders.models import Shipment
from oms.outbox.service import record_event

log = logging.getLogger("oms.promises")

OPEN = (ShipmentStatus.PENDING.value, ShipmentStatus.PICKED.value, ShipmentStatus.PACKED.value)
"""Shipments that have not left their warehouse."""


@dataclass(slots=True)
class SlaStats:
    at_risk: int = 0
    late: int = 0


async def _due(
    session: AsyncSession, *, now: datetime, lead: timedelta, limit: int
) -> list[uuid.UUID]:
    """Open shipments with a promise to announce (the partial index ix_shipments_sla_open)."""
    stmt = (
        select(Shipment.id)
        .where(
            Shipment.ship_by.is_not(None),
            Shipment.late_notified_at.is_(None),
            Shipment.status.in_(OPEN),
            Shipment.ship_by <= now + lead,
            or_(Shipment.at_risk_notified_at.is_(None), Shipment.ship_by <= now),
        )
        .order_by(Shipment.ship_by)
        .limit(limit)
    )
    return list((await session.scalars(stmt)).all())


async def announce(
    session: AsyncSession, *, shipment_id: uuid.UUID, now: datetime, lead: timedelta
) -> str | None:
    """Announce one shipment at risk or late if it (still) is, under its order's lock;
    ``"at_risk"``, ``"late"`` or None."""
    _, shipment = await lock_order_of_shipment(session, shipment_id=shipment_id)
    if shipment.status not in OPEN or shipment.ship_by is None:
        return None
    if shipment.late_notified_at is None and shipment.ship_by <= now:
        kind, column = "late", "late_notified_at"
    elif shipment.at_risk_notified_at is None and shipment.ship_by - lead <= now:
        kind, column = "at_risk", "at_risk_notified_at"
    else:
        return None
    await session.execute(
        update(Shipment)
        .where(Shipment.id == shipment.id)
        .values({column: now})
        .execution_options(synchronize_session=False)
    )
    await record_event(
        session,
        type=f"shipment.{kind}",
        aggregate_type="order",
        aggregate_id=str(shipment.order_id),
        data={
            **shipment_payload(shipment),
            "ship_by": shipment.ship_by.isoformat(),
            "deliver_by": None if shipment.deliver_by is None else shipment.deliver_by.isoformat(),
        },
    )
    log.info(
        f"shipment {kind.replace('_', ' ')}",
        extra={
            "event": f"shipment.{kind}",
            "order_id": str(shipment.order_id),
            "shipment_id": str(shipment.id),
            "ship_by": shipment.ship_by.isoformat(),
        },
    )
    return kind


async def check_sla(
    sessionmaker: async_sessionmaker[AsyncSession],
    *,
    now: datetime,
    at_risk_lead: timedelta,
    limit: int = 200,
) -> SlaStats:
    """Announce every open shipment at risk or late now (up to ``limit``), each in its own
    transaction."""
    async with sessionmaker() as session:
        due = await _due(session, now=now, lead=at_risk_lead, limit=limit)
    stats = SlaStats()
    for shipment_id in due:
        async with sessionmaker() as session, session.begin():
            kind = await announce(session, shipment_id=shipment_id, now=now, lead=at_risk_lead)
        if kind == "late":
            stats.late += 1
        elif kind == "at_risk":
            stats.at_risk += 1
    return stats
