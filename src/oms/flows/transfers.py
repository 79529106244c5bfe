"""Transfers across contexts: a receipt books units in at the destination (``stores``,
through the ``inventory`` ledger), then the orders waiting there for those SKUs (backorders)
are filled, as after any stock arrival (``flows.backorders``: committed first, then each
order in a transaction of its own).

A transfer to fulfil a pickup order (``oms.stores.fulfil``) moves that order's units, so each
of its steps takes THE order lock first (``orders.lock_order``), then the transfer row, then
the stock rows in the fixed order:

* shipped: the units reserved for the pickup shipment at the source leave it (``transfer_out``)
  and are backordered on the order's lines while in transit (history ``transfer_shipped``);
* received: the units that arrived for the order are booked in at the store (``transfer_in``)
  and reserved there for the pickup shipment, its lines' backorders lowered (history
  ``transfer_received``); the shipment may then be made ready for pickup.
"""

from __future__ import annotations

import uuid
from datetime import date

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from oms.auth.service import Principal
from oms.flows import backorders
from oms.inventory import service as inventory_service
from oms.orders import service as orders_service
from oms.orders.models import Order, OrderEvent, OrderLine
from oms.shared.clock import utcnow
from oms.stores import service as stores_service


async def _lock_linked_order(session: AsyncSession, *, transfer_id: uuid.UUID) -> Order | None:
    """THE order lock of the order a transfer fulfils, taken before the transfer's row."""
    order_id = await stores_service.linked_order(session, transfer_id=transfer_id)
    if order_id is None:
        return None
    return await orders_service.lock_order(session, order_id=order_id)


def _history(
    order: Order, *, kind: str, view: stores_service.TransferView, principal: Principal, why: str
) -> OrderEvent:
    return OrderEvent(
        order_id=order.id,
        kind=kind,
        from_status=order.status,
        to_status=order.status,
        actor=principal.actor,
        actor_role=principal.role.value,
        reason=why,
        data={
            "transfer_id": str(view.transfer.id),
            "from_warehouse": view.from_code,
            "to_warehouse": view.to_code,
            "units": [{"sku": u.sku, "quantity": u.quantity} for u in view.for_order],
        },
        created_at=utcnow(),
    )


async def ship(
    session: AsyncSession,
    *,
    transfer_id: uuid.UUID,
    expected_on: date | None,
    principal: Principal,
) -> stores_service.TransferView:
    """Ship a transfer; for a transfer to fulfil, the order's units leave the source's
    reservation and wait on the order's lines (backordered) until they arrive."""
    order = await _lock_linked_order(session, transfer_id=transfer_id)
    view = await stores_service.ship_transfer(
        session, transfer_id=transfer_id, expected_on=expected_on, principal=principal
    )
    if order is None or not view.for_order:
        return view
    for u in view.for_order:
        await session.execute(
            update(OrderLine)
            .where(OrderLine.id == u.order_line_id)
            .values(backordered=OrderLine.backordered + u.quantity)
            .execution_options(synchronize_session=False)
        )
    session.add(
        _history(
            order,
            kind="transfer_shipped",
            view=view,
            principal=principal,
            why=f"units for the pickup left {view.from_code} for {view.to_code}",
        )
    )
    await session.flush()
    return view


async def _hand_to_order(
    session: AsyncSession,
    *,
    order: Order,
    view: stores_service.TransferView,
    principal: Principal,
) -> None:
    """Reserve the units that arrived for the order at the store for its pickup shipment, as
    far as its lines still wait for them (a cancelled order waits for nothing: they stay
    ordinary stock)."""
    t = view.transfer
    if order.status == "cancelled" or t.shipment_id is None:
        return
    waiting = list(
        (
            await session.scalars(
                select(OrderLine)
                .where(
                    OrderLine.order_id == order.id,
                    OrderLine.sku.in_([u.sku for u in view.for_order]),
                    OrderLine.backordered > 0,
                )
                .order_by(OrderLine.line_no)
                .execution_options(populate_existing=True)
            )
        ).all()
    )
    units: list[inventory_service.ReservedOut] = []
    left = {u.sku: 0 for u in view.for_order}
    for u in view.for_order:
        left[u.sku] += u.quantity
    for line in waiting:
        take = min(line.backordered, left[line.sku])
        if take:
            left[line.sku] -= take
            units.append(inventory_service.ReservedOut(line.id, line.sku, take))
            line.backordered -= take
    if not units:
        return
    await inventory_service.reserve_arrived(
        session,
        warehouse_id=t.to_warehouse_id,
        order_id=order.id,
        shipment_id=t.shipment_id,
        units=units,
    )
    reserved = stores_service.TransferView(
        t, view.lines, view.from_code, view.to_code, tuple(units)
    )
    session.add(
        _history(
            order,
            kind="transfer_received",
            view=reserved,
            principal=principal,
            why=f"units for the pickup arrived at {view.to_code}",
        )
    )
    await session.flush()


async def receive(
    session: AsyncSession,
    *,
    transfer_id: uuid.UUID,
    lines: list[inventory_service.Units],
    close: bool,
    principal: Principal,
    request_id: str | None,
) -> tuple[stores_service.TransferView, int]:
    """Receive units of a transfer (for a transfer to fulfil, those for the order reserved for
    its pickup shipment), commit, then fill the backorders of the received SKUs; the transfer
    as received and the backordered units filled."""
    order = await _lock_linked_order(session, transfer_id=transfer_id)
    view = await stores_service.receive_transfer(
        session, transfer_id=transfer_id, lines=lines, close=close, principal=principal
    )
    if order is not None and view.for_order:
        await _hand_to_order(session, order=order, view=view, principal=principal)
    skus = sorted({u.sku for u in lines if u.quantity > 0})
    filled = await backorders.fill_after_stock_change(
        session,
        skus=skus,
        actor=principal.actor,
        actor_role=principal.role.value,
        request_id=request_id,
    )
    return view, filled
