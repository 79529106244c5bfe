"""Order and shipment transitions: each takes the order lock first (``locking.lock_order``),
then checks the state machine (``domain``), writes the move, its history row and its event.

Fulfilment moves of the order carry every shipment that is behind along; shipping consumes the
reserved stock; cancelling releases it. A shipment move advances the order once all of its
shipments have reached the next status. Money that moves because of a transition (cash on
delivery) is the business of ``oms.flows.fulfilment``, not of this module."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from oms.auth.service import Principal
from oms.db import after_commit
from oms.inventory import service as inventory_service
from oms.orders import domain, holds
from oms.orders.domain import OrderStatus, PaymentMethod, ShipmentStatus
from oms.orders.events import order_summary, shipment_payload
from oms.orders.locking import (
    lock_order,
    lock_order_of_shipment,
    refuse_outside_scope,
    version_conflict,
)
from oms.orders.models import Order, OrderEvent, Shipment
from oms.orders.schemas import ShipmentTransitionRequest, TransitionRequest
from oms.outbox.service import record_event
from oms.shared import metrics
from oms.shared.clock import utcnow
from oms.shared.errors import Conflict, Forbidden, ProblemError, Unprocessable
from oms.shared.roles import Role
from oms.stores import service as stores_service

log = logging.getLogger("oms.orders")


def _problem_for(exc: Exception) -> ProblemError:
    if isinstance(exc, domain.IllegalTransition):
        return Conflict(
            str(exc),
            code="illegal_transition",
            current_status=exc.current.value,
            requested_status=exc.target.value,
            allowed_transitions=[s.value for s in exc.allowed],
        )
    if isinstance(exc, domain.IllegalShipmentTransition):
        return Conflict(
            str(exc),
            code="illegal_shipment_transition",
            current_status=exc.current.value,
            requested_status=exc.target.value,
            allowed_transitions=[s.value for s in exc.allowed],
        )
    if isinstance(exc, domain.RoleNotAllowed):
        return Forbidden(str(exc), code="role_not_allowed")
    return Unprocessable(str(exc), code="shipping_details_required")


_HELD_BACK = (OrderStatus.PICKED, OrderStatus.PACKED, OrderStatus.SHIPPED)
"""The moves a standing hold refuses (``holds.refuse_if_held``); cancelling is not one."""

_PICKUP_STEPS = (ShipmentStatus.READY_FOR_PICKUP, ShipmentStatus.COLLECTED)
"""Click-and-collect steps: only through ``advance_pickup`` (the stores' pickup routes)."""


def _pickup_route_required(status: str) -> Conflict:
    return Conflict(
        "a click-and-collect order is made ready and collected through "
        "POST /v1/pickups/{shipment_id}/ready and /collect, not moved directly",
        code="pickup_route_required",
        current_status=status,
    )


_TIMESTAMP_FOR = {
    OrderStatus.PAID: "paid_at",
    OrderStatus.SHIPPED: "shipped_at",
    OrderStatus.DELIVERED: "delivered_at",
    OrderStatus.CANCELLED: "cancelled_at",
}


async def _apply_order_transition(
    session: AsyncSession,
    *,
    order: Order,
    target: OrderStatus,
    principal: Principal,
    reason: str | None,
    carrier: str | None,
    tracking_number: str | None,
    request_id: str | None,
) -> None:
    """Check one move with the state machine, write it (version-guarded), history and event."""
    current = OrderStatus(order.status)
    try:
        domain.transition(
            current,
            target,
            cash_on_delivery=order.payment_method == PaymentMethod.CASH_ON_DELIVERY,
            role=principal.role,
            carrier=carrier,
            tracking_number=tracking_number,
            pickup=order.fulfillment == "pickup",
            counter_sale=order.fulfillment == "counter",
        )
    except (domain.IllegalTransition, domain.RoleNotAllowed, domain.MissingShippingDetails) as exc:
        raise _problem_for(exc) from exc
    now = utcnow()
    values: dict[str, Any] = {
        "status": target.value,
        "version": order.version + 1,
        "updated_at": now,
    }
    if target in _TIMESTAMP_FOR:
        values[_TIMESTAMP_FOR[target]] = now
    if target is OrderStatus.SHIPPED:
        values["carrier"], values["tracking_number"] = carrier, tracking_number
    result = await session.execute(
        update(Order)
        .where(Order.id == order.id, Order.version == order.version)
        .values(**values)
        .returning(Order.id)
    )
    if result.first() is None:
        raise Conflict(
            "the order was changed by another request at the same time; read it and retry",
            code="concurrent_modification",
            current_status=current.value,
        )
    for key, value in values.items():
        setattr(order, key, value)
    data: dict[str, Any] = {}
    if carrier:
        data = {"carrier": carrier, "tracking_number": tracking_number}
    session.add(
        OrderEvent(
            order_id=order.id,
            kind="transition",
            from_status=current.value,
            to_status=target.value,
            actor=principal.actor,
            actor_role=principal.role.value,
            reason=reason,
            data=data,
            request_id=request_id,
            created_at=now,
        )
    )
    await record_event(
        session,
        type=f"order.{target.value}",
        aggregate_type="order",
        aggregate_id=str(order.id),
        data={**order_summary(order), "previous_status": current.value, **data},
    )
    order_id = order.id

    def _committed() -> None:
        metrics.ORDER_TRANSITIONS.labels(from_status=current.value, to_status=target.value).inc()
        log.info(
            "order transition",
            extra={
                "event": f"order.{target.value}",
                "order_id": str(order_id),
                "from_status": current.value,
                "to_status": target.value,
                "actor": principal.actor,
            },
        )

    after_commit(session, _committed)


async def _move_shipment(
    session: AsyncSession,
    *,
    shipment: Shipment,
    target: ShipmentStatus,
    principal: Principal,
    carrier: str | None,
    tracking_number: str | None,
) -> None:
    now = utcnow()
    values: dict[str, Any] = {
        "status": target.value,
        "version": shipment.version + 1,
        "updated_at": now,
    }
    if target not in _PICKUP_STEPS:  # (a pickup's times are kept by oms.stores.pickups)
        values[f"{target.value}_at"] = now
    if target is ShipmentStatus.SHIPPED:
        values["carrier"], values["tracking_number"] = carrier, tracking_number
    result = await session.execute(
        update(Shipment)
        .where(Shipment.id == shipment.id, Shipment.version == shipment.version)
        .values(**values)
        .returning(Shipment.id)
    )
    if result.first() is None:
        raise Conflict(
            "the shipment was changed by another request at the same time; retry",
            code="concurrent_modification",
        )
    for key, value in values.items():
        setattr(shipment, key, value)
    if target in (ShipmentStatus.SHIPPED, ShipmentStatus.COLLECTED):  # the units leave
        units = await inventory_service.consume(
            session, order_id=shipment.order_id, shipment_id=shipment.id, actor=principal.actor
        )
        if units:
            await session.execute(
                update(Order)
                .where(Order.id == shipment.order_id)
                .values(units_shipped=Order.units_shipped + units)
                .execution_options(synchronize_session=False)
            )
    await record_event(
        session,
        type=f"shipment.{target.value}",
        aggregate_type="order",
        aggregate_id=str(shipment.order_id),
        data=shipment_payload(shipment),  # status, carrier and tracking set above
    )


async def transition_order(
    session: AsyncSession,
    *,
    order_id: uuid.UUID,
    change: TransitionRequest,
    principal: Principal,
    request_id: str | None,
) -> Order:
    """Move the order to ``change.to`` if the state machine allows it; record who and why.

    Fulfilment moves (picked, packed, shipped, delivered) carry every shipment that is behind
    along; shipping consumes the reserved stock; cancelling releases it. It
    takes the order lock first, so of two concurrent requests the second sees the first's result.
    """
    order = await lock_order(session, order_id=order_id, principal=principal)
    await refuse_outside_scope(session, order_id=order_id, principal=principal, every=True)
    if change.expected_version is not None and change.expected_version != order.version:
        raise version_conflict(order, change.expected_version)
    shipments = list(
        (
            await session.scalars(
                select(Shipment)
                .where(
                    Shipment.order_id == order_id,
                    Shipment.status != ShipmentStatus.CANCELLED.value,
                )
                .order_by(Shipment.seq)
                .execution_options(populate_existing=True)  # as committed: read after the lock
            )
        ).all()
    )
    cod = order.payment_method == PaymentMethod.CASH_ON_DELIVERY
    pickup = order.fulfillment == "pickup"
    allowed = domain.allowed_next(
        OrderStatus(order.status),
        cash_on_delivery=cod,
        pickup=pickup,
        counter_sale=order.fulfillment == "counter",
    )
    if pickup and change.to in (OrderStatus.READY_FOR_PICKUP, OrderStatus.DELIVERED):
        raise _pickup_route_required(order.status)
    if change.to in _HELD_BACK and change.to in allowed:
        await holds.refuse_if_held(session, order=order)
    shipped = domain.shipment_rank(ShipmentStatus.SHIPPED)
    if (
        change.to is OrderStatus.CANCELLED
        and change.to in allowed
        and any(domain.shipment_rank(ShipmentStatus(sh.status)) >= shipped for sh in shipments)
    ):
        raise Conflict(
            "part of this order has already shipped; it can no longer be cancelled",
            code="partially_shipped",
            current_status=order.status,
            allowed_transitions=[s.value for s in allowed if s is not OrderStatus.CANCELLED],
        )
    await _apply_order_transition(
        session,
        order=order,
        target=change.to,
        principal=principal,
        reason=change.reason,
        carrier=change.carrier,
        tracking_number=change.tracking_number,
        request_id=request_id,
    )
    if change.to in domain.FULFILMENT_STATUSES:
        target = domain.FULFILMENT_STATUSES[change.to]
        if target is ShipmentStatus.SHIPPED and len(shipments) > 1:
            # shipping consumes stock shipment by shipment: lock all of its rows first, in the
            # fixed order, so that no other writer can hold one this one waits for
            await inventory_service.lock_stock_of_order(session, order_id=order_id)
        for sh in shipments:
            if domain.shipment_rank(ShipmentStatus(sh.status)) < domain.shipment_rank(target):
                await _move_shipment(
                    session,
                    shipment=sh,
                    target=target,
                    principal=principal,
                    carrier=change.carrier,
                    tracking_number=change.tracking_number,
                )
    elif change.to is OrderStatus.CANCELLED:
        if pickup:  # #19: its transfers to fulfil (rows it owns: locked before the stock rows)
            await stores_service.order_cancelled(session, order_id=order_id)
        await inventory_service.release(session, order_id=order_id)
        now = utcnow()
        await session.execute(
            update(Shipment)
            .where(Shipment.order_id == order_id, Shipment.status != ShipmentStatus.CANCELLED.value)
            .values(status=ShipmentStatus.CANCELLED.value, cancelled_at=now, updated_at=now)
        )
        await session.execute(
            update(Order)
            .where(Order.id == order_id)
            .values(live_shipments=0)
            .execution_options(synchronize_session=False)
        )
        set_committed_value(order, "live_shipments", 0)
    return order


async def add_returned_units(session: AsyncSession, *, order_id: uuid.UUID, units: int) -> None:
    """Keep the order's count of units on returns that are not rejected (for the reports)."""
    await session.execute(
        update(Order)
        .where(Order.id == order_id)
        .values(units_returned=Order.units_returned + units)
        .execution_options(synchronize_session=False)
    )


async def transition_shipment(
    session: AsyncSession,
    *,
    shipment_id: uuid.UUID,
    change: ShipmentTransitionRequest,
    principal: Principal,
    request_id: str | None,
) -> Shipment:
    """Move one shipment one step; the order follows once all its shipments have."""
    order, shipment = await lock_order_of_shipment(
        session, shipment_id=shipment_id, principal=principal
    )
    if principal.role not in (Role.ADMIN, Role.FULFILLMENT):
        raise Forbidden("only fulfillment or admin keys move shipments", code="role_not_allowed")
    current = ShipmentStatus(shipment.status)
    if change.to in _PICKUP_STEPS:
        raise _pickup_route_required(order.status)
    try:
        domain.next_shipment_status(current, change.to, pickup=order.fulfillment == "pickup")
    except domain.IllegalShipmentTransition as exc:
        raise _problem_for(exc) from exc
    if change.to is ShipmentStatus.SHIPPED and not (change.carrier and change.tracking_number):
        raise Unprocessable(
            "shipping requires a carrier and a tracking number", code="shipping_details_required"
        )
    if change.to in (ShipmentStatus.PICKED, ShipmentStatus.PACKED, ShipmentStatus.SHIPPED):
        await holds.refuse_if_held(session, order=order)
    order_status = OrderStatus(order.status)
    if change.to is ShipmentStatus.PICKED:
        cod = order.payment_method == PaymentMethod.CASH_ON_DELIVERY
        ready = order_status is OrderStatus.PAID or (cod and order_status is OrderStatus.PLACED)
        if not ready and domain.order_fulfilment_rank(order_status) < 1:
            raise Conflict(
                f"the order is '{order_status}'; it must be paid (or cash on delivery) "
                "before picking",
                code="order_not_ready",
                current_status=order_status.value,
            )
    await _move_shipment(
        session,
        shipment=shipment,
        target=change.to,
        principal=principal,
        carrier=change.carrier,
        tracking_number=change.tracking_number,
    )
    statuses = [
        ShipmentStatus(s)
        for s in (
            await session.scalars(select(Shipment.status).where(Shipment.order_id == order.id))
        ).all()
    ]
    reached = domain.order_status_reached(statuses)
    while reached is not None and domain.order_fulfilment_rank(
        OrderStatus(order.status)
    ) < domain.order_fulfilment_rank(reached):
        nxt = domain.FULFILMENT_ORDER[domain.order_fulfilment_rank(OrderStatus(order.status))]
        await _apply_order_transition(
            session,
            order=order,
            target=nxt,
            principal=principal,
            reason="all shipments reached " + nxt.value,
            carrier=change.carrier or shipment.carrier,
            tracking_number=change.tracking_number or shipment.tracking_number,
            request_id=request_id,
        )
    return shipment


async def advance_pickup(
    session: AsyncSession,
    *,
    order: Order,
    shipment: Shipment,
    target: ShipmentStatus,
    principal: Principal,
    request_id: str | None,
) -> None:
    """Move a click-and-collect shipment to ``ready_for_pickup`` or ``collected`` (collecting
    consumes its reserved units: they leave the store), and the order with it to
    ``ready_for_pickup`` / ``delivered`` once every live shipment has got there.

    The caller holds the order lock (``lock_order_of_shipment``) and has checked the pickup's
    own rules (the collection code). A held order's shipment is neither made ready nor
    collected (409 ``order_on_hold``), as it is not shipped."""
    if order.fulfillment != "pickup" or target not in _PICKUP_STEPS:
        raise Conflict(
            "only a click-and-collect order's shipment is made ready for pickup or collected",
            code="not_a_pickup",
            current_status=order.status,
        )
    current = ShipmentStatus(shipment.status)
    try:
        domain.next_shipment_status(current, target, pickup=True)
    except domain.IllegalShipmentTransition as exc:
        raise _problem_for(exc) from exc
    if principal.role not in (Role.ADMIN, Role.FULFILLMENT):
        raise Forbidden("only fulfillment or admin keys move shipments", code="role_not_allowed")
    await holds.refuse_if_held(session, order=order)  # as picking, packing, shipping
    await _move_shipment(
        session,
        shipment=shipment,
        target=target,
        principal=principal,
        carrier=None,
        tracking_number=None,
    )
    statuses = [
        ShipmentStatus(s)
        for s in (
            await session.scalars(select(Shipment.status).where(Shipment.order_id == order.id))
        ).all()
    ]
    reached = domain.order_status_reached(statuses)
    wanted = (
        OrderStatus.READY_FOR_PICKUP
        if target is ShipmentStatus.READY_FOR_PICKUP
        else OrderStatus.DELIVERED
    )
    if reached is wanted and order.status != wanted.value:
        await _apply_order_transition(
            session,
            order=order,
            target=wanted,
            principal=principal,
            reason="collected at the store"
            if wanted is OrderStatus.DELIVERED
            else "ready for pickup at the store",
            carrier=None,
            tracking_number=None,
            request_id=request_id,
        )


async def mark_paid(session: AsyncSession, *, order_id: uuid.UUID, actor: str) -> None:
    """Record that an order past `placed` (e.g. cash on delivery) is now fully paid."""
    now = utcnow()
    result = await session.execute(
        update(Order)
        .where(Order.id == order_id, Order.paid_at.is_(None))
        .values(paid_at=now, updated_at=now)
        .returning(Order.status)
        .execution_options(synchronize_session=False)
    )
    status = result.scalar_one_or_none()
    loaded = session.identity_map.get(session.identity_key(Order, order_id))
    if isinstance(loaded, Order) and status is not None:
        set_committed_value(loaded, "paid_at", now)
        set_committed_value(loaded, "updated_at", now)
    if status is not None:
        session.add(
            OrderEvent(
                order_id=order_id,
                kind="payment_settled",
                from_status=status,
                to_status=status,
                actor=actor,
                reason="captured payments cover the total",
                data={},
                created_at=utcnow(),
            )
        )
