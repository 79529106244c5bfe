"""Transfers of stock between locations (warehouses and stores): draft → shipped → received,
or cancelled while a draft.

Shipping takes the units out of the source's on hand (ledger ``transfer_out``; never units
reserved for open orders) and records them as incoming at the destination with the expected
date (``incoming_supply``): in transit until received. Receipts may be partial; each books the
arrived units in (``transfer_in``); units beyond what was shipped are their own movement
(``transfer_over``); closing a receipt with units missing books them in and out again as a
``transfer_short`` movement, so the ledger shows the loss at the destination. A transfer row is
locked (``FOR UPDATE``) before its stock rows, which are locked in the fixed order.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from oms.auth.service import Principal, may_see_warehouse, visible_warehouses
from oms.inventory import service as inventory_service
from oms.outbox.service import record_event
from oms.shared.clock import utcnow
from oms.shared.errors import Conflict, NotFound, Unprocessable
from oms.stores.models import Transfer, TransferLine


@dataclass(frozen=True, slots=True)
class TransferView:
    transfer: Transfer
    lines: list[TransferLine]
    from_code: str
    to_code: str
    for_order: tuple[inventory_service.ReservedOut, ...] = ()
    """A transfer to fulfil: the order's units this step moved (shipped out of the source's
    reservation, or arrived at the destination for the order)."""


def in_transit(line: TransferLine, status: str) -> int:
    """Units of a line that left the source and have not arrived (nor been written off)."""
    if status != "shipped":
        return 0
    return line.quantity - (line.received - line.over) - line.short


def transfer_payload(view: TransferView) -> dict[str, Any]:
    """The data carried by ``transfer.*`` events."""
    t = view.transfer
    return {
        "transfer_id": str(t.id),
        "from_warehouse": view.from_code,
        "to_warehouse": view.to_code,
        "status": t.status,
        "expected_on": t.expected_on.isoformat() if t.expected_on else None,
        "lines": [
            {
                "sku": ln.sku,
                "quantity": ln.quantity,
                "received": ln.received,
                "short": ln.short,
                "over": ln.over,
                "in_transit": in_transit(ln, t.status),
            }
            for ln in view.lines
        ],
        "order_id": str(t.order_id) if t.order_id else None,
        "shipment_id": str(t.shipment_id) if t.shipment_id else None,
    }


def _not_found(transfer_id: uuid.UUID) -> NotFound:
    return NotFound(f"transfer {transfer_id} does not exist", code="transfer_not_found")


async def _view(session: AsyncSession, transfer: Transfer) -> TransferView:
    lines = list(
        (
            await session.scalars(
                select(TransferLine)
                .where(TransferLine.transfer_id == transfer.id)
                .order_by(TransferLine.line_no)
                .execution_options(populate_existing=True)
            )
        ).all()
    )
    codes = await inventory_service.warehouse_codes(
        session, ids=[transfer.from_warehouse_id, transfer.to_warehouse_id]
    )
    return TransferView(
        transfer, lines, codes[transfer.from_warehouse_id], codes[transfer.to_warehouse_id]
    )


def _visible(principal: Principal, t: Transfer) -> bool:
    return may_see_warehouse(principal, t.from_warehouse_id) or may_see_warehouse(
        principal, t.to_warehouse_id
    )


async def _locked(
    session: AsyncSession, *, transfer_id: uuid.UUID, principal: Principal, end: str
) -> Transfer:
    """The transfer row, locked; 404 unless ``principal`` works at its ``end`` (source or
    destination)."""
    t = await session.scalar(
        select(Transfer)
        .where(Transfer.id == transfer_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if t is None or not _visible(principal, t):
        raise _not_found(transfer_id)
    at = t.from_warehouse_id if end == "from" else t.to_warehouse_id
    if not may_see_warehouse(principal, at):
        raise NotFound(
            f"transfer {transfer_id} is {end} a location this key does not work at",
            code="transfer_not_found",
        )
    return t


def _refuse(t: Transfer, action: str, allowed: tuple[str, ...]) -> None:
    if t.status not in allowed:
        raise Conflict(
            f"a {t.status} transfer cannot be {action}",
            code="illegal_transfer_transition",
            current_status=t.status,
        )


async def create_transfer(
    session: AsyncSession,
    *,
    from_code: str,
    to_code: str,
    lines: list[inventory_service.Units],
    expected_on: date | None,
    reference: str | None,
    note: str | None,
    principal: Principal,
) -> TransferView:
    """A draft transfer (nothing moves yet)."""
    if from_code == to_code:
        raise Unprocessable("a transfer goes between two locations", code="same_location")
    skus = [ln.sku for ln in lines]
    if len(set(skus)) != len(skus):
        raise Unprocessable("each SKU once per transfer", code="duplicate_sku")
    source = await inventory_service.get_warehouse(session, code=from_code)
    dest = await inventory_service.get_warehouse(session, code=to_code)
    if not may_see_warehouse(principal, source.id):
        raise NotFound(f"warehouse '{from_code}' does not exist", code="warehouse_not_found")
    now = utcnow()
    t = Transfer(
        id=uuid.uuid4(),
        from_warehouse_id=source.id,
        to_warehouse_id=dest.id,
        status="draft",
        expected_on=expected_on,
        reference=reference,
        note=note,
        created_by=principal.actor,
        created_at=now,
        updated_at=now,
    )
    session.add(t)
    await session.flush()
    for i, ln in enumerate(lines, start=1):
        session.add(
            TransferLine(
                id=uuid.uuid4(),
                transfer_id=t.id,
                line_no=i,
                sku=ln.sku,
                quantity=ln.quantity,
                received=0,
                short=0,
                over=0,
            )
        )
    await session.flush()
    return await _view(session, t)


async def ship_transfer(
    session: AsyncSession,
    *,
    transfer_id: uuid.UUID,
    expected_on: date | None,
    principal: Principal,
) -> TransferView:
    """Draft → shipped: the units leave the source (all or nothing: 409 ``insufficient_stock``)
    and are expected at the destination on ``expected_on`` (default: the transfer's, else
    today)."""
    t = await _locked(session, transfer_id=transfer_id, principal=principal, end="from")
    _refuse(t, "shipped", ("draft",))
    view = await _view(session, t)
    ref: dict[str, Any] = {
        "reference_type": "transfer",
        "reference_id": str(t.id),
        "actor": principal.actor,
    }
    moved: list[inventory_service.ReservedOut] = []
    if t.order_id is not None and t.shipment_id is not None:
        # a transfer to fulfil: the units reserved at the source for the pickup shipment leave
        # (every row of the transfer locked first, in the fixed order)
        moved = await inventory_service.take_out_reserved(
            session,
            warehouse_id=t.from_warehouse_id,
            order_id=t.order_id,
            shipment_id=t.shipment_id,
            skus=[ln.sku for ln in view.lines],
            movement_type="transfer_out",
            **ref,
        )
    reserved: dict[str, int] = {}
    for m in moved:
        reserved[m.sku] = reserved.get(m.sku, 0) + m.quantity
    for ln in view.lines:  # units no longer reserved for the order (edited) travel as any
        ln.for_order = min(ln.for_order, reserved.get(ln.sku, 0))
    ordinary = [
        inventory_service.Units(ln.sku, ln.quantity - reserved.get(ln.sku, 0))
        for ln in view.lines
        if ln.quantity > reserved.get(ln.sku, 0)
    ]
    if ordinary:
        await inventory_service.take_out(
            session,
            warehouse_id=t.from_warehouse_id,
            units=ordinary,
            movement_type="transfer_out",
            **ref,
        )
    now = utcnow()
    t.expected_on = expected_on or t.expected_on or now.date()
    for ln in view.lines:
        if ln.quantity > ln.for_order:  # the order's units are not incoming for sale
            ln.incoming_id = await inventory_service.expect_incoming(
                session,
                warehouse_id=t.to_warehouse_id,
                sku=ln.sku,
                quantity=ln.quantity - ln.for_order,
                expected_on=t.expected_on,
                reference=f"transfer:{t.id}",
            )
    t.status, t.shipped_at, t.updated_at = "shipped", now, now
    await session.flush()
    await record_event(
        session,
        type="transfer.shipped",
        aggregate_type="transfer",
        aggregate_id=str(t.id),
        data=transfer_payload(view),
    )
    return dataclasses.replace(view, for_order=tuple(moved))


async def receive_transfer(
    session: AsyncSession,
    *,
    transfer_id: uuid.UUID,
    lines: list[inventory_service.Units],
    close: bool,
    principal: Principal,
) -> TransferView:
    """Book arrived units in at the destination (partial receipts allowed). Units beyond the
    shipped quantity are recorded as ``transfer_over``; with ``close`` (or once every unit is
    accounted for) the transfer is received, the units still missing booked as
    ``transfer_short``."""
    if not lines and not close:
        raise Unprocessable("a receipt names units that arrived, or closes", code="empty_receipt")
    t = await _locked(session, transfer_id=transfer_id, principal=principal, end="to")
    _refuse(t, "received", ("shipped",))
    view = await _view(session, t)
    by_sku = {ln.sku: ln for ln in view.lines}
    unknown = [u.sku for u in lines if u.sku not in by_sku]
    if unknown:
        raise Unprocessable(
            f"not on this transfer: {', '.join(unknown)}", code="transfer_sku_unknown"
        )
    ref = {"reference_type": "transfer", "reference_id": str(t.id), "actor": principal.actor}
    good: list[inventory_service.Units] = []
    over: list[inventory_service.Units] = []
    handed: list[inventory_service.ReservedOut] = []
    for u in lines:
        ln = by_sku[u.sku]
        expected = in_transit(ln, t.status)
        ok, extra = min(u.quantity, expected), max(0, u.quantity - expected)
        ln.received += u.quantity
        ln.over += extra
        if ok:
            good.append(inventory_service.Units(u.sku, ok))
        if extra:
            over.append(inventory_service.Units(u.sku, extra))
        to_order = min(ok, ln.for_order)
        if to_order:  # a transfer to fulfil: these arrived for the order (reserved by the flow)
            ln.for_order -= to_order
            handed.append(inventory_service.ReservedOut(uuid.UUID(int=0), u.sku, to_order))
    if good:
        await inventory_service.put_in(
            session, warehouse_id=t.to_warehouse_id, units=good, movement_type="transfer_in", **ref
        )
    if over:
        await inventory_service.put_in(
            session,
            warehouse_id=t.to_warehouse_id,
            units=over,
            movement_type="transfer_over",
            reason="more units arrived than were shipped",
            **ref,
        )
    missing = [ln for ln in view.lines if in_transit(ln, t.status) > 0]
    if close and missing:
        short = [inventory_service.Units(ln.sku, in_transit(ln, t.status)) for ln in missing]
        # booked in as arrived, then out as lost: the loss is its own movement at the destination
        await inventory_service.put_in(
            session, warehouse_id=t.to_warehouse_id, units=short, movement_type="transfer_in", **ref
        )
        await inventory_service.take_out(
            session,
            warehouse_id=t.to_warehouse_id,
            units=short,
            movement_type="transfer_short",
            partial=True,
            **ref,
        )
        for ln in missing:
            ln.short += in_transit(ln, t.status)
            ln.for_order = 0  # what never came is the order's backorder now
    for ln in view.lines:
        if ln.incoming_id is not None:
            await inventory_service.settle_incoming(
                session, supply_id=ln.incoming_id, remaining=in_transit(ln, t.status)
            )
    now = utcnow()
    if all(in_transit(ln, t.status) == 0 for ln in view.lines):
        t.status, t.received_at = "received", now
    t.updated_at = now
    await session.flush()
    await record_event(
        session,
        type="transfer.received",
        aggregate_type="transfer",
        aggregate_id=str(t.id),
        data=transfer_payload(view),
    )
    return dataclasses.replace(view, for_order=tuple(handed))


async def cancel_transfer(
    session: AsyncSession, *, transfer_id: uuid.UUID, principal: Principal
) -> TransferView:
    """A draft transfer is cancelled (nothing had moved)."""
    t = await _locked(session, transfer_id=transfer_id, principal=principal, end="from")
    _refuse(t, "cancelled", ("draft",))
    if t.order_id is not None:
        raise Conflict(
            f"this transfer brings the units of order {t.order_id} to its pickup store: it is "
            "cancelled with the order",
            code="transfer_fulfils_order",
            current_status=t.status,
            order_id=str(t.order_id),
        )
    return await _cancel(session, t)


async def _cancel(session: AsyncSession, t: Transfer) -> TransferView:
    now = utcnow()
    t.status, t.cancelled_at, t.updated_at = "cancelled", now, now
    await session.flush()
    view = await _view(session, t)
    await record_event(
        session,
        type="transfer.cancelled",
        aggregate_type="transfer",
        aggregate_id=str(t.id),
        data=transfer_payload(view),
    )
    return view


async def get_transfer(
    session: AsyncSession, *, transfer_id: uuid.UUID, principal: Principal
) -> TransferView:
    t = await session.get(Transfer, transfer_id)
    if t is None or not _visible(principal, t):
        raise _not_found(transfer_id)
    return await _view(session, t)


async def list_transfers(
    session: AsyncSession,
    *,
    principal: Principal,
    warehouse_code: str | None,
    status: str | None,
    limit: int,
) -> list[TransferView]:
    """Newest first; only those with an end the key works at."""
    stmt = select(Transfer).order_by(Transfer.created_at.desc(), Transfer.id).limit(limit)
    scope = visible_warehouses(principal)
    if scope is not None:
        ids = list(scope)
        stmt = stmt.where(
            or_(Transfer.from_warehouse_id.in_(ids), Transfer.to_warehouse_id.in_(ids))
        )
    if warehouse_code is not None:
        wh = await inventory_service.get_warehouse(session, code=warehouse_code)
        stmt = stmt.where(
            or_(Transfer.from_warehouse_id == wh.id, Transfer.to_warehouse_id == wh.id)
        )
    if status is not None:
        stmt = stmt.where(Transfer.status == status)
    return [await _view(session, t) for t in (await session.scalars(stmt)).all()]


async def order_cancelled(session: AsyncSession, *, order_id: uuid.UUID) -> int:
    """The order a transfer fulfils is being cancelled (under its lock, before its
    reservations are released: the transfer rows are rows the order owns, locked before any
    stock row): a draft transfer is cancelled (``transfer.cancelled``; the units reserved for it
    at the source are released with the order's); units already shipped arrive at the
    destination as ordinary stock (incoming there from now). Returns how many transfers were
    cancelled."""
    linked = list(
        (
            await session.scalars(
                select(Transfer)
                .where(Transfer.order_id == order_id, Transfer.status.in_(("draft", "shipped")))
                .order_by(Transfer.id)
                .with_for_update()
                .execution_options(populate_existing=True)
            )
        ).all()
    )
    cancelled = 0
    for t in linked:
        if t.status == "draft":
            await _cancel(session, t)
            cancelled += 1
            continue
        view = await _view(session, t)
        for ln in view.lines:
            if ln.for_order and ln.incoming_id is None:
                ln.incoming_id = await inventory_service.expect_incoming(
                    session,
                    warehouse_id=t.to_warehouse_id,
                    sku=ln.sku,
                    quantity=ln.for_order,
                    expected_on=t.expected_on or utcnow().date(),
                    reference=f"transfer:{t.id}",
                )
            ln.for_order = 0
        t.updated_at = utcnow()
    await session.flush()
    return cancelled
