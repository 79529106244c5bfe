"""Issue #18: the stock feed (availability per channel, change feed), the ledger's hash chain.

Revision ID: 0018
Revises: 0017

- ``stock_changes``: the journal of stock levels that changed, written by triggers (frozen
  copies below; sources in ``src/oms/inventory/sql/``): ``oms_stock_changed`` after every
  insert of a stock level and every update that changes its on hand, reserved or safety stock;
  ``oms_warehouse_stock_changed`` when a warehouse's ``active`` or ``is_pickup_store`` changes
  (all its levels); ``oms_channel_stock_changed`` when a routing policy is created, deleted or
  changes the warehouses a channel ships from (all levels). Each row records its writing
  transaction's id (``txid``), by which the change feed orders and hands rows out only once
  that transaction is older than every one in flight (``oms.inventory.feed``). Every existing
  level is journaled once, so a reader starting from the beginning sees every level.
- ``channel_stock`` (what the availability events last told each channel), and
  ``stock_feed_cursors`` (the worker's place in the journal).
- ``inventory_movements``: ``txid`` (default: the writing transaction's id; NULL for the rows
  written before this revision, which are all committed), and ``seq`` / ``chain_hash``, set
  after commit by the ledger sealer (``oms.inventory.ledger_export``). No table rewrite: the
  new columns have no default for existing rows.
- ``allocations``: index (sku, created_at), for the levels as of a past moment.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels = None
depends_on = None

TXID = sa.text("(pg_current_xact_id()::text)::bigint")

STOCK_CHANGED = """
CREATE OR REPLACE FUNCTION oms_stock_changed()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO stock_changes (warehouse_id, sku) VALUES (NEW.warehouse_id, NEW.sku);
    RETURN NULL;
END
$$
"""

WAREHOUSE_STOCK_CHANGED = """
CREATE OR REPLACE FUNCTION oms_warehouse_stock_changed()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO stock_changes (warehouse_id, sku)
    SELECT s.warehouse_id, s.sku FROM stock_levels s WHERE s.warehouse_id = NEW.id;
    RETURN NULL;
END
$$
"""

CHANNEL_STOCK_CHANGED = """
CREATE OR REPLACE FUNCTION oms_channel_stock_changed()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO stock_changes (warehouse_id, sku)
    SELECT s.warehouse_id, s.sku FROM stock_levels s;
    RETURN NULL;
END
$$
"""

TRIGGERS = (
    """CREATE TRIGGER oms_stock_level_created AFTER INSERT ON stock_levels
    FOR EACH ROW EXECUTE FUNCTION oms_stock_changed()""",
    """CREATE TRIGGER oms_stock_level_changed
    AFTER UPDATE OF on_hand, reserved, safety_stock ON stock_levels
    FOR EACH ROW WHEN (OLD.on_hand IS DISTINCT FROM NEW.on_hand
                       OR OLD.reserved IS DISTINCT FROM NEW.reserved
                       OR OLD.safety_stock IS DISTINCT FROM NEW.safety_stock)
    EXECUTE FUNCTION oms_stock_changed()""",
    """CREATE TRIGGER oms_warehouse_stock_changed
    AFTER UPDATE OF active, is_pickup_store ON warehouses
    FOR EACH ROW WHEN (OLD.active IS DISTINCT FROM NEW.active
                       OR OLD.is_pickup_store IS DISTINCT FROM NEW.is_pickup_store)
    EXECUTE FUNCTION oms_warehouse_stock_changed()""",
    """CREATE TRIGGER oms_channel_policy_created AFTER INSERT OR DELETE ON routing_policies
    FOR EACH ROW EXECUTE FUNCTION oms_channel_stock_changed()""",
    """CREATE TRIGGER oms_channel_policy_changed
    AFTER UPDATE OF warehouse_codes, exclude_pickup_stores ON routing_policies
    FOR EACH ROW WHEN (OLD.warehouse_codes IS DISTINCT FROM NEW.warehouse_codes
                       OR OLD.exclude_pickup_stores IS DISTINCT FROM NEW.exclude_pickup_stores)
    EXECUTE FUNCTION oms_channel_stock_changed()""",
)


def upgrade() -> None:
    op.create_table(
        "stock_changes",
        sa.Column("id", sa.BigInteger(), sa.Identity(), nullable=False),
        sa.Column("txid", sa.BigInteger(), server_default=TXID, nullable=False),
        sa.Column("warehouse_id", postgresql.UUID(as_uuid=True), nullable=False),
        sa.Column("sku", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stock_changes")),
    )
    op.create_index("ix_stock_changes_txid_id", "stock_changes", ["txid", "id"])
    op.create_table(
        "channel_stock",
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("sku", sa.String(64), nullable=False),
        sa.Column("published", sa.Integer(), nullable=True),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("pending_since", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("channel", "sku", name=op.f("pk_channel_stock")),
    )
    op.create_index(
        "ix_channel_stock_pending",
        "channel_stock",
        ["pending_since"],
        postgresql_where=sa.text("pending_since IS NOT NULL"),
    )
    op.create_table(
        "stock_feed_cursors",
        sa.Column("name", sa.String(32), nullable=False),
        sa.Column("txid", sa.BigInteger(), nullable=False),
        sa.Column("change_id", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_stock_feed_cursors")),
    )
    op.add_column("inventory_movements", sa.Column("txid", sa.BigInteger(), nullable=True))
    op.alter_column("inventory_movements", "txid", server_default=TXID)
    op.add_column("inventory_movements", sa.Column("seq", sa.BigInteger(), nullable=True))
    op.add_column("inventory_movements", sa.Column("chain_hash", sa.String(64), nullable=True))
    op.create_index("ux_inventory_movements_seq", "inventory_movements", ["seq"], unique=True)
    op.create_index(
        "ix_inventory_movements_unsealed",
        "inventory_movements",
        ["txid", "id"],
        postgresql_where=sa.text("seq IS NULL"),
    )
    op.create_index("ix_allocations_sku_created", "allocations", ["sku", "created_at"])
    for function in (STOCK_CHANGED, WAREHOUSE_STOCK_CHANGED, CHANNEL_STOCK_CHANGED):
        op.execute(function)
    for trigger in TRIGGERS:
        op.execute(trigger)
    op.execute(
        "INSERT INTO stock_changes (warehouse_id, sku) "
        'SELECT warehouse_id, sku FROM stock_levels ORDER BY warehouse_id, sku COLLATE "C"'
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS oms_channel_policy_changed ON routing_policies")
    op.execute("DROP TRIGGER IF EXISTS oms_channel_policy_created ON routing_policies")
    op.execute("DROP TRIGGER IF EXISTS oms_warehouse_stock_changed ON warehouses")
    op.execute("DROP TRIGGER IF EXISTS oms_stock_level_changed ON stock_levels")
    op.execute("DROP TRIGGER IF EXISTS oms_stock_level_created ON stock_levels")
    op.execute("DROP FUNCTION IF EXISTS oms_channel_stock_changed()")
    op.execute("DROP FUNCTION IF EXISTS oms_warehouse_stock_changed()")
    op.execute("DROP FUNCTION IF EXISTS oms_stock_changed()")
    op.drop_index("ix_allocations_sku_created", table_name="allocations")
    op.drop_index("ix_inventory_movements_unsealed", table_name="inventory_movements")
    op.drop_index("ux_inventory_movements_seq", table_name="inventory_movements")
    op.drop_column("inventory_movements", "chain_hash")
    op.drop_column("inventory_movements", "seq")
    op.drop_column("inventory_movements", "txid")
    op.drop_table("stock_feed_cursors")
    op.drop_index("ix_channel_stock_pending", table_name="channel_stock")
    op.drop_table("channel_stock")
    op.drop_index("ix_stock_changes_txid_id", table_name="stock_changes")
    op.drop_table("stock_changes")
