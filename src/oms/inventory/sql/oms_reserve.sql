-- Order placement's reservation, all or nothing; called by oms.inventory.service.reserve (one
-- call per order, the contended statement, sent last before COMMIT). Otherwise it raises
-- SQLSTATE OMS01 (oms.inventory.service.STOCK_MOVED) and the caller rolls back to a savepoint.
--
-- 1. Write the allocation rows, with their order's placement time, channel and currency (read
--    from the order, written earlier in the same transaction). Before the locks: the contended
--    rows stay locked for the UPDATE and the commit only.
-- 2. Lock the stock rows of the wanted (warehouse, sku) pairs in (warehouse_id, sku COLLATE "C")
--    order, the order every writer of stock rows uses (oms.inventory.domain.stock_lock_key), so
--    no deadlocks; check that each still has the units.
-- 3. Raise reserved, and record an inventory.low_stock outbox event for each level whose
--    availability crosses its threshold downwards: the rule and the payload of
--    oms.inventory.domain.low_stock_crossing (same keys, the warehouse code included).
--
-- p_warehouse_ids/p_skus/p_quantities must not repeat a (warehouse, sku) pair (the caller sums
-- them); the allocation arrays hold one element per allocation row. p_occurred_at is the events'
-- occurred_at as the Python side writes it (datetime.isoformat()).
--
-- A PL/pgSQL function so that its statements are planned once per connection, not once per
-- order (plan_cache_mode = force_generic_plan: primary-key lookups of a handful of rows).
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
$$;
