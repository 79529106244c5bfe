"""Payment and refund bodies. Amounts are integer minor units."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from oms.orders.domain import PaymentMethod
from oms.shared.codes import normalize_currency

Minor = Annotated[int, Field(gt=0, le=10**12, description="Minor units")]


class PaymentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    method: PaymentMethod = Field(examples=["card"])
    provider: Annotated[str, Field(min_length=1, max_length=64)] = Field(examples=["stripe"])
    provider_reference: Annotated[str, Field(min_length=1, max_length=128)] = Field(
        description="The provider's id for this payment; repeats are idempotent",
        examples=["pi_3NkY2"],
    )
    amount: Minor = Field(examples=[6163])
    currency: Annotated[
        str,
        Field(min_length=3, max_length=3, pattern=r"^[A-Za-z]{3}$", description="ISO 4217 code"),
        AfterValidator(normalize_currency),
    ]
    status: Literal["authorized", "captured", "failed"] = "captured"


class CaptureRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: Minor | None = Field(default=None, description="Default: the authorized amount")


class RefundCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    amount: Minor = Field(examples=[1999])
    reason: Annotated[str, Field(min_length=1, max_length=500)] = Field(examples=["goodwill"])
    payment_id: uuid.UUID | None = Field(default=None, description="Default: oldest payments first")
    provider_reference: Annotated[str, Field(max_length=128)] | None = None


class PaymentRead(BaseModel):
    id: uuid.UUID
    order_id: uuid.UUID
    method: str
    provider: str
    provider_reference: str
    currency: str
    amount: int
    captured_amount: int
    refunded_amount: int
    status: str
    created_at: datetime
    captured_at: datetime | None

    model_config = ConfigDict(from_attributes=True)


class RefundRead(BaseModel):
    id: uuid.UUID
    order_id: uuid.UUID
    payment_id: uuid.UUID
    return_id: uuid.UUID | None
    amount: int
    currency: str
    reason: str
    created_at: datetime

    model_config = ConfigDict(from_attributes=True)


class PaymentsRead(BaseModel):
    order_total: int
    captured: int
    refunded: int
    balance_due: int = Field(description="Total minus captured (0 when fully paid)")
    payments: list[PaymentRead]
    refunds: list[RefundRead]
