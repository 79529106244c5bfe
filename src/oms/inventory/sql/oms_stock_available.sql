-- The units of a stock level that can be sold: on hand, less reserved, less the safety stock,
-- never below 0. The one SQL spelling of the rule (oms.inventory.domain.available is the Python
-- one); every statement that needs it calls this function. A single SQL expression, IMMUTABLE
-- and not STRICT, so Postgres inlines it into the calling statement when planning it: no
-- function call per row, and a LEFT JOIN's missing row still gives 0.
CREATE OR REPLACE FUNCTION oms_stock_available(
    p_on_hand integer,
    p_reserved integer,
    p_safety_stock integer
) RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$
    SELECT greatest(0, p_on_hand - p_reserved - p_safety_stock)
$$;
