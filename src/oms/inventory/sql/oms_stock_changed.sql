-- The stock feed's journal (migration 0018): a row of stock_changes for every stock level whose
-- on hand, reserved or safety stock changed, or that was created. Installed as an AFTER ROW
-- trigger on stock_levels, so every writer (reservations in oms_reserve, releases, shipping,
-- adjustments, bulk loads, returns, and whatever writes stock next) is journaled without a
-- line of its own. The row only names the level; its figures are read after commit
-- (oms.inventory.feed). txid: the writing transaction's id (stock_changes' default), what the
-- change feed orders by and hands out only once it is older than every transaction in flight.
CREATE OR REPLACE FUNCTION oms_stock_changed()
RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO stock_changes (warehouse_id, sku) VALUES (NEW.warehouse_id, NEW.sku);
    RETURN NULL;
END
$$;
