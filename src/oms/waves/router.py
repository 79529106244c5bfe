"""HTTP routes of waves (channel wave policies, running a wave now, listing and reading) and of
back-testing a routing policy (``POST /v1/routing/simulations``)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request

from oms.auth.service import Principal
from oms.deps import Session, require
from oms.flows import simulations as simulations_flow
from oms.flows import waves as waves_flow
from oms.shared import admission
from oms.shared.errors import NotFound
from oms.shared.openapi import AUTH_PROBLEMS, problems
from oms.shared.roles import Role
from oms.shared.timestamps import RULE as TIMESTAMP_RULE
from oms.shared.timestamps import Timestamp
from oms.waves import service
from oms.waves.schemas import (
    SimulationRead,
    SimulationRequest,
    WaveDetail,
    WaveOrderRead,
    WavePolicyRead,
    WavePolicyWrite,
    WaveRead,
    WaveRun,
)

router = APIRouter(prefix="/v1", tags=["routing"])
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
Reader = Annotated[Principal, Depends(require(Role.FULFILLMENT))]
Channel = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9._\-]*$")]


@router.put(
    "/wave-policies/{channel}",
    response_model=WavePolicyRead,
    summary="Set a sales channel's wave policy",
    description="While enabled, the channel's orders are routed and reserved at placement as "
    "always but stay out of the pick queue until a wave re-optimises the waiting orders "
    "together and releases them: every `interval_s`, as soon as `max_pool` orders wait, or at "
    "a daily cut-off (UTC), whichever comes first (the worker checks). Express orders skip "
    "waves unless `express_skips` is false. Disabling releases every waiting order at once.",
    responses=problems(*AUTH_PROBLEMS),
)
async def put_policy(
    channel: Channel, body: WavePolicyWrite, session: Session, _: Admin
) -> WavePolicyRead:
    row = await service.put_policy(session, channel=channel, values=body.model_dump())
    return WavePolicyRead.model_validate(row)


@router.get(
    "/wave-policies",
    response_model=list[WavePolicyRead],
    summary="List channel wave policies",
    description="Every channel's wave policy (channels without one send orders straight to "
    "the pick queue).",
    responses=problems(*AUTH_PROBLEMS),
)
async def list_policies(session: Session, _: Admin) -> list[WavePolicyRead]:
    return [WavePolicyRead.model_validate(r) for r in await service.list_policies(session)]


@router.get(
    "/wave-policies/{channel}",
    response_model=WavePolicyRead,
    summary="Get a channel's wave policy",
    description="404 `wave_policy_not_found` when the channel has none (its orders are not "
    "held for waves).",
    responses=problems(404, *AUTH_PROBLEMS),
)
async def get_policy(channel: Channel, session: Session, _: Admin) -> WavePolicyRead:
    row = await service.get_policy(session, channel=channel)
    if row is None:
        raise NotFound(f"channel '{channel}' has no wave policy", code="wave_policy_not_found")
    return WavePolicyRead.model_validate(row)


def _detail(wave: object, orders: list[object]) -> WaveDetail:
    base = WaveRead.model_validate(wave)
    return WaveDetail(**base.model_dump(), orders=[WaveOrderRead.model_validate(o) for o in orders])


@router.post(
    "/waves",
    status_code=201,
    response_model=WaveDetail,
    summary="Run a channel's wave now",
    description="Re-optimises the channel's waiting orders together (each keeps the units it "
    "holds per line; a proven optimum that costs less, or, when the policy's time limit "
    "stops the solver, a checked plan that costs less, moves orders; nothing else does) "
    "and releases them to the pick queue. Orders that change while the wave solves are "
    "released as they are (`skipped`). Answers when the wave is done. 404 "
    "`wave_policy_not_found` when the channel has no enabled wave policy.",
    responses=problems(404, *AUTH_PROBLEMS),
)
async def run_wave(
    body: WaveRun, request: Request, session: Session, principal: Admin
) -> WaveDetail:
    # the wave reads and applies in transactions of its own and solves, up to the policy's
    # time limit, holding no connection: so does the request meanwhile (the key check's
    # transaction ends here), and it lends its admission turn (oms.shared.admission)
    await session.commit()
    async with admission.lent(request.scope):
        wave_id = await waves_flow.run_wave(
            request.app.state.sessionmaker,
            channel=body.channel,
            trigger="manual",
            requested_by=principal.actor,
        )
    wave, orders = await service.get_wave(session, wave_id=wave_id)
    return _detail(wave, list(orders))


@router.get(
    "/waves",
    response_model=list[WaveRead],
    summary="List waves",
    description="Newest first; `before` pages back by start time.",
    responses=problems(*AUTH_PROBLEMS),
)
async def list_waves(
    session: Session,
    _: Reader,
    channel: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    before: Annotated[
        Timestamp | None, Query(description=f"Waves started before this; {TIMESTAMP_RULE}")
    ] = None,
) -> list[WaveRead]:
    rows = await service.list_waves(session, channel=channel, limit=limit, before=before)
    return [WaveRead.model_validate(w) for w in rows]


@router.get(
    "/waves/{wave_id}",
    response_model=WaveDetail,
    summary="Read a wave and the orders it released",
    description="Each order's outcome (moved, kept, skipped) and, for moved orders, the plan "
    "before and after and what the wave saved (parcels, distance bands, cost).",
    responses=problems(404, *AUTH_PROBLEMS),
)
async def get_wave(wave_id: uuid.UUID, session: Session, _: Reader) -> WaveDetail:
    wave, orders = await service.get_wave(session, wave_id=wave_id)
    return _detail(wave, list(orders))


@router.post(
    "/routing/simulations",
    response_model=SimulationRead,
    summary="Back-test a routing policy on past orders",
    description="Replays the channel's orders placed in [`from`, `to`) in placement order "
    "against the stock of that time, rebuilt from the ledger and the allocations (available "
    "when the window opened, then every receipt, count, return or other channel's reservation "
    "as it happened; current safety stock), under the channel's current policy and under the "
    "proposed one (warehouse list, ships-to per warehouse, shipment cap, line splitting, waves "
    "and their size). Answers both sets of figures (fill rate, parcels per order, split share, "
    "parcels per distance band, load per warehouse, parcel cost) and the orders the proposal "
    "plans differently with both explanations. Each order is replayed with its lines as "
    "placed and keeps its units through the window; click-and-collect orders are left out; "
    "warehouses are taken as they are now. Reads only. 422 `invalid_window`, "
    "`warehouse_not_found`.",
    responses=problems(*AUTH_PROBLEMS),
)
async def simulate(
    body: SimulationRequest, request: Request, session: Session, _: Admin
) -> SimulationRead:
    fields = body.proposed.model_fields_set
    proposed = simulations_flow.ProposedPolicy(
        **{
            name: getattr(body.proposed, name)
            for name in (
                "warehouse_codes",
                "ships_to",
                "max_shipments",
                "allow_line_split",
                "waves",
                "wave_size",
            )
            if name in fields
        }
    )
    # the replay computes without the database (it ends its read transaction first): the
    # request lends its admission turn meanwhile (oms.shared.admission)
    async with admission.lent(request.scope):
        result = await simulations_flow.simulate(
            session,
            channel=body.channel,
            start=body.from_,
            end=body.to,
            proposed=proposed,
            max_orders=body.max_orders,
            changed_limit=body.changed_limit,
        )
    return SimulationRead.model_validate(result)
