"""Transfers across contexts: a receipt books units in at the destination (``stores``,
through the ``inventory`` ledger), then the orders waiting there for those SKUs (backorders)
are filled, as after any stock arrival (``flows.backorders``: committed first, then each
order in a transaction of its own)."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from oms.auth.service import Principal
from oms.flows import backorders
from oms.inventory import service as inventory_service
from oms.stores import service as stores_service


async def receive(
    session: AsyncSession,
    *,
    transfer_id: uuid.UUID,
    lines: list[inventory_service.Units],
    close: bool,
    principal: Principal,
    request_id: str | None,
) -> tuple[stores_service.TransferView, int]:
    """Receive units of a transfer, commit, then fill the backorders of the received SKUs;
    the transfer as received and the backordered units filled."""
    view = await stores_service.receive_transfer(
        session, transfer_id=transfer_id, lines=lines, close=close, principal=principal
    )
    skus = sorted({u.sku for u in lines if u.quantity > 0})
    filled = await backorders.fill_after_stock_change(
        session,
        skus=skus,
        actor=principal.actor,
        actor_role=principal.role.value,
        request_id=request_id,
    )
    return view, filled
