"""HTTP routes of holds on orders (place, release, list), hold rules, and an order's
blockers."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request, Response

from oms.auth.service import Principal
from oms.deps import Session, require
from oms.flows import blockers
from oms.orders import service, views
from oms.orders.domain import PaymentMethod
from oms.orders.hold_rule_schemas import (
    ExpiryPolicyRead,
    ExpiryPolicyWrite,
    HoldRuleRead,
    HoldRuleWrite,
)
from oms.orders.hold_schemas import BlockersRead, HoldCreate, HoldRead, HoldRelease
from oms.shared.clock import utcnow
from oms.shared.logging import request_id_var
from oms.shared.openapi import AUTH_PROBLEMS, problems
from oms.shared.roles import Role

router = APIRouter(prefix="/v1", tags=["holds"])
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
Reader = Annotated[Principal, Depends(require(Role.STOREFRONT, Role.FULFILLMENT))]


@router.post(
    "/orders/{order_id}/holds",
    status_code=201,
    response_model=HoldRead,
    summary="Put an order on hold",
    description=(
        "Places a hold (reason, optional note). Several holds can stand at once; each is "
        "released on its own. While any stands, the order keeps its reservation but leaves the "
        "pick queue, and picking, packing or shipping it (order or shipment moves) is refused "
        "with 409 `order_on_hold` naming the holds; it can still be cancelled. Recorded in the "
        "order's history and announced as `order.held`. 409 `order_closed` once the order has "
        "shipped, been delivered, returned or cancelled."
    ),
    responses=problems(404, 409, 422, *AUTH_PROBLEMS),
)
async def place_hold(
    order_id: uuid.UUID, body: HoldCreate, session: Session, principal: Admin
) -> HoldRead:
    hold = await service.place_hold(
        session,
        order_id=order_id,
        reason=body.reason.value,
        note=body.note,
        principal=principal,
        request_id=request_id_var.get(),
    )
    return views.hold_read(hold)


@router.post(
    "/orders/{order_id}/holds/{hold_id}/release",
    response_model=HoldRead,
    summary="Release one hold",
    description=(
        "Releases one hold (who and when are kept, with an optional note). The order moves "
        "again once no hold stands. Announced as `order.hold_released`. 409 "
        "`hold_already_released` when it was released before; 404 `hold_not_found`."
    ),
    responses=problems(404, 409, 422, *AUTH_PROBLEMS),
)
async def release_hold(
    order_id: uuid.UUID,
    hold_id: uuid.UUID,
    session: Session,
    principal: Admin,
    body: HoldRelease | None = None,
) -> HoldRead:
    hold = await service.release_hold(
        session,
        order_id=order_id,
        hold_id=hold_id,
        note=body.note if body else None,
        principal=principal,
        request_id=request_id_var.get(),
    )
    return views.hold_read(hold)


@router.get(
    "/orders/{order_id}/holds",
    response_model=list[HoldRead],
    summary="An order's holds, standing and released",
    description="Every hold ever placed on the order, oldest first (`active`: still standing).",
    responses=problems(404, *AUTH_PROBLEMS),
)
async def list_holds(order_id: uuid.UUID, session: Session, principal: Reader) -> list[HoldRead]:
    holds = await service.list_holds(session, order_id=order_id, principal=principal)
    return [views.hold_read(h) for h in holds]


@router.get(
    "/orders/{order_id}/blockers",
    response_model=BlockersRead,
    summary="Why isn't this order moving?",
    description=(
        "Everything that stops the order, computed from what is stored, each with what would "
        "clear it: `hold` (standing holds), `payment` (captured vs total, not for cash on "
        "delivery), `backorder` (backordered units, with the earliest expected receipt), "
        "`late_pick` (a shipment of a ready order not picked within `OMS_HANDLING_TIME_HOURS`), "
        "`wave` (held out of the pick queue until its channel's next wave releases it), "
        "`inbound_pending` (connector events for its external reference still pending), "
        "`delivery_failed` (outbound deliveries of its events failed or dead). "
        "`GET /v1/orders?blocked_by=` lists orders by blocker."
    ),
    responses=problems(404, *AUTH_PROBLEMS),
)
async def order_blockers(
    order_id: uuid.UUID, request: Request, session: Session, principal: Reader
) -> BlockersRead:
    hours = request.app.state.settings.handling_time_hours
    status, found = await blockers.order_blockers(
        session,
        order_id=order_id,
        principal=principal,
        handling_time=timedelta(hours=hours),
        now=utcnow(),
    )
    return BlockersRead.model_validate(
        {"order_id": order_id, "status": status, "blocked": bool(found), "blockers": found}
    )


ChannelName = Annotated[
    str, Path(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9._\-]*$", examples=["web"])
]
RuleName = Annotated[
    str,
    Path(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9._\-]*$", examples=["big-abroad"]),
]


@router.put(
    "/hold-rules/{channel}/{name}",
    response_model=HoldRuleRead,
    summary="Create or replace a hold rule",
    description=(
        "A new order of `channel` (placed through the API or by a connector) is put on hold "
        "with the rule's `reason` and `note` when every condition the rule sets matches: "
        "payment method, total at or above a threshold in the order's currency, destination "
        "country, the marketplace's risk level. The hold names the rule. Answers 201 when "
        "created, 200 when replaced. Rules take effect within 5 seconds in every API process."
    ),
    responses={
        201: {"model": HoldRuleRead, "description": "Created"},
        **problems(422, *AUTH_PROBLEMS),
    },
)
async def put_hold_rule(
    channel: ChannelName,
    name: RuleName,
    body: HoldRuleWrite,
    response: Response,
    session: Session,
    _: Admin,
) -> HoldRuleRead:
    rule, created = await service.put_rule(
        session, channel=channel, name=name, values=body.model_dump(mode="json")
    )
    response.status_code = 201 if created else 200
    return HoldRuleRead.model_validate(rule)


@router.get(
    "/hold-rules",
    response_model=list[HoldRuleRead],
    summary="List hold rules",
    responses=problems(*AUTH_PROBLEMS),
)
async def list_hold_rules(
    session: Session,
    _: Admin,
    channel: Annotated[str | None, Query(max_length=64)] = None,
) -> list[HoldRuleRead]:
    rules = await service.list_rules(session, channel=channel)
    return [HoldRuleRead.model_validate(r) for r in rules]


@router.get(
    "/hold-rules/{channel}/{name}",
    response_model=HoldRuleRead,
    summary="Get a hold rule",
    responses=problems(404, *AUTH_PROBLEMS),
)
async def get_hold_rule(
    channel: ChannelName, name: RuleName, session: Session, _: Admin
) -> HoldRuleRead:
    return HoldRuleRead.model_validate(await service.get_rule(session, channel=channel, name=name))


@router.delete(
    "/hold-rules/{channel}/{name}",
    status_code=204,
    summary="Delete a hold rule",
    description="Holds it placed stay (they name it); new orders are no longer held by it.",
    responses=problems(404, *AUTH_PROBLEMS),
)
async def delete_hold_rule(
    channel: ChannelName, name: RuleName, session: Session, _: Admin
) -> Response:
    await service.delete_rule(session, channel=channel, name=name)
    return Response(status_code=204)


@router.put(
    "/expiry-policies/{channel}/{payment_method}",
    response_model=ExpiryPolicyRead,
    tags=["holds"],
    summary="Set when unpaid orders expire",
    description=(
        "An order of `channel` paid by `payment_method` that is still `placed` and unpaid "
        "`after_hours` after it was placed is cancelled by the worker (`oms worker`, every "
        "`OMS_EXPIRY_SWEEP_INTERVAL_S`): its stock is released, the cancellation is in its "
        "history (actor `apikey:expiry`) and `order.expired` is sent with `order.cancelled`. "
        "Orders paid meanwhile, or with any captured payment, are skipped. 201 when created, "
        "200 when replaced."
    ),
    responses={
        201: {"model": ExpiryPolicyRead, "description": "Created"},
        **problems(422, *AUTH_PROBLEMS),
    },
)
async def put_expiry_policy(
    channel: ChannelName,
    payment_method: PaymentMethod,
    body: ExpiryPolicyWrite,
    response: Response,
    session: Session,
    _: Admin,
) -> ExpiryPolicyRead:
    row, created = await service.put_expiry_policy(
        session,
        channel=channel,
        payment_method=payment_method.value,
        after_s=max(1, round(body.after_hours * 3600)),
    )
    response.status_code = 201 if created else 200
    return ExpiryPolicyRead.of(row)


@router.get(
    "/expiry-policies",
    response_model=list[ExpiryPolicyRead],
    summary="List expiry policies of unpaid orders",
    responses=problems(*AUTH_PROBLEMS),
)
async def list_expiry_policies(session: Session, _: Admin) -> list[ExpiryPolicyRead]:
    return [ExpiryPolicyRead.of(r) for r in await service.list_expiry_policies(session)]


@router.delete(
    "/expiry-policies/{channel}/{payment_method}",
    status_code=204,
    summary="Delete an expiry policy",
    description="Unpaid orders of the channel and payment method no longer expire.",
    responses=problems(404, *AUTH_PROBLEMS),
)
async def delete_expiry_policy(
    channel: ChannelName, payment_method: PaymentMethod, session: Session, _: Admin
) -> Response:
    await service.delete_expiry_policy(
        session, channel=channel, payment_method=payment_method.value
    )
    return Response(status_code=204)
