"""HTTP routes of delivery promises: warehouse calendars and the transit table."""

from __future__ import annotations

from datetime import time
from typing import Annotated

from fastapi import APIRouter, Depends, Path

from oms.auth.service import Principal
from oms.deps import Session, require
from oms.promises import service
from oms.promises.schemas import CalendarRead, CalendarWrite, TransitRead, TransitWrite
from oms.shared.openapi import AUTH_PROBLEMS, CodePath, problems
from oms.shared.roles import Role

router = APIRouter(prefix="/v1", tags=["promises"])
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]
Reader = Annotated[Principal, Depends(require(Role.FULFILLMENT, Role.STOREFRONT))]
Country = Annotated[
    str,
    Path(
        min_length=1,
        max_length=8,
        description="ISO 3166-1 alpha-2 destination country (upper case), or `*` for every "
        "country without rows of its own (422 `invalid_country` otherwise)",
        examples=["DE"],
    ),
]


def _read(view: service.CalendarView) -> CalendarRead:
    return CalendarRead(
        warehouse=view.warehouse,
        timezone=view.timezone,
        cutoff=view.cutoff.strftime("%H:%M"),
        handling_days=view.handling_days,
        working_days=view.working_days,
        holidays=view.holidays,
        default=view.default,
        updated_at=view.updated_at,
    )


@router.put(
    "/warehouses/{code}/calendar",
    response_model=CalendarRead,
    summary="Set a warehouse's calendar (time zone, cut-off, handling, working days, holidays)",
    description="Delivery promises are computed from it: an order reaching the warehouse on a "
    "working day before the cut-off (local time) is handled that day, otherwise from the next "
    "working day; `handling_days` working days later it ships. Takes effect for new orders "
    "within seconds (each process caches calendars for 5 s). 422 `invalid_calendar` for an "
    "unknown time zone.",
    responses=problems(404, *AUTH_PROBLEMS),
)
async def put_calendar(
    code: CodePath, body: CalendarWrite, session: Session, _: Admin
) -> CalendarRead:
    view = await service.put_calendar(
        session,
        warehouse_code=code,
        timezone=body.timezone,
        cutoff=time.fromisoformat(body.cutoff),
        handling_days=body.handling_days,
        working_days=body.working_days,
        holidays=body.holidays,
    )
    return _read(view)


@router.get(
    "/warehouses/{code}/calendar",
    response_model=CalendarRead,
    summary="A warehouse's calendar",
    description="Without a calendar of its own a warehouse uses the default (`default: true`): "
    "Monday to Friday, cut-off 14:00 UTC, one handling day.",
    responses=problems(404, *AUTH_PROBLEMS),
)
async def get_calendar(code: CodePath, session: Session, _: Reader) -> CalendarRead:
    return _read(await service.get_calendar(session, warehouse_code=code))


@router.delete(
    "/warehouses/{code}/calendar",
    status_code=204,
    summary="Remove a warehouse's calendar (back to the default)",
    description="New promises use the default calendar (Monday to Friday, cut-off 14:00 UTC, "
    "one handling day). 404 `calendar_not_found` when it has none.",
    responses=problems(404, *AUTH_PROBLEMS),
)
async def delete_calendar(code: CodePath, session: Session, _: Admin) -> None:
    await service.delete_calendar(session, warehouse_code=code)


@router.put(
    "/transit-times/{country}",
    response_model=list[TransitRead],
    summary="Set the transit times to a destination country",
    description="Replaces the country's rows: carrier days (Monday to Friday) from the ship "
    "date, at least and at most, by distance band of the shipping warehouse (a row applies "
    "from its `from_band` up to the next row's). `*` sets the rows of every country without "
    "rows of its own. Without a row covering a shipment, its promise has a ship date but no "
    "delivery window. 422 `invalid_transit` for a band given twice or min above max, "
    "`invalid_country` for a country that is not two capital letters or `*`.",
    responses=problems(*AUTH_PROBLEMS),
)
async def put_transit(
    country: Country, body: TransitWrite, session: Session, _: Admin
) -> list[TransitRead]:
    rows = await service.put_transit(
        session,
        country=country,
        bands=[service.TransitBand(b.from_band, b.min_days, b.max_days) for b in body.bands],
    )
    return [TransitRead.model_validate(r) for r in rows]


@router.get(
    "/transit-times",
    response_model=list[TransitRead],
    summary="The transit table",
    description="Every row, by country (`*` first) then band.",
    responses=problems(*AUTH_PROBLEMS),
)
async def list_transit(session: Session, _: Reader) -> list[TransitRead]:
    return [TransitRead.model_validate(r) for r in await service.list_transit(session)]


@router.delete(
    "/transit-times/{country}",
    status_code=204,
    summary="Remove the transit times to a country",
    description="Promises to it fall back to the `*` rows, or have no delivery window. 404 "
    "`transit_not_found`.",
    responses=problems(404, *AUTH_PROBLEMS),
)
async def delete_transit(country: Country, session: Session, _: Admin) -> None:
    await service.delete_transit(session, country=country)
