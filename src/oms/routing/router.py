"""HTTP routes for per-channel routing policies."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from oms.auth.service import Principal
from oms.deps import Session, require
from oms.routing import service
from oms.routing.schemas import RoutingPolicyRead, RoutingPolicyWrite
from oms.shared.errors import NotFound
from oms.shared.openapi import AUTH_PROBLEMS, problems
from oms.shared.roles import Role

router = APIRouter(prefix="/v1", tags=["routing"])
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
Channel = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9._\-]*$")]


@router.put(
    "/routing-policies/{channel}",
    response_model=RoutingPolicyRead,
    summary="Set a sales channel's routing policy",
    description="Without a stored policy a channel uses the default: fill the order, fewest "
    "shipments, nearest (400 km bands), then warehouse priority; no shipment limit; lines may "
    "split; no backorders; pickup stores only for click and collect. A change applies to "
    "orders placed through the same `oms serve` process as soon as it is saved, and through "
    "its other worker processes and hosts within 5 s (each caches the policies it reads).",
    responses=problems(*AUTH_PROBLEMS),
)
async def put_policy(
    channel: Channel, body: RoutingPolicyWrite, session: Session, _: Admin
) -> RoutingPolicyRead:
    row = await service.put_policy(session, channel=channel, values=body.model_dump())
    return RoutingPolicyRead.model_validate(row)


@router.get(
    "/routing-policies",
    response_model=list[RoutingPolicyRead],
    summary="List channel routing policies",
    responses=problems(*AUTH_PROBLEMS),
)
async def list_policies(session: Session, _: Admin) -> list[RoutingPolicyRead]:
    return [RoutingPolicyRead.model_validate(r) for r in await service.list_policies(session)]


@router.get(
    "/routing-policies/{channel}",
    response_model=RoutingPolicyRead,
    summary="Get a channel's routing policy",
    responses=problems(404, *AUTH_PROBLEMS),
)
async def get_policy(channel: Channel, session: Session, _: Admin) -> RoutingPolicyRead:
    row = await service.get_policy_row(session, channel=channel)
    if row is None:
        raise NotFound(f"channel '{channel}' uses the default policy", code="policy_not_found")
    return RoutingPolicyRead.model_validate(row)
