"""THE order lock: every operation that changes an order, or anything that belongs to it
(shipments, allocations, payments, refunds, returns, history), takes it first, through
:func:`lock_order`, and checks the order's state only afterwards.

Lock order (the one order every transaction takes its locks in, so none can deadlock):

1. an inbound event's (channel, external reference) advisory lock, when a connector webhook is
   being applied (``webhooks.inbound``: events about an order that may not exist yet); a
   store's till advisory lock, for till sales (``flows.pos.lock_till``, before the receipt's
   claim); a purchase order's row before its receipt's stock (``purchasing``);
2. **the order row**, ``FOR NO KEY UPDATE`` (this module). One strength for every caller: it
   conflicts with itself and with any UPDATE of the row, so two operations on one order run one
   after the other, while inserts of rows that reference the order (their foreign-key checks take
   ``FOR KEY SHARE``) are not blocked;
3. rows the order owns (its shipments, payments, returns), read after the lock, then a
   transfer that fulfils it (``stores.fulfil``);
4. stock rows last, in the fixed order of ``inventory`` (warehouse id, then SKU), held as briefly
   as possible: the contended stock UPDATE comes as late in the transaction as it can.

Placement takes no order lock: the order does not exist before its INSERT commits.
"""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import selectinload

from oms.auth.service import Principal, may_see_warehouse, visible_warehouses
from oms.orders.models import Order, Shipment
from oms.shared.errors import Conflict, NotFound


def visible(principal: Principal | None, channel: str) -> bool:
    """Whether a caller bound to a channel may see an order of ``channel``."""
    return principal is None or principal.channel is None or principal.channel == channel


def version_conflict(order: Order, expected: int) -> Conflict:
    """409 for a change made against another version of the order (checked after the lock)."""
    return Conflict(
        f"order is at version {order.version}, not {expected}",
        code="version_conflict",
        current_status=order.status,
        current_version=order.version,
    )


def not_found(order_id: uuid.UUID) -> NotFound:
    return NotFound(f"order {order_id} does not exist", code="order_not_found")


async def lock_order(
    session: AsyncSession, *, order_id: uuid.UUID, principal: Principal | None = None
) -> Order:
    """Lock the order row until the transaction ends and return it as committed now (lines
    loaded). 404 when it does not exist or is outside ``principal``'s channel.

    Taking it twice in one transaction is harmless (the second call re-reads the row)."""
    order = await session.scalar(
        select(Order)
        .options(selectinload(Order.lines))
        .where(Order.id == order_id)
        .with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    )
    if order is None or not visible(principal, order.channel):
        raise not_found(order_id)
    return order


async def refuse_outside_scope(
    session: AsyncSession, *, order_id: uuid.UUID, principal: Principal | None, every: bool
) -> None:
    """404 for a key scoped to warehouses (store staff, ``auth.service.visible_warehouses``)
    unless the order's live shipments are at its locations: ``every`` one of them (to move
    the whole order), or at least one (to read it). Unscoped keys: no query."""
    scope = visible_warehouses(principal)
    if scope is None:
        return
    where = set(
        (
            await session.scalars(
                select(Shipment.warehouse_id).where(
                    Shipment.order_id == order_id, Shipment.status != "cancelled"
                )
            )
        ).all()
    )
    inside = where <= scope if every else bool(where & scope)
    if not where or not inside:
        raise not_found(order_id)


async def lock_order_of_shipment(
    session: AsyncSession, *, shipment_id: uuid.UUID, principal: Principal | None = None
) -> tuple[Order, Shipment]:
    """Lock the order a shipment belongs to, then read the shipment as committed now. 404 for a
    key scoped to other warehouses (``auth.service.may_see_warehouse``)."""
    found = (
        await session.execute(
            select(Shipment.order_id, Shipment.warehouse_id).where(Shipment.id == shipment_id)
        )
    ).first()
    if found is None or not may_see_warehouse(principal, found.warehouse_id):
        raise NotFound(f"shipment {shipment_id} does not exist", code="shipment_not_found")
    order_id = found.order_id
    order = await lock_order(session, order_id=order_id, principal=principal)
    shipment = await session.scalar(
        select(Shipment).where(Shipment.id == shipment_id).execution_options(populate_existing=True)
    )
    if shipment is None:  # pragma: no cover - shipments are never deleted
        raise NotFound(f"shipment {shipment_id} does not exist", code="shipment_not_found")
    return order, shipment
