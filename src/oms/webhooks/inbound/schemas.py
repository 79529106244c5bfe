"""Request and response bodies of the inbound webhook API, and oms's canonical inbound format."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, model_validator

from oms.orders.schemas import Channel, Currency, Minor, OrderCreate, Sku
from oms.shared.timestamps import RULE as TIMESTAMP_RULE
from oms.shared.timestamps import Timestamp

ExternalReference = Annotated[str, Field(min_length=1, max_length=128, examples=["SHOP-1001"])]
ConnectorName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=48,
        pattern=r"^[a-z0-9][a-z0-9._\-]*$",
        description="URL-safe name: the connector posts to /v1/webhooks/inbound/{name}",
        examples=["shopify-eu"],
    ),
]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


# ---- canonical inbound format ("oms") ----------------------------------------------------


class OrderTarget(Strict):
    """Which order an event is about: its id in the sales channel, or its oms id."""

    external_reference: ExternalReference | None = None
    order_id: uuid.UUID | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> OrderTarget:
        if (self.external_reference is None) == (self.order_id is None):
            raise ValueError("give exactly one of external_reference or order_id")
        return self


class CapturedAtCreation(Strict):
    amount: Minor = Field(gt=0, description="Captured amount in minor units", examples=[4493])
    reference: Annotated[str, Field(min_length=1, max_length=128)] | None = Field(
        default=None, description="The provider's payment id", examples=["pi_3Nx"]
    )


class InboundOrderData(OrderCreate):
    """An order as in ``POST /v1/orders``; ``channel`` defaults to the connector's channel."""

    channel: Channel | None = None  # type: ignore[assignment]
    external_reference: ExternalReference
    payment: CapturedAtCreation | None = Field(
        default=None, description="Set when the order was already paid when it was placed"
    )


class PaymentData(OrderTarget):
    amount: Minor = Field(gt=0, examples=[4493])
    currency: Currency
    reference: Annotated[str, Field(min_length=1, max_length=128)] | None = Field(
        default=None,
        description="The provider's payment or refund id; repeats with the same id are ignored",
        examples=["pi_3Nx"],
    )


class CancelData(OrderTarget):
    reason: Annotated[str, Field(max_length=500)] | None = Field(
        default=None, examples=["customer changed their mind"]
    )


class _Envelope(Strict):
    id: Annotated[str, Field(max_length=255)] | None = Field(
        default=None, description="Optional; the webhook-id header identifies the delivery"
    )
    occurred_at: Timestamp | None = Field(default=None, description=TIMESTAMP_RULE)


class OrderCreatedEvent(_Envelope):
    type: Literal["order.created"]
    data: InboundOrderData


class OrderCancelledEvent(_Envelope):
    type: Literal["order.cancelled"]
    data: CancelData


class PaymentCapturedEvent(_Envelope):
    type: Literal["payment.captured"]
    data: PaymentData


class PaymentRefundedEvent(_Envelope):
    type: Literal["payment.refunded"]
    data: PaymentData


CanonicalEvent = Annotated[
    OrderCreatedEvent | OrderCancelledEvent | PaymentCapturedEvent | PaymentRefundedEvent,
    Field(discriminator="type"),
]

CANONICAL_EXAMPLES: dict[str, dict[str, Any]] = {
    "order.created": {
        "summary": "oms format: an order was placed in the channel",
        "value": {
            "type": "order.created",
            "data": {
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
                "shipping_fee": 495,
                "lines": [
                    {"sku": "TSHIRT-RED-M", "quantity": 2, "unit_price": 1999, "tax_rate_bps": 0}
                ],
            },
        },
    },
    "order.cancelled": {
        "summary": "oms format: the order was cancelled in the channel",
        "value": {
            "type": "order.cancelled",
            "data": {"external_reference": "SHOP-1001", "reason": "customer request"},
        },
    },
    "payment.captured": {
        "summary": "oms format: a payment provider captured a payment",
        "value": {
            "type": "payment.captured",
            "data": {
                "external_reference": "SHOP-1001",
                "amount": 4493,
                "currency": "EUR",
                "reference": "pi_3Nx",
            },
        },
    },
    "payment.refunded": {
        "summary": "oms format: a payment provider refunded (part of) a payment",
        "value": {
            "type": "payment.refunded",
            "data": {
                "external_reference": "SHOP-1001",
                "amount": 1999,
                "currency": "EUR",
                "reference": "re_9Qa",
            },
        },
    },
}


# ---- connectors ---------------------------------------------------------------------------


class ConnectorFormat(StrEnum):
    OMS = "oms"
    SHOPIFY = "shopify"
    WOOCOMMERCE = "woocommerce"


Secret = Annotated[
    str,
    Field(
        min_length=8,
        max_length=256,
        description="The signing secret. Format `oms`: a Standard Webhooks secret, `whsec_` "
        "followed by the base64 of at least 24 bytes (422 `invalid_secret` otherwise); "
        "`shopify` and `woocommerce`: the platform's secret as it shows it",
        examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    ),
]
SkuMapKey = Annotated[
    str, Field(max_length=72, pattern=r"^(variant|product):[A-Za-z0-9._\-]{1,64}$")
]
SKU_MAP_MAX = 10_000
"""The most entries a connector's SKU map holds."""
_SKU_MAP_DOC = (
    "Maps platform lines to oms SKUs: `variant:<id>` (a Shopify variant id, a WooCommerce "
    "variation id) or `product:<id>` (a product id) -> SKU. A line takes its variant's mapping, "
    "else its own SKU (when it is a valid oms SKU), else its product's mapping; a line with "
    "none of them is refused with 422 `unmapped_line` naming it (kept in the inbox as failed, "
    "replayable once mapped). oms never invents a SKU."
)


class ConnectorCreate(Strict):
    name: ConnectorName
    channel: Channel = Field(description="Orders from this connector are placed in this channel")
    format: ConnectorFormat = Field(examples=["shopify"])
    secret: Secret | None = Field(
        default=None,
        description=(
            "The signing secret. Shopify: the app's client secret; WooCommerce: the webhook's "
            "secret; oms: `whsec_` followed by the base64 of at least 24 bytes (422 "
            "`invalid_secret` otherwise), or omit it and oms generates one, "
            "returned once in the response."
        ),
    )
    enabled: StrictBool = True
    description: Annotated[str, Field(max_length=200)] | None = None
    sku_map: dict[SkuMapKey, Sku] = Field(
        default_factory=dict, max_length=SKU_MAP_MAX, description=_SKU_MAP_DOC
    )

    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [
                {
                    "name": "shopify-eu",
                    "channel": "shopify-eu",
                    "format": "shopify",
                    "secret": "shpss_0123456789abcdef",
                    "sku_map": {"variant:808950810": "IPOD-NANO-PINK"},
                },
                {"name": "stripe", "channel": "web", "format": "oms"},
            ]
        },
    )


class ConnectorUpdate(Strict):
    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [
                {"enabled": False},
                {"secret": "shpss_0123456789abcdef"},
                {"sku_map": {"product:93": "MUG-01", "variant:23": None}},
            ]
        },
    )

    channel: Channel | None = None
    format: ConnectorFormat | None = None
    secret: Secret | None = Field(default=None, description="Write-only; replaces the secret")
    enabled: StrictBool | None = None
    description: Annotated[str, Field(max_length=200)] | None = None
    sku_map: dict[SkuMapKey, Sku | None] | None = Field(
        default=None,
        max_length=SKU_MAP_MAX,
        description="Merged into the connector's map: a key set to a SKU is added or "
        "replaced, a key set to null is removed, other keys stay. " + _SKU_MAP_DOC,
    )


class ConnectorRead(BaseModel):
    id: uuid.UUID
    name: str
    channel: str
    format: ConnectorFormat
    enabled: bool
    description: str | None
    sku_map: dict[str, str] = Field(description=_SKU_MAP_DOC)
    webhook_url: str = Field(description="Where the platform should post (path on this server)")
    created_at: datetime
    updated_at: datetime


class ConnectorCreated(ConnectorRead):
    secret: str | None = Field(
        description="Only when oms generated the secret; shown once, store it now"
    )


# ---- inbox --------------------------------------------------------------------------------


class InboxStatus(StrEnum):
    RECEIVED = "received"
    PROCESSED = "processed"
    PENDING = "pending"
    FAILED = "failed"
    IGNORED = "ignored"


class InboundResult(BaseModel):
    """What a connector gets back for an accepted delivery."""

    inbox_id: int
    event_id: str
    type: str | None = Field(examples=["order.created"])
    status: InboxStatus
    order_id: uuid.UUID | None = None
    detail: str | None = Field(default=None, examples=["order created"])
    duplicate: bool = Field(
        default=False, description="True when this event id was seen before (nothing was redone)"
    )


class InboxMessageRead(BaseModel):
    id: int
    connector: str
    event_id: str
    topic: str | None
    type: str | None
    status: InboxStatus
    channel: str | None
    external_reference: str | None
    order_id: uuid.UUID | None
    error_code: str | None
    error: str | None
    response_status: int | None
    attempts: int
    received_at: datetime
    processed_at: datetime | None
    updated_at: datetime


class InboxMessageDetail(InboxMessageRead):
    headers: dict[str, str]
    body: str = Field(description="The raw body as received (UTF-8; invalid bytes replaced)")
    response_body: dict[str, Any] | None


class InboxPage(BaseModel):
    items: list[InboxMessageRead]
    next_cursor: str | None
