"""Request and response bodies of shipment exceptions, moves, splits and merges."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, Field

from oms.orders.schemas import OrderRead, Strict

Note = Annotated[str, Field(max_length=500)]


class ExceptionReason(StrEnum):
    SHORT_PICK = "short_pick"
    DAMAGED = "damaged"
    NOT_FOUND = "not_found"


class RejectedLine(Strict):
    order_line_id: uuid.UUID
    quantity: int = Field(ge=1, le=1_000_000, examples=[1])
    reason: ExceptionReason = Field(
        examples=["not_found"],
        description="`short_pick` (fewer on the shelf than expected: on hand is left to a "
        "count, unless the shipment was already picked), `damaged` or `not_found` (written "
        "off on-hand stock through the ledger).",
    )


class ShipmentExceptionCreate(Strict):
    lines: list[RejectedLine] = Field(min_length=1, max_length=100)
    block_for_hours: int | None = Field(
        default=None,
        ge=1,
        le=720,
        examples=[24],
        description="Block each rejected (warehouse, SKU) for routing this long: new orders "
        "are not sent to the same empty shelf.",
    )
    note: Note | None = Field(default=None, examples=["bin A-14 empty"])


class ShipmentExceptionSummary(BaseModel):
    id: uuid.UUID
    order_id: uuid.UUID
    shipment_id: uuid.UUID
    warehouse: str
    lines: list[dict[str, Any]] = Field(
        description="Rejected units: order line, SKU, quantity, reason, written off or not."
    )
    replan: dict[str, Any] = Field(
        description="What became of them: new shipments (warehouse and lines), backordered "
        "units, units written off, the shipment's status when they were rejected "
        "(`shipment_status`: pending or picked), whether it was cancelled (it carried nothing "
        "else), and the router's plan with its explanation."
    )
    blocked_until: datetime | None
    note: str | None
    actor: str
    created_at: datetime


class ShipmentExceptionRead(ShipmentExceptionSummary):
    order: OrderRead


class ShipmentMoveRequest(Strict):
    warehouse: str = Field(min_length=1, max_length=32, examples=["HAM"])
    reason: Note | None = Field(default=None, examples=["BER is overloaded"])


class SplitLine(Strict):
    order_line_id: uuid.UUID
    quantity: int = Field(ge=1, le=1_000_000, examples=[1])


class ShipmentSplitRequest(Strict):
    lines: list[SplitLine] = Field(min_length=1, max_length=100)
    reason: Note | None = Field(default=None, examples=["does not fit in one box"])


class ShipmentMergeRequest(Strict):
    shipment_id: uuid.UUID = Field(description="The shipment whose units join this one.")
    reason: Note | None = Field(default=None, examples=["one box after all"])


class ShipmentChangeRead(BaseModel):
    shipment_id: uuid.UUID = Field(
        description="The shipment the units are in now (the new one for a move or a split)."
    )
    order: OrderRead
