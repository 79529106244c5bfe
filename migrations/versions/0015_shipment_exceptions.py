"""Shipment exceptions (rejected units) and (warehouse, SKU) blocks.

Revision ID: 0015
Revises: 0014

``shipment_exceptions``: one row per report of a warehouse that rejected units of its shipment
(short pick, damaged, not found): the lines and units, what the router did with them (the
re-plan's warehouses, backorders and explanation) and the block it placed, if any.
``stock_blocks``: a (warehouse, SKU) whose stock routing does not count until ``blocked_until``
(the shelf was found empty or damaged). Safe under the previous release: two new tables.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels = None
depends_on = None


# frozen copies (inventory/sql/oms_routing_snapshot.sql is the source): the snapshot reads the
# blocks, so order placement learns of them without a round trip of its own
SNAPSHOT = """
CREATE OR REPLACE FUNCTION oms_routing_snapshot(p_skus text[])
RETURNS TABLE (
    id uuid, code varchar, country varchar, latitude double precision,
    longitude double precision, priority integer, active boolean, ships_to varchar[],
    is_pickup_store boolean, sku varchar, available integer, blocked boolean
)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    RETURN QUERY
    SELECT w.id, w.code, w.country, w.latitude, w.longitude, w.priority, w.active,
           w.ships_to, w.is_pickup_store, s.sku,
           oms_stock_available(s.on_hand, s.reserved, s.safety_stock),
           EXISTS (
               SELECT 1 FROM stock_blocks b
               WHERE b.warehouse_id = w.id AND b.sku = s.sku AND b.blocked_until > now()
           )
    FROM warehouses w
    LEFT JOIN stock_levels s ON s.warehouse_id = w.id AND s.sku = ANY(p_skus)
    ORDER BY w.code;
END
$$
"""

SNAPSHOT_0010 = """
CREATE OR REPLACE FUNCTION oms_routing_snapshot(p_skus text[])
RETURNS TABLE (
    id uuid, code varchar, country varchar, latitude double precision,
    longitude double precision, priority integer, active boolean, ships_to varchar[],
    is_pickup_store boolean, sku varchar, available integer
)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan
AS $$
BEGIN
    RETURN QUERY
    SELECT w.id, w.code, w.country, w.latitude, w.longitude, w.priority, w.active,
           w.ships_to, w.is_pickup_store, s.sku,
           oms_stock_available(s.on_hand, s.reserved, s.safety_stock)
    FROM warehouses w
    LEFT JOIN stock_levels s ON s.warehouse_id = w.id AND s.sku = ANY(p_skus)
    ORDER BY w.code;
END
$$
"""


def upgrade() -> None:
    op.create_table(
        "shipment_exceptions",
        sa.Column("id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("order_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("shipment_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("warehouse_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("warehouse_code", sa.String(32), nullable=False),
        sa.Column("lines", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("replan", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("blocked_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["order_id"],
            ["orders.id"],
            name=op.f("fk_shipment_exceptions_order_id_orders"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["shipment_id"],
            ["shipments.id"],
            name=op.f("fk_shipment_exceptions_shipment_id_shipments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_shipment_exceptions")),
    )
    op.create_index(
        "ix_shipment_exceptions_order_id_created_at",
        "shipment_exceptions",
        ["order_id", "created_at"],
    )
    op.create_table(
        "stock_blocks",
        sa.Column("warehouse_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("sku", sa.String(64), nullable=False),
        sa.Column("blocked_until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("reference_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["warehouse_id"],
            ["warehouses.id"],
            name=op.f("fk_stock_blocks_warehouse_id_warehouses"),
        ),
        sa.PrimaryKeyConstraint("warehouse_id", "sku", name=op.f("pk_stock_blocks")),
    )
    op.create_index("ix_stock_blocks_sku", "stock_blocks", ["sku"])
    # a new result column: the function is replaced, not altered
    op.execute("DROP FUNCTION oms_routing_snapshot(text[])")
    op.execute(SNAPSHOT)


def downgrade() -> None:
    op.execute("DROP FUNCTION oms_routing_snapshot(text[])")
    op.execute(SNAPSHOT_0010)
    op.drop_table("stock_blocks")
    op.drop_table("shipment_exceptions")
