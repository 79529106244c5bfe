"""Inventory tables: warehouses, stock levels, the movement ledger, incoming supply, allocations."""

from __future__ import annotations

import uuid
from datetime import date, datetime

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
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.orm import Mapped, mapped_column

from oms.db import Base


class Warehouse(Base):
    __tablename__ = "warehouses"
    __table_args__ = (CheckConstraint("char_length(country) = 2", name="country_len"),)

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    country: Mapped[str] = mapped_column(String(2))
    postal_code: Mapped[str | None] = mapped_column(String(32))
    city: Mapped[str | None] = mapped_column(String(128))
    address_lines: Mapped[list[str]] = mapped_column(
        ARRAY(String(200)), server_default=text("'{}'")
    )
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    priority: Mapped[int] = mapped_column(Integer, default=100)
    ships_to: Mapped[list[str] | None] = mapped_column(ARRAY(String(2)))
    is_pickup_store: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    deactivated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class StockLevel(Base):
    """Current level of one SKU in one warehouse. available = on_hand - reserved - safety_stock."""

    __tablename__ = "stock_levels"
    __table_args__ = (
        CheckConstraint("on_hand >= 0", name="on_hand_non_negative"),
        CheckConstraint("reserved >= 0 AND reserved <= on_hand", name="reserved_within_on_hand"),
        CheckConstraint("safety_stock >= 0", name="safety_stock_non_negative"),
        Index("ix_stock_levels_sku", "sku"),
    )

    warehouse_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("warehouses.id"), primary_key=True)
    sku: Mapped[str] = mapped_column(String(64), primary_key=True)
    on_hand: Mapped[int] = mapped_column(Integer, default=0)
    reserved: Mapped[int] = mapped_column(Integer, default=0)
    safety_stock: Mapped[int] = mapped_column(Integer, default=0)
    low_stock_threshold: Mapped[int | None] = mapped_column(Integer)
    reorder_point: Mapped[int | None] = mapped_column(Integer)
    reorder_quantity: Mapped[int | None] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class InventoryMovement(Base):
    """The ledger: every change of on-hand stock. Per (warehouse, sku) sum(quantity) = on_hand."""

    __tablename__ = "inventory_movements"
    __table_args__ = (
        Index("ix_inventory_movements_wh_sku", "warehouse_id", "sku", "id"),
        Index("ix_inventory_movements_reference", "reference_type", "reference_id"),
        # the ledger's hash chain (migration 0018, oms.inventory.ledger_export)
        Index("ux_inventory_movements_seq", "seq", unique=True),
        Index(
            "ix_inventory_movements_unsealed",
            "txid",
            "id",
            postgresql_where=text("seq IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    warehouse_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("warehouses.id"))
    sku: Mapped[str] = mapped_column(String(64))
    movement_type: Mapped[str] = mapped_column(String(32))
    quantity: Mapped[int] = mapped_column(Integer)
    on_hand_after: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(Text)
    reference_type: Mapped[str | None] = mapped_column(String(32))
    reference_id: Mapped[str | None] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # the hash chain (migration 0018): the writing transaction's id, then, once sealed after
    # commit, a gap-free sequence and sha256(previous hash + canonical row)
    txid: Mapped[int | None] = mapped_column(
        BigInteger, server_default=text("(pg_current_xact_id()::text)::bigint")
    )
    seq: Mapped[int | None] = mapped_column(BigInteger)
    chain_hash: Mapped[str | None] = mapped_column(String(64))


class IncomingSupply(Base):
    """Expected receipts (purchase orders, transfers): shown beside availability."""

    __tablename__ = "incoming_supply"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        Index("ix_incoming_supply_sku", "sku", "expected_on"),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    warehouse_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("warehouses.id"))
    sku: Mapped[str] = mapped_column(String(64))
    quantity: Mapped[int] = mapped_column(Integer)
    expected_on: Mapped[date] = mapped_column(Date)
    reference: Mapped[str | None] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16), default="expected")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Allocation(Base):
    """Units of an order line reserved in one warehouse. Open allocations sum to `reserved`."""

    __tablename__ = "allocations"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("status IN ('open','consumed','released')", name="status_valid"),
        Index(
            "ix_allocations_open_wh_sku",
            "warehouse_id",
            "sku",
            postgresql_where=text("status = 'open'"),
        ),
        Index("ix_allocations_order_id", "order_id"),
        Index("ix_allocations_shipment_id", "shipment_id"),
        # reserved as of any moment, per SKU (migration 0018, oms.inventory.asof)
        Index("ix_allocations_sku_created", "sku", "created_at"),
        Index(  # reports: units shipped of a few SKUs in a placement window (migration 0009)
            "ix_allocations_consumed_reporting",
            "sku",
            "placed_at",
            postgresql_include=["quantity", "channel", "currency"],
            postgresql_where=text("status = 'consumed'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    order_line_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("order_lines.id", ondelete="CASCADE")
    )
    shipment_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    warehouse_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("warehouses.id"))
    sku: Mapped[str] = mapped_column(String(64))
    quantity: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="open")
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # copies of the order's (immutable) placement time, channel and currency, for the reports
    placed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    channel: Mapped[str] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(String(3))
