"""Request and response bodies of the inventory API."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    field_validator,
    model_validator,
)

from oms.shared.codes import normalize_country
from oms.shared.timestamps import Day

Code = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")]
Sku = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-/]*$")]
Country = Annotated[
    str,
    Field(
        min_length=2,
        max_length=2,
        pattern=r"^[A-Za-z]{2}$",
        description="ISO 3166-1 alpha-2 code (case-insensitive)",
    ),
    AfterValidator(normalize_country),
]
Qty = Annotated[int, Field(ge=0, le=100_000_000)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class WarehouseFields(Strict):
    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    country: Country | None = None
    postal_code: Annotated[str, Field(max_length=32)] | None = None
    city: Annotated[str, Field(max_length=128)] | None = None
    address_lines: list[Annotated[str, Field(max_length=200)]] | None = Field(
        default=None, max_length=4
    )
    latitude: float | None = Field(default=None, ge=-90, le=90)
    longitude: float | None = Field(default=None, ge=-180, le=180)
    priority: int | None = Field(
        default=None, ge=0, le=1_000_000, description="Rank: lower is preferred"
    )
    ships_to: list[Country] | None = Field(
        default=None, max_length=300, description="Destination countries served; null = all"
    )
    is_pickup_store: StrictBool | None = Field(default=None, description="A store offering pickup")


class WarehouseCreate(WarehouseFields):
    code: Code = Field(examples=["BER"])
    name: Annotated[str, Field(min_length=1, max_length=200)] = Field(examples=["Berlin DC"])
    country: Country = Field(examples=["DE"])
    priority: int = Field(default=100, ge=0, le=1_000_000)
    is_pickup_store: StrictBool = False

    @model_validator(mode="after")
    def _both(self) -> WarehouseCreate:
        if (self.latitude is None) != (self.longitude is None):
            raise ValueError("give both latitude and longitude, or neither")
        return self


def _not_null(value: Any) -> Any:
    """PATCH fields that may be omitted but not set to null (their columns are NOT NULL)."""
    if value is None:
        raise ValueError("may be omitted, but not null")
    return value


class WarehouseUpdate(WarehouseFields):
    active: StrictBool | None = Field(
        default=None, description="false = deactivate (keeps history)"
    )

    _required = field_validator(
        "name", "country", "address_lines", "priority", "is_pickup_store", "active", mode="before"
    )(_not_null)


class WarehouseRead(BaseModel):
    id: uuid.UUID
    code: str
    name: str
    country: str
    postal_code: str | None
    city: str | None
    address_lines: list[str]
    latitude: float | None
    longitude: float | None
    priority: int
    ships_to: list[str] | None
    is_pickup_store: bool
    active: bool
    created_at: datetime
    updated_at: datetime
    deactivated_at: datetime | None

    model_config = ConfigDict(from_attributes=True)


class AdjustmentCreate(Strict):
    warehouse: Code = Field(examples=["BER"])
    sku: Sku = Field(examples=["TSHIRT-RED-M"])
    type: Literal["receive", "count", "correct"] = Field(
        description="receive: add units; count: set the absolute on-hand quantity; "
        "correct: add or remove units (negative allowed) with a reason"
    )
    quantity: int = Field(ge=-100_000_000, le=100_000_000, examples=[50])
    expected_on_hand: Qty | None = Field(
        default=None, description="count only: fail with 409 unless on hand is still this"
    )
    reason: Annotated[str, Field(max_length=500)] | None = None
    reference: Annotated[str, Field(max_length=64)] | None = Field(
        default=None, description="e.g. a purchase order or transfer id"
    )


class LevelRead(BaseModel):
    warehouse: str
    sku: str
    on_hand: int
    reserved: int
    safety_stock: int
    available: int = Field(description="on_hand - reserved - safety_stock (never below 0)")
    low_stock_threshold: int | None
    reorder_point: int | None
    reorder_quantity: int | None


class LevelSettings(Strict):
    safety_stock: Qty | None = Field(default=None, description="May be omitted, but not null")
    low_stock_threshold: Qty | None = None
    reorder_point: Qty | None = None
    reorder_quantity: Qty | None = None

    _required = field_validator("safety_stock", mode="before")(_not_null)


class BulkRowIn(Strict):
    warehouse: Code
    sku: Sku
    on_hand: Qty
    safety_stock: Qty | None = None
    low_stock_threshold: Qty | None = None
    reorder_point: Qty | None = None
    reorder_quantity: Qty | None = None


class BulkLoad(Strict):
    rows: list[BulkRowIn] = Field(min_length=1, max_length=10_000)
    reason: Annotated[str, Field(max_length=200)] = "initial sync"


class BulkResult(BaseModel):
    rows: int


class WarehouseAvailability(BaseModel):
    warehouse: str
    active: bool
    on_hand: int
    reserved: int
    safety_stock: int
    available: int


class IncomingRead(BaseModel):
    id: uuid.UUID
    warehouse: str
    sku: str | None = None
    quantity: int
    expected_on: date
    reference: str | None


class SkuAvailabilityRead(BaseModel):
    sku: str
    on_hand: int
    reserved: int
    available: int
    incoming: int = Field(description="Units expected to arrive (see incoming_supply)")
    warehouses: list[WarehouseAvailability]
    incoming_supply: list[IncomingRead]


class IncomingCreate(Strict):
    warehouse: Code
    sku: Sku
    quantity: int = Field(gt=0, le=100_000_000)
    expected_on: Day = Field(description="YYYY-MM-DD, years 1970-9000")
    reference: Annotated[str, Field(max_length=128)] | None = None


class MovementRead(BaseModel):
    id: int
    warehouse: str
    sku: str
    movement_type: str
    quantity: int
    on_hand_after: int
    reason: str | None
    reference_type: str | None
    reference_id: str | None
    actor: str
    created_at: datetime


class ReplenishmentRead(BaseModel):
    warehouse: str
    sku: str
    on_hand: int
    reserved: int
    available: int
    reorder_point: int
    reorder_quantity: int | None
    incoming: int
    suggested_quantity: int


def level_read(view: Any) -> LevelRead:
    return LevelRead(
        warehouse=view.warehouse_code,
        sku=view.sku,
        on_hand=view.on_hand,
        reserved=view.reserved,
        safety_stock=view.safety_stock,
        available=view.available,
        low_stock_threshold=view.low_stock_threshold,
        reorder_point=view.reorder_point,
        reorder_quantity=view.reorder_quantity,
    )
