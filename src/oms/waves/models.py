"""Wave policies per channel, waves, and each order's outcome in its wave (migration 0021)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from oms.db import Base

TRIGGERS = ("manual", "schedule", "size", "cutoff")
OUTCOMES = ("moved", "kept", "skipped")


class WavePolicy(Base):
    """A channel's waves: while ``enabled``, its orders placed since ``enabled_at`` wait out of
    the pick queue until a wave releases them (express orders too unless ``express_skips``).
    A wave runs when ``interval_s`` passed since the last one, when ``max_pool`` orders wait, or
    at a daily cut-off (``cutoffs``, "HH:MM" UTC), whichever comes first."""

    __tablename__ = "wave_policies"
    __table_args__ = (
        CheckConstraint("interval_s IS NULL OR interval_s >= 1", name="interval_min"),
        CheckConstraint("max_pool IS NULL OR max_pool >= 1", name="max_pool_min"),
        CheckConstraint("time_limit_s > 0 AND time_limit_s <= 300", name="time_limit_range"),
    )

    channel: Mapped[str] = mapped_column(String(64), primary_key=True)
    enabled: Mapped[bool] = mapped_column(Boolean)
    interval_s: Mapped[int | None] = mapped_column(Integer)
    max_pool: Mapped[int | None] = mapped_column(Integer)
    cutoffs: Mapped[list[str] | None] = mapped_column(ARRAY(String(5)))
    express_skips: Mapped[bool] = mapped_column(Boolean)
    time_limit_s: Mapped[float] = mapped_column(Float)
    enabled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Wave(Base):
    """One wave: its pool, the solver's answer and what moved."""

    __tablename__ = "waves"
    __table_args__ = (
        CheckConstraint(
            "trigger IN (" + ",".join(f"'{t}'" for t in TRIGGERS) + ")", name="trigger_valid"
        ),
        Index("ix_waves_channel_started_at", "channel", "started_at"),
        Index("ix_waves_started_at", "started_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    channel: Mapped[str] = mapped_column(String(64))
    trigger: Mapped[str] = mapped_column(String(16))
    solver_status: Mapped[str] = mapped_column(String(64))
    proven: Mapped[bool] = mapped_column(Boolean)
    applied: Mapped[bool] = mapped_column(Boolean)
    pool_size: Mapped[int] = mapped_column(Integer)
    moved: Mapped[int] = mapped_column(Integer)
    skipped: Mapped[int] = mapped_column(Integer)
    objective_before: Mapped[float] = mapped_column(Float)
    objective_after: Mapped[float] = mapped_column(Float)
    solve_seconds: Mapped[float] = mapped_column(Float)
    notes: Mapped[list[str]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    requested_by: Mapped[str | None] = mapped_column(String(128))
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class WaveOrder(Base):
    """An order's release by a wave (one per order): moved to the wave's plan, kept as it was,
    or skipped (it changed while the wave was solving). ``plan``: before, after and saved."""

    __tablename__ = "wave_orders"
    __table_args__ = (
        CheckConstraint(
            "outcome IN (" + ",".join(f"'{o}'" for o in OUTCOMES) + ")", name="outcome_valid"
        ),
        Index("ix_wave_orders_wave_id", "wave_id"),
    )

    order_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("orders.id", ondelete="CASCADE"), primary_key=True
    )
    wave_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("waves.id", ondelete="CASCADE"))
    outcome: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    plan: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    released_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
