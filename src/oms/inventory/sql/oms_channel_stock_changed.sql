-- The stock feed's journal (migration 0018): a channel's routing policy created, changed in
-- the warehouses it may ship from (warehouse_codes, exclude_pickup_stores) or deleted changes
-- that channel's sellable quantity of every SKU: every stock level is journaled (an AFTER
-- row trigger on routing_policies, rare).
CREATE OR REPLACE FUNCTION oms_channel_stock_changed()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO stock_changes (warehouse_id, sku)
    SELECT s.warehouse_id, s.sku FROM stock_levels s;
    RETURN NULL;
END
$$;
