"""Stores as fulfilment points (#19): each store's pickup terms, the pickups waiting at a store
(click and collect), transfers of stock between locations, and till sales (point of sale)."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column

from oms.db import Base


class StorePolicy(Base):
    """A store's click-and-collect terms; a store without a row uses the settings' defaults."""

    __tablename__ = "store_policies"
    __table_args__ = (
        CheckConstraint("pickup_window_hours > 0", name="window_positive"),
        CheckConstraint("uncollected_action IN ('cancel','refund')", name="action_valid"),
        CheckConstraint("max_code_attempts BETWEEN 1 AND 20", name="attempts_range"),
    )

    warehouse_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("warehouses.id"), primary_key=True)
    pickup_window_hours: Mapped[int] = mapped_column(Integer)
    uncollected_action: Mapped[str] = mapped_column(String(16))
    max_code_attempts: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Pickup(Base):
    """A click-and-collect shipment made ready at its store: the collection code, the wrong
    attempts, the deadline, and how it ended (collected, uncollected, cancelled)."""

    __tablename__ = "pickups"
    __table_args__ = (
        CheckConstraint(
            "status IN ('ready','collected','uncollected','cancelled')", name="status_valid"
        ),
        CheckConstraint("attempts >= 0", name="attempts_non_negative"),
        Index(  # the worker's sweep: ready pickups by deadline
            "ix_pickups_ready_collect_by",
            "collect_by",
            postgresql_where=text("status = 'ready'"),
        ),
        Index("ix_pickups_order_id", "order_id"),
    )

    shipment_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    order_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    warehouse_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("warehouses.id"))
    code: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, server_default="0")
    max_attempts: Mapped[int] = mapped_column(Integer)
    uncollected_action: Mapped[str] = mapped_column(String(16))
    ready_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    collect_by: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_by: Mapped[str | None] = mapped_column(String(128))


class Transfer(Base):
    """Stock moving from one location to another: draft → shipped → received, or cancelled."""

    __tablename__ = "transfers"
    __table_args__ = (
        CheckConstraint(
            "status IN ('draft','shipped','received','cancelled')", name="status_valid"
        ),
        CheckConstraint("from_warehouse_id <> to_warehouse_id", name="two_locations"),
        Index("ix_transfers_from_status", "from_warehouse_id", "status"),
        Index("ix_transfers_to_status", "to_warehouse_id", "status"),
        Index(  # a pickup shipment's transfers to fulfil (the ready gate, cancellation)
            "ix_transfers_shipment_id",
            "shipment_id",
            postgresql_where=text("shipment_id IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    from_warehouse_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("warehouses.id"))
    to_warehouse_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("warehouses.id"))
    status: Mapped[str] = mapped_column(String(16))
    expected_on: Mapped[date | None] = mapped_column(Date)
    reference: Mapped[str | None] = mapped_column(String(128))
    note: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    shipped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    received_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    order_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    """A transfer to fulfil: the pickup order (and its shipment at the destination) whose
    short units it carries; null for a transfer between locations on its own."""
    shipment_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    routing: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    """Why this source was chosen (the router's explanation), for a transfer to fulfil."""


class TransferLine(Base):
    """One SKU of a transfer: shipped, received so far, and the discrepancy found at closing
    (``short``: never arrived; ``over``: more arrived than shipped)."""

    __tablename__ = "transfer_lines"
    __table_args__ = (
        UniqueConstraint("transfer_id", "sku"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("received >= 0 AND short >= 0 AND over >= 0", name="counts_non_negative"),
        CheckConstraint("received - over + short <= quantity", name="within_quantity"),
        CheckConstraint("for_order BETWEEN 0 AND quantity", name="for_order_within_quantity"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    transfer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("transfers.id", ondelete="CASCADE"))
    line_no: Mapped[int] = mapped_column(Integer)
    sku: Mapped[str] = mapped_column(String(64))
    quantity: Mapped[int] = mapped_column(Integer)
    received: Mapped[int] = mapped_column(Integer, server_default="0")
    short: Mapped[int] = mapped_column(Integer, server_default="0")
    over: Mapped[int] = mapped_column(Integer, server_default="0")
    incoming_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    """The expected receipt at the destination (``incoming_supply``) while in transit."""
    for_order: Mapped[int] = mapped_column(Integer, server_default="0")
    """Units of the line the order of a transfer to fulfil still waits for: reserved for it at
    the source until shipped, then in transit, then reserved at the destination on receipt."""


class TillSale(Base):
    """A sale at a store's till, once per (store, receipt id): the order it became, and the
    units the store's stock could not cover (a stock discrepancy to count)."""

    __tablename__ = "till_sales"
    __table_args__ = (
        UniqueConstraint("warehouse_id", "receipt_id"),
        Index(
            "ix_till_sales_discrepancy",
            "warehouse_id",
            "sold_at",
            postgresql_where=text("stock_discrepancy"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    warehouse_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("warehouses.id"))
    receipt_id: Mapped[str] = mapped_column(String(64))
    order_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    request_hash: Mapped[str] = mapped_column(String(64))
    stock_discrepancy: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    uncovered: Mapped[list[dict[str, Any]]] = mapped_column(
        JSONB, server_default=text("'[]'::jsonb")
    )
    """Per SKU, the units sold that the store's stock did not hold."""
    offline: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    sold_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
