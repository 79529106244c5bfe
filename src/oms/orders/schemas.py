"""Request and response bodies of the orders API. Money is integer minor units."""

from __future__ import annotations

import re
import uuid
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field, model_validator

from oms.orders.domain import OrderStatus, PaymentMethod, Priority, ShipmentStatus
from oms.orders.hold_schemas import HoldRead
from oms.routing.schemas import RoutingExplanation
from oms.shared.codes import normalize_country, normalize_currency
from oms.shared.jsonlimits import LIMITS as JSON_LIMITS
from oms.shared.jsonlimits import JsonObject
from oms.shared.openapi import ShortLine

Currency = Annotated[
    str,
    Field(
        min_length=3,
        max_length=3,
        pattern=r"^[A-Za-z]{3}$",
        description="ISO 4217 code (case-insensitive; answers use upper case)",
        examples=["EUR"],
    ),
    AfterValidator(normalize_currency),
]
Country = Annotated[
    str,
    Field(
        min_length=2,
        max_length=2,
        pattern=r"^[A-Za-z]{2}$",
        description="ISO 3166-1 alpha-2 code (case-insensitive; answers use upper case)",
        examples=["DE"],
    ),
    AfterValidator(normalize_country),
]
Minor = Annotated[int, Field(ge=0, le=10**12, description="Amount in minor units (cents)")]
Text200 = Annotated[str, Field(min_length=1, max_length=200)]
Sku = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-/]*$")]
Channel = Annotated[
    str, Field(min_length=1, max_length=64, pattern=r"^[a-z0-9][a-z0-9._\-]*$", examples=["web"])
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class OrderLineCreate(Strict):
    sku: Sku = Field(examples=["TSHIRT-RED-M"])
    name: Text200 | None = None
    quantity: int = Field(gt=0, le=10_000, examples=[2])
    unit_price: Minor = Field(examples=[1999])
    tax_rate_bps: int = Field(
        default=0, ge=0, le=10_000, description="Tax rate in basis points (1900 = 19%)"
    )


_PHONE_SEPARATORS = re.compile(r"[\s().\-/]")
_PHONE = re.compile(r"^\+?[0-9]{3,20}$")


def normalize_phone(value: str) -> str:
    """A phone number as oms stores it: digits with an optional leading ``+`` (spaces,
    brackets, dots, dashes and slashes removed); ValueError if that leaves no phone number."""
    phone = _PHONE_SEPARATORS.sub("", value)
    if not _PHONE.match(phone):
        raise ValueError("a phone number is 3 to 20 digits, optionally after a +")
    return phone


Phone = Annotated[
    str,
    Field(
        min_length=3,
        max_length=32,
        description="Digits with an optional leading +; spaces, brackets, dots, dashes and "
        "slashes are removed",
        examples=["+49 30 1234567"],
    ),
    AfterValidator(normalize_phone),
]


class Customer(Strict):
    """Who placed the order: a customer id, an email or a phone (any of them), or, for a sale
    with no customer details at all (a walk-in point-of-sale sale), ``anonymous: true``."""

    id: Annotated[str, Field(min_length=1, max_length=128)] | None = Field(
        default=None, examples=["cus_123"]
    )
    email: EmailStr | None = Field(default=None, examples=["ada@example.com"])
    phone: Phone | None = Field(
        default=None, description="A guest identified by phone (phone and SMS orders)"
    )
    anonymous: bool = Field(
        default=False,
        description="True for an order without any customer details; then id, email and "
        "phone are absent",
    )

    @model_validator(mode="after")
    def _one_of(self) -> Customer:
        known = self.id is not None or self.email is not None or self.phone is not None
        if self.anonymous and known:
            raise ValueError("an anonymous customer has no id, email or phone")
        if not self.anonymous and not known:
            raise ValueError("customer needs an id, an email or a phone, or anonymous: true")
        return self


class Address(Strict):
    name: Text200 | None = Field(default=None, examples=["Ada Lovelace"])
    lines: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        min_length=1, max_length=4, examples=[["Unter den Linden 1"]]
    )
    city: Annotated[str, Field(min_length=1, max_length=128)] = Field(examples=["Berlin"])
    postal_code: Annotated[str, Field(min_length=1, max_length=32)] | None = Field(
        default=None, examples=["10117"]
    )
    region: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    country: Country
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)

    @model_validator(mode="after")
    def _both_coordinates(self) -> Address:
        if (self.latitude is None) != (self.longitude is None):
            raise ValueError("give both latitude and longitude, or neither")
        return self


class OrderCreate(Strict):
    channel: Channel
    external_reference: Annotated[str, Field(min_length=1, max_length=128)] | None = Field(
        default=None,
        description="The order's id in the sales channel; unique per channel",
        examples=["SHOP-1001"],
    )
    currency: Currency
    customer: Customer
    shipping_address: Address
    payment_method: PaymentMethod = PaymentMethod.CARD
    priority: Priority = Priority.STANDARD
    shipping_fee: Minor = 0
    lines: list[OrderLineCreate] = Field(min_length=1, max_length=250)
    pickup_store: Annotated[str, Field(min_length=1, max_length=32)] | None = Field(
        default=None,
        description="Click and collect: the code of the store the customer collects from",
    )
    notes: Annotated[str, Field(max_length=2000)] | None = None
    locale: (
        Annotated[
            str, Field(min_length=2, max_length=35, pattern=r"^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
        ]
        | None
    ) = Field(
        default=None,
        description="The customer's language (BCP 47, e.g. `it` or `en-GB`) for the messages "
        "oms sends them and their tracking page; unset: the channel's default language",
        examples=["it"],
    )
    attributes: JsonObject = Field(
        default_factory=dict,
        max_length=50,
        description=f"Free-form key/value data you own (at most 50 keys). {JSON_LIMITS}",
    )

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [
                {
                    "channel": "web",
                    "external_reference": "SHOP-1001",
                    "currency": "EUR",
                    "customer": {"id": "cus_123", "email": "ada@example.com"},
                    "shipping_address": {
                        "name": "Ada Lovelace",
                        "lines": ["Unter den Linden 1"],
                        "city": "Berlin",
                        "postal_code": "10117",
                        "country": "DE",
                    },
                    "payment_method": "card",
                    "priority": "standard",
                    "shipping_fee": 495,
                    "lines": [
                        {
                            "sku": "TSHIRT-RED-M",
                            "quantity": 2,
                            "unit_price": 1999,
                            "tax_rate_bps": 1900,
                        }
                    ],
                }
            ]
        },
    )


class OrderLineRead(BaseModel):
    id: uuid.UUID
    line_no: int
    sku: str
    name: str | None
    quantity: int
    unit_price: int
    tax_rate_bps: int
    backordered: int = Field(description="Units not reserved (backorder policy); 0 normally")
    subtotal: int
    tax: int
    total: int


class Totals(BaseModel):
    subtotal: int = Field(description="Sum of line subtotals (minor units)")
    tax_total: int
    shipping_fee: int
    total: int


class ShipmentLine(BaseModel):
    order_line_id: uuid.UUID
    sku: str
    quantity: int


class ShipmentRead(BaseModel):
    id: uuid.UUID
    order_id: uuid.UUID
    seq: int
    warehouse: str
    status: ShipmentStatus
    carrier: str | None
    tracking_number: str | None
    lines: list[ShipmentLine]
    created_at: datetime
    picked_at: datetime | None
    packed_at: datetime | None
    shipped_at: datetime | None
    delivered_at: datetime | None
    cancelled_at: datetime | None
    ship_by: datetime | None = Field(
        default=None,
        description="The promise made at placement: the shipment leaves its warehouse by this "
        "instant (the end of the promised ship date, warehouse time); not shipped by then, it "
        "is late (`shipment.late`). null: no promise (created after placement)",
    )
    deliver_by: date | None = Field(
        default=None,
        description="The last day of the delivery window promised at placement (null: no "
        "transit time covers the destination)",
    )


class OrderRead(BaseModel):
    id: uuid.UUID
    number: int
    status: OrderStatus
    version: int
    allowed_transitions: list[OrderStatus]
    channel: str
    external_reference: str | None
    customer: Customer
    shipping_address: Address
    payment_method: PaymentMethod
    priority: Priority
    currency: str
    lines: list[OrderLineRead]
    totals: Totals
    fulfillment: str = Field(description="`ship`, or `pickup` for click and collect")
    pickup_store: str | None
    shipments: list[ShipmentRead] = Field(description="One per warehouse the order ships from")
    routed_to: list[str] = Field(description="Warehouse codes, in shipment order")
    carrier: str | None
    tracking_number: str | None
    notes: str | None
    locale: str | None = Field(default=None, description="The customer's language, if given")
    attributes: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    paid_at: datetime | None
    shipped_at: datetime | None
    delivered_at: datetime | None
    cancelled_at: datetime | None
    holds: list[HoldRead] = Field(
        default=[],
        description="Holds standing on the order: while any does, it is not picked, packed or "
        "shipped (see `/v1/orders/{id}/holds`)",
    )


class OrderPage(BaseModel):
    items: list[OrderRead]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null at the end"
    )


class TransitionRequest(Strict):
    to: OrderStatus = Field(examples=["shipped"])
    reason: Annotated[str, Field(max_length=500)] | None = None
    carrier: Annotated[str, Field(min_length=1, max_length=64)] | None = Field(
        default=None, examples=["DHL"]
    )
    tracking_number: Annotated[str, Field(min_length=1, max_length=128)] | None = Field(
        default=None, examples=["JJD000390007"]
    )
    expected_version: int | None = Field(
        default=None,
        ge=1,
        description="Optimistic concurrency: fail with 409 if the order moved on",
    )


class OrderEventRead(BaseModel):
    id: int
    kind: str
    from_status: OrderStatus | None
    to_status: OrderStatus | None
    actor: str
    actor_role: str | None
    reason: str | None
    data: dict[str, Any]
    request_id: str | None
    created_at: datetime


class TransitionRead(BaseModel):
    source: OrderStatus = Field(serialization_alias="from")
    target: OrderStatus = Field(serialization_alias="to")
    roles: list[str]
    conditions: list[str]


class StateMachineRead(BaseModel):
    states: list[OrderStatus]
    initial: OrderStatus
    terminal: list[OrderStatus]
    transitions: list[TransitionRead]
    mermaid: str


class ShipmentTransitionRequest(Strict):
    to: ShipmentStatus = Field(examples=["shipped"])
    carrier: Annotated[str, Field(min_length=1, max_length=64)] | None = Field(
        default=None, examples=["DHL"]
    )
    tracking_number: Annotated[str, Field(min_length=1, max_length=128)] | None = Field(
        default=None, examples=["JJD000390007"]
    )


class RerouteRequest(Strict):
    reason: Annotated[str, Field(max_length=500)] | None = Field(
        default=None, examples=["warehouse BER offline"]
    )


class PreviewLine(Strict):
    sku: Sku
    quantity: int = Field(gt=0, le=10_000)


class RoutePreviewRequest(Strict):
    channel: Channel
    shipping_address: Address
    lines: list[PreviewLine] = Field(min_length=1, max_length=250)
    pickup_store: Annotated[str, Field(min_length=1, max_length=32)] | None = None


class PlannedLine(BaseModel):
    line_id: str = Field(description="The line's position in the request (1-based)")
    sku: str
    quantity: int = Field(description="Units of the line this parcel would carry")


class DeliveryPromise(BaseModel):
    """When units leave their warehouse and arrive (oms.promises: the warehouse's calendar and
    the transit table)."""

    ship_date: date = Field(
        description="Earliest ship date, in the warehouse's time zone: handling starts today "
        "before the warehouse's cut-off on a working day, else the next working day, plus its "
        "handling days (working days); for backordered units, from the day their supply is "
        "expected",
        examples=["2026-03-03"],
    )
    ship_by: datetime = Field(
        description="The end of the ship date, warehouse time (what placement stores)",
        examples=["2026-03-03T23:00:00Z"],
    )
    deliver_from: date | None = Field(
        description="Delivery window, first day (carrier days Mon-Fri after the ship date); "
        "null when no transit time covers the destination",
        examples=["2026-03-04"],
    )
    deliver_by: date | None = Field(
        description="Delivery window, last day", examples=["2026-03-05"]
    )
    source: Literal["stock", "incoming"] = Field(
        description="`stock`: units on hand; `incoming`: backordered units waiting for the "
        "expected supply"
    )
    supply_expected_on: date | None = Field(
        description="incoming: the expected date of the supply that completes the units"
    )


class PlannedShipment(BaseModel):
    warehouse: str
    lines: list[PlannedLine]
    promise: DeliveryPromise | None = Field(
        default=None, description="When this parcel ships and arrives"
    )


class LinePromise(BaseModel):
    line_id: str = Field(description="The line's position in the request (1-based)")
    sku: str
    quantity: int
    backordered: int = Field(description="Units no warehouse has now (waiting for supply)")
    promise: DeliveryPromise | None = Field(
        description="The line's last part to arrive (its parcels and, for backordered units, "
        "the supply they wait for); null when the supply expected does not cover its "
        "backordered units"
    )


class RouteRead(BaseModel):
    fully_filled: bool
    parcels: int
    shipments: list[PlannedShipment]
    short_lines: list[ShortLine]
    lines: list[LinePromise] = Field(
        default=[], description="Per requested line: its delivery promise"
    )
    explanation: RoutingExplanation = Field(
        description="Every candidate warehouse (eligible or why not, distance, band, rank), "
        "the rule that decided and the runner-up plan"
    )


class Backorder(BaseModel):
    line_id: str = Field(description="The order line's id")
    sku: str
    quantity: int = Field(description="Units not reserved, kept as backorder")


class RoutingPlacement(BaseModel):
    """The plan decided at placement, kept as it was."""

    warehouses: list[str]
    fully_filled: bool
    backorders: list[Backorder]
    explanation: RoutingExplanation | None


class RoutingChange(BaseModel):
    kind: str = Field(
        description="What last changed the plan after placement: `rerouted` (a full "
        "re-route), `shipment_exception`, `shipment_moved`, `shipment_split`, "
        "`shipment_merged`, `order_edited` (an edit or a partial cancellation), "
        "`backorder_filled` (stock arrived for backordered units) or `wave`.",
        examples=["shipment_exception"],
    )
    at: datetime


class OrderRoutingRead(BaseModel):
    order_id: uuid.UUID
    warehouses: list[str] = Field(
        description="The warehouses the order ships from now (its live shipments, in order)."
    )
    fully_filled: bool
    backorders: list[Backorder] = Field(description="Units still backordered now.")
    explanation: RoutingExplanation | None = Field(
        description="The explanation of the latest routing decision: of placement or re-route, "
        "or, after a shipment exception, move or edit (`change`), the router's plan of the "
        "units it planned again (a split, a merge or an edit that plans nothing decides "
        "nothing: the explanation before it stays). Null for orders routed before "
        "explanations were kept."
    )
    change: RoutingChange | None = Field(
        default=None,
        description="What last rewrote this plan after placement; null while the plan is the "
        "one placement decided.",
    )
    placement: RoutingPlacement | None = Field(
        default=None,
        description="The plan decided at placement, kept readable once a re-route, shipment "
        "exception, move, split, merge, edit or backorder fill changed the current plan; "
        "null while they are the same.",
    )


class PickItem(BaseModel):
    shipment_id: uuid.UUID
    order_id: uuid.UUID
    order_number: int
    priority: Priority
    placed_at: datetime
    lines: list[ShipmentLine]
