"""HTTP routes for returns (RMAs)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends

from oms.auth.service import Principal
from oms.deps import Session, require
from oms.flows import returns as returns_flow
from oms.returns import service
from oms.returns.models import Return
from oms.returns.schemas import ReturnCreate, ReturnLineRead, ReturnRead, ReturnReceive
from oms.shared.logging import request_id_var
from oms.shared.openapi import AUTH_PROBLEMS, problems
from oms.shared.roles import Role

router = APIRouter(prefix="/v1", tags=["returns"])
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
Requester = Annotated[Principal, Depends(require(Role.STOREFRONT))]
Receiver = Annotated[Principal, Depends(require(Role.FULFILLMENT))]
Reader = Annotated[Principal, Depends(require(Role.STOREFRONT, Role.FULFILLMENT))]


async def _read(session: Session, returns: list[Return]) -> list[ReturnRead]:
    lines = await service.lines_of(session, return_ids=[r.id for r in returns])
    return [
        ReturnRead(
            id=r.id,
            order_id=r.order_id,
            status=r.status,
            note=r.note,
            lines=[ReturnLineRead.model_validate(ln) for ln in lines[r.id]],
            created_at=r.created_at,
            received_at=r.received_at,
        )
        for r in returns
    ]


@router.post(
    "/orders/{order_id}/returns",
    status_code=201,
    response_model=ReturnRead,
    summary="Request a return for a delivered order",
    description="Never more than delivered minus already returned per line (409 "
    "`return_exceeds_delivered`); the order must be delivered (409 `order_not_delivered`).",
    responses=problems(404, 409, *AUTH_PROBLEMS),
)
async def request_return(
    order_id: uuid.UUID, body: ReturnCreate, session: Session, principal: Requester
) -> ReturnRead:
    rma = await service.request_return(
        session,
        order_id=order_id,
        lines=[service.LineRequest(**ln.model_dump()) for ln in body.lines],
        note=body.note,
        principal=principal,
    )
    return (await _read(session, [rma]))[0]


@router.get(
    "/orders/{order_id}/returns",
    response_model=list[ReturnRead],
    summary="An order's returns (partial returns included)",
    responses=problems(404, *AUTH_PROBLEMS),
)
async def list_returns(
    order_id: uuid.UUID, session: Session, principal: Reader
) -> list[ReturnRead]:
    return await _read(
        session, await service.returns_of(session, order_id=order_id, principal=principal)
    )


@router.get(
    "/returns/{return_id}",
    response_model=ReturnRead,
    summary="Get a return",
    responses=problems(404, *AUTH_PROBLEMS),
)
async def get_return(return_id: uuid.UUID, session: Session, principal: Reader) -> ReturnRead:
    rma = await service.get_return(session, return_id=return_id, principal=principal)
    return (await _read(session, [rma]))[0]


@router.post(
    "/returns/{return_id}/approve",
    response_model=ReturnRead,
    summary="Approve a requested return",
    responses=problems(404, 409, *AUTH_PROBLEMS),
)
async def approve(return_id: uuid.UUID, session: Session, principal: Admin) -> ReturnRead:
    rma = await service.decide(session, return_id=return_id, approve=True, principal=principal)
    return (await _read(session, [rma]))[0]


@router.post(
    "/returns/{return_id}/reject",
    response_model=ReturnRead,
    summary="Reject a requested return",
    responses=problems(404, 409, *AUTH_PROBLEMS),
)
async def reject(return_id: uuid.UUID, session: Session, principal: Admin) -> ReturnRead:
    rma = await service.decide(session, return_id=return_id, approve=False, principal=principal)
    return (await _read(session, [rma]))[0]


@router.post(
    "/returns/{return_id}/receive",
    response_model=ReturnRead,
    summary="Receive a return: restock or discard each unit, optionally refund",
    description="Restocked units go back into available stock through the ledger (to the "
    "warehouse they shipped from unless another is named). The order becomes `returned` when "
    "every delivered unit has come back.",
    responses=problems(404, 409, *AUTH_PROBLEMS),
)
async def receive(
    return_id: uuid.UUID, body: ReturnReceive, session: Session, principal: Receiver
) -> ReturnRead:
    rma = await returns_flow.receive_return(
        session,
        return_id=return_id,
        receipts=[
            service.LineReceipt(
                return_line_id=ln.return_line_id,
                restock=ln.restock,
                discard=ln.discard,
                warehouse_code=ln.warehouse,
            )
            for ln in body.lines
        ],
        refund=body.refund.model_dump() if body.refund else None,
        principal=principal,
        request_id=request_id_var.get(),
    )
    return (await _read(session, [rma]))[0]


@router.post(
    "/returns/{return_id}/close",
    response_model=ReturnRead,
    summary="Close a received return",
    responses=problems(404, 409, *AUTH_PROBLEMS),
)
async def close(return_id: uuid.UUID, session: Session, principal: Receiver) -> ReturnRead:
    rma = await service.close(session, return_id=return_id, principal=principal)
    return (await _read(session, [rma]))[0]
