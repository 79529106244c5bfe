"""The tracking JSON: what a customer's signed link shows, nothing more."""

from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, ConfigDict, Field


class TrackedDestination(BaseModel):
    city: str | None = Field(description="Delivery city (null for a store pickup)")
    country: str = Field(description="ISO 3166-1 alpha-2")
    pickup_store: str | None = Field(description="The store to collect from (pickup orders)")


class TrackedShipment(BaseModel):
    number: int = Field(description="1, 2, ... in the order's parcel order")
    status: str
    carrier: str | None
    tracking_number: str | None
    tracking_link: str | None = Field(description="The carrier's own tracking page, if known")
    shipped_at: date | None
    delivered_at: date | None
    ship_by: date | None = Field(description="Promised ship-by day, when the order has one")
    deliver_by: date | None = Field(description="Promised delivery day, when the order has one")


class TrackedReturn(BaseModel):
    status: str
    requested_on: date
    received_on: date | None


class TrackingRead(BaseModel):
    """An order as its customer sees it through a tracking link: no prices, no personal data
    beyond the destination city and country, no internal ids."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "order_number": 1042,
                    "status": "shipped",
                    "placed_on": "2026-12-01",
                    "fulfillment": "ship",
                    "destination": {"city": "Milano", "country": "IT", "pickup_store": None},
                    "shipments": [
                        {
                            "number": 1,
                            "status": "shipped",
                            "carrier": "DHL",
                            "tracking_number": "JD014600003828",
                            "tracking_link": "https://www.dhl.com/global-en/home/tracking.html"
                            "?tracking-id=JD014600003828",
                            "shipped_at": "2026-12-02",
                            "delivered_at": None,
                            "ship_by": None,
                            "deliver_by": None,
                        }
                    ],
                    "returns": [],
                    "link_expires_at": "2027-03-01T10:00:00+00:00",
                }
            ]
        }
    )

    order_number: int
    status: str
    placed_on: date
    fulfillment: str = Field(description="`ship`, or `pickup` for click and collect")
    destination: TrackedDestination
    shipments: list[TrackedShipment]
    returns: list[TrackedReturn]
    link_expires_at: datetime
