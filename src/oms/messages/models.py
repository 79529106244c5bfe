"""Message tables: templates (overrides of the packaged defaults), rules per sales channel,
provider settings, opt-outs, one message per (event, recipient, channel) with its attempts, and
the producer's bookkeeping over the outbox (a cursor plus the events produced past it)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from oms.db import Base

CHANNELS = ("email", "sms")
MESSAGE_STATUSES = ("pending", "sending", "failed", "sent", "dead", "skipped")
OPEN_STATUSES = ("pending", "sending", "failed")
_CHANNEL_CHECK = "channel IN ('email','sms')"


class MessageTemplate(Base):
    """A template saved through the API; it replaces the packaged default of the same
    (event type, channel, language)."""

    __tablename__ = "message_templates"
    __table_args__ = (
        UniqueConstraint("event_type", "channel", "language"),
        CheckConstraint(_CHANNEL_CHECK, name="channel_valid"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    event_type: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(8))
    language: Mapped[str] = mapped_column(String(35))
    subject: Mapped[str | None] = mapped_column(Text)
    body_text: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str | None] = mapped_column(Text)
    updated_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class MessageRule(Base):
    """Which events of a sales channel send which message (``events``: type -> {email, sms}),
    and the language used when an order names none."""

    __tablename__ = "message_rules"

    sales_channel: Mapped[str] = mapped_column(String(64), primary_key=True)
    default_language: Mapped[str] = mapped_column(String(35))
    events: Mapped[dict[str, Any]] = mapped_column(JSONB)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class MessageProvider(Base):
    """How one channel sends: ``settings`` (host, port, sender, URL...) and its secret (SMTP
    password, provider token), which the API accepts but never returns."""

    __tablename__ = "message_providers"
    __table_args__ = (CheckConstraint(_CHANNEL_CHECK, name="channel_valid"),)

    channel: Mapped[str] = mapped_column(String(8), primary_key=True)
    settings: Mapped[dict[str, Any]] = mapped_column(JSONB)
    secret: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class MessageOptOut(Base):
    """A customer address (email or phone) that receives no messages on a channel."""

    __tablename__ = "message_opt_outs"
    __table_args__ = (CheckConstraint(_CHANNEL_CHECK, name="channel_valid"),)

    channel: Mapped[str] = mapped_column(String(8), primary_key=True)
    address: Mapped[str] = mapped_column(String(320), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Message(Base):
    """One message for one (event, recipient, channel), never two: the unique key makes
    producing it again a no-op. While a worker sends it (``sending``), ``next_attempt_at`` is
    its lease; the ``idempotency_key`` is sent as the email's Message-ID and as the SMS
    provider's Idempotency-Key on every attempt."""

    __tablename__ = "messages"
    __table_args__ = (
        UniqueConstraint("event_id", "recipient", "channel"),
        CheckConstraint(_CHANNEL_CHECK, name="channel_valid"),
        CheckConstraint(
            "status IN (" + ",".join(f"'{s}'" for s in MESSAGE_STATUSES) + ")",
            name="status_valid",
        ),
        Index(
            "ix_messages_due",
            "next_attempt_at",
            "id",
            postgresql_where=text("status IN ('pending','sending','failed')"),
        ),
        Index("ix_messages_order_id_outbox_id", "order_id", "outbox_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    outbox_id: Mapped[int] = mapped_column(ForeignKey("outbox_events.id", ondelete="CASCADE"))
    event_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    event_type: Mapped[str] = mapped_column(String(64))
    order_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    channel: Mapped[str] = mapped_column(String(8))
    recipient: Mapped[str] = mapped_column(String(320))
    language: Mapped[str] = mapped_column(String(35))
    subject: Mapped[str | None] = mapped_column(Text)
    body_text: Mapped[str] = mapped_column(Text)
    body_html: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    lease_token: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    idempotency_key: Mapped[str] = mapped_column(String(128))
    provider_message_id: Mapped[str | None] = mapped_column(String(256))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class MessageAttempt(Base):
    """One send attempt (or a lease that expired before its result was recorded)."""

    __tablename__ = "message_attempts"
    __table_args__ = (Index("ix_message_attempts_message_id_id", "message_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    message_id: Mapped[int] = mapped_column(ForeignKey("messages.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(Integer)
    outcome: Mapped[str] = mapped_column(String(16))
    provider_message_id: Mapped[str | None] = mapped_column(String(256))
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    worker: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class MessageRelayState(Base):
    """A single row: every outbox event with ``id <= outbox_cursor`` has been looked at."""

    __tablename__ = "message_relay_state"
    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True)
    outbox_cursor: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class ProducedEvent(Base):
    """Outbox events past the cursor already turned into messages (the cursor waits at a gap:
    an id whose transaction may still commit). Rows at or below the cursor are deleted."""

    __tablename__ = "message_produced"

    outbox_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    produced_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now()
    )
