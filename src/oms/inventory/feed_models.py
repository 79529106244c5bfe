"""The stock feed's tables (migration 0018): the change journal, the figures last published per
(channel, SKU), and the worker's place in the journal."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Identity, Index, Integer, String, text
from sqlalchemy.dialects.postgresql import UUID
from sqlalchemy.orm import Mapped, mapped_column

from oms.db import Base

CURRENT_TXID = text("(pg_current_xact_id()::text)::bigint")
"""The writing transaction's id (64-bit, epoch included): rows are handed out (change feed) or
sealed (ledger chain) only once it is older than every transaction still in flight."""


class StockChange(Base):
    """One stock level changed (written by the ``oms_stock_changed`` trigger on stock_levels,
    and by the warehouse and routing-policy triggers): the journal the change feed and the
    availability events read. It names the level only; figures are read at delivery."""

    __tablename__ = "stock_changes"
    __table_args__ = (Index("ix_stock_changes_txid_id", "txid", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    txid: Mapped[int] = mapped_column(BigInteger, server_default=CURRENT_TXID)
    warehouse_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    sku: Mapped[str] = mapped_column(String(64))


class ChannelStock(Base):
    """What ``inventory.availability_changed`` last told a channel about a SKU, and whether a
    newer figure waits for the coalescing interval (``pending_since``)."""

    __tablename__ = "channel_stock"
    __table_args__ = (
        Index(
            "ix_channel_stock_pending",
            "pending_since",
            postgresql_where=text("pending_since IS NOT NULL"),
        ),
    )

    channel: Mapped[str] = mapped_column(String(64), primary_key=True)
    sku: Mapped[str] = mapped_column(String(64), primary_key=True)
    published: Mapped[int | None] = mapped_column(Integer)
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    pending_since: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class StockFeedCursor(Base):
    """Where a reader of the journal (the worker's availability events) stands: the last
    (txid, id) it has taken."""

    __tablename__ = "stock_feed_cursors"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    txid: Mapped[int] = mapped_column(BigInteger)
    change_id: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
