"""Order and shipment moves, with what they cause in other contexts: cash on delivery is
recorded as captured when the order is delivered (``payments``), which makes the order paid."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from oms.auth.service import Principal
from oms.orders import service as orders_service
from oms.orders.domain import OrderStatus, PaymentMethod
from oms.orders.models import Order, Shipment
from oms.orders.schemas import ShipmentTransitionRequest, TransitionRequest
from oms.payments import service as payments_service


async def transition_order(
    session: AsyncSession,
    *,
    order_id: uuid.UUID,
    change: TransitionRequest,
    principal: Principal,
    request_id: str | None,
) -> Order:
    """``orders.transition_order``; a cash-on-delivery order reaching ``delivered`` is paid."""
    order = await orders_service.transition_order(
        session, order_id=order_id, change=change, principal=principal, request_id=request_id
    )
    await _collect_cash_on_delivery(session, order=order, actor=principal.actor)
    return order


async def transition_shipment(
    session: AsyncSession,
    *,
    shipment_id: uuid.UUID,
    change: ShipmentTransitionRequest,
    principal: Principal,
    request_id: str | None,
) -> Shipment:
    """``orders.transition_shipment``; when the last parcel of a cash-on-delivery order is
    delivered (the order with it), the cash is recorded."""
    shipment = await orders_service.transition_shipment(
        session,
        shipment_id=shipment_id,
        change=change,
        principal=principal,
        request_id=request_id,
    )
    # the order lock is held already (taken by the move): this re-reads the order's state
    order = await orders_service.lock_order(session, order_id=shipment.order_id)
    await _collect_cash_on_delivery(session, order=order, actor=principal.actor)
    return shipment


async def _collect_cash_on_delivery(session: AsyncSession, *, order: Order, actor: str) -> None:
    cod = order.payment_method == PaymentMethod.CASH_ON_DELIVERY.value
    if not cod or order.status != OrderStatus.DELIVERED.value or order.paid_at is not None:
        return
    await payments_service.record_cash_on_delivery(
        session,
        order_id=order.id,
        total=order.total_amount,
        currency=order.currency,
        actor=actor,
    )
    await orders_service.mark_paid(session, order_id=order.id, actor=actor)
