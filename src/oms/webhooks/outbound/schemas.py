"""Request and response bodies of the outbound webhook API."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    UrlConstraints,
    model_validator,
)

from oms.shared.timestamps import RULE as TIMESTAMP_RULE
from oms.shared.timestamps import Timestamp
from oms.webhooks.events import validate_pattern

EventPattern = Annotated[
    str,
    Field(min_length=1, max_length=64, examples=["order.shipped", "shipment.*"]),
    AfterValidator(validate_pattern),
]
URL_MAX = 2048
"""Characters a subscription's URL is stored in (``webhook_subscriptions.url``)."""


def _fits(url: AnyHttpUrl) -> AnyHttpUrl:
    """The URL as stored (percent-encoded: one `é` takes 6 characters) fits its column."""
    if len(str(url)) > URL_MAX:
        raise ValueError(f"URL should have at most {URL_MAX} characters once percent-encoded")
    return url


Url = Annotated[
    AnyHttpUrl,
    UrlConstraints(max_length=URL_MAX),
    AfterValidator(_fits),
    Field(description="http(s) endpoint receiving POSTs", examples=["https://erp.example.com/oms"]),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class SubscriptionCreate(Strict):
    url: Url
    event_types: list[EventPattern] = Field(
        min_length=1,
        max_length=50,
        description="Event types, `<family>.*` wildcards or `*` (GET /v1/webhooks/event-types)",
        examples=[["order.*", "shipment.shipped"]],
    )
    description: Annotated[str, Field(max_length=200)] | None = Field(
        default=None, examples=["ERP order sync"]
    )
    enabled: StrictBool = True


class SubscriptionUpdate(Strict):
    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={"examples": [{"enabled": True}, {"event_types": ["order.*"]}]},
    )

    url: Url | None = None
    event_types: list[EventPattern] | None = Field(default=None, min_length=1, max_length=50)
    description: Annotated[str, Field(max_length=200)] | None = None
    enabled: StrictBool | None = Field(
        default=None,
        description="true re-enables a disabled endpoint: its failure counters are reset and "
        "its waiting deliveries resume",
    )


class SubscriptionRead(BaseModel):
    id: uuid.UUID
    url: str
    event_types: list[str]
    description: str | None
    enabled: bool
    disabled_reason: str | None = Field(description="Why oms disabled the endpoint, if it did")
    disabled_at: datetime | None
    consecutive_failures: int
    failing_since: datetime | None
    last_success_at: datetime | None
    last_failure_at: datetime | None
    created_at: datetime
    updated_at: datetime


class SubscriptionCreated(SubscriptionRead):
    secret: str = Field(
        description="Standard Webhooks signing secret (`whsec_...`); shown once, store it now"
    )


class SecretRotated(BaseModel):
    secret: str = Field(description="The new signing secret; the old one stops working now")


class RedeliverRequest(Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"since": "2026-11-20T00:00:00Z"},
                {"since": "2026-11-20T00:00:00Z", "only_failed": True},
            ]
        },
    )

    since: Timestamp = Field(
        description=f"Re-send events recorded at or after this time; {TIMESTAMP_RULE}"
    )
    until: Timestamp | None = Field(default=None, description="...and before this time")
    only_failed: StrictBool = Field(
        default=False, description="Only events whose delivery failed or died (or never existed)"
    )

    @model_validator(mode="after")
    def _ordered(self) -> RedeliverRequest:
        if self.until is not None and self.until <= self.since:
            raise ValueError("until must be after since")
        return self


class RedeliverResult(BaseModel):
    queued: int = Field(description="Deliveries (re)queued")


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERING = "delivering"
    FAILED = "failed"
    SUCCEEDED = "succeeded"
    DEAD = "dead"


class DeliveryRead(BaseModel):
    id: int
    event_id: uuid.UUID = Field(description="Also the `webhook-id` header: dedupe on it")
    event_type: str
    subscription_id: uuid.UUID
    ordering_key: str = Field(description="Deliveries with one key are sent in order")
    status: DeliveryStatus
    attempts: int
    next_attempt_at: datetime | None = Field(description="When the next attempt is due")
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None


class AttemptRead(BaseModel):
    attempt: int
    outcome: str = Field(description="succeeded, retry, dead, or lease_expired (worker stopped)")
    status_code: int | None
    duration_ms: int | None
    error: str | None
    response_body: str | None = Field(description="The first 2 KiB of the response")
    worker: str | None
    created_at: datetime


class DeliveryDetail(DeliveryRead):
    payload: dict[str, Any] = Field(description="The event body as sent")
    attempt_log: list[AttemptRead]


class DeliveryPage(BaseModel):
    items: list[DeliveryRead]
    next_cursor: str | None


class EventTypeRead(BaseModel):
    type: str
    description: str
