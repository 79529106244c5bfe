"""(warehouse, SKU) blocks (migration 0015): stock routing does not count for a while."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import DateTime, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from oms.db import Base


class StockBlock(Base):
    """The stock of ``sku`` in a warehouse does not count for routing until ``blocked_until``
    (its shelf was found empty or damaged by a shipment exception, ``reference_id``)."""

    __tablename__ = "stock_blocks"

    warehouse_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("warehouses.id"), primary_key=True)
    sku: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)
    blocked_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    reason: Mapped[str] = mapped_column(String(32))
    reference_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
