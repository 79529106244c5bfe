"""customers' placed-order totals (a bound for top customers); allocations carry their order's
placement time, channel and currency

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-22 09:00:00.000000+00:00

**Top customers.** Ranking every customer of a one-year window by revenue hashes one group per
customer (~320,000 on a 1M-order history: 0.33-0.43 s of the report's ~0.65 s, however narrow the
key). ``customer_order_totals`` keeps, per customer (or guest email) and currency, the count and
sum of every order ever placed, cancelled ones included. It is only ever raised (by the statement
that places the order), so it bounds any window's sales of the customer from above: the report
takes the window's sales of the few customers with the largest totals, and then needs only the
customers whose total reaches the smallest figure of that first top list (see
``oms.reports.service.top_customers``).

**Returns by product.** The units shipped of the most-returned SKUs came from every consumed
allocation of the window's time span, each joined to its order for the placement time and the
filters (~140,000 order lookups for a year: most of the report's ~0.8 s). Allocations now carry
the order's ``placed_at``, ``channel`` and ``currency`` (written by ``oms_reserve``, replaced
here: it reads them from the order, which is written earlier in the same transaction); they never
change, so the copies cannot drift. The index of consumed allocations by creation time (0005),
read by that query only, is replaced by one by (sku, placement time).

Not safe under the previous release: its ``oms_reserve`` is replaced, and its placements do not
raise the customer totals. Stop the old API processes first. The upgrade fills the new table and
the allocation copies in one statement each (a full rewrite of ``allocations``: on a large live
table, run it in a quiet hour) and builds the allocation index ``CONCURRENTLY`` (if the build
fails, drop the INVALID index it leaves and run the upgrade again).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COPIES = {"placed_at": "created_at", "channel": "channel", "currency": "currency"}


def _reserve(insert_allocations: str) -> str:
    """``oms_reserve`` (migration 0006) with the given allocation INSERT."""
    return f"""
CREATE OR REPLACE FUNCTION oms_reserve(
    p_warehouse_ids uuid[],
    p_skus text[],
    p_quantities integer[],
    p_allocation_ids uuid[],
    p_order_ids uuid[],
    p_order_line_ids uuid[],
    p_shipment_ids uuid[],
    p_allocation_warehouse_ids uuid[],
    p_allocation_skus text[],
    p_allocation_quantities integer[],
    p_at timestamptz,
    p_occurred_at text
) RETURNS void
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    v_enough integer;
BEGIN
{insert_allocations}

    SELECT count(*) FILTER (WHERE l.enough) INTO v_enough
    FROM (
        SELECT s.on_hand - s.reserved - s.safety_stock >= w.qty AS enough
        FROM stock_levels s
        JOIN unnest(p_warehouse_ids, p_skus, p_quantities) AS w(warehouse_id, sku, qty)
          ON w.warehouse_id = s.warehouse_id AND w.sku = s.sku
        ORDER BY s.warehouse_id, s.sku COLLATE "C"
        FOR UPDATE OF s
    ) l;
    IF v_enough <> cardinality(p_warehouse_ids) THEN
        RAISE EXCEPTION 'oms:stock_moved' USING ERRCODE = 'OMS01';
    END IF;

    WITH reserved AS (
        UPDATE stock_levels s SET reserved = s.reserved + w.qty, updated_at = p_at
        FROM unnest(p_warehouse_ids, p_skus, p_quantities) AS w(warehouse_id, sku, qty)
        WHERE s.warehouse_id = w.warehouse_id AND s.sku = w.sku
        RETURNING s.warehouse_id, s.sku, s.low_stock_threshold AS threshold, w.qty,
                  greatest(0, s.on_hand - s.reserved - s.safety_stock) AS after
    )
    INSERT INTO outbox_events (event_id, type, aggregate_type, aggregate_id, payload, created_at)
    SELECT e.id, 'inventory.low_stock', 'stock', r.warehouse_id::text || ':' || r.sku,
           jsonb_build_object(
             'id', e.id::text, 'type', 'inventory.low_stock', 'occurred_at', p_occurred_at,
             'data', jsonb_build_object(
               'warehouse_id', r.warehouse_id::text, 'warehouse_code', NULL, 'sku', r.sku,
               'available', r.after, 'threshold', r.threshold)),
           p_at
    FROM reserved r, LATERAL (SELECT gen_random_uuid() AS id) e
    WHERE r.threshold IS NOT NULL AND r.after + r.qty > r.threshold AND r.threshold >= r.after;
END
$$
"""


RESERVE_0006 = _reserve("""
    INSERT INTO allocations (id, order_id, order_line_id, shipment_id, warehouse_id, sku,
                             quantity, status, created_at)
    SELECT a.id, a.order_id, a.line_id, a.shipment_id, a.warehouse_id, a.sku, a.qty, 'open', p_at
    FROM unnest(p_allocation_ids, p_order_ids, p_order_line_ids, p_shipment_ids,
                p_allocation_warehouse_ids, p_allocation_skus, p_allocation_quantities)
         AS a(id, order_id, line_id, shipment_id, warehouse_id, sku, qty);""")

RESERVE = _reserve("""
    INSERT INTO allocations (id, order_id, order_line_id, shipment_id, warehouse_id, sku,
                             quantity, status, created_at, placed_at, channel, currency)
    SELECT a.id, a.order_id, a.line_id, a.shipment_id, a.warehouse_id, a.sku, a.qty, 'open', p_at,
           o.created_at, o.channel, o.currency
    FROM unnest(p_allocation_ids, p_order_ids, p_order_line_ids, p_shipment_ids,
                p_allocation_warehouse_ids, p_allocation_skus, p_allocation_quantities)
         AS a(id, order_id, line_id, shipment_id, warehouse_id, sku, qty)
    JOIN orders o ON o.id = a.order_id;""")


def upgrade() -> None:
    # what the API has always required, and the totals' key: a customer id or an email
    op.execute(
        "ALTER TABLE orders ADD CONSTRAINT ck_orders_customer_known "
        "CHECK (customer_id IS NOT NULL OR customer_email IS NOT NULL)"
    )
    op.create_table(
        "customer_order_totals",
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("guest", sa.Boolean(), nullable=False),
        sa.Column("customer_key", sa.String(320), nullable=False),
        sa.Column("orders", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "currency", "guest", "customer_key", name=op.f("pk_customer_order_totals")
        ),
    )
    op.execute(
        """
        INSERT INTO customer_order_totals (currency, guest, customer_key, orders, amount)
        SELECT currency, customer_id IS NULL, coalesce(customer_id, customer_email), count(*),
               sum(total_amount)
        FROM orders
        GROUP BY 1, 2, 3
        """
    )
    # the first list and the customers reaching the bound (with their orders): index-only
    op.create_index(
        "ix_customer_order_totals_amount",
        "customer_order_totals",
        ["currency", "amount"],
        postgresql_include=["orders"],
    )
    op.create_index(
        "ix_customer_order_totals_orders", "customer_order_totals", ["currency", "orders"]
    )

    for column, sql_type in (
        ("placed_at", sa.DateTime(timezone=True)),
        ("channel", sa.String(64)),
        ("currency", sa.String(3)),
    ):
        op.add_column("allocations", sa.Column(column, sql_type))
    op.execute(
        "UPDATE allocations a SET "
        + ", ".join(f"{copy} = o.{source}" for copy, source in COPIES.items())
        + " FROM orders o WHERE o.id = a.order_id"
    )
    for column in COPIES:
        op.alter_column("allocations", column, nullable=False)
    op.execute(RESERVE)
    with op.get_context().autocommit_block():
        # returns by product: the units shipped of a few SKUs in a placement window
        op.create_index(
            "ix_allocations_consumed_reporting",
            "allocations",
            ["sku", "placed_at"],
            postgresql_include=["quantity", "channel", "currency"],
            postgresql_where=sa.text("status = 'consumed'"),
            postgresql_concurrently=True,
        )
        op.drop_index(
            "ix_allocations_consumed_created_at",
            table_name="allocations",
            postgresql_concurrently=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_allocations_consumed_created_at",
            "allocations",
            ["created_at"],
            postgresql_include=["order_id", "sku", "quantity"],
            postgresql_where=sa.text("status = 'consumed'"),
            postgresql_concurrently=True,
        )
        op.drop_index(
            "ix_allocations_consumed_reporting",
            table_name="allocations",
            postgresql_concurrently=True,
        )
    op.execute(RESERVE_0006)
    for column in reversed(COPIES):
        op.drop_column("allocations", column)
    op.drop_table("customer_order_totals")
    op.execute("ALTER TABLE orders DROP CONSTRAINT ck_orders_customer_known")
