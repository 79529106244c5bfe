"""Shipment exceptions (migration 0015): a warehouse's report of units it could not ship."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import DateTime, ForeignKey, Index, String, Text
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from oms.db import Base

EXCEPTION_REASONS = ("short_pick", "damaged", "not_found")


class ShipmentException(Base):
    """Units of a shipment its warehouse rejected, and what became of them: re-planned
    elsewhere (``replan``: warehouses, backorders, the router's explanation) or backordered."""

    __tablename__ = "shipment_exceptions"
    __table_args__ = (
        Index("ix_shipment_exceptions_order_id_created_at", "order_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    shipment_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("shipments.id", ondelete="CASCADE"))
    warehouse_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    warehouse_code: Mapped[str] = mapped_column(String(32))
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    replan: Mapped[dict[str, Any]] = mapped_column(JSONB)
    blocked_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    note: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(128))
    request_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
