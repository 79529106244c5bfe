"""Purchasing tables: suppliers, purchase orders with their lines and receipts, reorder
policies."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Identity,
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

PO_STATUSES = "'draft','sent','partially_received','received','cancelled'"


class Supplier(Base):
    __tablename__ = "suppliers"
    __table_args__ = (
        CheckConstraint("lead_time_days >= 0", name="lead_time_non_negative"),
        CheckConstraint("minimum_order_quantity >= 1", name="minimum_order_positive"),
        CheckConstraint("pack_size >= 1", name="pack_size_positive"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    lead_time_days: Mapped[int] = mapped_column(Integer)
    minimum_order_quantity: Mapped[int] = mapped_column(Integer)
    pack_size: Mapped[int] = mapped_column(Integer)
    active: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PurchaseOrder(Base):
    __tablename__ = "purchase_orders"
    __table_args__ = (
        CheckConstraint(f"status IN ({PO_STATUSES})", name="status_valid"),
        CheckConstraint(
            "status IN ('draft', 'cancelled') OR expected_on IS NOT NULL", name="sent_has_date"
        ),
        Index("ix_purchase_orders_status_created_at", "status", "created_at"),
        Index(  # one open automatic draft per (supplier, warehouse, SKU)
            "uq_purchase_orders_auto_draft",
            "auto_key",
            unique=True,
            postgresql_where=text("status = 'draft' AND auto_key IS NOT NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    number: Mapped[int] = mapped_column(BigInteger, Identity(), unique=True)
    supplier_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("suppliers.id"))
    warehouse_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("warehouses.id"))
    status: Mapped[str] = mapped_column(String(24))
    expected_on: Mapped[date | None] = mapped_column(Date)
    reference: Mapped[str | None] = mapped_column(String(128))
    notes: Mapped[str | None] = mapped_column(Text)
    auto_key: Mapped[str | None] = mapped_column(String(200))
    """Set on drafts the reorder job created: supplier:warehouse:sku (one open draft each)."""
    explanation: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    """The reorder suggestion an automatic draft came from, with every input."""
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class PurchaseOrderLine(Base):
    __tablename__ = "purchase_order_lines"
    __table_args__ = (
        UniqueConstraint("purchase_order_id", "line_no"),
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("received >= 0 AND received <= quantity", name="received_within"),
        Index("ix_purchase_order_lines_sku", "sku"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    purchase_order_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("purchase_orders.id", ondelete="CASCADE")
    )
    line_no: Mapped[int] = mapped_column(Integer)
    sku: Mapped[str] = mapped_column(String(64))
    quantity: Mapped[int] = mapped_column(Integer)
    received: Mapped[int] = mapped_column(Integer, server_default="0")
    incoming_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    """The expected receipt (``incoming_supply``) of the units still to come, once sent."""


class PurchaseOrderReceipt(Base):
    """One receipt against a purchase order, unique by the sender's reference (idempotent)."""

    __tablename__ = "purchase_order_receipts"
    __table_args__ = (UniqueConstraint("purchase_order_id", "reference"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    purchase_order_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("purchase_orders.id", ondelete="CASCADE")
    )
    reference: Mapped[str] = mapped_column(String(64))
    lines: Mapped[list[dict[str, Any]]] = mapped_column(JSONB)
    actor: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ReorderPolicy(Base):
    """How one SKU of a warehouse (``sku``), or every SKU of it (``sku`` null), is reordered:
    from which supplier, with what safety factor and demand window, and whether crossing the
    reorder point creates a draft purchase order by itself."""

    __tablename__ = "reorder_policies"
    __table_args__ = (
        CheckConstraint("demand_window_days BETWEEN 7 AND 365", name="window_range"),
        CheckConstraint("safety_factor >= 0 AND safety_factor <= 5", name="safety_factor_range"),
        CheckConstraint("review_days >= 0", name="review_days_non_negative"),
        Index(
            "uq_reorder_policies_sku",
            "warehouse_id",
            "sku",
            unique=True,
            postgresql_where=text("sku IS NOT NULL"),
        ),
        Index(
            "uq_reorder_policies_warehouse",
            "warehouse_id",
            unique=True,
            postgresql_where=text("sku IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    warehouse_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("warehouses.id"))
    sku: Mapped[str | None] = mapped_column(String(64))
    supplier_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("suppliers.id"))
    auto_draft: Mapped[bool] = mapped_column(Boolean)
    demand_window_days: Mapped[int] = mapped_column(Integer)
    safety_factor: Mapped[float] = mapped_column(Float)
    review_days: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
