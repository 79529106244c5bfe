"""Promise tables: each warehouse's calendar and the transit-time table."""

from __future__ import annotations

import uuid
from datetime import date, datetime, time

from sqlalchemy import CheckConstraint, Date, DateTime, ForeignKey, Integer, SmallInteger, String
from sqlalchemy import Time as SqlTime
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.orm import Mapped, mapped_column

from oms.db import Base


class WarehouseCalendar(Base):
    """When a warehouse works: its zone, daily cut-off, handling days, working days, holidays."""

    __tablename__ = "warehouse_calendars"
    __table_args__ = (
        CheckConstraint("handling_days >= 0 AND handling_days <= 60", name="handling_days_range"),
        CheckConstraint(
            "cardinality(working_days) >= 1 AND working_days <@ ARRAY[1,2,3,4,5,6,7]::smallint[]",
            name="working_days_valid",
        ),
    )

    warehouse_id: Mapped[uuid.UUID] = mapped_column(
        UUID(as_uuid=True), ForeignKey("warehouses.id", ondelete="CASCADE"), primary_key=True
    )
    timezone: Mapped[str] = mapped_column(String(64))
    cutoff: Mapped[time] = mapped_column(SqlTime(timezone=False))
    handling_days: Mapped[int] = mapped_column(Integer)
    working_days: Mapped[list[int]] = mapped_column(ARRAY(SmallInteger))
    holidays: Mapped[list[date]] = mapped_column(ARRAY(Date))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TransitTimeRow(Base):
    """Carrier days to a destination country (``*``: any other) from a distance band up."""

    __tablename__ = "transit_times"
    __table_args__ = (
        CheckConstraint("country = '*' OR country ~ '^[A-Z]{2}$'", name="country_valid"),
        CheckConstraint("from_band >= 0", name="from_band_non_negative"),
        CheckConstraint("min_days >= 0 AND min_days <= max_days", name="days_ordered"),
    )

    country: Mapped[str] = mapped_column(String(2), primary_key=True)
    from_band: Mapped[int] = mapped_column(Integer, primary_key=True)
    min_days: Mapped[int] = mapped_column(Integer)
    max_days: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
