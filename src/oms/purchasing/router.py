"""HTTP routes of purchasing: suppliers, purchase orders and their receipts, reorder policies
and reorder suggestions."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from oms.auth.service import Principal, visible_warehouses
from oms.deps import Session, require
from oms.flows import purchasing as purchasing_flow
from oms.purchasing import service
from oms.purchasing.schemas import (
    POLineRead,
    POStatusName,
    PurchaseOrderCreate,
    PurchaseOrderRead,
    ReceiptCreate,
    ReceiptRead,
    ReorderPolicyRead,
    ReorderPolicyWrite,
    SendRequest,
    SuggestionInputs,
    SuggestionRead,
    SupplierCreate,
    SupplierRead,
    SupplierUpdate,
)
from oms.shared.clock import utcnow
from oms.shared.logging import request_id_var
from oms.shared.openapi import AUTH_PROBLEMS, CodePath, problems
from oms.shared.roles import Role

router = APIRouter(prefix="/v1", tags=["purchasing"])
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
Stocker = Annotated[Principal, Depends(require(Role.FULFILLMENT))]
SkuPath = Annotated[
    str,
    Path(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-/]*$",
        description="The SKU (it may contain `/`: the rest of the path is the SKU)",
    ),
]


def po_read(view: service.PurchaseOrderView) -> PurchaseOrderRead:
    po = view.order
    closed = po.status in ("cancelled", "received")
    return PurchaseOrderRead(
        id=po.id,
        number=po.number,
        status=po.status,
        supplier=view.supplier_code,
        warehouse=view.warehouse_code,
        expected_on=po.expected_on,
        reference=po.reference,
        notes=po.notes,
        automatic=po.auto_key is not None,
        explanation=po.explanation,
        lines=[
            POLineRead(
                line_no=ln.line_no,
                sku=ln.sku,
                quantity=ln.quantity,
                received=ln.received,
                remaining=0 if closed else ln.quantity - ln.received,
            )
            for ln in view.lines
        ],
        receipts=[
            ReceiptRead(
                reference=r.reference, lines=r.lines, actor=r.actor, created_at=r.created_at
            )
            for r in view.receipts
        ],
        created_by=po.created_by,
        created_at=po.created_at,
        updated_at=po.updated_at,
        sent_at=po.sent_at,
        closed_at=po.closed_at,
    )


def policy_read(view: service.PolicyView) -> ReorderPolicyRead:
    p = view.policy
    return ReorderPolicyRead(
        warehouse=view.warehouse_code,
        sku=p.sku,
        supplier=view.supplier_code,
        auto_draft=p.auto_draft,
        demand_window_days=p.demand_window_days,
        safety_factor=p.safety_factor,
        review_days=p.review_days,
        updated_at=p.updated_at,
    )


# ---- suppliers ------------------------------------------------------------------------------


@router.post(
    "/suppliers",
    status_code=201,
    response_model=SupplierRead,
    summary="Create a supplier",
    description="A supplier's lead time dates its purchase orders (expected = sent + lead time) "
    "and feeds reorder suggestions; its minimum order and pack size bound every order line. "
    "409 `supplier_exists`.",
    responses=problems(409, *AUTH_PROBLEMS),
)
async def create_supplier(body: SupplierCreate, session: Session, _: Admin) -> SupplierRead:
    supplier = await service.create_supplier(session, values=body.model_dump())
    return SupplierRead.model_validate(supplier)


@router.get(
    "/suppliers",
    response_model=list[SupplierRead],
    summary="List suppliers",
    description="Every supplier by code, with its terms (fulfillment and admin keys).",
    responses=problems(*AUTH_PROBLEMS),
)
async def list_suppliers(session: Session, _: Stocker) -> list[SupplierRead]:
    return [SupplierRead.model_validate(s) for s in await service.list_suppliers(session)]


@router.get(
    "/suppliers/{code}",
    response_model=SupplierRead,
    summary="Get a supplier",
    description="A supplier's terms: lead time, minimum order, pack size. 404 "
    "`supplier_not_found`.",
    responses=problems(404, *AUTH_PROBLEMS),
)
async def get_supplier(code: CodePath, session: Session, _: Stocker) -> SupplierRead:
    return SupplierRead.model_validate(await service.get_supplier(session, code=code))


@router.patch(
    "/suppliers/{code}",
    response_model=SupplierRead,
    summary="Change a supplier's terms",
    description="Lead time, minimum order, pack size, name, or `active: false` (no new orders).",
    responses=problems(404, *AUTH_PROBLEMS),
)
async def update_supplier(
    code: CodePath, body: SupplierUpdate, session: Session, _: Admin
) -> SupplierRead:
    supplier = await service.update_supplier(
        session, code=code, values=body.model_dump(exclude_unset=True)
    )
    return SupplierRead.model_validate(supplier)


# ---- purchase orders ------------------------------------------------------------------------


@router.post(
    "/purchase-orders",
    status_code=201,
    response_model=PurchaseOrderRead,
    summary="Draft a purchase order",
    description="A draft to a supplier for one warehouse. Each line: at least the supplier's "
    "minimum order, in whole packs (422 `invalid_quantity`); a SKU once (422 `duplicate_sku`). "
    "Life: `draft → sent → partially_received → received`, or `cancelled` while open; any "
    "other move is 409 `illegal_purchase_order_transition` (with `current_status` and "
    "`allowed_transitions`).",
    responses=problems(404, *AUTH_PROBLEMS),
)
async def create_purchase_order(
    body: PurchaseOrderCreate, session: Session, principal: Admin
) -> PurchaseOrderRead:
    view = await service.create_purchase_order(
        session,
        supplier_code=body.supplier,
        warehouse_code=body.warehouse,
        lines=[(ln.sku, ln.quantity) for ln in body.lines],
        reference=body.reference,
        notes=body.notes,
        actor=principal.actor,
    )
    return po_read(view)


@router.get(
    "/purchase-orders",
    response_model=list[PurchaseOrderRead],
    summary="List purchase orders, newest first",
    description="Filter by `status`, `supplier`, `warehouse` (404 when unknown) or `sku`. Each "
    "order with its lines (ordered, received, still expected) and receipts.",
    responses=problems(404, *AUTH_PROBLEMS),
)
async def list_purchase_orders(
    session: Session,
    principal: Stocker,
    status: POStatusName | None = None,
    supplier: Annotated[str | None, Query(max_length=32)] = None,
    warehouse: Annotated[str | None, Query(max_length=32)] = None,
    sku: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[PurchaseOrderRead]:
    views = await service.list_purchase_orders(
        session,
        status=status,
        supplier_code=supplier,
        warehouse_code=warehouse,
        sku=sku,
        limit=limit,
        scope=visible_warehouses(principal),
    )
    return [po_read(v) for v in views]


@router.get(
    "/purchase-orders/{po_id}",
    response_model=PurchaseOrderRead,
    summary="Get a purchase order with its lines and receipts",
    description="Automatic drafts carry the reorder suggestion they came from (`explanation`). "
    "404 `purchase_order_not_found`.",
    responses=problems(404, *AUTH_PROBLEMS),
)
async def get_purchase_order(
    po_id: uuid.UUID, session: Session, principal: Stocker
) -> PurchaseOrderRead:
    scope = visible_warehouses(principal)
    return po_read(await service.get_purchase_order(session, po_id=po_id, scope=scope))


@router.post(
    "/purchase-orders/{po_id}/send",
    response_model=PurchaseOrderRead,
    summary="Send a draft purchase order",
    description="draft → sent. Its lines become incoming supply (shown by "
    "`GET /v1/inventory/availability` as `incoming`, counted as on order by reorder "
    "suggestions, and promising backordered units a date) expected on `expected_on` (default: "
    "today + the supplier's lead time; 422 `invalid_expected_on` for a past date). 409 "
    "`illegal_purchase_order_transition` unless it is a draft.",
    responses=problems(404, 409, *AUTH_PROBLEMS),
)
async def send_purchase_order(
    po_id: uuid.UUID, session: Session, _: Admin, body: SendRequest | None = None
) -> PurchaseOrderRead:
    view = await service.send_purchase_order(
        session, po_id=po_id, expected_on=body.expected_on if body else None, now=utcnow()
    )
    return po_read(view)


@router.post(
    "/purchase-orders/{po_id}/cancel",
    response_model=PurchaseOrderRead,
    summary="Cancel a purchase order",
    description="A draft, sent or partially received order: what it still expects will not "
    "come (its incoming supply is cancelled); units received stay. 409 "
    "`illegal_purchase_order_transition` once received or cancelled.",
    responses=problems(404, 409, *AUTH_PROBLEMS),
)
async def cancel_purchase_order(po_id: uuid.UUID, session: Session, _: Admin) -> PurchaseOrderRead:
    return po_read(await service.cancel_purchase_order(session, po_id=po_id, now=utcnow()))


@router.post(
    "/purchase-orders/{po_id}/receipts",
    status_code=201,
    response_model=PurchaseOrderRead,
    summary="Receive units of a sent purchase order",
    description="Each line's units go on hand through the inventory ledger (a `receipt` "
    "movement referencing `PO-<number>/<reference>`); the order becomes `partially_received`, "
    "or `received` when every line is complete. Idempotent by `reference`: the same receipt "
    "again answers as the first did, with `Idempotent-Replayed: true`, and changes nothing "
    "(with other lines: "
    "409 `receipt_reference_reused`). More units than a line still expects: 409 "
    "`over_receipt` (with `sku` and `remaining`), also when receipts arrive at once (the "
    "order is locked from the check to the commit). Once committed, orders waiting for the "
    "SKUs (backorders) are filled as after any receipt (express first, then oldest; at most "
    "20 in the request, the worker fills the rest). 409 `illegal_purchase_order_transition` "
    "unless sent or partially received; 422 `unknown_po_line` for a SKU the order lacks. A "
    "key scoped to some locations receives (and lists, reads) only their orders: others 404.",
    responses=problems(404, 409, *AUTH_PROBLEMS),
)
async def receive_purchase_order(
    po_id: uuid.UUID, body: ReceiptCreate, response: Response, session: Session, principal: Stocker
) -> PurchaseOrderRead:
    result, _ = await purchasing_flow.receive(
        session,
        po_id=po_id,
        reference=body.reference,
        lines=[(ln.sku, ln.quantity) for ln in body.lines],
        actor=principal.actor,
        actor_role=principal.role.value,
        request_id=request_id_var.get(),
        now=utcnow(),
        scope=visible_warehouses(principal),
    )
    if result.replayed:  # the first answer again (its status too), saying so
        response.headers["Idempotent-Replayed"] = "true"
    return po_read(result.view)


# ---- reordering ----------------------------------------------------------------------------


async def _put_policy(
    session: Session, warehouse: str, sku: str | None, body: ReorderPolicyWrite
) -> ReorderPolicyRead:
    view = await service.put_policy(
        session,
        warehouse_code=warehouse,
        sku=sku,
        supplier_code=body.supplier,
        auto_draft=body.auto_draft,
        demand_window_days=body.demand_window_days,
        safety_factor=body.safety_factor,
        review_days=body.review_days,
    )
    return policy_read(view)


_POLICY_DOC = (
    "How suggestions are computed for the stock levels it covers (supplier, demand window, "
    "safety factor, review period), and with `auto_draft: true` the worker drafts a purchase "
    "order by itself when a level's position crosses its reorder point (one open draft per "
    "supplier, warehouse and SKU). A SKU's own policy wins over its warehouse's."
)


@router.put(
    "/reorder-policies/{warehouse}",
    response_model=ReorderPolicyRead,
    summary="Set the reorder policy of every SKU of a warehouse",
    description=_POLICY_DOC,
    responses=problems(404, *AUTH_PROBLEMS),
)
async def put_warehouse_policy(
    warehouse: CodePath, body: ReorderPolicyWrite, session: Session, _: Admin
) -> ReorderPolicyRead:
    return await _put_policy(session, warehouse, None, body)


@router.put(
    "/reorder-policies/{warehouse}/{sku:path}",
    response_model=ReorderPolicyRead,
    summary="Set the reorder policy of one SKU of a warehouse",
    description=_POLICY_DOC,
    responses=problems(404, *AUTH_PROBLEMS),
)
async def put_sku_policy(
    warehouse: CodePath, sku: SkuPath, body: ReorderPolicyWrite, session: Session, _: Admin
) -> ReorderPolicyRead:
    return await _put_policy(session, warehouse, sku, body)


@router.get(
    "/reorder-policies",
    response_model=list[ReorderPolicyRead],
    summary="List reorder policies",
    description="Every policy: per warehouse (`sku` null) or per SKU of a warehouse.",
    responses=problems(*AUTH_PROBLEMS),
)
async def list_policies(session: Session, _: Stocker) -> list[ReorderPolicyRead]:
    return [policy_read(v) for v in await service.list_policies(session)]


@router.delete(
    "/reorder-policies/{warehouse}",
    status_code=204,
    summary="Remove a warehouse's reorder policy",
    description="Its SKUs without a policy of their own get no suggestions any more. 404 "
    "`policy_not_found`.",
    responses=problems(404, *AUTH_PROBLEMS),
)
async def delete_warehouse_policy(warehouse: CodePath, session: Session, _: Admin) -> None:
    await service.delete_policy(session, warehouse_code=warehouse, sku=None)


@router.delete(
    "/reorder-policies/{warehouse}/{sku:path}",
    status_code=204,
    summary="Remove a SKU's reorder policy",
    description="The warehouse's policy, if any, applies to the SKU again. 404 `policy_not_found`.",
    responses=problems(404, *AUTH_PROBLEMS),
)
async def delete_sku_policy(warehouse: CodePath, sku: SkuPath, session: Session, _: Admin) -> None:
    await service.delete_policy(session, warehouse_code=warehouse, sku=sku)


@router.get(
    "/reorder-suggestions",
    response_model=list[SuggestionRead],
    summary="What to reorder, and why",
    description="For every stock level a reorder policy covers: the demand rate (an "
    "exponentially weighted average of the units placed per day over the policy's window, "
    "alpha = 2 / (window + 1)) and its standard deviation, the supplier's lead time, the "
    "safety stock (safety_factor × σ × √(lead + review)), the reorder point (rate × lead + "
    "safety stock, or the level's own `reorder_point`), on hand, reserved and on order "
    "(incoming supply) → the position and, when it is at or below the reorder point, the "
    "quantity bringing it up to rate × (lead + review) + safety stock, at least the supplier's "
    "minimum, in whole packs. Every input is in `inputs`. (`GET /v1/inventory/replenishment` "
    "lists levels under a reorder point set by hand, without demand.) A key scoped to some "
    "locations gets theirs only.",
    responses=problems(404, *AUTH_PROBLEMS),
)
async def reorder_suggestions(
    session: Session,
    principal: Stocker,
    warehouse: Annotated[str | None, Query(max_length=32)] = None,
    sku: Annotated[str | None, Query(max_length=64)] = None,
    crossed: Annotated[
        bool | None, Query(description="true: only levels at or below their reorder point")
    ] = None,
) -> list[SuggestionRead]:
    views = await service.suggestions(
        session,
        now=utcnow(),
        warehouse_code=warehouse,
        sku=sku,
        scope=visible_warehouses(principal),
    )
    return [
        SuggestionRead(
            warehouse=v.warehouse_code,
            sku=v.sku,
            supplier=v.supplier_code,
            policy=v.policy_scope,
            auto_draft=v.auto_draft,
            quantity=v.suggestion.quantity,
            inputs=SuggestionInputs(**v.suggestion.to_dict()),
        )
        for v in views
        if crossed is None or v.suggestion.crossed == crossed
    ]
