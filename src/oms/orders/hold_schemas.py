"""Request and response bodies of holds on orders."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class HoldReason(StrEnum):
    FRAUD_REVIEW = "fraud_review"
    AWAITING_PAYMENT = "awaiting_payment"
    ADDRESS_CHECK = "address_check"
    CUSTOMER_REQUEST = "customer_request"
    OTHER = "other"


class HoldCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={"examples": [{"reason": "fraud_review", "note": "billing ≠ shipping"}]},
    )

    reason: HoldReason = Field(description="Why the order is held")
    note: str | None = Field(default=None, min_length=1, max_length=2000)


class HoldRelease(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={"examples": [{"note": "customer confirmed by phone"}]},
    )

    note: str | None = Field(default=None, min_length=1, max_length=2000)


class HoldRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    order_id: uuid.UUID
    reason: HoldReason
    note: str | None
    rule: str | None = Field(description="The hold rule that placed it; null when placed by hand")
    active: bool = Field(description="True while the hold stands (not released)")
    placed_by: str
    placed_at: datetime
    released_by: str | None
    released_at: datetime | None
    release_note: str | None


class BlockerKind(StrEnum):
    HOLD = "hold"
    PAYMENT = "payment"
    BACKORDER = "backorder"
    LATE_PICK = "late_pick"
    WAVE = "wave"
    INBOUND_PENDING = "inbound_pending"
    DELIVERY_FAILED = "delivery_failed"


class BlockerRead(BaseModel):
    kind: BlockerKind
    detail: str = Field(description="What stops the order, in a sentence")
    clears_when: str = Field(description="What would clear this blocker")
    data: dict[str, Any] = Field(description="The facts behind it (ids, amounts, SKUs, dates)")


class BlockersRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "order_id": "0b7e2f4e-8c1a-4d0b-9a57-2f1d3c4b5a69",
                    "status": "placed",
                    "blocked": True,
                    "blockers": [
                        {
                            "kind": "payment",
                            "detail": "6163 EUR to pay, 0 captured",
                            "clears_when": "captured payments cover the total (6163 EUR)",
                            "data": {"total": 6163, "captured": 0, "currency": "EUR"},
                        }
                    ],
                }
            ]
        }
    )

    order_id: uuid.UUID
    status: str
    blocked: bool = Field(description="True when anything stops the order from moving on")
    blockers: list[BlockerRead]
