"""Order edits and partial cancellation, across contexts: the order changes (``orders.edits``,
under THE order lock), and the money is weighed against it (``payments``): what is still due,
or what was paid beyond the new total and is to be refunded (refunded here only when the
request asks). An edit's Idempotency-Key is claimed in the orders' idempotency store under its
own scope, and the response stored with it, in the request's transaction."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from oms.auth.service import Principal
from oms.orders import service as orders_service
from oms.orders.edit_schemas import CancelLinesRequest, OrderChangeRead, OrderEditRequest
from oms.payments import service as payments_service
from oms.shared.errors import Forbidden
from oms.shared.roles import Role

EDIT_SCOPE = "order-edit:"
"""Idempotency-Key scope prefix of edits (followed by the API key's id)."""


@dataclass(frozen=True, slots=True)
class Idempotency:
    key: str
    ttl: timedelta


async def _balance(
    session: AsyncSession, *, order_id: uuid.UUID, total: int, principal: Principal
) -> dict[str, int]:
    _, payments, _ = await payments_service.payments_of(
        session, order_id=order_id, principal=principal
    )
    captured = sum(p.captured_amount for p in payments)
    refunded = sum(p.refunded_amount for p in payments)
    kept = captured - refunded
    return {
        "total": total,
        "captured": captured,
        "refunded": refunded,
        "amount_due": max(0, total - kept),
        "refund_due": max(0, kept - total),
        "refunded_now": 0,
    }


async def _read(
    session: AsyncSession,
    *,
    result: orders_service.EditResult,
    principal: Principal,
    dry_run: bool,
) -> dict[str, Any]:
    balance = await _balance(
        session,
        order_id=result.order_id,
        total=result.totals_after["total"],
        principal=principal,
    )
    body = OrderChangeRead.model_validate(
        {
            "dry_run": dry_run,
            "order_id": result.order_id,
            "status": result.status,
            "version_before": result.version_before,
            "version_after": result.version_after,
            "lines": result.lines,
            "totals_before": result.totals_before,
            "totals_after": result.totals_after,
            "address_before": result.address_before,
            "address_after": result.address_after,
            "shipments_cancelled": result.shipments_cancelled,
            "shipments_planned": result.shipments_planned,
            "routing": result.routing,
            "stock": result.stock,
            "balance": balance,
            "order_cancelled": result.order_cancelled,
        }
    )
    return body.model_dump(mode="json")


def _fingerprint(order_id: uuid.UUID, edit: OrderEditRequest) -> str:
    body = {"order_id": str(order_id), **edit.model_dump(mode="json")}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _spec(edit: OrderEditRequest) -> orders_service.EditSpec:
    return orders_service.EditSpec(
        quantities=edit.quantities(),
        add=tuple(edit.add_lines),
        address=edit.shipping_address,
    )


async def edit_order(
    session: AsyncSession,
    *,
    order_id: uuid.UUID,
    edit: OrderEditRequest,
    principal: Principal,
    request_id: str | None,
    dry_run: bool,
    idempotency: Idempotency | None = None,
) -> tuple[int, dict[str, Any], bool]:
    """Preview (``dry_run``) or apply an edit: (status, response body, replayed)."""
    scope = f"{EDIT_SCOPE}{principal.key_id}"
    if idempotency is not None and not dry_run:
        stored = await orders_service.claim_idempotency_key(
            session,
            scope=scope,
            key=idempotency.key,
            fingerprint=_fingerprint(order_id, edit),
            ttl=idempotency.ttl,
        )
        if stored is not None:
            return stored.status, stored.body, True
    result = await orders_service.edit_order(
        session,
        order_id=order_id,
        spec=_spec(edit),
        principal=principal,
        expected_version=edit.expected_version,
        reason=edit.reason,
        request_id=request_id,
        dry_run=dry_run,
    )
    body = await _read(session, result=result, principal=principal, dry_run=dry_run)
    if idempotency is not None and not dry_run:
        await orders_service.store_response(
            session, scope=scope, key=idempotency.key, status=200, body=body
        )
    return 200, body, False


async def cancel_lines(
    session: AsyncSession,
    *,
    order_id: uuid.UUID,
    request: CancelLinesRequest,
    principal: Principal,
    request_id: str | None,
) -> dict[str, Any]:
    """Cancel units of lines; refund what was paid beyond the new total if ``request.refund``."""
    if request.refund and principal.role is not Role.ADMIN:
        raise Forbidden("only admin keys may refund", code="role_not_allowed")
    result = await orders_service.cancel_lines(
        session,
        order_id=order_id,
        cancel={ln.line_id: ln.quantity for ln in request.lines},
        principal=principal,
        expected_version=request.expected_version,
        reason=request.reason,
        request_id=request_id,
    )
    body = await _read(session, result=result, principal=principal, dry_run=False)
    due = body["balance"]["refund_due"]
    if request.refund and due > 0:
        await payments_service.issue_refund(
            session,
            order_id=order_id,
            amount=due,
            reason=request.reason or "lines cancelled",
            principal=principal,
        )
        body = await _read(session, result=result, principal=principal, dry_run=False)
        body["balance"]["refunded_now"] = due
    return body
