"""Request and response bodies of order edits and partial cancellation (``orders.edits``)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any

from pydantic import BaseModel, Field, model_validator

from oms.orders.schemas import Address, OrderLineCreate, Strict, Totals

Reason = Annotated[str, Field(max_length=500)]


class LineQuantity(Strict):
    line_id: uuid.UUID
    quantity: int = Field(ge=0, le=10_000, description="The line's new quantity; 0 removes it")


class OrderEditRequest(Strict):
    """A staged edit of an order's unpicked units."""

    expected_version: int = Field(
        ge=1,
        description="The order's `version` the edit was made against (409 `version_conflict` "
        "if it has changed since)",
        examples=[3],
    )
    lines: list[LineQuantity] = Field(
        default_factory=list,
        max_length=250,
        description="New quantities of existing lines (0 removes the line)",
    )
    add_lines: list[OrderLineCreate] = Field(default_factory=list, max_length=250)
    remove_lines: list[uuid.UUID] = Field(
        default_factory=list, max_length=250, description="Lines to remove (all their units)"
    )
    shipping_address: Address | None = Field(
        default=None, description="A new shipping address (only while no shipment is picked)"
    )
    reason: Reason | None = None

    @model_validator(mode="after")
    def _one_change_per_line(self) -> OrderEditRequest:
        ids = [ln.line_id for ln in self.lines] + list(self.remove_lines)
        if len(ids) != len(set(ids)):
            raise ValueError("each line may be named once (in `lines` or `remove_lines`)")
        return self

    def quantities(self) -> dict[uuid.UUID, int]:
        return {ln.line_id: ln.quantity for ln in self.lines} | dict.fromkeys(self.remove_lines, 0)

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "expected_version": 2,
                    "lines": [{"line_id": "6f1c9d1e-8c1a-4a53-9d59-0c3c5c1f0a11", "quantity": 3}],
                    "add_lines": [
                        {"sku": "MUG-BLUE", "quantity": 1, "unit_price": 850, "tax_rate_bps": 700}
                    ],
                    "reason": "customer called",
                }
            ]
        }
    }


class CancelLine(Strict):
    line_id: uuid.UUID
    quantity: int = Field(gt=0, le=10_000, description="Units of the line to cancel")


class CancelLinesRequest(Strict):
    """Cancel some units of some lines (partial cancellation)."""

    lines: list[CancelLine] = Field(min_length=1, max_length=250)
    reason: Reason | None = None
    refund: bool = Field(
        default=False,
        description="Refund what was captured beyond the new total right away (otherwise the "
        "refund due is only reported)",
    )
    expected_version: int | None = Field(
        default=None, ge=1, description="If given, 409 `version_conflict` unless it matches"
    )

    @model_validator(mode="after")
    def _one_entry_per_line(self) -> CancelLinesRequest:
        ids = [ln.line_id for ln in self.lines]
        if len(ids) != len(set(ids)):
            raise ValueError("each line may be named once")
        return self

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "lines": [{"line_id": "6f1c9d1e-8c1a-4a53-9d59-0c3c5c1f0a11", "quantity": 1}],
                    "reason": "out of stock at the customer's request",
                    "refund": True,
                }
            ]
        }
    }


class EditedLine(BaseModel):
    line_id: uuid.UUID
    sku: str
    change: str = Field(description="`unchanged`, `quantity`, `removed` or `added`")
    quantity_before: int
    quantity_after: int
    cancelled: int = Field(description="Units of the line cancelled since placement")
    backordered: int
    unit_price: int
    tax_rate_bps: int
    subtotal: int
    tax: int
    total: int


class StockChange(BaseModel):
    warehouse: str
    sku: str
    reserved: int = Field(description="Units newly reserved here")
    released: int = Field(description="Units given back here")


class ShipmentRef(BaseModel):
    id: uuid.UUID
    seq: int
    warehouse: str


class PlannedParcel(ShipmentRef):
    lines: list[dict[str, Any]] = Field(description="order_line_id, sku, quantity")


class Balance(BaseModel):
    total: int = Field(description="The order's total after the change")
    captured: int
    refunded: int
    amount_due: int = Field(description="Still to be paid: total - (captured - refunded), >= 0")
    refund_due: int = Field(description="Paid beyond the total: to refund, >= 0")
    refunded_now: int = Field(0, description="Refunded by this request (`refund: true`)")


class OrderChangeRead(BaseModel):
    """What an edit or partial cancellation changes (or, on a dry run, would change)."""

    dry_run: bool
    order_id: uuid.UUID
    status: str = Field(description="The order's status after the change")
    version_before: int
    version_after: int
    lines: list[EditedLine]
    totals_before: Totals
    totals_after: Totals
    address_before: dict[str, Any] | None
    address_after: dict[str, Any] | None
    shipments_cancelled: list[ShipmentRef]
    shipments_planned: list[PlannedParcel]
    routing: dict[str, Any] | None = Field(
        description="The new plan of the re-planned units: warehouses, fill, backorders and the "
        "routing explanation (null when nothing had to be planned)"
    )
    stock: list[StockChange]
    balance: Balance
    order_cancelled: bool = Field(description="Nothing was left: the order was cancelled")
