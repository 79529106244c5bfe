"""order placement's reservation and routing snapshot as database functions (cached plans)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-22 04:30:00.000000+00:00

``oms_reserve``: order placement reserves stock with one call, sent in the same message as
COMMIT (simple query protocol, so no bind parameters: the arguments are literals). As a plain
statement it was parsed, analysed and planned on every order (~0.4-0.6 ms of Postgres CPU);
inside a PL/pgSQL function its statements are planned once per connection. What it does, all or
nothing (otherwise it raises SQLSTATE ``OMS01`` and changes nothing): write the allocation rows,
lock the stock rows of the wanted (warehouse, sku) pairs in (warehouse_id, sku COLLATE "C") order
(the order every writer of stock rows uses, so no deadlocks), check that each still has the
units, raise ``reserved``, and record an ``inventory.low_stock`` outbox event for each level
whose availability crosses its threshold. The allocations are written before the locks are
taken, so the contended rows stay locked for the UPDATE and the commit only.
``p_warehouse_ids``/``p_skus``/``p_quantities`` must not repeat a (warehouse, sku) pair (the
caller sums them).

``oms_routing_snapshot``: every warehouse with the available units of the order's SKUs. As a
prepared statement Postgres planned it anew for every order (a custom plan: the SKU array
changes its estimates, ~0.15 ms); the function keeps one generic plan per connection.

Both run with ``plan_cache_mode = force_generic_plan``: their plans do not depend on the
arguments (primary-key lookups of a handful of rows).
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

RESERVE = """
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
    INSERT INTO allocations (id, order_id, order_line_id, shipment_id, warehouse_id, sku,
                             quantity, status, created_at)
    SELECT a.id, a.order_id, a.line_id, a.shipment_id, a.warehouse_id, a.sku, a.qty, 'open', p_at
    FROM unnest(p_allocation_ids, p_order_ids, p_order_line_ids, p_shipment_ids,
                p_allocation_warehouse_ids, p_allocation_skus, p_allocation_quantities)
         AS a(id, order_id, line_id, shipment_id, warehouse_id, sku, qty);

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

SNAPSHOT = """
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
           greatest(0, s.on_hand - s.reserved - s.safety_stock)
    FROM warehouses w
    LEFT JOIN stock_levels s ON s.warehouse_id = w.id AND s.sku = ANY(p_skus)
    ORDER BY w.code;
END
$$
"""


def upgrade() -> None:
    op.execute(RESERVE)
    op.execute(SNAPSHOT)


def downgrade() -> None:
    op.execute("DROP FUNCTION IF EXISTS oms_routing_snapshot(text[])")
    op.execute(
        "DROP FUNCTION IF EXISTS oms_reserve(uuid[], text[], integer[], uuid[], uuid[], uuid[], "
        "uuid[], uuid[], text[], integer[], timestamptz, text)"
    )
