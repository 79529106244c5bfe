"""The purchasing context's public service: suppliers, purchase orders (create, send, receive,
cancel) and reordering (policies, suggestions, automatic drafts). Every function takes the
request's session and never commits.

Locks: a purchase order's row is locked (``FOR UPDATE``) before anything about it is read or
changed (:func:`lock_purchase_order`); a receipt then changes stock through the inventory
ledger (``inventory.adjust_stock``, a ``receipt`` movement per line), stock rows in the fixed
order (warehouse, SKU). So two receipts of one order run one after the other, each against the
quantities the previous one left: a line is never received beyond its quantity.

Sent orders are incoming supply: each line's units still to come are an expected receipt
(``incoming_supply``, reference ``PO-<number>``) until received or cancelled, so availability's
``incoming``, the replenishment view and delivery promises of backorders count them.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from oms.inventory import service as inventory_service
from oms.outbox.service import record_event
from oms.purchasing import domain
from oms.purchasing.domain import POAction, POStatus
from oms.purchasing.models import (
    PurchaseOrder,
    PurchaseOrderLine,
    PurchaseOrderReceipt,
    ReorderPolicy,
    Supplier,
)
from oms.shared.clock import utcnow
from oms.shared.errors import Conflict, NotFound, Unprocessable

# ---- suppliers ------------------------------------------------------------------------------


async def create_supplier(session: AsyncSession, *, values: dict[str, Any]) -> Supplier:
    """Add a supplier; its code must be new (409 ``supplier_exists``)."""
    now = utcnow()
    stmt = (
        insert(Supplier)
        .values(id=uuid.uuid4(), active=True, created_at=now, updated_at=now, **values)
        .on_conflict_do_nothing(index_elements=["code"])
        .returning(Supplier.id)
    )
    if (await session.execute(stmt)).first() is None:
        raise Conflict(f"supplier '{values['code']}' already exists", code="supplier_exists")
    return await get_supplier(session, code=values["code"])


async def get_supplier(session: AsyncSession, *, code: str) -> Supplier:
    supplier = await session.scalar(
        select(Supplier).where(Supplier.code == code).execution_options(populate_existing=True)
    )
    if supplier is None:
        raise NotFound(f"supplier '{code}' does not exist", code="supplier_not_found")
    return supplier


async def list_suppliers(session: AsyncSession) -> list[Supplier]:
    return list((await session.scalars(select(Supplier).order_by(Supplier.code))).all())


async def update_supplier(session: AsyncSession, *, code: str, values: dict[str, Any]) -> Supplier:
    """Change a supplier's terms (lead time, minimum order, pack size, name, active)."""
    supplier = await get_supplier(session, code=code)
    for key, value in values.items():
        setattr(supplier, key, value)
    supplier.updated_at = utcnow()
    await session.flush()
    return supplier


# ---- purchase orders ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PurchaseOrderView:
    order: PurchaseOrder
    supplier_code: str
    warehouse_code: str
    lines: list[PurchaseOrderLine]
    receipts: list[PurchaseOrderReceipt]


def _not_found(po_id: uuid.UUID) -> NotFound:
    return NotFound(f"purchase order {po_id} does not exist", code="purchase_order_not_found")


def _illegal(exc: domain.IllegalPOAction) -> Conflict:
    return Conflict(
        str(exc),
        code="illegal_purchase_order_transition",
        current_status=exc.status.value,
        requested_status=exc.action.value,
        allowed_transitions=exc.allowed,
    )


async def _views(session: AsyncSession, orders: Sequence[PurchaseOrder]) -> list[PurchaseOrderView]:
    """The orders with their lines, receipts, supplier and warehouse codes (four queries)."""
    if not orders:
        return []
    ids = [po.id for po in orders]
    lines: dict[uuid.UUID, list[PurchaseOrderLine]] = defaultdict(list)
    for line in (
        await session.scalars(
            select(PurchaseOrderLine)
            .where(PurchaseOrderLine.purchase_order_id.in_(ids))
            .order_by(PurchaseOrderLine.purchase_order_id, PurchaseOrderLine.line_no)
            .execution_options(populate_existing=True)
        )
    ).all():
        lines[line.purchase_order_id].append(line)
    receipts: dict[uuid.UUID, list[PurchaseOrderReceipt]] = defaultdict(list)
    for receipt in (
        await session.scalars(
            select(PurchaseOrderReceipt)
            .where(PurchaseOrderReceipt.purchase_order_id.in_(ids))
            .order_by(PurchaseOrderReceipt.created_at, PurchaseOrderReceipt.id)
        )
    ).all():
        receipts[receipt.purchase_order_id].append(receipt)
    suppliers = dict(
        (
            await session.execute(
                select(Supplier.id, Supplier.code).where(
                    Supplier.id.in_({po.supplier_id for po in orders})
                )
            )
        ).all()
    )
    codes = await inventory_service.warehouse_codes(session, ids=[po.warehouse_id for po in orders])
    return [
        PurchaseOrderView(
            po,
            suppliers[po.supplier_id],
            codes[po.warehouse_id],
            lines[po.id],
            receipts[po.id],
        )
        for po in orders
    ]


async def _view(session: AsyncSession, po: PurchaseOrder) -> PurchaseOrderView:
    return (await _views(session, [po]))[0]


def payload(view: PurchaseOrderView, **extra: Any) -> dict[str, Any]:
    """The data carried by ``purchase_order.*`` events."""
    po = view.order
    return {
        "purchase_order_id": str(po.id),
        "number": po.number,
        "status": po.status,
        "supplier": view.supplier_code,
        "warehouse": view.warehouse_code,
        "expected_on": None if po.expected_on is None else po.expected_on.isoformat(),
        "lines": [
            {"sku": ln.sku, "quantity": ln.quantity, "received": ln.received} for ln in view.lines
        ],
        **extra,
    }


async def _announce(
    session: AsyncSession, type_: str, view: PurchaseOrderView, **extra: Any
) -> None:
    await record_event(
        session,
        type=type_,
        aggregate_type="purchase_order",
        aggregate_id=str(view.order.id),
        data=payload(view, **extra),
    )


async def create_purchase_order(
    session: AsyncSession,
    *,
    supplier_code: str,
    warehouse_code: str,
    lines: Sequence[tuple[str, int]],
    reference: str | None,
    notes: str | None,
    actor: str,
) -> PurchaseOrderView:
    """A draft purchase order. Each line's quantity must be orderable from the supplier (at
    least its minimum order, whole packs; 422 ``invalid_quantity``); a SKU appears once."""
    supplier = await get_supplier(session, code=supplier_code)
    warehouse = await inventory_service.get_warehouse(session, code=warehouse_code)
    if not supplier.active:
        raise Unprocessable(f"supplier '{supplier_code}' is inactive", code="supplier_inactive")
    seen: set[str] = set()
    for i, (sku, quantity) in enumerate(lines):
        if sku in seen:
            raise Unprocessable(f"lines[{i}]: SKU {sku} appears twice", code="duplicate_sku")
        seen.add(sku)
        problem = domain.quantity_problem(
            quantity, minimum=supplier.minimum_order_quantity, pack_size=supplier.pack_size
        )
        if problem:
            raise Unprocessable(
                f"lines[{i}]: {quantity} units of {sku} is {problem}",
                code="invalid_quantity",
            )
    po = await _insert_draft(
        session,
        supplier=supplier,
        warehouse_id=warehouse.id,
        lines=lines,
        reference=reference,
        notes=notes,
        actor=actor,
    )
    assert po is not None
    view = await _view(session, po)
    await _announce(session, "purchase_order.drafted", view)
    return view


async def _insert_draft(
    session: AsyncSession,
    *,
    supplier: Supplier,
    warehouse_id: uuid.UUID,
    lines: Sequence[tuple[str, int]],
    reference: str | None,
    notes: str | None,
    actor: str,
    auto_key: str | None = None,
    explanation: dict[str, Any] | None = None,
) -> PurchaseOrder | None:
    """Insert a draft and its lines; None when ``auto_key`` already has an open draft."""
    now = utcnow()
    stmt = insert(PurchaseOrder).values(
        id=uuid.uuid4(),
        supplier_id=supplier.id,
        warehouse_id=warehouse_id,
        status=POStatus.DRAFT.value,
        reference=reference,
        notes=notes,
        auto_key=auto_key,
        explanation=explanation,
        created_by=actor,
        created_at=now,
        updated_at=now,
    )
    if auto_key is not None:
        stmt = stmt.on_conflict_do_nothing(
            index_elements=["auto_key"],
            index_where=text("status = 'draft' AND auto_key IS NOT NULL"),
        )
    po_id = (await session.execute(stmt.returning(PurchaseOrder.id))).scalar_one_or_none()
    if po_id is None:
        return None
    session.add_all(
        PurchaseOrderLine(
            id=uuid.uuid4(),
            purchase_order_id=po_id,
            line_no=i,
            sku=sku,
            quantity=quantity,
            received=0,
        )
        for i, (sku, quantity) in enumerate(lines, 1)
    )
    await session.flush()
    return await session.get(PurchaseOrder, po_id)


async def lock_purchase_order(session: AsyncSession, *, po_id: uuid.UUID) -> PurchaseOrder:
    """Lock the purchase order's row until the transaction ends; read it as committed now."""
    po = await session.scalar(
        select(PurchaseOrder)
        .where(PurchaseOrder.id == po_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if po is None:
        raise _not_found(po_id)
    return po


async def get_purchase_order(
    session: AsyncSession, *, po_id: uuid.UUID, scope: frozenset[uuid.UUID] | None = None
) -> PurchaseOrderView:
    """The order; 404 also when it is for a warehouse outside ``scope`` (a scoped key's)."""
    po = await session.get(PurchaseOrder, po_id)
    if po is None or (scope is not None and po.warehouse_id not in scope):
        raise _not_found(po_id)
    return await _view(session, po)


async def list_purchase_orders(
    session: AsyncSession,
    *,
    status: str | None,
    supplier_code: str | None,
    warehouse_code: str | None,
    sku: str | None,
    limit: int,
    scope: frozenset[uuid.UUID] | None = None,
) -> list[PurchaseOrderView]:
    """Purchase orders, newest first (only those for the warehouses in ``scope``, if given)."""
    stmt = select(PurchaseOrder).order_by(PurchaseOrder.created_at.desc(), PurchaseOrder.id)
    if scope is not None:
        stmt = stmt.where(PurchaseOrder.warehouse_id.in_(list(scope)))
    if status is not None:
        stmt = stmt.where(PurchaseOrder.status == status)
    if supplier_code is not None:
        supplier = await get_supplier(session, code=supplier_code)
        stmt = stmt.where(PurchaseOrder.supplier_id == supplier.id)
    if warehouse_code is not None:
        warehouse = await inventory_service.get_warehouse(session, code=warehouse_code)
        stmt = stmt.where(PurchaseOrder.warehouse_id == warehouse.id)
    if sku is not None:
        stmt = stmt.where(
            PurchaseOrder.id.in_(
                select(PurchaseOrderLine.purchase_order_id).where(PurchaseOrderLine.sku == sku)
            )
        )
    return await _views(session, (await session.scalars(stmt.limit(limit))).all())


async def send_purchase_order(
    session: AsyncSession, *, po_id: uuid.UUID, expected_on: date | None, now: datetime
) -> PurchaseOrderView:
    """draft → sent: its lines become incoming supply expected on ``expected_on`` (default:
    today + the supplier's lead time)."""
    po = await lock_purchase_order(session, po_id=po_id)
    try:
        domain.check_action(POStatus(po.status), POAction.SEND)
    except domain.IllegalPOAction as exc:
        raise _illegal(exc) from exc
    supplier = await session.get(Supplier, po.supplier_id)
    assert supplier is not None
    today = now.date()
    if expected_on is None:
        expected_on = today + timedelta(days=supplier.lead_time_days)
    elif expected_on < today:
        raise Unprocessable(f"expected_on {expected_on} is in the past", code="invalid_expected_on")
    view = await _view(session, po)
    for line in view.lines:
        line.incoming_id = await inventory_service.expect_incoming(
            session,
            warehouse_id=po.warehouse_id,
            sku=line.sku,
            quantity=line.quantity,
            expected_on=expected_on,
            reference=f"PO-{po.number}",
        )
    po.status = POStatus.SENT.value
    po.expected_on = expected_on
    po.sent_at = po.updated_at = now
    await session.flush()
    await _announce(session, "purchase_order.sent", view)
    return view


async def cancel_purchase_order(
    session: AsyncSession, *, po_id: uuid.UUID, now: datetime
) -> PurchaseOrderView:
    """Cancel a draft or sent order (units already received stay): nothing more is expected."""
    po = await lock_purchase_order(session, po_id=po_id)
    try:
        domain.check_action(POStatus(po.status), POAction.CANCEL)
    except domain.IllegalPOAction as exc:
        raise _illegal(exc) from exc
    view = await _view(session, po)
    await inventory_service.cancel_incoming(
        session, supply_ids=[ln.incoming_id for ln in view.lines if ln.incoming_id is not None]
    )
    po.status = POStatus.CANCELLED.value
    po.closed_at = po.updated_at = now
    await session.flush()
    await _announce(session, "purchase_order.cancelled", view)
    return view


@dataclass(frozen=True, slots=True)
class ReceiptResult:
    view: PurchaseOrderView
    replayed: bool
    skus: list[str]
    """The SKUs whose stock went up (empty for a replay)."""


def _receipt_lines(lines: Sequence[tuple[str, int]]) -> list[dict[str, Any]]:
    return [{"sku": sku, "quantity": q} for sku, q in sorted(lines)]


async def receive(
    session: AsyncSession,
    *,
    po_id: uuid.UUID,
    reference: str,
    lines: Sequence[tuple[str, int]],
    actor: str,
    now: datetime,
    scope: frozenset[uuid.UUID] | None = None,
) -> ReceiptResult:
    """Receive units of a sent order, once per ``reference``: each line's units go on hand
    through the ledger (a ``receipt`` movement, reference ``PO-<number>/<reference>``) and its
    expected receipt shrinks. The same reference again with the same lines changes nothing
    (``replayed``); with other lines, 409 ``receipt_reference_reused``. More than a line still
    expects: 409 ``over_receipt``; a SKU the order does not have: 422 ``unknown_po_line``.
    An order for a warehouse outside ``scope`` (a scoped key's) is 404."""
    po = await lock_purchase_order(session, po_id=po_id)
    if scope is not None and po.warehouse_id not in scope:
        raise _not_found(po_id)
    existing = await session.scalar(
        select(PurchaseOrderReceipt).where(
            PurchaseOrderReceipt.purchase_order_id == po_id,
            PurchaseOrderReceipt.reference == reference,
        )
    )
    if existing is not None:
        if existing.lines != _receipt_lines(lines):
            raise Conflict(
                f"receipt '{reference}' was recorded with other lines",
                code="receipt_reference_reused",
                current_status=po.status,
            )
        return ReceiptResult(await _view(session, po), True, [])
    try:
        domain.check_action(POStatus(po.status), POAction.RECEIVE)
    except domain.IllegalPOAction as exc:
        raise _illegal(exc) from exc
    view = await _view(session, po)
    by_sku = {ln.sku: ln for ln in view.lines}
    seen: set[str] = set()
    for i, (sku, quantity) in enumerate(lines):
        line = by_sku.get(sku)
        if line is None:
            raise Unprocessable(
                f"lines[{i}]: purchase order {po.number} has no line for {sku}",
                code="unknown_po_line",
            )
        if sku in seen:
            raise Unprocessable(f"lines[{i}]: SKU {sku} appears twice", code="duplicate_sku")
        seen.add(sku)
        if quantity > line.quantity - line.received:
            raise Conflict(
                f"{sku}: {quantity} units received but only {line.quantity - line.received} "
                "still expected",
                code="over_receipt",
                current_status=po.status,
                sku=sku,
                remaining=line.quantity - line.received,
            )
    # stock rows in the fixed lock order: one warehouse, SKUs by code point (COLLATE "C")
    for sku, quantity in sorted(lines):
        line = by_sku[sku]
        await inventory_service.adjust_stock(
            session,
            warehouse_code=view.warehouse_code,
            sku=sku,
            kind="receive",
            quantity=quantity,
            reason=f"purchase order {po.number}",
            reference=f"PO-{po.number}/{reference}",
            actor=actor,
        )
        line.received += quantity
        if line.incoming_id is not None:
            await inventory_service.settle_incoming(
                session, supply_id=line.incoming_id, remaining=line.quantity - line.received
            )
    status = domain.after_receipt([(ln.quantity, ln.received) for ln in view.lines])
    po.status = status.value
    po.updated_at = now
    if status is POStatus.RECEIVED:
        po.closed_at = now
    session.add(
        PurchaseOrderReceipt(
            id=uuid.uuid4(),
            purchase_order_id=po.id,
            reference=reference,
            lines=_receipt_lines(lines),
            actor=actor,
            created_at=now,
        )
    )
    await session.flush()
    view = await _view(session, po)
    await _announce(
        session,
        "purchase_order.received",
        view,
        receipt_reference=reference,
        received_lines=_receipt_lines(lines),
    )
    return ReceiptResult(view, False, sorted({sku for sku, _ in lines}))


# ---- reorder policies and suggestions -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PolicyView:
    policy: ReorderPolicy
    warehouse_code: str
    supplier_code: str


async def put_policy(
    session: AsyncSession,
    *,
    warehouse_code: str,
    sku: str | None,
    supplier_code: str,
    auto_draft: bool,
    demand_window_days: int,
    safety_factor: float,
    review_days: int,
) -> PolicyView:
    """Create or replace the reorder policy of a warehouse (``sku`` None) or of one SKU in it
    (which then wins over the warehouse's)."""
    warehouse = await inventory_service.get_warehouse(session, code=warehouse_code)
    supplier = await get_supplier(session, code=supplier_code)
    values = {
        "supplier_id": supplier.id,
        "auto_draft": auto_draft,
        "demand_window_days": demand_window_days,
        "safety_factor": safety_factor,
        "review_days": review_days,
        "updated_at": utcnow(),
    }
    where = "sku IS NOT NULL" if sku is not None else "sku IS NULL"
    stmt = (
        insert(ReorderPolicy)
        .values(id=uuid.uuid4(), warehouse_id=warehouse.id, sku=sku, **values)
        .on_conflict_do_update(
            index_elements=["warehouse_id", "sku"] if sku is not None else ["warehouse_id"],
            index_where=text(where),
            set_=values,
        )
        .returning(ReorderPolicy)
        .execution_options(populate_existing=True)
    )
    policy = (await session.execute(stmt)).scalar_one()
    return PolicyView(policy, warehouse.code, supplier.code)


async def list_policies(session: AsyncSession) -> list[PolicyView]:
    rows = (
        await session.execute(
            select(ReorderPolicy, Supplier.code)
            .join(Supplier, Supplier.id == ReorderPolicy.supplier_id)
            .order_by(ReorderPolicy.warehouse_id, ReorderPolicy.sku.nulls_first())
        )
    ).all()
    codes = await inventory_service.warehouse_codes(session, ids=[p.warehouse_id for p, _ in rows])
    return [PolicyView(p, codes[p.warehouse_id], code) for p, code in rows]


async def delete_policy(session: AsyncSession, *, warehouse_code: str, sku: str | None) -> None:
    warehouse = await inventory_service.get_warehouse(session, code=warehouse_code)
    stmt = select(ReorderPolicy).where(ReorderPolicy.warehouse_id == warehouse.id)
    stmt = stmt.where(ReorderPolicy.sku == sku if sku is not None else ReorderPolicy.sku.is_(None))
    policy = await session.scalar(stmt)
    if policy is None:
        raise NotFound("no reorder policy for that warehouse and SKU", code="policy_not_found")
    await session.delete(policy)
    await session.flush()


@dataclass(frozen=True, slots=True)
class SuggestionView:
    warehouse_code: str
    warehouse_id: uuid.UUID
    sku: str
    supplier_code: str
    supplier: Supplier
    policy_scope: str
    """``sku`` (the SKU's own policy) or ``warehouse``."""
    auto_draft: bool
    suggestion: domain.Suggestion


async def suggestions(
    session: AsyncSession,
    *,
    now: datetime,
    warehouse_code: str | None = None,
    sku: str | None = None,
    auto_only: bool = False,
    scope: frozenset[uuid.UUID] | None = None,
) -> list[SuggestionView]:
    """A suggestion for every stock level a reorder policy covers (of ``warehouse_code`` /
    ``sku`` when given; only policies with ``auto_draft`` when ``auto_only``; only the
    warehouses in ``scope``, a scoped key's, when given)."""
    stmt = select(ReorderPolicy, Supplier).join(Supplier, Supplier.id == ReorderPolicy.supplier_id)
    if scope is not None:
        stmt = stmt.where(ReorderPolicy.warehouse_id.in_(list(scope)))
    if warehouse_code is not None:
        warehouse = await inventory_service.get_warehouse(session, code=warehouse_code)
        stmt = stmt.where(ReorderPolicy.warehouse_id == warehouse.id)
    if sku is not None:
        stmt = stmt.where((ReorderPolicy.sku == sku) | ReorderPolicy.sku.is_(None))
    by_warehouse: dict[uuid.UUID, dict[str | None, tuple[ReorderPolicy, Supplier]]] = defaultdict(
        dict
    )
    for policy, supplier in (await session.execute(stmt)).all():
        by_warehouse[policy.warehouse_id][policy.sku] = (policy, supplier)
    out: list[SuggestionView] = []
    for wid, policies in by_warehouse.items():
        skus: set[str] | None = None if None in policies else {s for s in policies if s}
        if sku is not None:
            skus = {sku}
        window = max(p.demand_window_days for p, _ in policies.values())
        levels = await inventory_service.reorder_inputs(
            session, warehouse_ids=[wid], skus=skus, window_days=window, now=now
        )
        for level in levels:
            chosen = policies.get(level.sku) or policies.get(None)
            if chosen is None:
                continue
            policy, supplier = chosen
            if auto_only and not policy.auto_draft:
                continue
            daily = level.daily_demand[window - policy.demand_window_days :]
            out.append(
                SuggestionView(
                    warehouse_code=level.warehouse_code,
                    warehouse_id=wid,
                    sku=level.sku,
                    supplier_code=supplier.code,
                    supplier=supplier,
                    policy_scope="sku" if policy.sku is not None else "warehouse",
                    auto_draft=policy.auto_draft,
                    suggestion=domain.suggest(
                        daily_demand=daily,
                        lead_time_days=supplier.lead_time_days,
                        review_days=policy.review_days,
                        safety_factor=policy.safety_factor,
                        on_hand=level.on_hand,
                        reserved=level.reserved,
                        on_order=level.incoming,
                        minimum_order_quantity=supplier.minimum_order_quantity,
                        pack_size=supplier.pack_size,
                        level_reorder_point=level.reorder_point,
                        level_reorder_quantity=level.reorder_quantity,
                    ),
                )
            )
    out.sort(key=lambda v: (v.warehouse_code, v.sku))
    return out


def auto_key(supplier_id: uuid.UUID, warehouse_id: uuid.UUID, sku: str) -> str:
    """What makes an automatic draft unique while it is a draft."""
    return f"{supplier_id}:{warehouse_id}:{sku}"


async def _has_open_draft(
    session: AsyncSession, *, supplier_id: uuid.UUID, warehouse_id: uuid.UUID, sku: str
) -> bool:
    found = await session.scalar(
        select(PurchaseOrder.id)
        .join(PurchaseOrderLine, PurchaseOrderLine.purchase_order_id == PurchaseOrder.id)
        .where(
            PurchaseOrder.status == POStatus.DRAFT.value,
            PurchaseOrder.supplier_id == supplier_id,
            PurchaseOrder.warehouse_id == warehouse_id,
            PurchaseOrderLine.sku == sku,
        )
        .limit(1)
    )
    return found is not None


async def create_auto_drafts(session: AsyncSession, *, now: datetime) -> list[uuid.UUID]:
    """Draft a purchase order for every level whose policy has ``auto_draft`` and whose
    position crossed its reorder point, unless a draft of that supplier, warehouse and SKU is
    open already (by hand or automatic; the unique ``auto_key`` of open automatic drafts makes
    two workers at once create one). Each draft carries the suggestion it came from."""
    created: list[uuid.UUID] = []
    for view in await suggestions(session, now=now, auto_only=True):
        s = view.suggestion
        if not s.crossed or s.quantity <= 0:
            continue
        if await _has_open_draft(
            session, supplier_id=view.supplier.id, warehouse_id=view.warehouse_id, sku=view.sku
        ):
            continue
        po = await _insert_draft(
            session,
            supplier=view.supplier,
            warehouse_id=view.warehouse_id,
            lines=[(view.sku, s.quantity)],
            reference=None,
            notes="drafted automatically: the reorder point was crossed",
            actor="oms-worker:reorder",
            auto_key=auto_key(view.supplier.id, view.warehouse_id, view.sku),
            explanation=s.to_dict(),
        )
        if po is not None:
            await _announce(session, "purchase_order.drafted", await _view(session, po))
            created.append(po.id)
    return created
