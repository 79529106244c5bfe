"""HTTP routes of the reports API (admin only); every report also as CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, available_timezones

from fastapi import APIRouter, Depends, Header, Query, Request
from fastapi.responses import Response
from fastapi.routing import APIRoute
from pydantic import BaseModel

from oms.auth.service import Principal
from oms.deps import Session, require
from oms.reports import service
from oms.reports.schemas import (
    ChannelRow,
    CountryRow,
    CustomerRow,
    Daily,
    DayRow,
    Fulfilment,
    LateOrderRow,
    LateOrders,
    ProductRow,
    ReturnProductRow,
    ReturnReasonRow,
    ReturnsByProduct,
    ReturnsByReason,
    TopChannels,
    TopCountries,
    TopCustomers,
    TopProducts,
)
from oms.shared.clock import utcnow
from oms.shared.codes import is_currency
from oms.shared.errors import Unprocessable
from oms.shared.openapi import AUTH_PROBLEMS, problems
from oms.shared.roles import Role
from oms.shared.timestamps import RULE as TIMESTAMP_RULE
from oms.shared.timestamps import LocalTimestamp

router = APIRouter(prefix="/v1/reports", tags=["reports"])

Admin = Annotated[Principal, Depends(require(Role.ADMIN))]

MAX_RANGE = timedelta(days=5 * 366)
DEFAULT_RANGE = timedelta(days=30)
CSV = "text/csv"

CSV_PARAGRAPH = "\n\nCSV: "
WINDOW_DOC = (
    "\n\nThe report looks at the orders **placed** in `[from, to)` (default: the last 30 days; "
    "at most 5 years), optionally of one `channel` and/or one `currency`. A *sale* is such an "
    "order that is not cancelled; *revenue* is the sum of the sales' order totals (tax and "
    "shipping included) in minor units. Amounts are never added across currencies: rows are "
    "per currency. `from`/`to` without a UTC offset are read in `tz` (default UTC)."
    + CSV_PARAGRAPH
    + "the operation of the same path ending in `.csv` (or `Accept: text/csv` here) "
    "returns the rows as `text/csv` (UTF-8, header row, RFC 4180); text cells starting with `=`, "
    "`+`, `-` or `@` get a leading `'`."
)
CSV_SUFFIX = ".csv"


def _invalid(field: str, message: str) -> Unprocessable:
    return Unprocessable(
        f"{field}: {message}",
        errors=[
            {
                "field": f"query.{field}",
                "loc": ["query", field],
                "message": message,
                "type": "value_error",
            }
        ],
    )


@dataclass(frozen=True, slots=True)
class ReportQuery:
    """The common query parameters, checked and normalised."""

    window: service.Window
    tz: str
    csv: bool

    def echo(self) -> dict[str, Any]:
        w = self.window
        return {"from": w.start, "to": w.end, "channel": w.channel, "currency": w.currency}

    def respond(
        self, report: BaseModel, rows: Sequence[BaseModel], row_model: type[BaseModel], name: str
    ) -> Any:
        if not self.csv:
            return report
        stamp = f"{self.window.start:%Y%m%dT%H%M%SZ}-{self.window.end:%Y%m%dT%H%M%SZ}"
        return Response(
            to_csv(rows, row_model),
            media_type=f"{CSV}; charset=utf-8",
            headers={"Content-Disposition": f'attachment; filename="oms-{name}-{stamp}.csv"'},
        )


@lru_cache(maxsize=1)
def _zone_names() -> frozenset[str]:
    return frozenset(available_timezones())


def _zone(tz: str) -> ZoneInfo:
    """The IANA zone named ``tz`` (only names from the zone list: no paths, no files)."""
    if tz not in _zone_names():
        raise _invalid("tz", f"'{tz}' is not an IANA time zone name such as 'Europe/Berlin'")
    return ZoneInfo(tz)


def _prefers_csv(accept: str | None) -> bool:
    """True if the Accept header ranks text/csv above JSON (``q`` weights; ties go to JSON)."""
    weights: dict[str, float] = {}
    for part in (accept or "").lower().split(","):
        media, *options = (item.strip() for item in part.split(";"))
        q = 1.0
        for option in options:
            name, _, value = option.partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        weights[media] = max(q, weights.get(media, 0.0))
    json_q = max(weights.get(m, 0.0) for m in ("application/json", "application/*", "*/*"))
    return weights.get(CSV, weights.get("text/*", 0.0)) > json_q


def _aware(value: datetime, zone: ZoneInfo) -> datetime:
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    return value.astimezone(UTC)


async def report_query(
    request: Request,
    from_: Annotated[
        LocalTimestamp | None,
        Query(
            alias="from",
            description=f"Inclusive (default: `to` - 30 days); {TIMESTAMP_RULE}, or without "
            "offset: read in `tz`",
            examples=["2025-01-01T00:00:00+01:00"],
        ),
    ] = None,
    to: Annotated[
        LocalTimestamp | None,
        Query(
            description=f"Exclusive (default: now); {TIMESTAMP_RULE}, or without offset: read "
            "in `tz`",
            examples=["2025-02-01T00:00:00Z"],
        ),
    ] = None,
    channel: Annotated[
        str | None,
        Query(max_length=64, pattern=r"^[a-z0-9][a-z0-9._\-]*$", examples=["web"]),
    ] = None,
    currency: Annotated[
        str | None,
        Query(
            min_length=3,
            max_length=3,
            pattern=r"^[A-Za-z]{3}$",
            description="ISO 4217 code (case-insensitive)",
            examples=["EUR"],
        ),
    ] = None,
    tz: Annotated[
        str,
        Query(
            max_length=64,
            pattern=r"^[A-Za-z][A-Za-z0-9_+\-]*(/[A-Za-z0-9_+\-]+)*$",
            description="IANA time zone name from the tz database (e.g. `Europe/Berlin`, `UTC`; "
            "422 for any other): the daily report's days, and `from`/`to` without offset",
            examples=["Europe/Berlin"],
        ),
    ] = "UTC",
    format: Annotated[
        Literal["json", "csv"] | None,
        # kept for older clients; the `.csv` operations are the documented way to get CSV
        Query(include_in_schema=False),
    ] = None,
    accept: Annotated[str | None, Header(include_in_schema=False)] = None,
) -> ReportQuery:
    zone = _zone(tz)
    end = _aware(to, zone) if to is not None else utcnow()
    start = _aware(from_, zone) if from_ is not None else end - DEFAULT_RANGE
    if start >= end:
        raise _invalid("from", "must be before `to`")
    if end - start > MAX_RANGE:
        raise _invalid("from", "the range may span at most 5 years (1830 days)")
    if currency is not None:
        currency = currency.strip().upper()
        if not is_currency(currency):
            raise _invalid("currency", f"'{currency}' is not an ISO 4217 currency code")
    if request.url.path.endswith(CSV_SUFFIX):
        as_csv = True
    else:
        as_csv = format == "csv" if format is not None else _prefers_csv(accept)
    return ReportQuery(
        window=service.Window(start=start, end=end, channel=channel, currency=currency),
        tz=tz,
        csv=as_csv,
    )


Filters = Annotated[ReportQuery, Depends(report_query)]
Limit = Annotated[int, Query(ge=1, le=1000, description="Rows per currency")]
RowLimit = Annotated[int, Query(ge=1, le=1000, description="Rows")]
LateAfter = Annotated[
    int, Query(ge=1, le=8760, description="An order is late when not shipped this many hours")
]


# ---- CSV ----------------------------------------------------------------------------------


def _columns(model: type[BaseModel], prefix: str = "") -> list[str]:
    out: list[str] = []
    for name, field in model.model_fields.items():
        key = prefix + (field.alias or name)
        sub = field.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            out += _columns(sub, key + "_")
        else:
            out.append(key)
    return out


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out |= _flatten(value, f"{prefix}{key}_")
        else:
            out[prefix + key] = value
    return out


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value  # keep spreadsheets from reading the cell as a formula
    return value


def to_csv(rows: Sequence[BaseModel], model: type[BaseModel]) -> str:
    """The rows as CSV with a header row (nested fields flattened as ``outer_inner``)."""
    columns = _columns(model)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for row in rows:
        flat = _flatten(row.model_dump(mode="json", by_alias=True))
        writer.writerow([_cell(flat.get(c)) for c in columns])
    return buffer.getvalue()


def _doc(example_csv: str, *statuses: int) -> dict[int | str, dict[str, Any]]:
    responses = problems(*statuses, *AUTH_PROBLEMS)
    responses[200] = {
        "description": "The report as JSON (as CSV: the `.csv` operation of the same path, or "
        "`Accept: text/csv` here)",
        "content": {CSV: {"schema": {"type": "string"}, "example": example_csv}},
    }
    return responses


class CsvResponse(Response):
    media_type = CSV


def add_csv_operations() -> None:
    """For each report ``GET /v1/reports/{name}``, ``GET /v1/reports/{name}.csv``: the same
    report as ``text/csv`` (an operation of its own, so a generated client reads it as text)."""
    for route in list(router.routes):
        if not isinstance(route, APIRoute) or route.path.endswith(CSV_SUFFIX):
            continue
        example = route.responses[200]["content"][CSV]["example"]
        path = route.path.removeprefix(router.prefix)
        router.add_api_route(
            path + CSV_SUFFIX,
            route.endpoint,
            methods=["GET"],
            response_class=CsvResponse,
            summary=f"{route.summary} (CSV)",
            description=f"`GET {route.path}` as `text/csv`: one row per item (UTF-8, header "
            "row, RFC 4180; nested fields flattened as `outer_inner`; text cells starting with "
            "`=`, `+`, `-` or `@` get a leading `'`). Same parameters and errors."
            f"\n\n{route.description.split(CSV_PARAGRAPH)[0]}",
            responses={
                **{k: v for k, v in route.responses.items() if k != 200},
                200: {
                    "description": "The report as CSV (an attachment)",
                    "content": {CSV: {"schema": {"type": "string"}, "example": example}},
                },
            },
            name=f"{route.name}_csv",
        )


# ---- routes -------------------------------------------------------------------------------


@router.get(
    "/top-products",
    response_model=TopProducts,
    summary="Best-selling products",
    description="SKUs ranked per currency by product revenue (line totals incl. tax, excl. "
    "shipping) or by units, over the sales of the window. `orders` counts the order lines "
    "with the SKU." + WINDOW_DOC,
    responses=_doc(
        "currency,rank,sku,name,units,orders,revenue\r\nEUR,1,TSHIRT-RED-M,Red T-shirt M,"
        "1204,950,2405196\r\n"
    ),
)
async def top_products(
    _: Admin,
    session: Session,
    q: Filters,
    limit: Limit = 10,
    sort: Annotated[Literal["revenue", "units"], Query()] = "revenue",
) -> Any:
    rows = await service.top_products(session, window=q.window, limit=limit, sort=sort)
    report = TopProducts.model_validate(
        q.echo() | {"sort": sort, "items": [ProductRow.model_validate(r) for r in rows]}
    )
    return q.respond(report, report.items, ProductRow, "top-products")


@router.get(
    "/top-customers",
    response_model=TopCustomers,
    summary="Best customers",
    description="Customers ranked per currency by revenue or by number of sales. Customers "
    "are told apart by `customer_id`; guest orders (no id) by e-mail address; orders with "
    "neither (guests known by phone, anonymous sales) are not listed." + WINDOW_DOC,
    responses=_doc(
        "currency,rank,customer_id,customer_email,orders,revenue,first_order_at,last_order_at"
        "\r\nEUR,1,cus_123,ada@example.com,12,73956,2025-01-03T09:12:00Z,2025-01-29T18:40:00Z\r\n"
    ),
)
async def top_customers(
    _: Admin,
    session: Session,
    q: Filters,
    limit: Limit = 10,
    sort: Annotated[Literal["revenue", "orders"], Query()] = "revenue",
) -> Any:
    rows = await service.top_customers(session, window=q.window, limit=limit, sort=sort)
    report = TopCustomers.model_validate(
        q.echo() | {"sort": sort, "items": [CustomerRow.model_validate(r) for r in rows]}
    )
    return q.respond(report, report.items, CustomerRow, "top-customers")


@router.get(
    "/top-countries",
    response_model=TopCountries,
    summary="Top destination countries",
    description="Shipping countries ranked per currency by revenue or by sales." + WINDOW_DOC,
    responses=_doc("currency,rank,country,orders,revenue\r\nEUR,1,DE,5120,31554560\r\n"),
)
async def top_countries(
    _: Admin,
    session: Session,
    q: Filters,
    limit: Limit = 10,
    sort: Annotated[Literal["revenue", "orders"], Query()] = "revenue",
) -> Any:
    rows = await service.top_countries(session, window=q.window, limit=limit, sort=sort)
    report = TopCountries.model_validate(
        q.echo() | {"sort": sort, "items": [CountryRow.model_validate(r) for r in rows]}
    )
    return q.respond(report, report.items, CountryRow, "top-countries")


@router.get(
    "/top-channels",
    response_model=TopChannels,
    summary="Top sales channels",
    description="Channels ranked per currency by revenue or by sales." + WINDOW_DOC,
    responses=_doc("currency,rank,channel,orders,revenue\r\nEUR,1,web,5120,31554560\r\n"),
)
async def top_channels(
    _: Admin,
    session: Session,
    q: Filters,
    limit: Limit = 10,
    sort: Annotated[Literal["revenue", "orders"], Query()] = "revenue",
) -> Any:
    rows = await service.top_channels(session, window=q.window, limit=limit, sort=sort)
    report = TopChannels.model_validate(
        q.echo() | {"sort": sort, "items": [ChannelRow.model_validate(r) for r in rows]}
    )
    return q.respond(report, report.items, ChannelRow, "top-channels")


@router.get(
    "/daily",
    response_model=Daily,
    summary="Orders and revenue per day",
    description="Per currency and local day in `tz` (an IANA name such as `Europe/Berlin`; "
    "days follow daylight saving time): sales, cancelled orders and revenue of the orders "
    "placed that day. Every day from the first to the last local day of the window is listed "
    "for each currency with orders in the window, zero days included; a window with no orders "
    "gives no rows. A day cut by the window counts only its part inside." + WINDOW_DOC,
    responses=_doc("currency,day,orders,cancelled,revenue\r\nEUR,2025-01-01,131,4,807353\r\n"),
)
async def daily(_: Admin, session: Session, q: Filters) -> Any:
    rows = await service.daily(session, window=q.window, tz=q.tz)
    report = Daily.model_validate(
        q.echo() | {"tz": q.tz, "items": [DayRow.model_validate(r) for r in rows]}
    )
    return q.respond(report, report.items, DayRow, "daily")


FULFILMENT_DOC = """Over the orders placed in the window:

* `orders_placed`, `orders_cancelled`, `cancellation_rate` = cancelled / placed.
* `time_to_paid`, `time_to_shipped` (the whole order, i.e. its last parcel), `time_to_delivered`:
  median and 90th percentile (continuous) of the seconds from placement, over the orders that
  reached the step (`orders`).
* `split`: orders with more than one live (not cancelled) shipment / orders with any.
* `fill`: units shipped (consumed allocations) / units ordered, over the sales; unshipped
  orders count as unfilled, so recent windows read low. `rate_of_shipped_orders` is the same
  over the orders that have shipped: the share of ordered units their parcels carried.
* `returns`: units returned / units shipped, for the window's orders. Returned units are the
  lines of returns (RMAs) that were not rejected; an order moved to `returned` without any
  return record counts all its shipped units.
* `late`: orders not cancelled and still not shipped at `as_of` (now) that are late (`open`),
  plus orders that shipped late (`shipped_late`); `rate` = total / sales. Late by the delivery
  promise where the order has one (a shipment not shipped by its `ship_by`, as in
  `/late-orders`), else by age: `late_after_hours` after placement.

Ratios are null when their denominator is zero. CSV: one row, nested fields flattened as
`time_to_paid_median_s`."""


@router.get(
    "/fulfilment",
    response_model=Fulfilment,
    summary="Fulfilment KPIs",
    description=FULFILMENT_DOC + WINDOW_DOC,
    responses=_doc(
        "from,to,channel,currency,as_of,orders_placed,orders_cancelled,cancellation_rate,"
        "time_to_paid_orders,time_to_paid_median_s,...\r\n"
    ),
)
async def fulfilment(
    _: Admin, session: Session, q: Filters, late_after_hours: LateAfter = 48
) -> Any:
    as_of = utcnow()
    kpis = await service.fulfilment(
        session, window=q.window, late_after=timedelta(hours=late_after_hours), as_of=as_of
    )
    report = Fulfilment.model_validate(q.echo() | {"as_of": as_of} | kpis)
    return q.respond(report, [report], Fulfilment, "fulfilment")


@router.get(
    "/returns/by-product",
    response_model=ReturnsByProduct,
    summary="Return rate by product",
    description="The SKUs with the most returned units among the window's orders: units "
    "shipped, units returned and `return_rate` = returned / shipped (null when none shipped). "
    "Returned units are the lines of returns (RMAs) that were not rejected; an order moved to "
    "`returned` without any return record counts all its shipped units. Not per currency: no "
    "money here." + WINDOW_DOC,
    responses=_doc(
        "rank,sku,units_shipped,units_returned,orders_with_returns,return_rate\r\n"
        "1,TSHIRT-RED-M,1204,61,58,0.050664\r\n"
    ),
)
async def returns_by_product(_: Admin, session: Session, q: Filters, limit: RowLimit = 10) -> Any:
    rows = await service.returns_by_product(session, window=q.window, limit=limit)
    report = ReturnsByProduct.model_validate(
        q.echo() | {"items": [ReturnProductRow.model_validate(r) for r in rows]}
    )
    return q.respond(report, report.items, ReturnProductRow, "returns-by-product")


@router.get(
    "/returns/by-reason",
    response_model=ReturnsByReason,
    summary="Returns by reason",
    description="Returned units of the window's orders per reason code of the return lines, "
    "with each reason's share of all returned units (`unspecified`: orders moved to "
    "`returned` without a return record)." + WINDOW_DOC,
    responses=_doc(
        "reason,units_returned,orders_with_returns,share\r\nsize_or_fit,412,380,0.31\r\n"
    ),
)
async def returns_by_reason(_: Admin, session: Session, q: Filters) -> Any:
    rows = await service.returns_by_reason(session, window=q.window)
    report = ReturnsByReason.model_validate(
        q.echo() | {"items": [ReturnReasonRow.model_validate(r) for r in rows]}
    )
    return q.respond(report, report.items, ReturnReasonRow, "returns-by-reason")


@router.get(
    "/late-orders",
    response_model=LateOrders,
    summary="Late orders to act on",
    description="Orders of the window that are neither cancelled nor shipped and are late, "
    "oldest first: by their delivery promise when they have one (a shipment not shipped yet "
    "whose `ship_by`, set at placement, has passed: `late_by: promise`), else when not shipped "
    "`late_after_hours` after placement (`late_by: age`; the `late.open` figure of the "
    "fulfilment KPIs counts by age only)." + WINDOW_DOC,
    responses=_doc(
        "id,number,status,channel,currency,total,country,created_at,paid_at,age_hours,ship_by,"
        "late_by\r\n"
        "6f0c...,1042,paid,web,EUR,6163,DE,2025-01-02T08:00:00Z,2025-01-02T08:05:00Z,75.5,"
        "2025-01-03T23:00:00Z,promise\r\n"
    ),
)
async def late_orders(
    _: Admin, session: Session, q: Filters, late_after_hours: LateAfter = 48, limit: RowLimit = 100
) -> Any:
    as_of = utcnow()
    rows = await service.late_orders(
        session,
        window=q.window,
        late_after=timedelta(hours=late_after_hours),
        as_of=as_of,
        limit=limit,
    )
    report = LateOrders.model_validate(
        q.echo()
        | {
            "as_of": as_of,
            "late_after_hours": late_after_hours,
            "items": [LateOrderRow.model_validate(r) for r in rows],
        }
    )
    return q.respond(report, report.items, LateOrderRow, "late-orders")


add_csv_operations()
