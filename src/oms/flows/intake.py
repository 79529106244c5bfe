"""A connector's event applied to orders, across contexts: an order created by a marketplace
(placed through ``orders``, its payment recorded through ``payments``), cancelled, paid or
refunded. The inbox (``webhooks.inbound``) verifies, stores and deduplicates deliveries and
calls :func:`apply_event` for each; it is given this function by the router and the worker.

Locks, in the lock order of ``oms.orders.locking``: the (channel, external reference) advisory
lock first, then the order's own lock (taken by the order and payment services)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from oms.auth.service import Principal
from oms.orders import service as orders_service
from oms.orders.domain import OrderStatus, PaymentMethod
from oms.orders.schemas import OrderCreate, OrderLineCreate, TransitionRequest
from oms.payments import service as payments_service
from oms.shared.errors import Conflict, NotFound
from oms.webhooks.inbound import service as inbound_service
from oms.webhooks.inbound.adapters.base import EventType, InboundEvent
from oms.webhooks.inbound.models import Connector
from oms.webhooks.inbound.service import Applied


async def _find_order(
    session: AsyncSession, *, channel: str, event: InboundEvent
) -> orders_service.OrderRef | None:
    return await orders_service.find_order(
        session,
        channel=channel,
        order_id=event.order_id,
        external_reference=event.external_reference,
    )


async def apply_event(
    session: AsyncSession,
    *,
    event: InboundEvent,
    order_data: OrderCreate | None,
    connector: Connector,
    inbox_id: int,
    request_id: str | None,
) -> Applied:
    principal = inbound_service.connector_principal(connector)
    channel = connector.channel
    if event.external_reference is not None:
        await inbound_service.lock_target(
            session, channel=channel, external_reference=event.external_reference
        )
    if event.type is EventType.ORDER_CREATED:
        assert order_data is not None
        assert event.external_reference is not None
        try:
            order = await orders_service.place_order(
                session,
                data=order_data,
                principal=principal,
                request_id=request_id,
                risk_level=event.risk_level,
            )
            order_id, detail = order.id, "order created"
            created = True
        except Conflict as exc:
            if exc.code != "duplicate_external_reference":
                raise
            order_id, detail, created = uuid.UUID(exc.extra["order_id"]), "order exists", False
        if created and event.payment is not None:
            row = await _find_order(session, channel=channel, event=event)
            assert row is not None
            detail += "; " + await _capture(
                session,
                order=row,
                event=event,
                inbox_id=inbox_id,
                principal=principal,
                request_id=request_id,
            )
        applied = await inbound_service.apply_pending(
            session,
            channel=channel,
            external_reference=event.external_reference,
            request_id=request_id,
            apply=apply_event,
        )
        if applied:
            detail += f"; {applied} pending event(s) applied"
        return Applied("processed", order_id, detail)
    row = await _find_order(session, channel=channel, event=event)
    if row is None:
        if event.order_id is not None:
            raise NotFound(
                f"order {event.order_id} does not exist in channel '{channel}'",
                code="order_not_found",
            )
        return Applied(
            "pending",
            None,
            f"no order '{event.external_reference}' in channel '{channel}' yet; the event is "
            "kept and applied when the order arrives",
        )
    if event.type is EventType.ORDER_UPDATED:
        assert order_data is not None
        detail = await _update(
            session, order_id=row.id, data=order_data, principal=principal, request_id=request_id
        )
        return Applied("processed", row.id, detail)
    if event.type is EventType.ORDER_CANCELLED:
        # the order's state is read under its lock (a concurrent cancel may be committing)
        locked = await orders_service.lock_order(session, order_id=row.id)
        if locked.status == OrderStatus.CANCELLED.value:
            return Applied("processed", row.id, "order was already cancelled")
        await orders_service.transition_order(
            session,
            order_id=row.id,
            change=TransitionRequest(to=OrderStatus.CANCELLED, reason=event.reason),
            principal=principal,
            request_id=request_id,
        )
        return Applied("processed", row.id, "order cancelled")
    if event.type is EventType.PAYMENT_CAPTURED:
        detail = await _capture(
            session,
            order=row,
            event=event,
            inbox_id=inbox_id,
            principal=principal,
            request_id=request_id,
        )
        return Applied("processed", row.id, detail)
    detail = await _refund(session, order=row, event=event, inbox_id=inbox_id, principal=principal)
    return Applied("processed", row.id, detail)


async def _update(
    session: AsyncSession,
    *,
    order_id: uuid.UUID,
    data: OrderCreate,
    principal: Principal,
    request_id: str | None,
) -> str:
    """The platform's lines (by SKU) and shipping address as they are now, applied to the order
    as an edit (``orders.edit_order``) where they differ. Edits that touch picked units are
    refused (409 ``units_not_editable``): the inbox row is kept as failed with that reason."""
    order = await orders_service.get_order(session, order_id=order_id, principal=principal)
    if order.status in (OrderStatus.CANCELLED.value, OrderStatus.RETURNED.value):
        return f"order is '{order.status}'; the update is not applied"
    wanted: dict[str, int] = {}
    new_lines: dict[str, OrderLineCreate] = {}
    for ln in data.lines:
        wanted[ln.sku] = wanted.get(ln.sku, 0) + ln.quantity
        new_lines.setdefault(ln.sku, ln)
    quantities: dict[uuid.UUID, int] = {}
    by_sku: dict[str, list[Any]] = {}  # the order's lines (orders.models rows)
    for line in order.lines:
        by_sku.setdefault(line.sku, []).append(line)
    seen = set(by_sku)
    for sku, lines in by_sku.items():  # per SKU: more to its last line, fewer from the last
        diff = wanted.get(sku, 0) - sum(ln.quantity for ln in lines)
        if diff > 0:
            quantities[lines[-1].id] = lines[-1].quantity + diff
        for ln in reversed(lines):
            if diff >= 0:
                break
            take = min(-diff, ln.quantity)
            if take:
                quantities[ln.id] = ln.quantity - take
                diff += take
    add = tuple(
        new_lines[sku].model_copy(update={"quantity": qty})
        for sku, qty in wanted.items()
        if sku not in seen
    )
    address = data.shipping_address
    same_address = address.model_dump(mode="json") == orders_service.address_of(order)
    if not quantities and not add and same_address:
        return "no change to the lines or the shipping address"
    result = await orders_service.edit_order(
        session,
        order_id=order_id,
        spec=orders_service.EditSpec(
            quantities=quantities, add=add, address=None if same_address else address
        ),
        principal=principal,
        expected_version=None,
        reason="updated in the sales channel",
        request_id=request_id,
        dry_run=False,
    )
    changed = sum(1 for ln in result.lines if ln["change"] != "unchanged")
    return f"order edited ({changed} line(s) changed" + (
        ")" if same_address else ", shipping address changed)"
    )


def _provider_reference(event: InboundEvent, inbox_id: int) -> str:
    assert event.payment is not None
    return event.payment.reference or f"inbox:{inbox_id}"


async def _capture(
    session: AsyncSession,
    *,
    order: orders_service.OrderRef,
    event: InboundEvent,
    inbox_id: int,
    principal: Principal,
    request_id: str | None,
) -> str:
    """Record the captured payment through the payments service (idempotent by reference)."""
    assert event.payment is not None
    payment, created = await payments_service.record_payment(
        session,
        order_id=order.id,
        principal=principal,
        method=PaymentMethod(order.payment_method),
        provider=principal.actor,
        provider_reference=_provider_reference(event, inbox_id),
        amount=event.payment.amount,
        currency=event.payment.currency,
        status="captured",
        request_id=request_id,
    )
    if not created:
        return "payment was already recorded"
    now = await orders_service.find_order(session, channel=order.channel, order_id=order.id)
    status = now.status if now is not None else None
    if status == OrderStatus.PAID.value and order.status == OrderStatus.PLACED.value:
        return "payment captured; order paid"
    return f"payment recorded ({payment.captured_amount} captured); order is '{status}'"


async def _refund(
    session: AsyncSession,
    *,
    order: orders_service.OrderRef,
    event: InboundEvent,
    inbox_id: int,
    principal: Principal,
) -> str:
    """Record the provider's refund through the payments service (idempotent by reference)."""
    assert event.payment is not None
    refunds, created = await payments_service.record_provider_refund(
        session,
        order_id=order.id,
        amount=event.payment.amount,
        currency=event.payment.currency,
        reason=event.reason or "refunded by the payment provider",
        provider_reference=_provider_reference(event, inbox_id),
        principal=principal,
    )
    if not created:
        return "refund was already recorded"
    return f"refund recorded ({sum(r.amount for r in refunds)} refunded)"
