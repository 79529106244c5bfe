"""Per-channel routing policies."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, DateTime, Float, Integer, String, func
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import Mapped, mapped_column

from oms.db import Base


class RoutingPolicyRow(Base):
    __tablename__ = "routing_policies"
    __table_args__ = (
        CheckConstraint("max_shipments IS NULL OR max_shipments >= 1", name="max_shipments_min"),
        CheckConstraint("distance_band_km > 0", name="band_positive"),
    )

    channel: Mapped[str] = mapped_column(String(64), primary_key=True)
    max_shipments: Mapped[int | None] = mapped_column(Integer)
    allow_line_split: Mapped[bool] = mapped_column(Boolean, default=True)
    allow_backorder: Mapped[bool] = mapped_column(Boolean, default=False)
    warehouse_codes: Mapped[list[str] | None] = mapped_column(ARRAY(String(32)))
    distance_band_km: Mapped[float] = mapped_column(Float, default=400.0)
    exclude_pickup_stores: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
