"""Request and response bodies of the stores API: pickups, store policies, transfers, scoped
keys."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from oms.shared.codes import normalize_currency
from oms.shared.timestamps import RULE, Day, Timestamp

Sku = Annotated[str, Field(min_length=1, max_length=64, examples=["TSHIRT-RED-M"])]
Code = Annotated[str, Field(min_length=1, max_length=32, examples=["STORE-MITTE"])]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


# ---- click and collect -------------------------------------------------------------------


class PickupStatus(StrEnum):
    READY = "ready"
    COLLECTED = "collected"
    UNCOLLECTED = "uncollected"
    CANCELLED = "cancelled"


class UncollectedAction(StrEnum):
    CANCEL = "cancel"
    REFUND = "refund"


class CollectRequest(_Strict):
    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={"examples": [{"code": "042917"}]},
    )

    code: str = Field(
        min_length=1,
        max_length=16,
        description="The collection code the customer shows (sent in `pickup.ready`)",
    )


class PickupRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "shipment_id": "0b6f3c1e-6a51-4a3c-9b89-3e1b8f3f5a10",
                    "order_id": "5c3f1d2e-8f5b-4a57-bf0e-2a7f0c9d1e11",
                    "store": "STORE-MITTE",
                    "status": "ready",
                    "shipment_status": "ready_for_pickup",
                    "order_status": "ready_for_pickup",
                    "attempts": 0,
                    "attempts_left": 5,
                    "uncollected_action": "cancel",
                    "ready_at": "2026-12-05T10:00:00Z",
                    "collect_by": "2026-12-08T10:00:00Z",
                    "closed_at": None,
                }
            ]
        }
    )

    shipment_id: uuid.UUID
    order_id: uuid.UUID
    store: str = Field(description="The store's warehouse code")
    status: PickupStatus
    shipment_status: str
    order_status: str
    attempts: int = Field(description="Wrong codes given so far")
    attempts_left: int
    uncollected_action: UncollectedAction = Field(
        description="What happens at `collect_by` if nobody collected it"
    )
    ready_at: datetime
    collect_by: datetime
    closed_at: datetime | None


class StorePolicyWrite(_Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"pickup_window_hours": 120, "uncollected_action": "refund", "max_code_attempts": 3}
            ]
        },
    )

    pickup_window_hours: int = Field(
        gt=0, le=24 * 90, description="Hours a ready order waits before it is uncollected"
    )
    uncollected_action: UncollectedAction = Field(
        description="`cancel`: the order is cancelled, money left to a person; `refund`: "
        "cancelled and what was captured refunded"
    )
    max_code_attempts: int = Field(default=5, ge=1, le=20)


class StorePolicyRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "store": "STORE-MITTE",
                    "pickup_window_hours": 72,
                    "uncollected_action": "cancel",
                    "max_code_attempts": 5,
                    "default": True,
                }
            ]
        }
    )

    store: str
    pickup_window_hours: int
    uncollected_action: UncollectedAction
    max_code_attempts: int
    default: bool = Field(description="True: the store has no terms of its own (the settings')")


# ---- transfers ---------------------------------------------------------------------------


class TransferStatus(StrEnum):
    DRAFT = "draft"
    SHIPPED = "shipped"
    RECEIVED = "received"
    CANCELLED = "cancelled"


class TransferLineCreate(_Strict):
    sku: Sku
    quantity: int = Field(gt=0, le=1_000_000)


class TransferCreate(_Strict):
    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [
                {
                    "from_warehouse": "BER",
                    "to_warehouse": "STORE-MITTE",
                    "lines": [{"sku": "TSHIRT-RED-M", "quantity": 12}],
                    "expected_on": "2026-12-07",
                    "reference": "TR-2026-0042",
                }
            ]
        },
    )

    from_warehouse: Code
    to_warehouse: Code
    lines: list[TransferLineCreate] = Field(min_length=1, max_length=250)
    expected_on: Day | None = Field(
        default=None, description="When it should arrive; YYYY-MM-DD, years 1970-9000"
    )
    reference: str | None = Field(default=None, max_length=128)
    note: str | None = Field(default=None, max_length=2000)


class TransferShip(_Strict):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"expected_on": "2026-12-07"}]}
    )

    expected_on: Day | None = Field(
        default=None,
        description="When it should arrive (default: the transfer's, else today); YYYY-MM-DD, "
        "years 1970-9000",
    )


class TransferReceive(_Strict):
    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [{"lines": [{"sku": "TSHIRT-RED-M", "quantity": 10}], "close": True}]
        },
    )

    lines: list[TransferLineCreate] = Field(
        default_factory=list, max_length=250, description="Units arrived now (may be none)"
    )
    close: bool = Field(
        default=False,
        description="Nothing more will come: units still missing are booked as `transfer_short`",
    )


class TransferLineRead(BaseModel):
    sku: str
    quantity: int = Field(description="Units shipped (or to ship)")
    received: int
    short: int = Field(description="Units that never arrived (booked at closing)")
    over: int = Field(description="Units that arrived beyond the shipped quantity")
    in_transit: int


class TransferRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "9a1c7e55-2f0d-4d0b-8b8e-6c1f7a2d3e44",
                    "from_warehouse": "BER",
                    "to_warehouse": "STORE-MITTE",
                    "status": "shipped",
                    "expected_on": "2026-12-07",
                    "reference": "TR-2026-0042",
                    "note": None,
                    "lines": [
                        {
                            "sku": "TSHIRT-RED-M",
                            "quantity": 12,
                            "received": 0,
                            "short": 0,
                            "over": 0,
                            "in_transit": 12,
                        }
                    ],
                    "created_by": "apikey:ber-staff",
                    "created_at": "2026-12-05T09:00:00Z",
                    "shipped_at": "2026-12-05T10:00:00Z",
                    "received_at": None,
                    "cancelled_at": None,
                    "backorder_units_filled": 0,
                    "order_id": None,
                    "shipment_id": None,
                    "routing": None,
                }
            ]
        }
    )

    id: uuid.UUID
    from_warehouse: str
    to_warehouse: str
    status: TransferStatus
    expected_on: date | None
    reference: str | None
    note: str | None
    lines: list[TransferLineRead]
    created_by: str
    created_at: datetime
    shipped_at: datetime | None
    received_at: datetime | None
    cancelled_at: datetime | None
    backorder_units_filled: int = Field(
        default=0, description="On a receipt: backordered units at the destination it filled"
    )
    order_id: uuid.UUID | None = Field(
        default=None,
        description="A transfer to fulfil: the click-and-collect order whose short units it "
        "brings to its pickup store (created with the order; cancelled with it while a draft)",
    )
    shipment_id: uuid.UUID | None = Field(
        default=None, description="... and that order's pickup shipment, which waits for it"
    )
    routing: dict[str, Any] | None = Field(
        default=None,
        description="A transfer to fulfil: why this source was chosen (the router's "
        "explanation: `summary`, `deciding_rule`, `runner_up`, `candidates`...)",
    )


# ---- scoped keys -------------------------------------------------------------------------


class KeyScopeWrite(_Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"warehouses": ["STORE-MITTE", "STORE-PANKOW"]}]},
    )

    warehouses: list[Code] = Field(
        max_length=100, description="Warehouse/store codes; empty: the key is unscoped again"
    )


class KeyScopeRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "key_id": "3d2b1a09-8c7e-4f6a-9b5d-1e0f2a3b4c5d",
                    "warehouses": ["STORE-MITTE", "STORE-PANKOW"],
                }
            ]
        }
    )

    key_id: uuid.UUID
    warehouses: list[str] = Field(description="Empty: every warehouse")


# ---- point of sale -----------------------------------------------------------------------


class TillPayment(StrEnum):
    CARD = "card"
    GIFT_CARD = "gift_card"
    OTHER = "other"  # cash, vouchers...


class TillLine(_Strict):
    sku: Sku
    name: str | None = Field(default=None, max_length=200)
    quantity: int = Field(gt=0, le=10_000)
    unit_price: int = Field(ge=0, le=10**12, description="Minor units, before tax")
    tax_rate_bps: int = Field(ge=0, le=10_000, examples=[1900])


class TillSaleCreate(_Strict):
    model_config = ConfigDict(
        extra="forbid",
        str_strip_whitespace=True,
        json_schema_extra={
            "examples": [
                {
                    "receipt_id": "T3-2026-000481",
                    "currency": "EUR",
                    "lines": [
                        {"sku": "MUG-01", "quantity": 2, "unit_price": 850, "tax_rate_bps": 1900}
                    ],
                    "payment_method": "card",
                }
            ]
        },
    )

    receipt_id: str = Field(
        min_length=1,
        max_length=64,
        description="The till's receipt id: unique per store; a retry with the same id (and "
        "content) answers with the first sale's order",
    )
    currency: Annotated[str, AfterValidator(normalize_currency)] = Field(
        pattern=r"^[A-Z]{3}$", examples=["EUR"], description="ISO 4217 code"
    )
    lines: list[TillLine] = Field(min_length=1, max_length=250)
    payment_method: TillPayment = TillPayment.CARD
    customer_id: str | None = Field(default=None, min_length=1, max_length=128)
    customer_email: str | None = Field(
        default=None, min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$"
    )
    sold_at: Timestamp | None = Field(
        default=None,
        description=f"When the till sold it (offline sales), {RULE}; default: now",
    )


class TillSaleBatch(_Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "sales": [
                        {
                            "receipt_id": "T3-2026-000482",
                            "currency": "EUR",
                            "lines": [
                                {
                                    "sku": "MUG-01",
                                    "quantity": 1,
                                    "unit_price": 850,
                                    "tax_rate_bps": 1900,
                                }
                            ],
                            "payment_method": "other",
                            "sold_at": "2026-12-05T08:41:00Z",
                        }
                    ]
                }
            ]
        },
    )

    sales: list[TillSaleCreate] = Field(min_length=1, max_length=500)


class Uncovered(BaseModel):
    sku: str
    quantity: int = Field(description="Units sold that the store's stock did not hold")


class TillSaleRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "receipt_id": "T3-2026-000481",
                    "store": "STORE-MITTE",
                    "order_id": "5c3f1d2e-8f5b-4a57-bf0e-2a7f0c9d1e11",
                    "order_number": 1042,
                    "order_status": "delivered",
                    "total": 2023,
                    "currency": "EUR",
                    "sold_at": "2026-12-05T10:15:00Z",
                    "offline": False,
                    "replayed": False,
                    "stock_discrepancy": False,
                    "uncovered": [],
                }
            ]
        }
    )

    receipt_id: str
    store: str
    order_id: uuid.UUID
    order_number: int
    order_status: str
    total: int
    currency: str
    sold_at: datetime
    offline: bool
    replayed: bool = Field(description="True: a retry, answered with the first sale's order")
    stock_discrepancy: bool = Field(
        description="The store's stock did not hold every unit sold: count it (`uncovered`)"
    )
    uncovered: list[Uncovered]


class TillBatchItem(BaseModel):
    receipt_id: str
    outcome: str = Field(description="`recorded`, `replayed` or `refused` (see `problem`)")
    sale: TillSaleRead | None = None
    problem: dict[str, object] | None = Field(
        default=None, description="Why the receipt was refused (a problem document)"
    )


class TillBatchRead(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "recorded": 1,
                    "replayed": 0,
                    "refused": 0,
                    "results": [
                        {
                            "receipt_id": "T3-2026-000482",
                            "outcome": "recorded",
                            "sale": {
                                "receipt_id": "T3-2026-000482",
                                "store": "STORE-MITTE",
                                "order_id": "7d1e2f3a-4b5c-4d6e-8f90-a1b2c3d4e5f6",
                                "order_number": 1043,
                                "order_status": "delivered",
                                "total": 1012,
                                "currency": "EUR",
                                "sold_at": "2026-12-05T08:41:00Z",
                                "offline": True,
                                "replayed": False,
                                "stock_discrepancy": True,
                                "uncovered": [{"sku": "MUG-01", "quantity": 1}],
                            },
                        }
                    ],
                }
            ]
        }
    )

    recorded: int
    replayed: int
    refused: int
    results: list[TillBatchItem]
