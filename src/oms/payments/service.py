"""Payments and refunds. Captured payments covering the total make the order paid.

Idempotent by (provider, provider_reference): a payment provider retrying the same event gets
the same payment back. Refunds never exceed what was captured.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal, Protocol

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from oms.auth.service import Principal
from oms.orders import service as orders_service
from oms.orders.domain import OrderStatus, PaymentMethod
from oms.orders.schemas import TransitionRequest
from oms.outbox.service import record_event
from oms.payments.models import Payment, Refund
from oms.shared.clock import utcnow
from oms.shared.errors import Conflict, NotFound, Unprocessable

PaymentStatus = Literal["authorized", "captured", "failed"]


class LockedOrder(Protocol):
    """What payments read of the order they settle (the orders context's row)."""

    id: uuid.UUID
    status: str
    total_amount: int
    currency: str


async def _order_for_update(
    session: AsyncSession, order_id: uuid.UUID, principal: Principal
) -> LockedOrder:
    """THE order lock (``orders.lock_order``): payments of one order are applied one at a time,
    and one at a time with every other change of the order."""
    return await orders_service.lock_order(session, order_id=order_id, principal=principal)


async def _captured_total(session: AsyncSession, order_id: uuid.UUID) -> int:
    total = await session.scalar(
        select(func.coalesce(func.sum(Payment.captured_amount), 0)).where(
            Payment.order_id == order_id
        )
    )
    return int(total or 0)


def _payment_event(payment: Payment) -> dict[str, Any]:
    return {
        "payment_id": str(payment.id),
        "order_id": str(payment.order_id),
        "method": payment.method,
        "provider": payment.provider,
        "provider_reference": payment.provider_reference,
        "amount": payment.amount,
        "captured_amount": payment.captured_amount,
        "refunded_amount": payment.refunded_amount,
        "currency": payment.currency,
        "status": payment.status,
    }


async def _settle(
    session: AsyncSession, *, order: LockedOrder, principal: Principal, request_id: str | None
) -> None:
    """Mark the order paid once captured payments cover its total."""
    captured = await _captured_total(session, order.id)
    if captured < order.total_amount:
        return
    if order.status == OrderStatus.PLACED.value:
        await orders_service.transition_order(
            session,
            order_id=order.id,
            change=TransitionRequest(
                to=OrderStatus.PAID, reason="captured payments cover the total"
            ),
            principal=principal,
            request_id=request_id,
        )
    else:
        await orders_service.mark_paid(session, order_id=order.id, actor=principal.actor)


async def _by_reference(
    session: AsyncSession, provider: str, provider_reference: str
) -> Payment | None:
    return await session.scalar(
        select(Payment)
        .where(Payment.provider == provider, Payment.provider_reference == provider_reference)
        .execution_options(populate_existing=True)
    )


async def record_payment(
    session: AsyncSession,
    *,
    order_id: uuid.UUID,
    principal: Principal,
    method: PaymentMethod,
    provider: str,
    provider_reference: str,
    amount: int,
    currency: str,
    status: PaymentStatus,
    request_id: str | None,
) -> tuple[Payment, bool]:
    """Record a payment; returns (payment, created). A repeat of the same reference is a no-op."""
    order = await _order_for_update(session, order_id, principal)
    existing = await _by_reference(session, provider, provider_reference)
    if existing is not None:
        if existing.order_id != order_id or existing.amount != amount:
            raise Conflict(
                f"payment {provider}/{provider_reference} was recorded with different details",
                code="payment_reference_conflict",
                payment_id=str(existing.id),
            )
        if status == "captured" and existing.status == "authorized":
            return await capture(
                session,
                payment_id=existing.id,
                amount=None,
                principal=principal,
                request_id=request_id,
            ), False
        return existing, False
    if currency != order.currency:
        raise Unprocessable(
            f"the payment is in {currency} but the order is in {order.currency}",
            code="currency_mismatch",
        )
    if order.status == OrderStatus.CANCELLED.value and status != "failed":
        raise Conflict("the order is cancelled", code="order_cancelled")
    captured = await _captured_total(session, order_id)
    if status != "failed" and captured + amount > order.total_amount:
        raise Conflict(
            f"{amount} would bring payments to {captured + amount}, above the order total "
            f"{order.total_amount}",
            code="overpayment",
            captured=captured,
            total=order.total_amount,
        )
    now = utcnow()
    # the reference is unique across orders, and two orders are not locked against each
    # other: the INSERT waits for a concurrent one with the same reference and skips if it won
    inserted = (
        await session.execute(
            pg_insert(Payment)
            .values(
                id=uuid.uuid4(),
                order_id=order_id,
                method=method.value,
                provider=provider,
                provider_reference=provider_reference,
                currency=currency,
                amount=amount,
                captured_amount=amount if status == "captured" else 0,
                refunded_amount=0,
                status=status,
                created_by=principal.actor,
                created_at=now,
                updated_at=now,
                captured_at=now if status == "captured" else None,
            )
            .on_conflict_do_nothing(index_elements=["provider", "provider_reference"])
            .returning(Payment.id)
        )
    ).scalar_one_or_none()
    if inserted is None:  # recorded meanwhile by another request (for another order)
        other = await _by_reference(session, provider, provider_reference)
        raise Conflict(
            f"payment {provider}/{provider_reference} was recorded with different details",
            code="payment_reference_conflict",
            payment_id=str(other.id) if other is not None else None,
        )
    payment = await session.get(Payment, inserted)
    assert payment is not None
    await record_event(
        session,
        type=f"payment.{status}",
        aggregate_type="order",
        aggregate_id=str(order_id),
        data=_payment_event(payment),
    )
    if status == "captured":
        await _settle(session, order=order, principal=principal, request_id=request_id)
    return payment, True


async def capture(
    session: AsyncSession,
    *,
    payment_id: uuid.UUID,
    amount: int | None,
    principal: Principal,
    request_id: str | None,
) -> Payment:
    """Capture an authorized payment (all of it, or a smaller amount)."""
    payment = await session.get(Payment, payment_id)
    if payment is None:
        raise NotFound(f"payment {payment_id} does not exist", code="payment_not_found")
    order = await _order_for_update(session, payment.order_id, principal)
    await session.refresh(payment, with_for_update=True)
    if payment.status != "authorized":
        raise Conflict(f"the payment is '{payment.status}', not authorized", code="not_capturable")
    amount = payment.amount if amount is None else amount
    if amount > payment.amount:
        raise Conflict(
            f"cannot capture {amount}: only {payment.amount} was authorized",
            code="capture_exceeds_authorization",
        )
    captured = await _captured_total(session, payment.order_id)
    if captured + amount > order.total_amount:
        raise Conflict(
            f"capturing {amount} would exceed the order total {order.total_amount}",
            code="overpayment",
            captured=captured,
            total=order.total_amount,
        )
    now = utcnow()
    payment.captured_amount, payment.status = amount, "captured"
    payment.captured_at = payment.updated_at = now
    await session.flush()
    await record_event(
        session,
        type="payment.captured",
        aggregate_type="order",
        aggregate_id=str(payment.order_id),
        data=_payment_event(payment),
    )
    await _settle(session, order=order, principal=principal, request_id=request_id)
    return payment


async def issue_refund(
    session: AsyncSession,
    *,
    order_id: uuid.UUID,
    amount: int,
    reason: str,
    principal: Principal,
    payment_id: uuid.UUID | None = None,
    return_id: uuid.UUID | None = None,
    provider_reference: str | None = None,
) -> list[Refund]:
    """Refund up to what was captured and not yet refunded; spread over payments if needed.

    With a ``provider_reference``, a repeat (same order, reference and amount) returns the
    refunds recorded the first time and refunds nothing more; the same reference with another
    amount is a 409 ``refund_reference_conflict``."""
    await _order_for_update(session, order_id, principal)
    if provider_reference is not None:
        earlier = list(
            (
                await session.scalars(
                    select(Refund)
                    .where(
                        Refund.order_id == order_id,
                        Refund.provider_reference == provider_reference,
                    )
                    .order_by(Refund.created_at, Refund.id)
                )
            ).all()
        )
        if earlier:
            if sum(r.amount for r in earlier) != amount:
                raise Conflict(
                    f"refund reference '{provider_reference}' was used for "
                    f"{sum(r.amount for r in earlier)}, not {amount}",
                    code="refund_reference_conflict",
                )
            return earlier
    stmt = (
        select(Payment)
        .where(Payment.order_id == order_id, Payment.captured_amount > Payment.refunded_amount)
        .order_by(Payment.created_at)
        .with_for_update()
    )
    if payment_id is not None:
        stmt = stmt.where(Payment.id == payment_id)
    payments = list((await session.scalars(stmt)).all())
    refundable = sum(p.captured_amount - p.refunded_amount for p in payments)
    if amount > refundable:
        raise Conflict(
            f"cannot refund {amount}: only {refundable} is captured and not yet refunded",
            code="refund_exceeds_captured",
            refundable=refundable,
        )
    refunds: list[Refund] = []
    remaining = amount
    now = utcnow()
    for payment in payments:
        if remaining == 0:
            break
        part = min(remaining, payment.captured_amount - payment.refunded_amount)
        payment.refunded_amount += part
        payment.status = (
            "refunded"
            if payment.refunded_amount == payment.captured_amount
            else "partially_refunded"
        )
        payment.updated_at = now
        refund = Refund(
            id=uuid.uuid4(),
            order_id=order_id,
            payment_id=payment.id,
            return_id=return_id,
            amount=part,
            currency=payment.currency,
            reason=reason,
            provider_reference=provider_reference,
            created_by=principal.actor,
            created_at=now,
        )
        session.add(refund)
        refunds.append(refund)
        remaining -= part
    await session.flush()
    for refund in refunds:
        await record_event(
            session,
            type="refund.issued",
            aggregate_type="order",
            aggregate_id=str(order_id),
            data={
                "refund_id": str(refund.id),
                "order_id": str(order_id),
                "payment_id": str(refund.payment_id),
                "return_id": str(return_id) if return_id else None,
                "amount": refund.amount,
                "currency": refund.currency,
                "reason": reason,
            },
        )
    return refunds


async def record_provider_refund(
    session: AsyncSession,
    *,
    order_id: uuid.UUID,
    amount: int,
    currency: str,
    reason: str,
    provider_reference: str,
    principal: Principal,
) -> tuple[list[Refund], bool]:
    """A refund reported by a payment provider; a repeat of its reference changes nothing."""
    order = await _order_for_update(session, order_id, principal)
    existing = (
        await session.scalars(
            select(Refund).where(
                Refund.order_id == order_id, Refund.provider_reference == provider_reference
            )
        )
    ).all()
    if existing:
        return list(existing), False
    if currency != order.currency:
        raise Unprocessable(
            f"the refund is in {currency} but the order is in {order.currency}",
            code="currency_mismatch",
        )
    refunds = await issue_refund(
        session,
        order_id=order_id,
        amount=amount,
        reason=reason,
        principal=principal,
        provider_reference=provider_reference,
    )
    return refunds, True


async def record_cash_on_delivery(
    session: AsyncSession, *, order_id: uuid.UUID, total: int, currency: str, actor: str
) -> None:
    """Cash on delivery is captured at delivery: record the cash payment for the balance.
    The caller holds the order lock."""
    captured = await _captured_total(session, order_id)
    balance = total - captured
    if balance <= 0:
        return
    now = utcnow()
    stmt = (
        pg_insert(Payment)
        .values(
            id=uuid.uuid4(),
            order_id=order_id,
            method=PaymentMethod.CASH_ON_DELIVERY.value,
            provider="cash",
            provider_reference=f"cod:{order_id}",
            currency=currency,
            amount=balance,
            captured_amount=balance,
            refunded_amount=0,
            status="captured",
            created_by=actor,
            created_at=now,
            updated_at=now,
            captured_at=now,
        )
        .on_conflict_do_nothing(index_elements=["provider", "provider_reference"])
        .returning(Payment.id)
    )
    payment_id = (await session.execute(stmt)).scalar_one_or_none()
    if payment_id is not None:
        payment = await session.get(Payment, payment_id)
        assert payment is not None
        await record_event(
            session,
            type="payment.captured",
            aggregate_type="order",
            aggregate_id=str(order_id),
            data=_payment_event(payment),
        )


async def payments_of(
    session: AsyncSession, *, order_id: uuid.UUID, principal: Principal
) -> tuple[int, list[Payment], list[Refund]]:
    """An order's total, and its payments and refunds, oldest first."""
    order = await orders_service.get_order(session, order_id=order_id, principal=principal)
    payments = (
        await session.scalars(
            select(Payment).where(Payment.order_id == order_id).order_by(Payment.created_at)
        )
    ).all()
    refunds = (
        await session.scalars(
            select(Refund).where(Refund.order_id == order_id).order_by(Refund.created_at)
        )
    ).all()
    return order.total_amount, list(payments), list(refunds)
