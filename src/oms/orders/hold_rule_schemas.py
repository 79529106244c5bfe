"""Request and response bodies of hold rules."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from oms.orders.domain import PaymentMethod
from oms.orders.hold_schemas import HoldReason
from oms.orders.schemas import Country, Currency

if TYPE_CHECKING:
    from oms.orders.hold_models import ExpiryPolicy

RiskLevel = Literal["low", "medium", "high"]


class HoldRuleWrite(BaseModel):
    """A hold rule: a new order of the channel is held when EVERY condition set matches
    (unset conditions are not checked; at least one must be set)."""

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [
                {
                    "reason": "fraud_review",
                    "note": "big bank-transfer orders abroad",
                    "payment_methods": ["bank_transfer"],
                    "min_totals": {"EUR": 100000, "USD": 120000},
                    "countries": ["US", "GB"],
                },
                {"reason": "fraud_review", "risk_levels": ["high"]},
            ]
        },
    )

    reason: HoldReason = HoldReason.FRAUD_REVIEW
    note: str | None = Field(default=None, min_length=1, max_length=2000)
    payment_methods: list[PaymentMethod] | None = Field(
        default=None, min_length=1, description="Any of these payment methods"
    )
    min_totals: dict[Currency, Annotated[int, Field(ge=0, le=10**12)]] | None = Field(
        default=None,
        min_length=1,
        description="Per currency, the order total (minor units) at or above which it matches; "
        "an order in a currency not listed does not match",
    )
    countries: list[Country] | None = Field(
        default=None, min_length=1, description="Destination countries (ISO 3166-1 alpha-2)"
    )
    risk_levels: list[RiskLevel] | None = Field(
        default=None,
        min_length=1,
        description="The marketplace's risk assessment sent with the order (connector intake; "
        "an order without one does not match)",
    )

    @model_validator(mode="after")
    def _some_condition(self) -> HoldRuleWrite:
        if not (self.payment_methods or self.min_totals or self.countries or self.risk_levels):
            raise ValueError(
                "set at least one condition: payment_methods, min_totals, countries, risk_levels"
            )
        return self


class HoldRuleRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    channel: str
    name: str
    reason: HoldReason
    note: str | None
    payment_methods: list[str] | None
    min_totals: dict[str, int] | None
    countries: list[str] | None
    risk_levels: list[str] | None
    created_at: datetime
    updated_at: datetime


class ExpiryPolicyWrite(BaseModel):
    """After how long an unpaid order of the channel and payment method is cancelled."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"after_hours": 168}]}
    )

    after_hours: float = Field(
        gt=0, le=24 * 366, description="Hours after placement (168 = 7 days)", examples=[168]
    )


class ExpiryPolicyRead(BaseModel):
    channel: str
    payment_method: PaymentMethod
    after_hours: float
    updated_at: datetime

    @classmethod
    def of(cls, row: ExpiryPolicy) -> ExpiryPolicyRead:
        return cls(
            channel=row.channel,
            payment_method=PaymentMethod(row.payment_method),
            after_hours=row.after_s / 3600,
            updated_at=row.updated_at,
        )
