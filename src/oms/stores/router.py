"""HTTP routes of stores as fulfilment points (#19): click and collect (pickups and each
store's terms), transfers between locations, and fulfilment keys scoped to locations."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from oms.auth.service import Principal
from oms.deps import Session, require
from oms.flows import pickup as pickup_flow
from oms.flows import pos as pos_flow
from oms.flows import transfers as transfer_flow
from oms.inventory import service as inventory_service
from oms.shared.logging import request_id_var
from oms.shared.openapi import AUTH_PROBLEMS, CodePath, problems
from oms.shared.roles import Role
from oms.stores import service
from oms.stores.schemas import (
    CollectRequest,
    KeyScopeRead,
    KeyScopeWrite,
    PickupRead,
    StorePolicyRead,
    StorePolicyWrite,
    TillBatchItem,
    TillBatchRead,
    TillSaleBatch,
    TillSaleCreate,
    TillSaleRead,
    TransferCreate,
    TransferLineCreate,
    TransferRead,
    TransferReceive,
    TransferShip,
    TransferStatus,
)

router = APIRouter(prefix="/v1", tags=["stores"])
Staff = Annotated[Principal, Depends(require(Role.FULFILLMENT))]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]

_SCOPED = (
    " A fulfilment key scoped to other locations gets 404, as if it did not exist "
    "(`PUT /v1/api-keys/{key_id}/warehouses`)."
)


def _defaults(request: Request) -> service.PickupTerms:
    settings = request.app.state.settings
    return service.PickupTerms(
        pickup_window_hours=settings.pickup_window_hours,
        uncollected_action=settings.pickup_uncollected_action,
        max_code_attempts=settings.pickup_max_code_attempts,
        default=True,
    )


def _pickup_read(result: pickup_flow.PickupResult) -> PickupRead:
    p = result.pickup
    return PickupRead(
        shipment_id=p.shipment_id,
        order_id=p.order_id,
        store=result.shipment.warehouse_code,
        status=p.status,
        shipment_status=result.shipment.status,
        order_status=result.order.status,
        attempts=p.attempts,
        attempts_left=max(0, p.max_attempts - p.attempts),
        uncollected_action=p.uncollected_action,
        ready_at=p.ready_at,
        collect_by=p.collect_by,
        closed_at=p.closed_at,
    )


# ---- click and collect -------------------------------------------------------------------


@router.post(
    "/pickups/{shipment_id}/ready",
    response_model=PickupRead,
    summary="A click-and-collect shipment is ready at its store",
    description="The picked shipment of a click-and-collect order waits at the counter: it "
    "becomes `ready_for_pickup` (no packing, no carrier), and the order with it once all its "
    "shipments are. A collection code is drawn and the deadline set from the store's terms "
    "(`GET /v1/stores/{code}/policy`); `pickup.ready` carries the code, the deadline and the "
    "customer's contact for the customer's message (the code is never in an answer). 409 "
    "`not_a_pickup` (the order ships), `illegal_shipment_transition` (not picked), "
    "`order_on_hold`, `awaiting_transfer` (a transfer bringing its units, `transfer_id`, "
    "has not been received)." + _SCOPED,
    responses=problems(404, 409, *AUTH_PROBLEMS),
)
async def ready(
    shipment_id: uuid.UUID, request: Request, session: Session, principal: Staff
) -> PickupRead:
    result = await pickup_flow.make_ready(
        session,
        shipment_id=shipment_id,
        principal=principal,
        defaults=_defaults(request),
        request_id=request_id_var.get(),
    )
    return _pickup_read(result)


@router.post(
    "/pickups/{shipment_id}/collect",
    response_model=PickupRead,
    summary="The customer collects a click-and-collect order",
    description="Checks the collection code, then the shipment is `collected`: its units "
    "leave the store (consumed: a `shipment` movement in the ledger) and the order is "
    "`delivered` once all its shipments are (cash on delivery is captured then). A wrong code "
    "is 422 `collection_code_invalid` with `attempts_left`, and counts; after the store's "
    "allowance 409 `collection_locked` until a new code is issued. 409 `pickup_not_ready` "
    "(not ready, already collected, or marked uncollected). `pickup.collected` is recorded."
    + _SCOPED,
    responses=problems(404, 409, 422, *AUTH_PROBLEMS),
)
async def collect(
    shipment_id: uuid.UUID, body: CollectRequest, session: Session, principal: Staff
) -> PickupRead:
    result = await pickup_flow.collect(
        session,
        shipment_id=shipment_id,
        code=body.code,
        principal=principal,
        request_id=request_id_var.get(),
    )
    return _pickup_read(result)


@router.post(
    "/pickups/{shipment_id}/code",
    response_model=PickupRead,
    summary="Issue a new collection code",
    description="For a waiting pickup (lost message, or locked after wrong codes): a new code, "
    "the wrong attempts reset, the deadline unchanged; sent again as `pickup.ready`. 409 "
    "`pickup_not_ready`." + _SCOPED,
    responses=problems(404, 409, *AUTH_PROBLEMS),
)
async def reissue_code(shipment_id: uuid.UUID, session: Session, principal: Staff) -> PickupRead:
    result = await pickup_flow.reissue_code(
        session, shipment_id=shipment_id, principal=principal, request_id=request_id_var.get()
    )
    return _pickup_read(result)


@router.get(
    "/pickups/{shipment_id}",
    response_model=PickupRead,
    summary="A click-and-collect pickup",
    description="Its state, wrong attempts and deadline (never the code). 404 "
    "`pickup_not_found` before it is ready." + _SCOPED,
    responses=problems(404, *AUTH_PROBLEMS),
)
async def get_pickup(shipment_id: uuid.UUID, session: Session, principal: Staff) -> PickupRead:
    result = await pickup_flow.read_pickup(session, shipment_id=shipment_id, principal=principal)
    return _pickup_read(result)


@router.get(
    "/stores/{code}/policy",
    response_model=StorePolicyRead,
    summary="A store's click-and-collect terms",
    description="How long a ready order waits, what an uncollected one becomes, how many wrong "
    "codes are allowed: the store's own terms, or the settings' (`default`: true). 404 "
    "`warehouse_not_found`.",
    responses=problems(404, *AUTH_PROBLEMS),
)
async def get_policy(
    code: CodePath, request: Request, session: Session, principal: Staff
) -> StorePolicyRead:
    wh = await inventory_service.get_warehouse(session, code=code)
    terms = await service.terms_for(session, warehouse_id=wh.id, defaults=_defaults(request))
    return StorePolicyRead(store=wh.code, **_terms(terms))


def _terms(terms: service.PickupTerms) -> dict[str, object]:
    return {
        "pickup_window_hours": terms.pickup_window_hours,
        "uncollected_action": terms.uncollected_action,
        "max_code_attempts": terms.max_code_attempts,
        "default": terms.default,
    }


@router.put(
    "/stores/{code}/policy",
    response_model=StorePolicyRead,
    summary="Set a store's click-and-collect terms",
    description="Pickups made ready from now on wait `pickup_window_hours`; then the worker "
    "marks them uncollected: the order is cancelled (its units sellable again at the store) "
    "and, with `refund`, what was captured is refunded (`pickup.uncollected`). Pickups already "
    "waiting keep their terms. 404 `warehouse_not_found`.",
    responses=problems(404, *AUTH_PROBLEMS),
)
async def put_policy(
    code: CodePath, body: StorePolicyWrite, session: Session, principal: Admin
) -> StorePolicyRead:
    wh = await inventory_service.get_warehouse(session, code=code)
    terms = await service.put_terms(
        session,
        warehouse_id=wh.id,
        terms=service.PickupTerms(
            pickup_window_hours=body.pickup_window_hours,
            uncollected_action=body.uncollected_action.value,
            max_code_attempts=body.max_code_attempts,
            default=False,
        ),
    )
    return StorePolicyRead(store=wh.code, **_terms(terms))


# ---- transfers ---------------------------------------------------------------------------


def _transfer_read(view: service.TransferView, filled: int = 0) -> TransferRead:
    t = view.transfer
    return TransferRead(
        id=t.id,
        from_warehouse=view.from_code,
        to_warehouse=view.to_code,
        status=TransferStatus(t.status),
        expected_on=t.expected_on,
        reference=t.reference,
        note=t.note,
        lines=[
            {
                "sku": ln.sku,
                "quantity": ln.quantity,
                "received": ln.received,
                "short": ln.short,
                "over": ln.over,
                "in_transit": service.in_transit(ln, t.status),
            }
            for ln in view.lines
        ],
        created_by=t.created_by,
        created_at=t.created_at,
        shipped_at=t.shipped_at,
        received_at=t.received_at,
        cancelled_at=t.cancelled_at,
        backorder_units_filled=filled,
        order_id=t.order_id,
        shipment_id=t.shipment_id,
        routing=t.routing,
    )


def _units(lines: list[TransferLineCreate]) -> list[inventory_service.Units]:
    return [inventory_service.Units(ln.sku, ln.quantity) for ln in lines]


@router.post(
    "/transfers",
    status_code=201,
    response_model=TransferRead,
    summary="Draft a transfer between two locations",
    description="A draft: nothing moves until it is shipped. 404 `warehouse_not_found`; 422 "
    "`same_location`, `duplicate_sku`. A scoped key drafts from its own locations only.",
    responses=problems(404, 422, *AUTH_PROBLEMS),
)
async def create_transfer(body: TransferCreate, session: Session, principal: Staff) -> TransferRead:
    view = await service.create_transfer(
        session,
        from_code=body.from_warehouse,
        to_code=body.to_warehouse,
        lines=_units(list(body.lines)),
        expected_on=body.expected_on,
        reference=body.reference,
        note=body.note,
        principal=principal,
    )
    return _transfer_read(view)


@router.post(
    "/transfers/{transfer_id}/ship",
    response_model=TransferRead,
    summary="Ship a transfer: the units leave the source",
    description="Draft → shipped. The units leave the source's on hand (a `transfer_out` "
    "movement per SKU; never units reserved for open orders: 409 `insufficient_stock` with "
    "`short_lines`, and nothing moves) and are in transit: incoming at the destination on "
    "`expected_on` (shown by `GET /v1/inventory/availability`). 409 "
    "`illegal_transfer_transition`. `transfer.shipped` is recorded. A transfer to fulfil a "
    "pickup order (`order_id`) takes the units reserved for it at the source; they are "
    "backordered on the order until received." + _SCOPED,
    responses=problems(404, 409, *AUTH_PROBLEMS),
)
async def ship_transfer(
    transfer_id: uuid.UUID, session: Session, principal: Staff, body: TransferShip | None = None
) -> TransferRead:
    view = await transfer_flow.ship(
        session,
        transfer_id=transfer_id,
        expected_on=body.expected_on if body else None,
        principal=principal,
    )
    return _transfer_read(view)


@router.post(
    "/transfers/{transfer_id}/receive",
    response_model=TransferRead,
    summary="Receive units of a shipped transfer at its destination",
    description="Partial receipts are fine: each books the arrived units in (`transfer_in`); "
    "units beyond what was shipped are their own `transfer_over` movement. With `close` (or "
    "once every unit is accounted for) the transfer is `received`; units still missing are "
    "booked as a `transfer_short` movement at the destination. Then the destination's "
    "backorders of those SKUs are filled (as after any stock arrival; "
    "`backorder_units_filled`). 409 `illegal_transfer_transition`; 422 "
    "`transfer_sku_unknown`, `empty_receipt` (no units and no `close`). `transfer.received` "
    "is recorded." + _SCOPED,
    responses=problems(404, 409, 422, *AUTH_PROBLEMS),
)
async def receive_transfer(
    transfer_id: uuid.UUID, body: TransferReceive, session: Session, principal: Staff
) -> TransferRead:
    view, filled = await transfer_flow.receive(
        session,
        transfer_id=transfer_id,
        lines=_units(list(body.lines)),
        close=body.close,
        principal=principal,
        request_id=request_id_var.get(),
    )
    return _transfer_read(view, filled)


@router.post(
    "/transfers/{transfer_id}/cancel",
    response_model=TransferRead,
    summary="Cancel a draft transfer",
    description="Only a draft (nothing has moved): 409 `illegal_transfer_transition` "
    "otherwise; 409 `transfer_fulfils_order` for a transfer to fulfil a pickup order (it is "
    "cancelled with its order). `transfer.cancelled` is recorded." + _SCOPED,
    responses=problems(404, 409, *AUTH_PROBLEMS),
)
async def cancel_transfer(
    transfer_id: uuid.UUID, session: Session, principal: Staff
) -> TransferRead:
    view = await service.cancel_transfer(session, transfer_id=transfer_id, principal=principal)
    return _transfer_read(view)


@router.get(
    "/transfers/{transfer_id}",
    response_model=TransferRead,
    summary="A transfer, with the units in transit",
    description="404 `transfer_not_found`." + _SCOPED,
    responses=problems(404, *AUTH_PROBLEMS),
)
async def get_transfer(transfer_id: uuid.UUID, session: Session, principal: Staff) -> TransferRead:
    return _transfer_read(
        await service.get_transfer(session, transfer_id=transfer_id, principal=principal)
    )


@router.get(
    "/transfers",
    response_model=list[TransferRead],
    summary="List transfers",
    description="Newest first; `warehouse`: from or to that location; a scoped key sees the "
    "transfers from or to its locations only. 404 `warehouse_not_found`.",
    responses=problems(404, *AUTH_PROBLEMS),
)
async def list_transfers(
    session: Session,
    principal: Staff,
    warehouse: Annotated[str | None, Query(max_length=32)] = None,
    status: TransferStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> list[TransferRead]:
    views = await service.list_transfers(
        session,
        principal=principal,
        warehouse_code=warehouse,
        status=status.value if status else None,
        limit=limit,
    )
    return [_transfer_read(v) for v in views]


# ---- store staff: scoped keys ------------------------------------------------------------


@router.put(
    "/api-keys/{key_id}/warehouses",
    response_model=KeyScopeRead,
    summary="Scope a fulfilment key to warehouses or stores",
    description="The key then sees and moves only those locations' shipments (moves, "
    "exceptions, pickups), pick queues, transfers and stock, and gets 404 for the rest. An "
    "empty list lifts the scope. 404 `api_key_not_found`, `warehouse_not_found`; 422 "
    "`key_not_scopable` (not a fulfillment key).",
    responses=problems(404, 422, *AUTH_PROBLEMS),
)
async def scope_key(
    key_id: uuid.UUID, body: KeyScopeWrite, session: Session, principal: Admin
) -> KeyScopeRead:
    codes = await service.scope_key(session, key_id=key_id, codes=list(body.warehouses))
    return KeyScopeRead(key_id=key_id, warehouses=codes)


# ---- point of sale -----------------------------------------------------------------------


def _sale(body: TillSaleCreate) -> pos_flow.Sale:
    return pos_flow.Sale(
        receipt_id=body.receipt_id,
        currency=body.currency,
        lines=[
            pos_flow.SaleLine(ln.sku, ln.quantity, ln.unit_price, ln.tax_rate_bps, ln.name)
            for ln in body.lines
        ],
        payment_method=pos_flow.PaymentMethod(body.payment_method.value),
        customer_id=body.customer_id,
        customer_email=body.customer_email,
        sold_at=body.sold_at,
    )


def _sale_read(store: str, result: pos_flow.SaleResult) -> TillSaleRead:
    till, order = result.sale, result.order
    return TillSaleRead(
        receipt_id=till.receipt_id,
        store=store,
        order_id=order.id,
        order_number=order.number,
        order_status=order.status,
        total=order.total_amount,
        currency=order.currency,
        sold_at=till.sold_at,
        offline=till.offline,
        replayed=result.replayed,
        stock_discrepancy=till.stock_discrepancy,
        uncovered=till.uncovered,
    )


@router.post(
    "/stores/{code}/sales",
    status_code=201,
    response_model=TillSaleRead,
    summary="Record a sale at a store's till",
    description="Placed, paid and handed over in one call: an order of channel `pos` "
    "(fulfilment `counter`) is created `placed` → `paid` (a captured payment, provider "
    "`till`) → `delivered`, its units taken off the store's on hand at once (a `sale` "
    "movement; no reservation), with the usual history and events (`order.placed`, "
    "`order.paid`, `order.delivered`...), in the reports like any order. Retry-safe by "
    "`receipt_id`: the same receipt again answers 200 with the first sale's order "
    "(`replayed`: true), once only even under concurrent retries; other content under a "
    "known receipt id is 409 `receipt_conflict`. Units the store's stock no longer holds "
    "unreserved are still sold: the sale is flagged `stock_discrepancy` (`uncovered`, "
    "`store.stock_discrepancy` event). 404 `warehouse_not_found`; 422 `sold_in_the_future`."
    + _SCOPED,
    responses={
        200: {
            "model": TillSaleRead,
            "description": "A retry of a recorded receipt: the first sale's order (`replayed`)",
        },
        **problems(404, 409, 422, *AUTH_PROBLEMS),
    },
)
async def record_sale(
    code: str, body: TillSaleCreate, response: Response, session: Session, principal: Staff
) -> TillSaleRead:
    result = await pos_flow.record_sale(
        session,
        store_code=code,
        sale=_sale(body),
        principal=principal,
        offline=False,
        request_id=request_id_var.get(),
    )
    if result.replayed:
        response.status_code = 200
    return _sale_read(code, result)


@router.post(
    "/stores/{code}/sales/batch",
    response_model=TillBatchRead,
    summary="Post a till's offline sales in one batch",
    description="Each sale as in `POST /v1/stores/{code}/sales` (marked `offline`, dated "
    "`sold_at`), idempotent per receipt: a batch sent twice records each sale once "
    "(`replayed`). A receipt refused on its own (`receipt_conflict`, `sold_in_the_future`) "
    "is reported in its result with the problem, and the others stand. A sale the stock can "
    "no longer cover is recorded and flagged, never dropped. 404 `warehouse_not_found`." + _SCOPED,
    responses=problems(404, 422, *AUTH_PROBLEMS),
)
async def record_batch(
    code: str, body: TillSaleBatch, session: Session, principal: Staff
) -> TillBatchRead:
    items = await pos_flow.record_batch(
        session,
        store_code=code,
        sales=[_sale(s) for s in body.sales],
        principal=principal,
        request_id=request_id_var.get(),
    )
    results = [
        TillBatchItem(
            receipt_id=item.receipt_id,
            outcome="refused"
            if item.result is None
            else ("replayed" if item.result.replayed else "recorded"),
            sale=None if item.result is None else _sale_read(code, item.result),
            problem=item.problem,
        )
        for item in items
    ]
    return TillBatchRead(
        recorded=sum(r.outcome == "recorded" for r in results),
        replayed=sum(r.outcome == "replayed" for r in results),
        refused=sum(r.outcome == "refused" for r in results),
        results=results,
    )
