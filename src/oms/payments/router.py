"""HTTP routes for payments and refunds."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Response

from oms.auth.service import Principal
from oms.deps import Session, require
from oms.payments import service
from oms.payments.schemas import (
    CaptureRequest,
    PaymentCreate,
    PaymentRead,
    PaymentsRead,
    RefundCreate,
    RefundRead,
)
from oms.shared.logging import request_id_var
from oms.shared.openapi import AUTH_PROBLEMS, problems
from oms.shared.roles import Role

router = APIRouter(prefix="/v1", tags=["payments"])
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
Reader = Annotated[Principal, Depends(require(Role.STOREFRONT, Role.FULFILLMENT))]


@router.post(
    "/orders/{order_id}/payments",
    status_code=201,
    response_model=PaymentRead,
    summary="Record a payment (authorized, captured or failed)",
    description="Idempotent by (provider, provider_reference): a repeat returns the payment with "
    "200. When captured payments cover the total the order becomes `paid` (or, past `placed`, "
    "gets `paid_at`). Errors: 422 `currency_mismatch`, 409 `overpayment`, 409 "
    "`payment_reference_conflict`.",
    responses={
        200: {
            "model": PaymentRead,
            "description": "A repeat of a recorded (provider, provider_reference): the payment "
            "as recorded (nothing changes, or an authorized payment repeated as `captured` is "
            "captured)",
        },
        **problems(404, 409, *AUTH_PROBLEMS),
    },
)
async def create_payment(
    order_id: uuid.UUID, body: PaymentCreate, response: Response, session: Session, principal: Admin
) -> PaymentRead:
    payment, created = await service.record_payment(
        session,
        order_id=order_id,
        principal=principal,
        method=body.method,
        provider=body.provider,
        provider_reference=body.provider_reference,
        amount=body.amount,
        currency=body.currency,
        status=body.status,
        request_id=request_id_var.get(),
    )
    if not created:
        response.status_code = 200
    return PaymentRead.model_validate(payment)


@router.post(
    "/payments/{payment_id}/capture",
    response_model=PaymentRead,
    summary="Capture an authorized payment",
    responses=problems(404, 409, *AUTH_PROBLEMS),
)
async def capture(
    payment_id: uuid.UUID, body: CaptureRequest, session: Session, principal: Admin
) -> PaymentRead:
    payment = await service.capture(
        session,
        payment_id=payment_id,
        amount=body.amount,
        principal=principal,
        request_id=request_id_var.get(),
    )
    return PaymentRead.model_validate(payment)


@router.post(
    "/orders/{order_id}/refunds",
    status_code=201,
    response_model=list[RefundRead],
    summary="Refund part or all of what was captured",
    description="Never more than captured minus refunded (409 `refund_exceeds_captured`). "
    "Independent of returns: a refund needs no return and a return needs no refund.",
    responses=problems(404, 409, *AUTH_PROBLEMS),
)
async def refund(
    order_id: uuid.UUID, body: RefundCreate, session: Session, principal: Admin
) -> list[RefundRead]:
    refunds = await service.issue_refund(
        session,
        order_id=order_id,
        amount=body.amount,
        reason=body.reason,
        principal=principal,
        payment_id=body.payment_id,
        provider_reference=body.provider_reference,
    )
    return [RefundRead.model_validate(r) for r in refunds]


@router.get(
    "/orders/{order_id}/payments",
    response_model=PaymentsRead,
    summary="An order's payments, refunds and balance",
    responses=problems(404, *AUTH_PROBLEMS),
)
async def list_payments(order_id: uuid.UUID, session: Session, principal: Reader) -> PaymentsRead:
    total, payments, refunds = await service.payments_of(
        session, order_id=order_id, principal=principal
    )
    captured = sum(p.captured_amount for p in payments)
    return PaymentsRead(
        order_total=total,
        captured=captured,
        refunded=sum(r.amount for r in refunds),
        balance_due=max(0, total - captured),
        payments=[PaymentRead.model_validate(p) for p in payments],
        refunds=[RefundRead.model_validate(r) for r in refunds],
    )
