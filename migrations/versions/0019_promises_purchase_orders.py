"""Issue #18: delivery promises, suppliers, purchase orders, reorder policies.

Revision ID: 0019
Revises: 0018

``warehouse_calendars``: per warehouse its IANA time zone, daily cut-off (local time), handling
days, working days (ISO weekdays) and holidays. ``transit_times``: carrier days (min, max) to a
destination country (``*``: any other) from a distance band up. ``shipments`` gets the promise
made at placement (``ship_by``: the end of the promised ship date in the warehouse's zone;
``deliver_by``: the last day of the delivery window) and when the worker announced it at risk
or late; ``ix_shipments_sla_open`` finds the open shipments still to announce. All nullable:
shipments placed before (or without a promise) are left alone. ``suppliers``,
``purchase_orders`` (draft → sent → partially_received → received, or cancelled; one open
automatic draft per supplier/warehouse/SKU through ``uq_purchase_orders_auto_draft``),
``purchase_order_lines``, ``purchase_order_receipts`` (unique per order and reference: a
repeated receipt is a no-op) and ``reorder_policies`` (per warehouse, or per SKU of it). New
tables and nullable columns only: safe under the previous release.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels = None
depends_on = None

PO_STATUSES = "'draft','sent','partially_received','received','cancelled'"


def upgrade() -> None:
    op.create_table(
        "warehouse_calendars",
        sa.Column("warehouse_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        sa.Column("cutoff", sa.Time(timezone=False), nullable=False),
        sa.Column("handling_days", sa.Integer(), nullable=False),
        sa.Column("working_days", postgresql.ARRAY(sa.SmallInteger()), nullable=False),
        sa.Column("holidays", postgresql.ARRAY(sa.Date()), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "handling_days >= 0 AND handling_days <= 60",
            name=op.f("ck_warehouse_calendars_handling_days_range"),
        ),
        sa.CheckConstraint(
            "cardinality(working_days) >= 1 AND working_days <@ ARRAY[1,2,3,4,5,6,7]::smallint[]",
            name=op.f("ck_warehouse_calendars_working_days_valid"),
        ),
        sa.ForeignKeyConstraint(
            ["warehouse_id"],
            ["warehouses.id"],
            name=op.f("fk_warehouse_calendars_warehouse_id_warehouses"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("warehouse_id", name=op.f("pk_warehouse_calendars")),
    )
    op.create_table(
        "transit_times",
        sa.Column("country", sa.String(2), nullable=False),
        sa.Column("from_band", sa.Integer(), nullable=False),
        sa.Column("min_days", sa.Integer(), nullable=False),
        sa.Column("max_days", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "country = '*' OR country ~ '^[A-Z]{2}$'", name=op.f("ck_transit_times_country_valid")
        ),
        sa.CheckConstraint("from_band >= 0", name=op.f("ck_transit_times_from_band_non_negative")),
        sa.CheckConstraint(
            "min_days >= 0 AND min_days <= max_days", name=op.f("ck_transit_times_days_ordered")
        ),
        sa.PrimaryKeyConstraint("country", "from_band", name=op.f("pk_transit_times")),
    )

    op.add_column("shipments", sa.Column("ship_by", sa.DateTime(timezone=True), nullable=True))
    op.add_column("shipments", sa.Column("deliver_by", sa.Date(), nullable=True))
    op.add_column(
        "shipments", sa.Column("at_risk_notified_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "shipments", sa.Column("late_notified_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.create_index(
        "ix_shipments_sla_open",
        "shipments",
        ["ship_by"],
        postgresql_where=sa.text(
            "ship_by IS NOT NULL AND late_notified_at IS NULL "
            "AND status IN ('pending','picked','packed')"
        ),
    )

    op.create_table(
        "suppliers",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("lead_time_days", sa.Integer(), nullable=False),
        sa.Column("minimum_order_quantity", sa.Integer(), nullable=False),
        sa.Column("pack_size", sa.Integer(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("lead_time_days >= 0", name=op.f("ck_suppliers_lead_time_non_negative")),
        sa.CheckConstraint(
            "minimum_order_quantity >= 1", name=op.f("ck_suppliers_minimum_order_positive")
        ),
        sa.CheckConstraint("pack_size >= 1", name=op.f("ck_suppliers_pack_size_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_suppliers")),
        sa.UniqueConstraint("code", name=op.f("uq_suppliers_code")),
    )
    op.create_table(
        "purchase_orders",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("number", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("supplier_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("warehouse_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("status", sa.String(24), nullable=False),
        sa.Column("expected_on", sa.Date(), nullable=True),
        sa.Column("reference", sa.String(128), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("auto_key", sa.String(200), nullable=True),
        sa.Column("explanation", postgresql.JSONB(), nullable=True),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            f"status IN ({PO_STATUSES})", name=op.f("ck_purchase_orders_status_valid")
        ),
        sa.CheckConstraint(
            "status IN ('draft', 'cancelled') OR expected_on IS NOT NULL",
            name=op.f("ck_purchase_orders_sent_has_date"),
        ),
        sa.ForeignKeyConstraint(
            ["supplier_id"], ["suppliers.id"], name=op.f("fk_purchase_orders_supplier_id_suppliers")
        ),
        sa.ForeignKeyConstraint(
            ["warehouse_id"],
            ["warehouses.id"],
            name=op.f("fk_purchase_orders_warehouse_id_warehouses"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_purchase_orders")),
        sa.UniqueConstraint("number", name=op.f("uq_purchase_orders_number")),
    )
    op.create_index(
        "ix_purchase_orders_status_created_at", "purchase_orders", ["status", "created_at"]
    )
    op.create_index(
        "uq_purchase_orders_auto_draft",
        "purchase_orders",
        ["auto_key"],
        unique=True,
        postgresql_where=sa.text("status = 'draft' AND auto_key IS NOT NULL"),
    )
    op.create_table(
        "purchase_order_lines",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("purchase_order_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("sku", sa.String(64), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("received", sa.Integer(), server_default="0", nullable=False),
        sa.Column("incoming_id", postgresql.UUID(as_uuid=True), nullable=True),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_purchase_order_lines_quantity_positive")),
        sa.CheckConstraint(
            "received >= 0 AND received <= quantity",
            name=op.f("ck_purchase_order_lines_received_within"),
        ),
        sa.ForeignKeyConstraint(
            ["purchase_order_id"],
            ["purchase_orders.id"],
            name=op.f("fk_purchase_order_lines_purchase_order_id_purchase_orders"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_purchase_order_lines")),
        sa.UniqueConstraint(
            "purchase_order_id",
            "line_no",
            name=op.f("uq_purchase_order_lines_purchase_order_id_line_no"),
        ),
    )
    op.create_index("ix_purchase_order_lines_sku", "purchase_order_lines", ["sku"])
    op.create_table(
        "purchase_order_receipts",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("purchase_order_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("reference", sa.String(64), nullable=False),
        sa.Column("lines", postgresql.JSONB(), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["purchase_order_id"],
            ["purchase_orders.id"],
            name=op.f("fk_purchase_order_receipts_purchase_order_id_purchase_orders"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_purchase_order_receipts")),
        sa.UniqueConstraint(
            "purchase_order_id",
            "reference",
            name=op.f("uq_purchase_order_receipts_purchase_order_id_reference"),
        ),
    )
    op.create_table(
        "reorder_policies",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("warehouse_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("sku", sa.String(64), nullable=True),
        sa.Column("supplier_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("auto_draft", sa.Boolean(), nullable=False),
        sa.Column("demand_window_days", sa.Integer(), nullable=False),
        sa.Column("safety_factor", sa.Float(), nullable=False),
        sa.Column("review_days", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "demand_window_days BETWEEN 7 AND 365", name=op.f("ck_reorder_policies_window_range")
        ),
        sa.CheckConstraint(
            "safety_factor >= 0 AND safety_factor <= 5",
            name=op.f("ck_reorder_policies_safety_factor_range"),
        ),
        sa.CheckConstraint(
            "review_days >= 0", name=op.f("ck_reorder_policies_review_days_non_negative")
        ),
        sa.ForeignKeyConstraint(
            ["supplier_id"],
            ["suppliers.id"],
            name=op.f("fk_reorder_policies_supplier_id_suppliers"),
        ),
        sa.ForeignKeyConstraint(
            ["warehouse_id"],
            ["warehouses.id"],
            name=op.f("fk_reorder_policies_warehouse_id_warehouses"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reorder_policies")),
    )
    op.create_index(
        "uq_reorder_policies_sku",
        "reorder_policies",
        ["warehouse_id", "sku"],
        unique=True,
        postgresql_where=sa.text("sku IS NOT NULL"),
    )
    op.create_index(
        "uq_reorder_policies_warehouse",
        "reorder_policies",
        ["warehouse_id"],
        unique=True,
        postgresql_where=sa.text("sku IS NULL"),
    )


def downgrade() -> None:
    op.drop_table("reorder_policies")
    op.drop_table("purchase_order_receipts")
    op.drop_table("purchase_order_lines")
    op.drop_table("purchase_orders")
    op.drop_table("suppliers")
    op.drop_index("ix_shipments_sla_open", table_name="shipments")
    for column in ("late_notified_at", "at_risk_notified_at", "deliver_by", "ship_by"):
        op.drop_column("shipments", column)
    op.drop_table("transit_times")
    op.drop_table("warehouse_calendars")
