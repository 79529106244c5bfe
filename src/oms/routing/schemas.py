"""Routing policy bodies."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

Code = Annotated[str, Field(min_length=1, max_length=32)]


class RoutingPolicyWrite(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_shipments: int | None = Field(
        default=None, ge=1, le=50, description="Most warehouses one order may ship from"
    )
    allow_line_split: bool = Field(
        default=True, description="May one line's units come from several warehouses"
    )
    allow_backorder: bool = Field(
        default=False,
        description="Place what is available and keep the rest as backorder, instead of 409",
    )
    warehouse_codes: list[Code] | None = Field(
        default=None, max_length=500, description="Only these warehouses serve the channel"
    )
    distance_band_km: float = Field(default=400.0, gt=0, le=20_000)
    exclude_pickup_stores: bool = Field(
        default=True, description="Ship only from warehouses, not from pickup stores"
    )


class RoutingPolicyRead(RoutingPolicyWrite):
    channel: str
    updated_at: datetime

    model_config = ConfigDict(from_attributes=True)
