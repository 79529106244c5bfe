"""Inbound webhook tables: connectors, the inbox (every accepted delivery, raw), payment facts."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from oms.db import Base

FORMATS = ("oms", "shopify", "woocommerce")
EVENT_ID_MAX = 255
"""The longest delivery id stored (and deduplicated on); a longer one is refused, never cut."""
TOPIC_MAX = 128
"""The stored topic is cut to this length (a topic this long is one oms ignores anyway)."""
INBOX_STATUSES = ("received", "processed", "pending", "failed", "ignored")


class Connector(Base):
    """A sender of inbound webhooks (a marketplace connector or a payment provider)."""

    __tablename__ = "webhook_connectors"
    __table_args__ = (
        CheckConstraint(
            "format IN (" + ",".join(f"'{f}'" for f in FORMATS) + ")", name="format_valid"
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    name: Mapped[str] = mapped_column(String(48), unique=True)
    channel: Mapped[str] = mapped_column(String(64))
    format: Mapped[str] = mapped_column(String(16))
    secret: Mapped[str] = mapped_column(String(256))
    enabled: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    description: Mapped[str | None] = mapped_column(String(200))
    sku_map: Mapped[dict[str, str]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    """``"variant:<id>"`` / ``"product:<id>"`` -> oms SKU, for platform lines (migration 0011)."""
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class InboxMessage(Base):
    """One accepted (signature-verified) delivery, stored raw before it is processed."""

    __tablename__ = "webhook_inbox"
    __table_args__ = (
        UniqueConstraint("connector_name", "event_id"),
        CheckConstraint(
            "status IN (" + ",".join(f"'{s}'" for s in INBOX_STATUSES) + ")", name="status_valid"
        ),
        Index("ix_webhook_inbox_status_id", "status", "id"),
        Index(
            "ix_webhook_inbox_pending_target",
            "channel",
            "external_reference",
            postgresql_where=text("status = 'pending'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    connector_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("webhook_connectors.id", ondelete="SET NULL")
    )
    connector_name: Mapped[str] = mapped_column(String(48))
    event_id: Mapped[str] = mapped_column(String(EVENT_ID_MAX))
    topic: Mapped[str | None] = mapped_column(String(TOPIC_MAX))
    type: Mapped[str | None] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16))
    channel: Mapped[str | None] = mapped_column(String(64))
    external_reference: Mapped[str | None] = mapped_column(String(128))
    order_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("orders.id", ondelete="SET NULL"), index=True
    )
    headers: Mapped[dict[str, str]] = mapped_column(JSONB)
    body: Mapped[bytes] = mapped_column(LargeBinary)
    error_code: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    received_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
    processed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
