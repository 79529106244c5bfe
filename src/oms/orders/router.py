"""HTTP routes of the orders API."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from pydantic import EmailStr, Field

from oms.auth.service import Principal
from oms.deps import Session, require
from oms.flows import fulfilment, order_changes
from oms.orders import domain, promising, service, views
from oms.orders.edit_schemas import CancelLinesRequest, OrderChangeRead, OrderEditRequest
from oms.orders.models import Order
from oms.orders.schemas import (
    OrderCreate,
    OrderEventRead,
    OrderPage,
    OrderRead,
    OrderRoutingRead,
    PickItem,
    PlannedShipment,
    RerouteRequest,
    RoutePreviewRequest,
    RouteRead,
    ShipmentLine,
    ShipmentRead,
    ShipmentTransitionRequest,
    StateMachineRead,
    TransitionRead,
    TransitionRequest,
)
from oms.routing.domain import RoutePlan
from oms.routing.service import Address as RouteAddress
from oms.shared.clock import utcnow
from oms.shared.errors import Forbidden
from oms.shared.jsonenc import FastJSONResponse
from oms.shared.logging import request_id_var
from oms.shared.openapi import AUTH_PROBLEMS, problems
from oms.shared.roles import Role
from oms.shared.timestamps import RULE as TIMESTAMP_RULE
from oms.shared.timestamps import Timestamp

router = APIRouter(prefix="/v1", tags=["orders"])

Reader = Annotated[Principal, Depends(require(Role.STOREFRONT, Role.FULFILLMENT))]
Creator = Annotated[Principal, Depends(require(Role.STOREFRONT))]
Mover = Annotated[Principal, Depends(require(Role.STOREFRONT, Role.FULFILLMENT))]
OrderCursor = Annotated[
    # the pattern is documented, not enforced here: any other text is 400 `invalid_cursor`
    Annotated[str, Field(json_schema_extra={"pattern": r"^[A-Za-z0-9_-]+$"})] | None,
    Query(
        max_length=200,
        description="The `next_cursor` of the previous page, as it was given (opaque, "
        "base64url; 400 `invalid_cursor` for anything else)",
    ),
]


def document_read(doc: service.OrderDocument) -> OrderRead:
    return views.to_read(doc.order, doc.shipments, doc.holds)


async def read_listed(session: Session, orders: list[Order]) -> list[OrderRead]:
    """Orders a read listed, as the API shows them: read again whole in one statement."""
    docs = await service.order_documents(session, order_ids=[o.id for o in orders])
    return [document_read(d) for d in docs]


@router.post(
    "/orders",
    status_code=201,
    response_model=OrderRead,
    summary="Place an order",
    description=(
        "Creates an order in status `placed`. Totals are computed by the server in integer minor "
        "units. Send an `Idempotency-Key` header to retry safely: the same key with the same body "
        "returns the first response (with `Idempotent-Replayed: true`); the same key with a "
        "different body is rejected with 422 `idempotency_key_reused`. `external_reference` is "
        "unique per channel (409 `duplicate_external_reference`)."
    ),
    responses=problems(
        400,
        404,
        409,
        413,
        415,
        *AUTH_PROBLEMS,
        retry_after=(409, 503),
        d404="`pickup_store` names no warehouse or store (`warehouse_not_found`)",
        d409="`insufficient_stock` (with `short_lines`; nothing is stored), "
        "`duplicate_external_reference` (with the existing `order_id`), "
        "`idempotency_in_progress` (the first request with this key is still running), or "
        "`stock_contention` (stock kept moving while routing: retry after `Retry-After` "
        "seconds)",
        d422="`validation_error` (with `errors`), `idempotency_key_reused`, or `unknown_sku`: "
        "a line's SKU has no stock level in any warehouse (with `unknown_lines`: `line_no` "
        "from 1, `sku`, `quantity`; also on a channel that takes backorders; nothing is stored)",
    ),
)
async def create_order(
    data: OrderCreate,
    request: Request,
    response: Response,
    session: Session,
    principal: Creator,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key", min_length=1, max_length=255, description="Unique per request"
        ),
    ] = None,
) -> OrderRead | Response:
    settings = request.app.state.settings
    idempotent = None
    if idempotency_key is not None:
        idempotent = service.IdempotentRequest(
            scope=str(principal.key_id),
            key=idempotency_key,
            fingerprint=service.request_fingerprint(data),
            ttl=timedelta(hours=settings.idempotency_ttl_hours),
        )
        stored = await service.claim_idempotency_key(
            session,
            scope=idempotent.scope,
            key=idempotent.key,
            fingerprint=idempotent.fingerprint,
            ttl=idempotent.ttl,
        )
        if stored is not None:
            return _replay(stored, response)
    try:
        placed = await service.place_order_with_shipments(
            session,
            data=data,
            principal=principal,
            request_id=request_id_var.get(),
            idempotency=idempotent,
            restartable=True,  # the transaction holds only the key's claim: restart on a stock move
        )
    except service.IdempotentReplay as replayed:
        return _replay(replayed.stored, response)
    body = placed.body if placed.body is not None else views.render(placed.order, placed.shipments)
    # Already validated and in JSON form: skip FastAPI's second pass through the response model.
    return FastJSONResponse(
        body, status_code=201, headers={"Location": f"/v1/orders/{placed.order.id}"}
    )


def _replay(stored: service.StoredResponse, response: Response) -> OrderRead:
    """The committed response of the first request with this Idempotency-Key."""
    replay = OrderRead.model_validate(stored.body)
    response.status_code = stored.status
    response.headers["Idempotent-Replayed"] = "true"
    response.headers["Location"] = f"/v1/orders/{replay.id}"
    return replay


@router.get(
    "/orders",
    response_model=OrderPage,
    summary="List orders",
    description=(
        "Newest first, with filters and cursor pagination (`next_cursor`). The filters choose "
        "the page; each order on it is then shown whole as it is at that moment (its lines, "
        "shipments and holds from one snapshot): an order that changed in between may no "
        "longer match a filter on its status or blockers."
    ),
    responses=problems(400, *AUTH_PROBLEMS),
)
async def list_orders(
    session: Session,
    principal: Reader,
    status: Annotated[list[domain.OrderStatus] | None, Query(description="Repeatable")] = None,
    channel: Annotated[str | None, Query(max_length=64)] = None,
    customer_id: Annotated[str | None, Query(max_length=128)] = None,
    customer_email: Annotated[EmailStr | None, Query()] = None,
    created_from: Annotated[
        Timestamp | None, Query(description=f"Inclusive; {TIMESTAMP_RULE}")
    ] = None,
    created_to: Annotated[
        Timestamp | None, Query(description=f"Exclusive; {TIMESTAMP_RULE}")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: OrderCursor = None,
    blocked_by: Annotated[
        Literal["hold", "payment", "backorder", "wave"] | None,
        Query(
            description="Only orders not yet shipped that this blocker stops (see "
            "`GET /v1/orders/{id}/blockers`): `hold` (a hold stands), `payment` (not paid, not "
            "cash on delivery), `backorder` (backordered units), `wave` (waiting for its "
            "channel's next wave)"
        ),
    ] = None,
) -> OrderPage:
    orders, next_cursor = await service.list_orders(
        session,
        principal=principal,
        filters=service.OrderFilter(
            blocked_by=blocked_by,
            status=status,
            channel=channel,
            customer_id=customer_id,
            customer_email=customer_email,
            created_from=created_from,
            created_to=created_to,
        ),
        limit=limit,
        cursor=cursor,
    )
    return OrderPage(items=await read_listed(session, orders), next_cursor=next_cursor)


@router.get(
    "/customers/{customer_id}/orders",
    response_model=OrderPage,
    summary="A customer's order history",
    responses=problems(400, *AUTH_PROBLEMS),
)
async def customer_orders(
    customer_id: Annotated[str, Path(min_length=1, max_length=128)],
    session: Session,
    principal: Reader,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: OrderCursor = None,
) -> OrderPage:
    orders, next_cursor = await service.list_orders(
        session,
        principal=principal,
        filters=service.OrderFilter(customer_id=customer_id),
        limit=limit,
        cursor=cursor,
    )
    return OrderPage(items=await read_listed(session, orders), next_cursor=next_cursor)


@router.get(
    "/orders/{order_id}",
    response_model=OrderRead,
    summary="Get an order",
    responses=problems(404, *AUTH_PROBLEMS),
)
async def get_order(order_id: uuid.UUID, session: Session, principal: Reader) -> OrderRead:
    doc = await service.get_order_document(session, order_id=order_id, principal=principal)
    return document_read(doc)


@router.post(
    "/orders/{order_id}/transitions",
    response_model=OrderRead,
    summary="Move an order to its next status",
    description=(
        "Applies one transition of the state machine (see `GET /v1/order-state-machine`). "
        "Illegal moves get 409 `illegal_transition` naming the current status and the allowed "
        "next ones; shipping needs `carrier` and `tracking_number` (422 "
        "`shipping_details_required`); a concurrent change gets 409 `concurrent_modification`. "
        "A held order is not picked, packed or shipped: 409 `order_on_hold` naming its `holds` "
        "(it can still be cancelled)."
    ),
    responses=problems(404, 409, *AUTH_PROBLEMS),
)
async def transition_order(
    order_id: uuid.UUID, change: TransitionRequest, session: Session, principal: Mover
) -> OrderRead:
    order = await fulfilment.transition_order(
        session,
        order_id=order_id,
        change=change,
        principal=principal,
        request_id=request_id_var.get(),
    )
    return document_read(await service.read_after_change(session, order_id=order.id))


@router.get(
    "/orders/{order_id}/history",
    response_model=list[OrderEventRead],
    summary="An order's history: who moved it, when, and why",
    responses=problems(404, *AUTH_PROBLEMS),
)
async def order_history(
    order_id: uuid.UUID, session: Session, principal: Reader
) -> list[OrderEventRead]:
    events = await service.order_history(session, order_id=order_id, principal=principal)
    return [OrderEventRead.model_validate(e, from_attributes=True) for e in events]


@router.get(
    "/order-state-machine",
    response_model=StateMachineRead,
    response_model_by_alias=True,
    summary="The order state machine (machine-readable transition table)",
    tags=["meta"],
)
async def state_machine() -> StateMachineRead:
    return StateMachineRead(
        states=list(domain.OrderStatus),
        initial=domain.OrderStatus.PLACED,
        terminal=sorted(domain.TERMINAL),
        transitions=[
            TransitionRead(
                source=t.source,
                target=t.target,
                roles=sorted(r.value for r in t.roles),
                conditions=sorted(c.value for c in t.conditions),
            )
            for t in domain.TRANSITIONS
        ],
        mermaid=domain.mermaid(),
    )


@router.get(
    "/orders/{order_id}/routing",
    response_model=OrderRoutingRead,
    summary="Why the order ships from where it does",
    description="The stored routing decision: chosen warehouses, backorders, and the full "
    "explanation (every candidate, exclusion reasons, distances, the deciding rule, runner-up). "
    "It is the order's current plan: a shipment exception, move, split, merge or an edit "
    "rewrites it (`change` says which and when) and keeps the plan of placement under "
    "`placement`.",
    responses=problems(404, *AUTH_PROBLEMS),
)
async def order_routing(
    order_id: uuid.UUID, session: Session, principal: Reader
) -> OrderRoutingRead:
    order = await service.get_order(session, order_id=order_id, principal=principal)
    routing = order.routing or {"warehouses": [], "fully_filled": False, "backorders": []}
    return OrderRoutingRead(
        order_id=order.id,
        warehouses=routing["warehouses"],
        fully_filled=routing["fully_filled"],
        backorders=routing["backorders"],
        explanation=routing.get("explanation") or None,
        change=routing.get("change"),
        placement=routing.get("placement"),
    )


@router.post(
    "/orders/{order_id}/reroute",
    response_model=OrderRead,
    summary="Release an order's reservations and route it again",
    description="For placed or paid orders whose shipments are all still pending (e.g. a "
    "warehouse went offline). Recorded in the order history as `rerouted`. 409 "
    "`insufficient_stock` if it can no longer be filled (nothing changes).",
    responses=problems(404, 409, *AUTH_PROBLEMS),
)
async def reroute(
    order_id: uuid.UUID,
    body: RerouteRequest,
    session: Session,
    principal: Annotated[Principal, Depends(require(Role.ADMIN))],
) -> OrderRead:
    order = await service.reroute_order(
        session,
        order_id=order_id,
        principal=principal,
        reason=body.reason,
        request_id=request_id_var.get(),
    )
    return document_read(await service.read_after_change(session, order_id=order.id))


def route_read(
    plan: RoutePlan,
    promises: promising.PlanPromises | None = None,
    requested: list[tuple[str, int]] | None = None,
) -> RouteRead:
    codes = {c.warehouse_id: c.code for c in plan.explanation.candidates}
    shipments = [
        PlannedShipment(
            warehouse=codes[w],
            lines=[
                {"line_id": a.line_id, "sku": a.sku, "quantity": a.quantity}
                for a in plan.allocations
                if a.warehouse_id == w
            ],
            promise=promising.promise_body(promises.shipments.get(w)) if promises else None,
        )
        for w in plan.warehouses
    ]
    lines = promising.line_bodies(plan, promises, requested) if promises and requested else []
    return RouteRead(
        fully_filled=plan.fully_filled,
        parcels=len(plan.warehouses),
        shipments=shipments,
        short_lines=[
            {"line_id": s.line_id, "sku": s.sku, "requested": s.requested, "available": s.available}
            for s in plan.shortages
        ],
        lines=lines,
        explanation=plan.explanation.to_dict(),
    )


@router.post(
    "/routing/preview",
    response_model=RouteRead,
    summary="Preview where an order would ship from (nothing is reserved)",
    description="Routes the lines against current stock with the channel's policy and returns "
    "the planned parcels, any short lines and the explanation. For storefronts showing "
    "delivery options. A key bound to a channel previews that channel only (403 "
    "`channel_not_allowed`). A SKU no warehouse has a stock level for is 422 `unknown_sku` "
    "(with `unknown_lines`), as placing the order would be. Each parcel and each line carry "
    "their delivery promise (`promise`: earliest ship date, `ship_by`, delivery window), from "
    "the warehouse's calendar (`PUT /v1/warehouses/{code}/calendar`) and the transit table "
    "(`PUT /v1/transit-times/{country}`); backordered units are promised from the incoming "
    "supply of their SKU (sent purchase orders, expected receipts) after the units orders "
    "placed before wait for (`promise: null` when not enough is expected).",
    tags=["routing"],
    responses=problems(404, *AUTH_PROBLEMS),
)
async def preview(body: RoutePreviewRequest, session: Session, principal: Reader) -> RouteRead:
    if principal.channel is not None and body.channel != principal.channel:
        raise Forbidden(
            f"this API key is bound to channel '{principal.channel}'", code="channel_not_allowed"
        )
    addr = body.shipping_address
    plan = await service.preview_route(
        session,
        lines=[(ln.sku, ln.quantity) for ln in body.lines],
        address=RouteAddress(
            addr.country, addr.postal_code, addr.city, addr.latitude, addr.longitude
        ),
        channel=body.channel,
        pickup_code=body.pickup_store,
    )
    requested = [(ln.sku, ln.quantity) for ln in body.lines]
    promises = await promising.plan_promises(
        session, plan, at=utcnow(), country=addr.country, pickup=body.pickup_store is not None
    )
    return route_read(plan, promises, requested)


@router.post(
    "/shipments/{shipment_id}/transitions",
    response_model=ShipmentRead,
    summary="Move one shipment: picked, packed, shipped (carrier + tracking), delivered",
    description="Shipments move one step at a time. The order advances when all of its "
    "shipments have (e.g. the order becomes `shipped` when its last parcel ships). Picking "
    "needs the order paid, or cash on delivery (409 `order_not_ready`). A held order's "
    "shipments are not picked, packed or shipped (409 `order_on_hold` naming its `holds`).",
    tags=["fulfillment"],
    responses=problems(404, 409, *AUTH_PROBLEMS),
)
async def move_shipment(
    shipment_id: uuid.UUID,
    change: ShipmentTransitionRequest,
    session: Session,
    principal: Annotated[Principal, Depends(require(Role.FULFILLMENT))],
) -> ShipmentRead:
    shipment = await fulfilment.transition_shipment(
        session,
        shipment_id=shipment_id,
        change=change,
        principal=principal,
        request_id=request_id_var.get(),
    )
    listed = (await service.shipments_for(session, order_ids=[shipment.order_id]))[
        shipment.order_id
    ]
    return views.shipment_read(next(v for v in listed if v.shipment.id == shipment.id))


@router.get(
    "/warehouses/{code}/pick-queue",
    response_model=list[PickItem],
    summary="Shipments waiting to be picked in a warehouse",
    description="Ready shipments (order paid, or cash on delivery): express first, then oldest.",
    tags=["fulfillment"],
    responses=problems(404, *AUTH_PROBLEMS),
)
async def pick_queue(
    code: str,
    session: Session,
    principal: Annotated[Principal, Depends(require(Role.FULFILLMENT))],
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[PickItem]:
    items = await service.pick_queue(session, warehouse_code=code, limit=limit, principal=principal)
    return [
        PickItem(
            shipment_id=sh.id,
            order_id=order.id,
            order_number=order.number,
            priority=domain.Priority(order.priority),
            placed_at=order.created_at,
            lines=[ShipmentLine(**ln) for ln in lines],
        )
        for sh, order, lines in items
    ]


# ---- edits and partial cancellation (orders.edits, flows.order_changes) --------------------

_EDIT_409 = (
    "`version_conflict` (`expected_version` is not the order's version: read it again), "
    "`units_not_editable` (the edit touches units in a picked or shipped shipment: `lines` and "
    "`shipments` name them), `edit_not_allowed` (the order is cancelled or returned), "
    "`insufficient_stock` (with `short_lines`), `stock_contention` (retry), or "
    "`idempotency_in_progress`"
)
_EDIT_422 = (
    "`validation_error`, `unknown_line` (a line id not on this order), `unknown_sku` (an added "
    "SKU no warehouse stocks), `empty_edit` (nothing would change), `empty_order` (every unit "
    "would go: cancel instead), or `idempotency_key_reused`"
)


@router.post(
    "/orders/{order_id}/edits",
    response_model=OrderChangeRead,
    summary="Edit an order's unpicked units (or preview the edit)",
    description="Add lines, remove lines, change quantities or the shipping address of a placed "
    "or paid order, as one atomic change under the order lock, guarded by `expected_version`. "
    "Lines with units in a picked (or later) shipment cannot change; the address only while "
    "every shipment is pending. The pending shipments the edit touches are cancelled and their "
    "stock released; the units left unallocated are routed again with the channel's policy and "
    "reserved. With `dry_run=true` nothing is written: the answer says what would change "
    "(lines, totals and tax, the new plan and its explanation, stock reserved and released per "
    "warehouse, the payment balance). Send an `Idempotency-Key` to retry safely: the same key "
    "and body replay the first response (`Idempotent-Replayed: true`). Recorded as `edited` in "
    "the history; event `order.edited`.",
    responses=problems(404, 409, *AUTH_PROBLEMS, d409=_EDIT_409, d422=_EDIT_422),
)
async def edit_order(
    order_id: uuid.UUID,
    body: OrderEditRequest,
    request: Request,
    response: Response,
    session: Session,
    principal: Creator,
    dry_run: Annotated[
        bool, Query(description="Only say what the edit would change; write nothing")
    ] = False,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key", min_length=1, max_length=255, description="Unique per edit"
        ),
    ] = None,
) -> OrderChangeRead:
    ttl = timedelta(hours=request.app.state.settings.idempotency_ttl_hours)
    status, out, replayed = await order_changes.edit_order(
        session,
        order_id=order_id,
        edit=body,
        principal=principal,
        request_id=request_id_var.get(),
        dry_run=dry_run,
        idempotency=None
        if idempotency_key is None
        else order_changes.Idempotency(key=idempotency_key, ttl=ttl),
    )
    response.status_code = status
    if replayed:
        response.headers["Idempotent-Replayed"] = "true"
    return OrderChangeRead.model_validate(out)


@router.post(
    "/orders/{order_id}/cancel-lines",
    response_model=OrderChangeRead,
    summary="Cancel some units of some lines (partial cancellation)",
    description="Cancels units of a placed or paid order that are not picked: their stock is "
    "released, the lines keep their cancelled counts, totals and tax are recomputed and the "
    "payment balance reported (`refund_due`). With `refund: true` (admin keys) what was paid "
    "beyond the new total is refunded in the same transaction. When no unit is left the order "
    "is cancelled (history `lines_cancelled`, then the `cancelled` transition). Events "
    "`order.lines_cancelled` (and `order.cancelled`).",
    responses=problems(
        404,
        409,
        *AUTH_PROBLEMS,
        d409=_EDIT_409,
        d422="`validation_error`, `unknown_line`, or `cancel_exceeds_quantity` (more units than "
        "the line has)",
    ),
)
async def cancel_lines(
    order_id: uuid.UUID,
    body: CancelLinesRequest,
    session: Session,
    principal: Creator,
) -> OrderChangeRead:
    out = await order_changes.cancel_lines(
        session,
        order_id=order_id,
        request=body,
        principal=principal,
        request_id=request_id_var.get(),
    )
    return OrderChangeRead.model_validate(out)
