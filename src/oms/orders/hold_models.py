"""Holds on orders, hold rules and expiry policies of unpaid orders (migration 0013)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import (
    CheckConstraint,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from oms.db import Base

HOLD_REASONS = ("fraud_review", "awaiting_payment", "address_check", "customer_request", "other")


class OrderHold(Base):
    """A hold on an order: while it stands (``released_at`` is null) the order keeps its
    reservation but is not picked, packed or shipped. It can still be cancelled."""

    __tablename__ = "order_holds"
    __table_args__ = (
        CheckConstraint(
            "reason IN (" + ",".join(f"'{r}'" for r in HOLD_REASONS) + ")", name="reason"
        ),
        Index(
            "ix_order_holds_active",
            "order_id",
            postgresql_where=text("released_at IS NULL"),
        ),
        Index("ix_order_holds_order_id_placed_at", "order_id", "placed_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    reason: Mapped[str] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(Text)
    rule: Mapped[str | None] = mapped_column(String(64))
    """The hold rule that placed it (its name), or null when placed by hand."""
    placed_by: Mapped[str] = mapped_column(String(128))
    placed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    released_by: Mapped[str | None] = mapped_column(String(128))
    released_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    release_note: Mapped[str | None] = mapped_column(Text)


class HoldRule(Base):
    """A rule of a channel that puts a new order on hold when every condition it sets matches
    (at placement and at connector intake). Null conditions are not checked."""

    __tablename__ = "hold_rules"
    __table_args__ = (
        UniqueConstraint("channel", "name"),
        CheckConstraint(
            "reason IN (" + ",".join(f"'{r}'" for r in HOLD_REASONS) + ")", name="reason"
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    channel: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(64))
    reason: Mapped[str] = mapped_column(String(32))
    note: Mapped[str | None] = mapped_column(Text)
    payment_methods: Mapped[list[str] | None] = mapped_column(JSONB)
    min_totals: Mapped[dict[str, int] | None] = mapped_column(JSONB)
    """Currency -> total (minor units) at or above which the rule matches."""
    countries: Mapped[list[str] | None] = mapped_column(JSONB)
    risk_levels: Mapped[list[str] | None] = mapped_column(JSONB)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ExpiryPolicy(Base):
    """How long an unpaid order of a channel and payment method may wait before the worker
    cancels it as expired (``flows.expiry``)."""

    __tablename__ = "expiry_policies"
    __table_args__ = (CheckConstraint("after_s > 0", name="after_positive"),)

    channel: Mapped[str] = mapped_column(String(64), primary_key=True)
    payment_method: Mapped[str] = mapped_column(String(32), primary_key=True)
    after_s: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
