"""Order tables: orders, order_lines, order_events (history), idempotency_keys."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
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
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB, UUID
from sqlalchemy.orm import Mapped, mapped_column, relationship

from oms.db import Base

_STATUSES = (
    "'placed','paid','picked','packed','shipped','delivered','returned','cancelled',"
    "'ready_for_pickup'"  # click and collect (migration 0020)
)


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint(f"status IN ({_STATUSES})", name="status_valid"),
        CheckConstraint("total_amount >= 0 AND shipping_fee >= 0", name="amounts_non_negative"),
        CheckConstraint("char_length(currency) = 3", name="currency_len"),
        CheckConstraint(  # known by id, email or phone, or explicitly anonymous (0011)
            "customer_anonymous = (customer_id IS NULL AND customer_email IS NULL "
            "AND customer_phone IS NULL)",
            name="customer_known",
        ),
        Index(
            "uq_orders_channel_external_reference",
            "channel",
            "external_reference",
            unique=True,
            postgresql_where=text("external_reference IS NOT NULL"),
        ),
        Index("ix_orders_created_at_id", "created_at", "id"),
        Index("ix_orders_status_created_at", "status", "created_at"),
        Index("ix_orders_channel_created_at", "channel", "created_at"),
        Index("ix_orders_customer_id_created_at", "customer_id", "created_at"),
        Index("ix_orders_customer_email_created_at", "customer_email", "created_at"),
        Index(  # reports: index-only scans of a placement-time window (migration 0005)
            "ix_orders_reporting",
            "created_at",
            postgresql_include=[
                "id",
                "status",
                "currency",
                "channel",
                "total_amount",
                "ship_country",
                "customer_id",
                "customer_email",
                "paid_at",
                "shipped_at",
                "delivered_at",
            ],
        ),
        Index(  # reports: index-only scans of a window for the fulfilment KPIs (migration 0008)
            "ix_orders_fulfilment",
            "created_at",
            postgresql_include=[
                "units_ordered",
                "units_shipped",
                "live_shipments",
                "units_returned",
                "paid_after_s",
                "shipped_after_s",
                "delivered_after_s",
                "status",
                "channel",
                "currency",
            ],
        ),
        Index(  # reports: ~1 order in 32, the fulfilment percentiles' sample (migration 0008)
            "ix_orders_duration_sample",
            "created_at",
            postgresql_include=[
                "status",
                "channel",
                "currency",
                "paid_after_s",
                "shipped_after_s",
                "delivered_after_s",
            ],
            postgresql_where=text("(uuid_hash(id) & 31) = 0"),
        ),
        Index(  # reports: the window's orders that are cancelled or not shipped (migration 0007)
            "ix_orders_unshipped_or_cancelled",
            "created_at",
            postgresql_include=["id", "status", "channel", "currency", "shipped_at"],
            postgresql_where=text("shipped_at IS NULL OR status = 'cancelled'"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    number: Mapped[int] = mapped_column(BigInteger, Identity(), unique=True)
    status: Mapped[str] = mapped_column(String(16))
    version: Mapped[int] = mapped_column(Integer, default=1)
    channel: Mapped[str] = mapped_column(String(64))
    external_reference: Mapped[str | None] = mapped_column(String(128))
    customer_id: Mapped[str | None] = mapped_column(String(128))
    customer_email: Mapped[str | None] = mapped_column(String(320))
    customer_phone: Mapped[str | None] = mapped_column(String(32))
    customer_anonymous: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    currency: Mapped[str] = mapped_column(String(3))
    payment_method: Mapped[str] = mapped_column(String(32))
    priority: Mapped[str] = mapped_column(String(16))
    ship_name: Mapped[str | None] = mapped_column(String(200))
    ship_lines: Mapped[list[str]] = mapped_column(JSONB)
    ship_city: Mapped[str] = mapped_column(String(128))
    ship_postal_code: Mapped[str | None] = mapped_column(String(32))
    ship_region: Mapped[str | None] = mapped_column(String(128))
    ship_country: Mapped[str] = mapped_column(String(2))
    ship_latitude: Mapped[float | None] = mapped_column(Float)
    ship_longitude: Mapped[float | None] = mapped_column(Float)
    subtotal_amount: Mapped[int] = mapped_column(BigInteger)
    tax_amount: Mapped[int] = mapped_column(BigInteger)
    shipping_fee: Mapped[int] = mapped_column(BigInteger)
    total_amount: Mapped[int] = mapped_column(BigInteger)
    carrier: Mapped[str | None] = mapped_column(String(64))
    tracking_number: Mapped[str | None] = mapped_column(String(128))
    notes: Mapped[str | None] = mapped_column(Text)
    # the customer's language for messages and the tracking page, e.g. 'it' or 'en-GB' (0023)
    locale: Mapped[str | None] = mapped_column(String(35))
    attributes: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    fulfillment: Mapped[str] = mapped_column(String(16), server_default="ship")
    pickup_warehouse_code: Mapped[str | None] = mapped_column(String(32))
    routing: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    # the sales channel's modification time of the latest update applied from a connector
    # (migration 0017): an older update, or an edit that update already contained, is skipped
    channel_updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    paid_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    shipped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # fulfilment counts kept for the reports (migration 0008): the sum of the lines' quantities
    # (set at placement), the units of consumed allocations (raised when a shipment ships), the
    # shipments that are not cancelled (set at placement, re-routing and cancellation) and the
    # units on returns that are not rejected (raised by a return, lowered by its rejection)
    units_ordered: Mapped[int] = mapped_column(Integer, server_default="0")
    units_shipped: Mapped[int] = mapped_column(Integer, server_default="0")
    live_shipments: Mapped[int] = mapped_column(Integer, server_default="0")
    units_returned: Mapped[int] = mapped_column(Integer, server_default="0")
    # seconds from placement to payment, shipping, delivery: computed by Postgres (migration 0008)
    paid_after_s: Mapped[float | None] = mapped_column(
        Float, Computed("date_part('epoch', paid_at - created_at)", persisted=True)
    )
    shipped_after_s: Mapped[float | None] = mapped_column(
        Float, Computed("date_part('epoch', shipped_at - created_at)", persisted=True)
    )
    delivered_after_s: Mapped[float | None] = mapped_column(
        Float, Computed("date_part('epoch', delivered_at - created_at)", persisted=True)
    )

    lines: Mapped[list[OrderLine]] = relationship(
        back_populates="order", order_by="OrderLine.line_no", lazy="raise"
    )


class OrderLine(Base):
    __tablename__ = "order_lines"
    __table_args__ = (
        UniqueConstraint("order_id", "line_no"),
        Index(  # reports: index-only scans of the lines of a placement window (migration 0007)
            "ix_order_lines_reporting",
            "placed_at",
            postgresql_include=[
                "currency",
                "channel",
                "sku",
                "quantity",
                "total_amount",
                "order_id",
            ],
        ),
        CheckConstraint("quantity >= 0", name="quantity_non_negative"),  # 0: cancelled (0014)
        CheckConstraint("cancelled >= 0", name="cancelled_non_negative"),
        CheckConstraint("unit_price >= 0", name="unit_price_non_negative"),
        CheckConstraint("tax_rate_bps >= 0", name="tax_rate_non_negative"),
        Index(  # the backordered lines of a SKU, filled as its stock arrives (migration 0016)
            "ix_order_lines_backordered_sku",
            "sku",
            postgresql_where=text("backordered > 0"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    order_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("orders.id", ondelete="CASCADE"), index=True
    )
    line_no: Mapped[int] = mapped_column(Integer)
    sku: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[int] = mapped_column(BigInteger)
    tax_rate_bps: Mapped[int] = mapped_column(Integer)
    backordered: Mapped[int] = mapped_column(Integer, server_default="0")
    cancelled: Mapped[int] = mapped_column(Integer, server_default="0")
    # the sales channel's id of this line (Shopify line item, WooCommerce line item), set at
    # intake (migration 0017): what the platform's edits name (lines split for a discount
    # that does not divide evenly share it)
    external_line_id: Mapped[str | None] = mapped_column(String(128))
    """Units cancelled after placement (migration 0014); ``quantity`` is what is still ordered."""
    subtotal_amount: Mapped[int] = mapped_column(BigInteger)
    tax_amount: Mapped[int] = mapped_column(BigInteger)
    total_amount: Mapped[int] = mapped_column(BigInteger)
    # copies of the order's (immutable) placement time, channel and currency, for the reports
    placed_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    channel: Mapped[str] = mapped_column(String(64))
    currency: Mapped[str] = mapped_column(String(3))

    order: Mapped[Order] = relationship(back_populates="lines", lazy="raise")


class Shipment(Base):
    """One parcel: the units an order ships from one warehouse, with its own progress."""

    __tablename__ = "shipments"
    __table_args__ = (
        CheckConstraint(
            "status IN ('pending','picked','packed','shipped','delivered','cancelled',"
            "'ready_for_pickup','collected')",  # click and collect (migration 0020)
            name="status_valid",
        ),
        UniqueConstraint("order_id", "seq"),
        Index("ix_shipments_warehouse_status", "warehouse_id", "status"),
        Index(  # the SLA sweep: open shipments with a promise not yet announced late (0019)
            "ix_shipments_sla_open",
            "ship_by",
            postgresql_where=text(
                "ship_by IS NOT NULL AND late_notified_at IS NULL "
                "AND status IN ('pending','picked','packed')"
            ),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), primary_key=True)
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    seq: Mapped[int] = mapped_column(Integer)
    warehouse_id: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    warehouse_code: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    version: Mapped[int] = mapped_column(Integer, default=1)
    carrier: Mapped[str | None] = mapped_column(String(64))
    tracking_number: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    picked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    packed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    shipped_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancelled_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # the delivery promise made at placement (migration 0019; oms.promises): ship by the end
    # of the promised ship date (warehouse time), delivered by; and when the worker announced
    # the shipment at risk / late (once each)
    ship_by: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    deliver_by: Mapped[date | None] = mapped_column(Date)
    at_risk_notified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    late_notified_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class OrderEvent(Base):
    """One row per status change (and other notable order facts): the order's history."""

    __tablename__ = "order_events"
    __table_args__ = (Index("ix_order_events_order_id_id", "order_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32), default="transition")
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str | None] = mapped_column(String(16))
    actor: Mapped[str] = mapped_column(String(128))
    actor_role: Mapped[str | None] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    request_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class IdempotencyKey(Base):
    """A committed response to replay for a retried request with the same key."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (UniqueConstraint("scope", "key"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    scope: Mapped[str] = mapped_column(String(64))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    order_id: Mapped[uuid.UUID | None] = mapped_column(UUID(as_uuid=True))
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), index=True
    )


class CustomerOrderTotal(Base):
    """Every order a customer (or, without a customer id, a guest email) ever placed in one
    currency: how many and their total, cancelled orders included (migration 0009).

    Only ever raised, by the statement that places the order, so it bounds the customer's sales
    in any time window from above: the top-customers report uses it to skip the customers that
    cannot reach its list (``oms.reports.service.top_customers``)."""

    __tablename__ = "customer_order_totals"
    __table_args__ = (
        Index(
            "ix_customer_order_totals_amount", "currency", "amount", postgresql_include=["orders"]
        ),
        Index("ix_customer_order_totals_orders", "currency", "orders"),
    )

    currency: Mapped[str] = mapped_column(String(3), primary_key=True)
    guest: Mapped[bool] = mapped_column(Boolean, primary_key=True)
    """False: ``customer_key`` is the customer id; true: the email of orders without one."""
    customer_key: Mapped[str] = mapped_column(String(320), primary_key=True)
    orders: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[int] = mapped_column(BigInteger)
