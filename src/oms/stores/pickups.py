"""Click and collect at a store: each store's pickup terms (window, what an uncollected order
becomes, wrong codes allowed) and the pickups waiting there (code, attempts, deadline,
outcome). The order and shipment moves are ``oms.flows.pickup``'s, under the order lock; these
functions only read and write the stores' own rows, and never commit."""

from __future__ import annotations

import dataclasses
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from oms.shared.clock import utcnow
from oms.shared.errors import Conflict, NotFound
from oms.stores.models import Pickup, StorePolicy

UncollectedAction = Literal["cancel", "refund"]

CODE_DIGITS = 6


@dataclass(frozen=True, slots=True)
class PickupTerms:
    """A store's click-and-collect terms (its own, or the settings' defaults)."""

    pickup_window_hours: int
    uncollected_action: UncollectedAction
    max_code_attempts: int
    default: bool


async def terms_for(
    session: AsyncSession, *, warehouse_id: uuid.UUID, defaults: PickupTerms
) -> PickupTerms:
    """The store's terms, or ``defaults`` when it has none of its own."""
    row = await session.get(StorePolicy, warehouse_id)
    if row is None:
        return defaults
    return PickupTerms(
        pickup_window_hours=row.pickup_window_hours,
        uncollected_action="refund" if row.uncollected_action == "refund" else "cancel",
        max_code_attempts=row.max_code_attempts,
        default=False,
    )


async def put_terms(
    session: AsyncSession, *, warehouse_id: uuid.UUID, terms: PickupTerms
) -> PickupTerms:
    """Create or replace a store's terms (pickups already waiting keep theirs)."""
    values = {
        "pickup_window_hours": terms.pickup_window_hours,
        "uncollected_action": terms.uncollected_action,
        "max_code_attempts": terms.max_code_attempts,
        "updated_at": utcnow(),
    }
    await session.execute(
        pg_insert(StorePolicy)
        .values(warehouse_id=warehouse_id, **values)
        .on_conflict_do_update(index_elements=["warehouse_id"], set_=values)
    )
    return dataclasses.replace(terms, default=False)


def new_code() -> str:
    """A collection code: six random digits (told to the customer, asked at the counter)."""
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


async def open_pickup(
    session: AsyncSession,
    *,
    shipment_id: uuid.UUID,
    order_id: uuid.UUID,
    warehouse_id: uuid.UUID,
    terms: PickupTerms,
    now: datetime,
) -> Pickup:
    """Record a shipment ready at its store with a fresh code and its deadline."""
    pickup = Pickup(
        shipment_id=shipment_id,
        order_id=order_id,
        warehouse_id=warehouse_id,
        code=new_code(),
        status="ready",
        attempts=0,
        max_attempts=terms.max_code_attempts,
        uncollected_action=terms.uncollected_action,
        ready_at=now,
        collect_by=now + timedelta(hours=terms.pickup_window_hours),
    )
    session.add(pickup)
    await session.flush()
    return pickup


async def pickup_for_update(session: AsyncSession, *, shipment_id: uuid.UUID) -> Pickup:
    """The pickup of a shipment, locked (the caller holds its order's lock first)."""
    pickup = await session.scalar(
        select(Pickup)
        .where(Pickup.shipment_id == shipment_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if pickup is None:
        raise Conflict("this shipment is not ready for pickup", code="pickup_not_ready")
    return pickup


async def get_pickup(session: AsyncSession, *, shipment_id: uuid.UUID) -> Pickup:
    pickup = await session.get(Pickup, shipment_id)
    if pickup is None:
        raise NotFound(f"no pickup for shipment {shipment_id}", code="pickup_not_found")
    return pickup


def code_matches(pickup: Pickup, code: str) -> bool:
    """Constant-time comparison of the code given at the counter."""
    return hmac.compare_digest(pickup.code.encode(), code.strip().encode())


async def count_wrong_attempt(session: AsyncSession, *, pickup: Pickup) -> int:
    """One more wrong code; returns the attempts left."""
    pickup.attempts += 1
    await session.flush()
    return max(0, pickup.max_attempts - pickup.attempts)


async def close_pickup(
    session: AsyncSession,
    *,
    pickup: Pickup,
    status: Literal["collected", "uncollected", "cancelled"],
    actor: str,
    now: datetime,
) -> None:
    pickup.status = status
    pickup.closed_at = now
    pickup.closed_by = actor
    await session.flush()


async def due_pickups(
    session: AsyncSession,
    *,
    now: datetime,
    limit: int,
    shipment_ids: list[uuid.UUID] | None = None,
) -> list[uuid.UUID]:
    """Shipments whose pickup is still waiting past its deadline, oldest deadline first."""
    stmt = (
        select(Pickup.shipment_id)
        .where(Pickup.status == "ready", Pickup.collect_by <= now)
        .order_by(Pickup.collect_by)
        .limit(limit)
    )
    if shipment_ids is not None:
        stmt = stmt.where(Pickup.shipment_id.in_(shipment_ids))
    return list((await session.scalars(stmt)).all())


def pickup_payload(pickup: Pickup, *, warehouse_code: str) -> dict[str, Any]:
    """The fields every ``pickup.*`` event carries."""
    return {
        "shipment_id": str(pickup.shipment_id),
        "order_id": str(pickup.order_id),
        "store": warehouse_code,
        "status": pickup.status,
        "collect_by": pickup.collect_by.isoformat(),
    }
