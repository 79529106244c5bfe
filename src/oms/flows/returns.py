"""A return's receipt, across contexts: the return records what came back (``returns``), the
restocked units go back on the shelves through the ledger (``inventory``), the refund is issued
(``payments``), and the order becomes ``returned`` once every delivered unit is back
(``orders``). All of it in the request's transaction, under the order lock the return takes."""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from oms.auth.service import Principal
from oms.flows import backorders
from oms.inventory import service as inventory_service
from oms.inventory.domain import stock_lock_key
from oms.orders import service as orders_service
from oms.orders.domain import OrderStatus
from oms.orders.schemas import TransitionRequest
from oms.payments import service as payments_service
from oms.returns import service as returns_service
from oms.returns.models import Return
from oms.shared.roles import Role


async def receive_return(
    session: AsyncSession,
    *,
    return_id: uuid.UUID,
    receipts: list[returns_service.LineReceipt],
    refund: dict[str, Any] | None,
    principal: Principal,
    request_id: str | None,
) -> Return:
    """Record the receipt, restock, refund (when asked) and close the loop on the order."""
    rma, restocks = await returns_service.receive(
        session, return_id=return_id, receipts=receipts, principal=principal
    )
    # in the fixed stock lock order: a receipt never waits for a row while holding a later one
    for r in sorted(restocks, key=lambda r: stock_lock_key(r.warehouse_id, r.sku)):
        await inventory_service.restock(
            session,
            warehouse_id=r.warehouse_id,
            sku=r.sku,
            quantity=r.quantity,
            reference_type="return",
            reference_id=str(rma.id),
            actor=principal.actor,
        )
    if refund:
        await payments_service.issue_refund(
            session,
            order_id=rma.order_id,
            amount=refund["amount"],
            reason=refund["reason"],
            principal=principal,
            return_id=rma.id,
        )
    if await returns_service.everything_back(session, order_id=rma.order_id):
        # a consequence of the receipt, not a separate decision: applied with admin rights
        system = replace(principal, role=Role.ADMIN, channel=None)
        await orders_service.transition_order(
            session,
            order_id=rma.order_id,
            change=TransitionRequest(
                to=OrderStatus.RETURNED, reason="every delivered unit came back"
            ),
            principal=system,
            request_id=request_id,
        )
    if restocks:  # last: commits the receipt, then fills orders waiting for those SKUs
        await backorders.fill_after_stock_change(
            session,
            skus={r.sku for r in restocks},
            actor=principal.actor,
            actor_role=principal.role.value,
            request_id=request_id,
        )
    return rma
