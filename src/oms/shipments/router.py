"""HTTP routes changing shipments after placement: exceptions (pending or picked shipments),
moves, splits, merges (pending shipments)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends

from oms.auth.service import Principal
from oms.deps import Session, require
from oms.orders import service
from oms.orders.shipment_schemas import (
    ShipmentChangeRead,
    ShipmentExceptionCreate,
    ShipmentExceptionRead,
    ShipmentExceptionSummary,
    ShipmentMergeRequest,
    ShipmentMoveRequest,
    ShipmentSplitRequest,
)
from oms.shared.logging import request_id_var
from oms.shared.openapi import AUTH_PROBLEMS, problems
from oms.shared.roles import Role

router = APIRouter(prefix="/v1", tags=["fulfillment"])
Warehouse = Annotated[Principal, Depends(require(Role.FULFILLMENT))]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
Reader = Annotated[Principal, Depends(require(Role.STOREFRONT, Role.FULFILLMENT))]

_PENDING = (
    " The order's stored routing (`GET /v1/orders/{id}/routing`) becomes its current plan, "
    "placement's plan kept under `placement`."
    " Only while the order is placed or paid (409 `shipment_change_not_allowed`) and the "
    "shipment pending (409 `shipment_not_pending`); takes the order's lock, so it runs before "
    "or after a concurrent pick, cancel or re-route, never in between."
)


@router.post(
    "/shipments/{shipment_id}/exceptions",
    status_code=201,
    response_model=ShipmentExceptionRead,
    summary="Reject units of a pending or picked shipment (short pick, damaged, not found)",
    description="The warehouse could not ship some units, found while picking or after the "
    "pick (e.g. a damaged unit at the packing table). Only those units leave the shipment and "
    "are planned again by the router, without this warehouse (reason `excluded` in the "
    "explanation); the units found stay in it, and the rest of the order keeps its shipments "
    "and reservations. Units no other warehouse can give are backordered on their line when "
    "the channel's routing policy allows backorders; otherwise 409 `insufficient_stock` (with "
    "`short_lines` and the explanation) and nothing changes. `damaged` and `not_found` units "
    "are written off on-hand stock (a `correction` in the ledger referencing the exception, at "
    "most the unreserved units); `short_pick` units of a pending shipment are left to a count, "
    "of a picked shipment they are written off too (the pick was the count). A shipment left "
    "empty is cancelled. `block_for_hours` keeps routing away from that (warehouse, SKU) "
    "meanwhile (reason `blocked`). A picked order whose shipments are then no longer all "
    "picked (a new pending parcel, or none left) steps back to `paid` (`placed` for unpaid "
    "cash on delivery). The order's stored routing (`GET /v1/orders/{id}/routing`) becomes "
    "its current plan with this re-plan's explanation, placement's plan kept under "
    "`placement`. Recorded in the history as `shipment_exception` and announced as "
    "`shipment.exception`. 422 `shipment_lines_invalid` when the shipment does not carry the "
    "units. Only while the order is placed, paid or picked (409 "
    "`shipment_change_not_allowed`) and the shipment pending or picked (409 "
    "`shipment_past_picking`: a packed parcel is sealed and labelled); takes the order's lock, "
    "so it runs before or after a concurrent pick, pack, cancel or re-route, never in between.",
    responses=problems(404, 409, 422, *AUTH_PROBLEMS),
)
async def report_exception(
    shipment_id: uuid.UUID,
    body: ShipmentExceptionCreate,
    session: Session,
    principal: Warehouse,
) -> ShipmentExceptionRead:
    order, row = await service.report_exception(
        session,
        shipment_id=shipment_id,
        lines=[
            service.RejectedUnits(ln.order_line_id, ln.quantity, ln.reason.value)
            for ln in body.lines
        ],
        block_for_hours=body.block_for_hours,
        note=body.note,
        principal=principal,
        request_id=request_id_var.get(),
    )
    return ShipmentExceptionRead(
        id=row.id,
        order_id=row.order_id,
        shipment_id=row.shipment_id,
        warehouse=row.warehouse_code,
        lines=row.lines,
        replan=row.replan,
        blocked_until=row.blocked_until,
        note=row.note,
        actor=row.actor,
        created_at=row.created_at,
        order=await service.order_read(session, order=order),
    )


@router.post(
    "/shipments/{shipment_id}/move",
    response_model=ShipmentChangeRead,
    summary="Move a pending shipment to another warehouse",
    description="Its units are planned with only the target warehouse allowed. If it cannot "
    "take them all: 409 `move_not_possible` with the reason (e.g. `no_stock`, "
    "`country_not_served`, `inactive`), the short lines and the explanation, and nothing "
    "changes. Otherwise the shipment is cancelled and a new pending shipment at the target "
    "carries its units (`shipment_id` in the answer). Recorded as `shipment_moved`, "
    "announced as `shipment.moved`. 404 `warehouse_not_found`." + _PENDING,
    responses=problems(404, 409, 422, *AUTH_PROBLEMS),
)
async def move_shipment(
    shipment_id: uuid.UUID, body: ShipmentMoveRequest, session: Session, principal: Admin
) -> ShipmentChangeRead:
    order, new_id = await service.move_shipment(
        session,
        shipment_id=shipment_id,
        warehouse_code=body.warehouse,
        reason=body.reason,
        principal=principal,
        request_id=request_id_var.get(),
    )
    return ShipmentChangeRead(
        shipment_id=new_id, order=await service.order_read(session, order=order)
    )


@router.post(
    "/shipments/{shipment_id}/split",
    status_code=201,
    response_model=ShipmentChangeRead,
    summary="Split units off a pending shipment into a new one (same warehouse)",
    description="The given units move to a new pending shipment at the same warehouse "
    "(`shipment_id` in the answer); stock does not change. The shipment keeps at least one "
    "unit (422 `split_takes_everything`); 422 `shipment_lines_invalid` when it does not carry "
    "the units. Recorded as `shipment_split`, announced as `shipment.split`." + _PENDING,
    responses=problems(404, 409, 422, *AUTH_PROBLEMS),
)
async def split_shipment(
    shipment_id: uuid.UUID, body: ShipmentSplitRequest, session: Session, principal: Warehouse
) -> ShipmentChangeRead:
    order, new_id = await service.split_shipment(
        session,
        shipment_id=shipment_id,
        lines=[service.UnitsOfLine(ln.order_line_id, ln.quantity) for ln in body.lines],
        reason=body.reason,
        principal=principal,
        request_id=request_id_var.get(),
    )
    return ShipmentChangeRead(
        shipment_id=new_id, order=await service.order_read(session, order=order)
    )


@router.post(
    "/shipments/{shipment_id}/merge",
    response_model=ShipmentChangeRead,
    summary="Merge another pending shipment of the order into this one",
    description="Both shipments must belong to the same order, ship from the same warehouse "
    "(409 `merge_not_possible`: move one first) and be pending. The other shipment's units "
    "join this one and it is cancelled; stock does not change. Recorded as "
    "`shipment_merged`, announced as `shipment.merged`." + _PENDING,
    responses=problems(404, 409, 422, *AUTH_PROBLEMS),
)
async def merge_shipments(
    shipment_id: uuid.UUID, body: ShipmentMergeRequest, session: Session, principal: Warehouse
) -> ShipmentChangeRead:
    order = await service.merge_shipments(
        session,
        shipment_id=shipment_id,
        other_shipment_id=body.shipment_id,
        reason=body.reason,
        principal=principal,
        request_id=request_id_var.get(),
    )
    return ShipmentChangeRead(
        shipment_id=shipment_id, order=await service.order_read(session, order=order)
    )


@router.get(
    "/orders/{order_id}/shipment-exceptions",
    response_model=list[ShipmentExceptionSummary],
    summary="The shipment exceptions of an order",
    description="Oldest first: the rejected units, what became of them (new shipments, "
    "backorders, write-offs, the router's explanation) and any block placed.",
    responses=problems(404, *AUTH_PROBLEMS),
)
async def list_exceptions(
    order_id: uuid.UUID, session: Session, principal: Reader
) -> list[ShipmentExceptionSummary]:
    rows = await service.list_exceptions(session, order_id=order_id, principal=principal)
    return [
        ShipmentExceptionSummary(
            id=r.id,
            order_id=r.order_id,
            shipment_id=r.shipment_id,
            warehouse=r.warehouse_code,
            lines=r.lines,
            replan=r.replan,
            blocked_until=r.blocked_until,
            note=r.note,
            actor=r.actor,
            created_at=r.created_at,
        )
        for r in rows
    ]
