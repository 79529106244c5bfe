-- Everything an order placement writes except the reservation, in one round trip: the order
-- (routing and fulfilment counts included), its lines (backorders included), the `placed`
-- history row, the shipments, the `order.placed` outbox event and the stored idempotent
-- response, and the customer's placed-order totals (`customer_order_totals`, which the
-- top-customers report reads; per customer id, else guest email: orders with neither, from
-- guests known by phone or anonymous, are not totalled). The order number is an identity
-- assigned by the INSERT, so it is patched into the two JSON documents in SQL.
WITH o AS (
  INSERT INTO orders (id, status, version, channel, external_reference, customer_id,
    customer_email, currency, payment_method, priority, ship_name, ship_lines, ship_city,
    ship_postal_code, ship_region, ship_country, ship_latitude, ship_longitude, subtotal_amount,
    tax_amount, shipping_fee, total_amount, fulfillment, pickup_warehouse_code, notes,
    attributes, routing, created_by, created_at, updated_at, units_ordered, live_shipments,
    customer_phone, customer_anonymous, locale)
  VALUES ($1, 'placed', 1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11, $12, $13, $14, $15,
    $16, $17, $18, $19, $20, $21, $22, $23, $24::jsonb, $25::jsonb, $26, $27, $27,
    (SELECT coalesce(sum(q), 0) FROM unnest($32::int[]) AS q), cardinality($41::uuid[]),
    $45, $46, $52)
  ON CONFLICT (channel, external_reference) WHERE external_reference IS NOT NULL DO NOTHING
  RETURNING id, number
), lines AS (
  INSERT INTO order_lines (id, order_id, line_no, sku, name, quantity, unit_price, tax_rate_bps,
    subtotal_amount, tax_amount, total_amount, backordered, placed_at, channel, currency)
  SELECT u.id, o.id, u.line_no, u.sku, u.name, u.quantity, u.unit_price, u.tax_rate_bps,
    u.subtotal, u.tax, u.total, u.backordered, $27, $2, $6
  FROM o, unnest($28::uuid[], $29::int[], $30::text[], $31::text[], $32::int[], $33::bigint[],
                 $34::int[], $35::bigint[], $36::bigint[], $37::bigint[], $38::int[])
    AS u(id, line_no, sku, name, quantity, unit_price, tax_rate_bps, subtotal, tax, total,
         backordered)
), history AS (
  INSERT INTO order_events (order_id, kind, from_status, to_status, actor, actor_role, data,
    request_id, created_at)
  SELECT o.id, 'transition', NULL, 'placed', $26, $39, '{}'::jsonb, $40, $27 FROM o
), shipments AS (
  INSERT INTO shipments (id, order_id, seq, warehouse_id, warehouse_code, status, version,
    created_at, updated_at, ship_by, deliver_by)
  SELECT u.id, o.id, u.seq, u.warehouse_id, u.code, 'pending', 1, $27, $27, u.ship_by,
    u.deliver_by  -- the delivery promise ($53, $54: oms.orders.promising)
  FROM o, unnest($41::uuid[], $42::int[], $43::uuid[], $44::text[], $53::timestamptz[],
                 $54::date[])
    AS u(id, seq, warehouse_id, code, ship_by, deliver_by)
), outbox AS (
  INSERT INTO outbox_events (event_id, type, aggregate_type, aggregate_id, payload, created_at)
  SELECT $47, 'order.placed', 'order', o.id::text,
         jsonb_set($48::jsonb, '{data,number}', to_jsonb(o.number)), $27
  FROM o
), replay AS (
  UPDATE idempotency_keys
  SET response_status = 201, order_id = o.id,
      response_body = jsonb_set($49::jsonb, '{number}', to_jsonb(o.number))
  FROM o
  WHERE $50::text IS NOT NULL AND scope = $50 AND key = $51
), customer AS (
  INSERT INTO customer_order_totals AS t (currency, guest, customer_key, orders, amount)
  SELECT $6, $4::text IS NULL, coalesce($4, $5), 1, $20 FROM o
  WHERE coalesce($4, $5) IS NOT NULL  -- guests known only by phone, and anonymous ones: none
  ON CONFLICT (currency, guest, customer_key)
  -- saturating: a customer's total past the bigint range stays at its largest value
  DO UPDATE SET orders = t.orders + 1,
    amount = least(t.amount::numeric + excluded.amount, 9223372036854775807)::bigint
)
SELECT number FROM o
