"""one spelling of availability in SQL; low-stock events of reservations carry the warehouse code

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23 09:00:00.000000+00:00

The database functions now have their source of truth in the source tree,
``src/oms/inventory/sql/<function>.sql``; this migration installs a frozen copy of each as it is
at this revision (a migration never changes when the source does: a later change of a source
file needs a new migration, and ``tests/integration/test_db_functions.py`` fails until it has
one).

- ``oms_stock_available(on_hand, reserved, safety_stock)``, new: available units, never below 0,
  the rule written once in SQL (``oms.inventory.domain.available`` is its Python twin). A single
  SQL expression, IMMUTABLE and not STRICT, so the planner inlines it into the statements that
  call it: no cost per row.
- ``oms_reserve``: the ``inventory.low_stock`` event it records now carries the warehouse's
  ``warehouse_code`` (it sent ``null``; stock adjustments always sent the code), and its
  crossing reads like the Python rule (``before > threshold >= after``); availability through
  ``oms_stock_available``. Same arguments, same locks in the same order.
- ``oms_routing_snapshot``: availability through ``oms_stock_available``; same result.

Safe under the previous release: same signatures and results (but the event's code). The
downgrade restores 0009's ``oms_reserve`` and 0006's ``oms_routing_snapshot`` and drops
``oms_stock_available``.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STOCK_AVAILABLE = """
CREATE OR REPLACE FUNCTION oms_stock_available(
    p_on_hand integer,
    p_reserved integer,
    p_safety_stock integer
) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT greatest(0, p_on_hand - p_reserved - p_safety_stock)
$$
"""

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
                             quantity, status, created_at, placed_at, channel, currency)
    SELECT a.id, a.order_id, a.line_id, a.shipment_id, a.warehouse_id, a.sku, a.qty, 'open', p_at,
           o.created_at, o.channel, o.currency
    FROM unnest(p_allocation_ids, p_order_ids, p_order_line_ids, p_shipment_ids,
                p_allocation_warehouse_ids, p_allocation_skus, p_allocation_quantities)
         AS a(id, order_id, line_id, shipment_id, warehouse_id, sku, qty)
    JOIN orders o ON o.id = a.order_id;

    SELECT count(*) FILTER (WHERE l.enough) INTO v_enough
    FROM (
        SELECT oms_stock_available(s.on_hand, s.reserved, s.safety_stock) >= w.qty AS enough
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
        RETURNING s.warehouse_id, s.sku, s.low_stock_threshold AS threshold,
                  oms_stock_available(s.on_hand, s.reserved - w.qty, s.safety_stock) AS before,
                  oms_stock_available(s.on_hand, s.reserved, s.safety_stock) AS after
    )
    INSERT INTO outbox_events (event_id, type, aggregate_type, aggregate_id, payload, created_at)
    SELECT e.id, 'inventory.low_stock', 'stock', r.warehouse_id::text || ':' || r.sku,
           jsonb_build_object(
             'id', e.id::text, 'type', 'inventory.low_stock', 'occurred_at', p_occurred_at,
             'data', jsonb_build_object(
               'warehouse_id', r.warehouse_id::text,
               'warehouse_code', (SELECT wh.code FROM warehouses wh WHERE wh.id = r.warehouse_id),
               'sku', r.sku, 'available', r.after, 'threshold', r.threshold)),
           p_at
    FROM reserved r, LATERAL (SELECT gen_random_uuid() AS id) e
    WHERE r.threshold IS NOT NULL AND r.before > r.threshold AND r.threshold >= r.after;
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
           oms_stock_available(s.on_hand, s.reserved, s.safety_stock)
    FROM warehouses w
    LEFT JOIN stock_levels s ON s.warehouse_id = w.id AND s.sku = ANY(p_skus)
    ORDER BY w.code;
END
$$
"""

RESERVE_0009 = """
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
                             quantity, status, created_at, placed_at, channel, currency)
    SELECT a.id, a.order_id, a.line_id, a.shipment_id, a.warehouse_id, a.sku, a.qty, 'open', p_at,
           o.created_at, o.channel, o.currency
    FROM unnest(p_allocation_ids, p_order_ids, p_order_line_ids, p_shipment_ids,
                p_allocation_warehouse_ids, p_allocation_skus, p_allocation_quantities)
         AS a(id, order_id, line_id, shipment_id, warehouse_id, sku, qty)
    JOIN orders o ON o.id = a.order_id;

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

SNAPSHOT_0006 = """
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
    op.execute(STOCK_AVAILABLE)
    op.execute(RESERVE)
    op.execute(SNAPSHOT)


def downgrade() -> None:
    op.execute(SNAPSHOT_0006)
    op.execute(RESERVE_0009)
    op.execute("DROP FUNCTION oms_stock_available(integer, integer, integer)")
