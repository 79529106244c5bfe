-- The stock feed's journal (migration 0018): a warehouse activated or deactivated, or turned
-- into (or out of) a pickup store, changes what every channel can sell from it: every stock
-- level of the warehouse is journaled (an AFTER ROW trigger on warehouses, rare).
CREATE OR REPLACE FUNCTION oms_warehouse_stock_changed()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO stock_changes (warehouse_id, sku)
    SELECT s.warehouse_id, s.sku FROM stock_levels s WHERE s.warehouse_id = NEW.id;
    RETURN NULL;
END
$$;
