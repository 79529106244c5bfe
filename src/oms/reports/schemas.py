"""Response bodies of the reports API. Money is integer minor units, per currency."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Rate = float | None


class Row(BaseModel):
    """One row of a report (a CSV row in ``?format=csv``)."""

    model_config = ConfigDict(extra="ignore")


class Ranked(Row):
    currency: str = Field(description="ISO 4217 code; every amount of the row is in it")
    rank: int = Field(description="1 = best within this currency", examples=[1])


class ProductRow(Ranked):
    sku: str = Field(examples=["TSHIRT-RED-M"])
    name: str | None = Field(default=None, description="The SKU's name on its order lines")
    units: int = Field(description="Units ordered in the sales", examples=[1204])
    orders: int = Field(description="Order lines with this SKU (≈ orders)", examples=[950])
    revenue: int = Field(description="Line totals incl. tax, excl. shipping", examples=[2405196])


class CustomerRow(Ranked):
    customer_id: str | None = Field(description="None for guest orders", examples=["cus_123"])
    customer_email: str | None = Field(examples=["ada@example.com"])
    orders: int = Field(description="Sales (orders not cancelled)", examples=[12])
    revenue: int = Field(description="Order totals of those sales", examples=[73956])
    first_order_at: datetime = Field(description="First sale in the window")
    last_order_at: datetime = Field(description="Last sale in the window")


class CountryRow(Ranked):
    country: str = Field(description="Destination, ISO 3166-1 alpha-2", examples=["DE"])
    orders: int = Field(description="Sales (orders not cancelled)", examples=[5120])
    revenue: int = Field(description="Order totals of those sales", examples=[31554560])


class ChannelRow(Ranked):
    channel: str = Field(examples=["web"])
    orders: int = Field(description="Sales (orders not cancelled)", examples=[5120])
    revenue: int = Field(description="Order totals of those sales", examples=[31554560])


class DayRow(Row):
    currency: str = Field(examples=["EUR"])
    day: date = Field(description="Local calendar day in the report's `tz`")
    orders: int = Field(description="Sales placed that day (not cancelled)", examples=[131])
    cancelled: int = Field(description="Orders placed that day and cancelled since", examples=[4])
    revenue: int = Field(description="Order totals of that day's sales", examples=[807353])


class ReturnProductRow(Row):
    rank: int = Field(examples=[1])
    sku: str = Field(examples=["TSHIRT-RED-M"])
    units_shipped: int = Field(description="Units of the SKU shipped for the window's orders")
    units_returned: int = Field(description="Units of the SKU returned from those orders")
    orders_with_returns: int
    return_rate: Rate = Field(description="units_returned / units_shipped; null if none shipped")


class ReturnReasonRow(Row):
    reason: str = Field(examples=["size_or_fit"])
    units_returned: int
    orders_with_returns: int
    share: Rate = Field(description="Share of all returned units of the window")


class LateOrderRow(Row):
    id: uuid.UUID
    number: int
    status: str = Field(examples=["paid"])
    channel: str
    currency: str
    total: int
    country: str
    created_at: datetime
    paid_at: datetime | None
    age_hours: float = Field(description="Hours since placement at `as_of`")
    ship_by: datetime | None = Field(
        default=None,
        description="The earliest `ship_by` promised for its shipments not shipped yet (null: "
        "no promise)",
    )
    late_by: Literal["promise", "age"] = Field(
        default="age",
        description="`promise`: that `ship_by` passed; `age`: no promise, placed more than "
        "`late_after_hours` ago",
    )


class ReportWindow(BaseModel):
    """The filters the report was computed with (echoed, normalised to UTC)."""

    model_config = ConfigDict(populate_by_name=True)

    from_: datetime = Field(alias="from", description="Inclusive (orders placed at or after)")
    to: datetime = Field(description="Exclusive")
    channel: str | None = None
    currency: str | None = None


class TopProducts(ReportWindow):
    sort: Literal["revenue", "units"]
    items: list[ProductRow]


class TopCustomers(ReportWindow):
    sort: Literal["revenue", "orders"]
    items: list[CustomerRow]


class TopCountries(ReportWindow):
    sort: Literal["revenue", "orders"]
    items: list[CountryRow]


class TopChannels(ReportWindow):
    sort: Literal["revenue", "orders"]
    items: list[ChannelRow]


class Daily(ReportWindow):
    tz: str = Field(examples=["Europe/Berlin"])
    items: list[DayRow]


class ReturnsByProduct(ReportWindow):
    items: list[ReturnProductRow]


class ReturnsByReason(ReportWindow):
    items: list[ReturnReasonRow]


class LateOrders(ReportWindow):
    as_of: datetime
    late_after_hours: float
    items: list[LateOrderRow]


class Durations(BaseModel):
    orders: int = Field(description="Orders of the window that reached this step")
    median_s: float | None = Field(description="Median seconds from placement; null if none")
    p90_s: float | None = Field(description="90th percentile seconds from placement")


class Split(BaseModel):
    orders_with_shipments: int = Field(description="Orders with at least one live shipment")
    orders_split: int = Field(description="Orders with more than one live shipment")
    share: Rate = Field(description="orders_split / orders_with_shipments")


class Fill(BaseModel):
    units_ordered: int = Field(description="Units on the lines of the sales")
    units_shipped: int = Field(description="Units shipped for the sales (consumed allocations)")
    rate: Rate = Field(description="units_shipped / units_ordered (unshipped orders count)")
    units_ordered_of_shipped_orders: int
    units_shipped_of_shipped_orders: int
    rate_of_shipped_orders: Rate = Field(
        description="The same over orders that have shipped: what the parcels lacked"
    )


class Returns(BaseModel):
    orders_with_returns: int
    units_returned: int
    rate: Rate = Field(description="units_returned / units_shipped")


class Late(BaseModel):
    after_hours: float = Field(description="An order is late when not shipped this long after")
    open: int = Field(
        description="Not cancelled, not shipped, and past its promise (a shipment not shipped "
        "yet whose ship_by is before as_of) or, without a promise, placed before "
        "as_of - after_hours"
    )
    shipped_late: int = Field(
        description="Shipped after its promise (a shipment shipped after its ship_by) or, "
        "without a promise, more than after_hours after placement"
    )
    total: int = Field(description="open + shipped_late")
    rate: Rate = Field(description="total / sales")


class Fulfilment(ReportWindow):
    as_of: datetime = Field(description="The time the open late orders are measured against")
    orders_placed: int
    orders_cancelled: int
    cancellation_rate: Rate = Field(description="orders_cancelled / orders_placed")
    time_to_paid: Durations
    time_to_shipped: Durations = Field(description="Until the whole order shipped")
    time_to_delivered: Durations
    split: Split
    fill: Fill
    returns: Returns
    late: Late
