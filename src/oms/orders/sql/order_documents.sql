-- Orders as the API shows them, in one statement (so in one snapshot): each order's row, its
-- lines, its shipments, the units each shipment carries, and its standing holds. The units are
-- the allocations (inventory's rows, read as `inventory.service.allocations_for_orders` reads
-- them) that belong to a shipment and are not released, oldest first, then in the order of
-- their lines. $1: the order ids (uuid[]); orders not found are left out.
--
-- The column lists (the names in braces) are filled in from the plain-data classes the rows become
-- (`orders.queries`): named columns, never `*` or whole-row values, so a column a later
-- migration adds changes nothing this statement returns to code that does not know it yet.
SELECT {order_columns},
  ARRAY(
    SELECT ROW({line_columns}) FROM order_lines l WHERE l.order_id = o.id ORDER BY l.line_no
  ) AS doc_lines,
  ARRAY(
    SELECT ROW({shipment_columns}) FROM shipments s WHERE s.order_id = o.id ORDER BY s.seq
  ) AS doc_shipments,
  ARRAY(
    SELECT ROW(a.shipment_id, a.order_line_id, a.sku, a.quantity)
    FROM allocations a JOIN order_lines l ON l.id = a.order_line_id
    WHERE a.order_id = o.id AND a.shipment_id IS NOT NULL AND a.status <> 'released'
    ORDER BY a.created_at, l.line_no, a.id
  ) AS doc_units,
  ARRAY(
    SELECT ROW({hold_columns}) FROM order_holds h
    WHERE h.order_id = o.id AND h.released_at IS NULL
    ORDER BY h.placed_at, h.id
  ) AS doc_holds
FROM orders o
WHERE o.id = ANY($1::uuid[])
