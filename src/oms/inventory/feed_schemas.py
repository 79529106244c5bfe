"""Response bodies of the stock feed and the ledger export."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, Field


class LevelChangeRead(BaseModel):
    warehouse: str = Field(examples=["BER"])
    warehouse_active: bool = Field(description="An inactive warehouse sells nothing")
    sku: str = Field(examples=["MUG-01"])
    on_hand: int = Field(examples=[10])
    reserved: int = Field(examples=[2])
    safety_stock: int = Field(examples=[1])
    available: int = Field(
        description="on_hand - reserved - safety_stock (never below 0)", examples=[7]
    )


class ChannelAvailabilityRead(BaseModel):
    sku: str = Field(examples=["MUG-01"])
    available: int = Field(
        description="Sellable on the channel: `available` summed over its warehouses",
        examples=[7],
    )


class StockChangesPage(BaseModel):
    levels: list[LevelChangeRead] = Field(
        description="The stock levels changed after the cursor, each once, in the order of "
        "their last change, with their figures as they are now"
    )
    channel: str | None = Field(default=None, description="The channel asked for, if any")
    channel_available: list[ChannelAvailabilityRead] | None = Field(
        default=None,
        description="With `channel`: its sellable quantity now of each SKU in `levels`",
    )
    cursor: str = Field(
        description="Pass it as `cursor` to read on (keep it: it is where you stand)",
        examples=["1207.88"],
    )
    has_more: bool = Field(description="More changes can be read at once")


class LedgerRowRead(BaseModel):
    seq: int = Field(description="Gap-free, from 1", examples=[1])
    chain_hash: str = Field(
        description="sha256 hex of the previous row's chain_hash followed by this row's "
        "canonical text",
        examples=["9f2c0c2b5d1e4a2f6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c"],
    )
    id: int = Field(description="The movement's id (`GET /v1/inventory/movements`)")
    warehouse_id: uuid.UUID
    warehouse: str = Field(examples=["BER"])
    sku: str = Field(examples=["MUG-01"])
    movement_type: str = Field(examples=["receipt"])
    quantity: int = Field(examples=[10])
    on_hand_after: int = Field(examples=[10])
    reason: str | None
    reference_type: str | None
    reference_id: str | None
    actor: str = Field(examples=["apikey:erp"])
    created_at: datetime


class LedgerPage(BaseModel):
    movements: list[LedgerRowRead]
    next_after_seq: int = Field(description="Pass it as `after_seq` to read on", examples=[500])
    has_more: bool


class LedgerVerificationRead(BaseModel):
    ok: bool = Field(description="Every movement checked matches its hash and link")
    from_seq: int
    checked: int = Field(description="Movements checked")
    last_seq: int = Field(description="The last seq that matched")
    last_hash: str = Field(description="Its chain_hash: compare it with the one you hold")
    mismatch_seq: int | None = Field(default=None, description="The first seq that fails")
    problem: str | None = Field(default=None, examples=["missing movement"])
