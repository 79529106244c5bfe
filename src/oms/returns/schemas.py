"""Return (RMA) bodies."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ReasonCode = Literal[
    "damaged",
    "defective",
    "wrong_item",
    "not_as_described",
    "size_or_fit",
    "no_longer_needed",
    "other",
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class ReturnLineCreate(Strict):
    order_line_id: uuid.UUID
    quantity: int = Field(gt=0, le=10_000, examples=[1])
    reason_code: ReasonCode = Field(examples=["size_or_fit"])
    comment: Annotated[str, Field(max_length=500)] | None = None


class ReturnCreate(Strict):
    lines: list[ReturnLineCreate] = Field(min_length=1, max_length=250)
    note: Annotated[str, Field(max_length=2000)] | None = None


class LineReceiptIn(Strict):
    return_line_id: uuid.UUID
    restock: int = Field(default=0, ge=0, le=10_000, description="Units back into stock")
    discard: int = Field(default=0, ge=0, le=10_000, description="Damaged or discarded units")
    warehouse: Annotated[str, Field(min_length=1, max_length=32)] | None = Field(
        default=None, description="Restock here; default: the warehouse it shipped from"
    )


class RefundOnReceipt(Strict):
    amount: int = Field(gt=0, le=10**12)
    reason: Annotated[str, Field(min_length=1, max_length=500)] = "return received"


class ReturnReceive(Strict):
    lines: list[LineReceiptIn] = Field(min_length=1, max_length=250)
    refund: RefundOnReceipt | None = Field(
        default=None, description="Optionally refund in the same step (independent of restocking)"
    )

    @model_validator(mode="after")
    def _unique(self) -> ReturnReceive:
        ids = [ln.return_line_id for ln in self.lines]
        if len(ids) != len(set(ids)):
            raise ValueError("each return line may appear once")
        return self


class ReturnLineRead(BaseModel):
    id: uuid.UUID
    order_line_id: uuid.UUID
    sku: str
    quantity: int
    reason_code: str
    comment: str | None
    restocked_quantity: int
    discarded_quantity: int
    restock_warehouse_id: uuid.UUID | None

    model_config = ConfigDict(from_attributes=True)


class ReturnRead(BaseModel):
    id: uuid.UUID
    order_id: uuid.UUID
    status: str
    note: str | None
    lines: list[ReturnLineRead]
    created_at: datetime
    received_at: datetime | None
