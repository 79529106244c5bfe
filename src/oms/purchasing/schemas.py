"""Request and response bodies of suppliers, purchase orders and reordering."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, field_validator

from oms.shared.timestamps import Day

Code = Annotated[str, Field(min_length=1, max_length=32, pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")]
Sku = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-/]*$")]
POStatusName = Literal["draft", "sent", "partially_received", "received", "cancelled"]


class SupplierCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "code": "ACME",
                    "name": "Acme Mugs Ltd",
                    "lead_time_days": 7,
                    "minimum_order_quantity": 24,
                    "pack_size": 12,
                }
            ]
        },
    )

    code: Code
    name: str = Field(min_length=1, max_length=200)
    lead_time_days: int = Field(ge=0, le=365, description="Days from sending an order to receipt")
    minimum_order_quantity: int = Field(
        default=1, ge=1, le=1_000_000, description="Fewest units of a SKU per order line"
    )
    pack_size: int = Field(
        default=1, ge=1, le=100_000, description="Units come in packs of this many"
    )


class SupplierUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"lead_time_days": 10}]}
    )

    name: str | None = Field(default=None, min_length=1, max_length=200)
    lead_time_days: int | None = Field(default=None, ge=0, le=365)
    minimum_order_quantity: int | None = Field(default=None, ge=1, le=1_000_000)
    pack_size: int | None = Field(default=None, ge=1, le=100_000)
    active: StrictBool | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        """Fields may be omitted, but not set to null (their columns are NOT NULL)."""
        if value is None:
            raise ValueError("may be omitted, but not null")
        return value


class SupplierRead(BaseModel):
    id: uuid.UUID
    code: str
    name: str
    lead_time_days: int
    minimum_order_quantity: int
    pack_size: int
    active: bool
    created_at: datetime
    updated_at: datetime

    model_config = ConfigDict(from_attributes=True)


class POLineWrite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sku: Sku
    quantity: int = Field(gt=0, le=1_000_000)


class PurchaseOrderCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "supplier": "ACME",
                    "warehouse": "BER",
                    "reference": "Q-2026-014",
                    "lines": [{"sku": "MUG-01", "quantity": 48}],
                }
            ]
        },
    )

    supplier: Code
    warehouse: Annotated[str, Field(min_length=1, max_length=32)]
    reference: str | None = Field(
        default=None, max_length=128, description="Your own reference (a quote, an ERP id)"
    )
    notes: str | None = Field(default=None, max_length=2000)
    lines: list[POLineWrite] = Field(min_length=1, max_length=500)


class SendRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"expected_on": "2026-03-20"}]}
    )

    expected_on: Day | None = Field(
        default=None,
        description="When the goods are expected; default: today + the supplier's lead time",
    )


class ReceiptCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"reference": "GRN-88121", "lines": [{"sku": "MUG-01", "quantity": 24}]}]
        },
    )

    reference: str = Field(
        min_length=1,
        max_length=40,
        description="The receipt's own reference (a goods-received note): the same reference "
        "again changes nothing",
    )
    lines: list[POLineWrite] = Field(min_length=1, max_length=500)


class POLineRead(BaseModel):
    line_no: int
    sku: str
    quantity: int
    received: int
    remaining: int = Field(description="Units still expected (0 once cancelled or received)")


class ReceiptRead(BaseModel):
    reference: str
    lines: list[dict[str, Any]] = Field(examples=[[{"sku": "MUG-01", "quantity": 24}]])
    actor: str
    created_at: datetime


class PurchaseOrderRead(BaseModel):
    id: uuid.UUID
    number: int
    status: POStatusName
    supplier: str
    warehouse: str
    expected_on: date | None = Field(description="Set when sent")
    reference: str | None
    notes: str | None
    automatic: bool = Field(description="Drafted by the reorder job")
    explanation: dict[str, Any] | None = Field(
        description="Automatic drafts: the reorder suggestion (every input) it came from"
    )
    lines: list[POLineRead]
    receipts: list[ReceiptRead]
    created_by: str
    created_at: datetime
    updated_at: datetime
    sent_at: datetime | None
    closed_at: datetime | None


class ReorderPolicyWrite(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "supplier": "ACME",
                    "auto_draft": True,
                    "demand_window_days": 28,
                    "safety_factor": 1.65,
                    "review_days": 7,
                }
            ]
        },
    )

    supplier: Code
    auto_draft: StrictBool = Field(
        default=False,
        description="Crossing the reorder point drafts a purchase order by itself (the "
        "worker; one open draft per supplier, warehouse and SKU)",
    )
    demand_window_days: int = Field(
        default=28, ge=7, le=365, description="Days of sales the demand rate is computed from"
    )
    safety_factor: float = Field(
        default=1.65, ge=0, le=5, description="z: safety stock = z × σ(daily) × √(lead + review)"
    )
    review_days: int = Field(
        default=7,
        ge=0,
        le=365,
        description="Days between orders: what an order covers beyond the lead time",
    )


class ReorderPolicyRead(BaseModel):
    warehouse: str
    sku: str | None = Field(description="null: every SKU of the warehouse without its own")
    supplier: str
    auto_draft: bool
    demand_window_days: int
    safety_factor: float
    review_days: int
    updated_at: datetime


class SuggestionInputs(BaseModel):
    """Every input of the suggestion and how it was combined (see the operation)."""

    demand_window_days: int
    ewma_alpha: float = Field(description="2 / (window + 1)")
    demand_rate_per_day: float = Field(description="EWMA of the units placed per day")
    demand_std_per_day: float = Field(description="Exponentially weighted standard deviation")
    units_sold_in_window: int
    lead_time_days: int = Field(description="The supplier's")
    review_days: int
    safety_factor: float
    safety_stock: int = Field(description="ceil(safety_factor × std × √(lead + review))")
    reorder_point: int = Field(description="ceil(rate × lead + safety stock), or the level's")
    reorder_point_source: Literal["computed", "level"]
    order_up_to: int = Field(description="ceil(rate × (lead + review) + safety stock)")
    on_hand: int
    reserved: int
    on_order: int = Field(description="Units expected (sent purchase orders, expected receipts)")
    position: int = Field(description="on_hand − reserved + on_order")
    crossed: bool = Field(description="position ≤ reorder_point (and the SKU sells)")
    raw_quantity: int = Field(
        description="order_up_to − position (at least the level's reorder_quantity), when crossed"
    )
    minimum_order_quantity: int
    pack_size: int
    quantity: int = Field(description="raw_quantity, at least the minimum, in whole packs")


class SuggestionRead(BaseModel):
    warehouse: str
    sku: str
    supplier: str
    policy: Literal["sku", "warehouse"] = Field(description="Which policy applies")
    auto_draft: bool
    quantity: int = Field(description="What to order now (0: nothing)")
    inputs: SuggestionInputs
