"""HTTP routes of the inventory API: warehouses, stock, ledger, availability, replenishment."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query
from fastapi import Path as FastPath

from oms.auth.service import Principal, visible_warehouses
from oms.deps import Session, require
from oms.flows import backorders
from oms.inventory import service
from oms.inventory.schemas import (
    AdjustmentCreate,
    BulkLoad,
    BulkResult,
    IncomingCreate,
    IncomingRead,
    LevelRead,
    LevelSettings,
    MovementRead,
    ReplenishmentRead,
    SkuAvailabilityRead,
    WarehouseCreate,
    WarehouseRead,
    WarehouseUpdate,
    level_read,
)
from oms.shared.logging import request_id_var
from oms.shared.openapi import AUTH_PROBLEMS, MAX_BIGINT, CodePath, problems
from oms.shared.roles import Role
from oms.shared.timestamps import RULE as TIMESTAMP_RULE
from oms.shared.timestamps import Timestamp

router = APIRouter(prefix="/v1", tags=["inventory"])

Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
Stocker = Annotated[Principal, Depends(require(Role.FULFILLMENT))]
Reader = Annotated[Principal, Depends(require(Role.FULFILLMENT, Role.STOREFRONT))]


@router.post(
    "/warehouses",
    status_code=201,
    response_model=WarehouseRead,
    summary="Create a warehouse or store",
    responses=problems(409, *AUTH_PROBLEMS),
)
async def create_warehouse(body: WarehouseCreate, session: Session, _: Admin) -> WarehouseRead:
    wh = await service.create_warehouse(session, values=body.model_dump(exclude_none=True))
    return WarehouseRead.model_validate(wh)


@router.get(
    "/warehouses",
    response_model=list[WarehouseRead],
    summary="List warehouses",
    responses=problems(*AUTH_PROBLEMS),
)
async def list_warehouses(session: Session, _: Reader) -> list[WarehouseRead]:
    return [WarehouseRead.model_validate(w) for w in await service.list_warehouses(session)]


@router.get(
    "/warehouses/{code}",
    response_model=WarehouseRead,
    summary="Get a warehouse",
    responses=problems(404, *AUTH_PROBLEMS),
)
async def get_warehouse(code: CodePath, session: Session, _: Reader) -> WarehouseRead:
    return WarehouseRead.model_validate(await service.get_warehouse(session, code=code))


@router.patch(
    "/warehouses/{code}",
    response_model=WarehouseRead,
    summary="Update or deactivate a warehouse",
    description="`active: false` deactivates it: it keeps its stock and history but receives "
    "no new allocations (re-route open orders with `POST /v1/orders/{id}/reroute`).",
    responses=problems(404, *AUTH_PROBLEMS),
)
async def update_warehouse(
    code: CodePath, body: WarehouseUpdate, session: Session, _: Admin
) -> WarehouseRead:
    values = body.model_dump(exclude_unset=True)
    wh = await service.update_warehouse(session, code=code, values=values)
    return WarehouseRead.model_validate(wh)


@router.post(
    "/inventory/adjustments",
    status_code=201,
    response_model=LevelRead,
    summary="Receive, count or correct stock",
    description="Every adjustment writes a ledger movement. `count` can be guarded with "
    "`expected_on_hand` (409 `count_guard_mismatch`). On hand can never go below the units "
    "reserved for open orders (409 `below_reserved`). When units are available after it, "
    "placed and paid orders waiting for the SKU (backorders) are filled in the same request, "
    "after the adjustment is committed: express first, then oldest first (at most 20 orders; "
    "the worker fills the rest), each reserved, routed and announced (`order.backorder_filled`); "
    "the answer shows the level after those fills.",
    responses=problems(404, 409, *AUTH_PROBLEMS),
)
async def adjust(body: AdjustmentCreate, session: Session, principal: Stocker) -> LevelRead:
    view = await service.adjust_stock(
        session,
        warehouse_code=body.warehouse,
        sku=body.sku,
        kind=body.type,
        quantity=body.quantity,
        expected_on_hand=body.expected_on_hand,
        reason=body.reason,
        reference=body.reference,
        actor=principal.actor,
        scope=visible_warehouses(principal),
    )
    if view.available > 0:  # orders waiting for this SKU are filled now (FIFO, express first)
        filled = await backorders.fill_after_stock_change(
            session,
            skus=[body.sku],
            actor=principal.actor,
            actor_role=principal.role.value,
            request_id=request_id_var.get(),
        )
        if filled:  # answer with the level as the fills left it
            session.expire_all()
            view = (
                await service.list_levels(
                    session, warehouse_code=body.warehouse, sku=body.sku, limit=1, offset=0
                )
            )[0]
    return level_read(view)


@router.post(
    "/inventory/bulk",
    response_model=BulkResult,
    summary="Load many stock levels at once (all or nothing)",
    description="Sets absolute on-hand quantities (a count per row, each written to the ledger) "
    "and optional settings, up to 10,000 rows, all or nothing. Every row is checked before "
    "anything is written: a bad row rejects the whole request with its row number (422 "
    "`bulk_row_invalid`). The rows are then applied set-based in chunks, the stock rows locked "
    "in the fixed lock order for the apply only, so orders placed meanwhile on the same SKUs "
    "wait a fraction of a second at most. A count below the units reserved for open orders "
    "rejects the whole request (409 `below_reserved`, with its `row`). Once the load is "
    "committed, orders waiting for its SKUs (backorders) are filled, as after an adjustment.",
    responses=problems(409, *AUTH_PROBLEMS),
)
async def bulk(body: BulkLoad, session: Session, principal: Admin) -> BulkResult:
    rows = [service.BulkRow(**r.model_dump()) for r in body.rows]
    count = await service.bulk_load(session, rows=rows, actor=principal.actor, reason=body.reason)
    await backorders.fill_after_stock_change(  # orders waiting for these SKUs, FIFO
        session,
        skus={r.sku for r in rows},
        actor=principal.actor,
        actor_role=principal.role.value,
        request_id=request_id_var.get(),
    )
    return BulkResult(rows=count)


@router.get(
    "/inventory/levels",
    response_model=list[LevelRead],
    summary="Stock levels per warehouse and SKU (now, or as of a past moment)",
    description="With `as_of` (ISO 8601 with a time zone), on hand and reserved are rebuilt "
    "as they were at that instant from the ledger (movements stamped at or before it) and "
    "the allocations (created by then, not yet released or shipped): e.g. what was available "
    "when an order got its 409. Safety stock and thresholds are not historised: the current "
    "settings are shown, and `available` uses the current safety stock.",
    responses=problems(*AUTH_PROBLEMS),
)
async def levels(
    session: Session,
    principal: Reader,
    warehouse: Annotated[str | None, Query(max_length=32)] = None,
    sku: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
    as_of: Annotated[
        Timestamp | None,
        Query(description=f"A past instant, e.g. 2026-12-05T11:22:33.5Z; {TIMESTAMP_RULE}"),
    ] = None,
) -> list[LevelRead]:
    if as_of is not None:
        views = await service.levels_as_of(
            session,
            at=as_of,
            warehouse_code=warehouse,
            sku=sku,
            limit=limit,
            offset=offset,
            scope=visible_warehouses(principal),
        )
        return [level_read(v) for v in views]
    views = await service.list_levels(
        session,
        warehouse_code=warehouse,
        sku=sku,
        limit=limit,
        offset=offset,
        scope=visible_warehouses(principal),
    )
    return [level_read(v) for v in views]


@router.patch(
    "/inventory/levels/{warehouse}/{sku:path}",
    response_model=LevelRead,
    summary="Set safety stock, low-stock threshold and reorder point",
    responses=problems(404, *AUTH_PROBLEMS),
)
async def level_settings(
    warehouse: str,
    sku: Annotated[
        str,
        FastPath(
            description="The SKU. It may contain `/` (e.g. `BOX/12`): send it as is or "
            "percent-encoded (`BOX%2F12`); the rest of the path is the SKU"
        ),
    ],
    body: LevelSettings,
    session: Session,
    _: Admin,
) -> LevelRead:
    view = await service.update_level_settings(
        session, warehouse_code=warehouse, sku=sku, values=body.model_dump(exclude_unset=True)
    )
    return level_read(view)


@router.get(
    "/inventory/availability",
    response_model=list[SkuAvailabilityRead],
    summary="Availability of one or many SKUs, per warehouse and in total",
    description="`available` counts active warehouses only; incoming supply is listed beside it.",
    responses=problems(*AUTH_PROBLEMS),
)
async def availability(
    session: Session,
    _: Reader,
    sku: Annotated[list[str], Query(min_length=1, max_length=200, description="Repeatable")],
    warehouse: Annotated[str | None, Query(max_length=32)] = None,
) -> list[SkuAvailabilityRead]:
    result = await service.availability(session, skus=sku, warehouse_code=warehouse)
    return [SkuAvailabilityRead.model_validate(a, from_attributes=True) for a in result]


@router.get(
    "/inventory/movements",
    response_model=list[MovementRead],
    summary="The inventory ledger, newest first",
    description="For admin and fulfillment keys: the ledger names every channel's orders, "
    "shipments and returns, and the API keys that moved stock (a storefront key gets 403).",
    responses=problems(*AUTH_PROBLEMS),
)
async def movements(
    session: Session,
    principal: Stocker,
    warehouse: Annotated[str | None, Query(max_length=32)] = None,
    sku: Annotated[str | None, Query(max_length=64)] = None,
    reference_id: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    before_id: Annotated[int | None, Query(ge=1, le=MAX_BIGINT)] = None,
) -> list[MovementRead]:
    rows = await service.list_movements(
        session,
        warehouse_code=warehouse,
        sku=sku,
        reference_id=reference_id,
        limit=limit,
        before_id=before_id,
        scope=visible_warehouses(principal),
    )
    return [
        MovementRead(
            id=m.id,
            warehouse=code,
            sku=m.sku,
            movement_type=m.movement_type,
            quantity=m.quantity,
            on_hand_after=m.on_hand_after,
            reason=m.reason,
            reference_type=m.reference_type,
            reference_id=m.reference_id,
            actor=m.actor,
            created_at=m.created_at,
        )
        for code, m in rows
    ]


@router.post(
    "/inventory/incoming",
    status_code=201,
    response_model=IncomingRead,
    summary="Record expected incoming supply",
    responses=problems(404, *AUTH_PROBLEMS),
)
async def add_incoming(body: IncomingCreate, session: Session, _: Stocker) -> IncomingRead:
    code, supply = await service.add_incoming(
        session,
        warehouse_code=body.warehouse,
        sku=body.sku,
        quantity=body.quantity,
        expected_on=body.expected_on,
        reference=body.reference,
    )
    return IncomingRead(
        id=supply.id,
        warehouse=code,
        sku=supply.sku,
        quantity=supply.quantity,
        expected_on=supply.expected_on,
        reference=supply.reference,
    )


@router.post(
    "/inventory/incoming/{supply_id}/{outcome}",
    status_code=204,
    summary="Close expected supply as received or cancelled",
    description="Receiving the units themselves is a `receive` adjustment.",
    responses=problems(404, *AUTH_PROBLEMS),
)
async def close_incoming(
    supply_id: uuid.UUID,
    outcome: Literal["received", "cancelled"],
    session: Session,
    _: Stocker,
) -> None:
    await service.close_incoming(session, supply_id=supply_id, status=outcome)


@router.get(
    "/inventory/replenishment",
    response_model=list[ReplenishmentRead],
    summary="SKUs at or below their reorder point, with a suggested quantity",
    responses=problems(*AUTH_PROBLEMS),
)
async def replenishment(
    session: Session, _: Reader, limit: Annotated[int, Query(ge=1, le=1000)] = 200
) -> list[ReplenishmentRead]:
    return [ReplenishmentRead(**r) for r in await service.replenishment(session, limit=limit)]
