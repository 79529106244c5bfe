"""orders carry their fulfilment counts and durations; an index for the fulfilment KPIs

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22 07:00:00.000000+00:00

The fulfilment KPIs read, for every order of a time window, its units ordered (order lines),
units shipped (consumed allocations), live shipments and returned units (returns). Read from
those tables, a one-year window took four more scans and joins of ~0.5-1.2 million rows (~1 s
of the report's 1.7 s on a 1M-order history). Kept on the order row, they come with the one
scan of the window's orders the report makes anyway:

* ``units_ordered``: the sum of the order's line quantities, written when the order is placed
  (lines never change afterwards).
* ``units_shipped``: the units of the order's consumed allocations; raised by the request that
  ships a shipment (the only place allocations are consumed).
* ``live_shipments``: the order's shipments that are not cancelled; written when the order is
  placed or re-routed and set to 0 when it is cancelled.
* ``units_returned``: the units on the order's returns that are not rejected; raised when a
  return is requested, lowered when it is rejected.

And the seconds from placement to payment, shipping and delivery, as stored generated columns
(Postgres computes them whenever the row is written: they cannot drift): the percentiles compare
them for every order of the window, and computing them there was most of the report's time.

``ix_orders_fulfilment`` covers all the report reads (its own index rather than a wider
``ix_orders_reporting``, whose other reports would scan the extra bytes). A small partial index
of ~1 order in 32 (by a hash of its id) is the sample from which the report brackets its exact
percentiles without sorting every duration of the window. The index of live shipments by
creation time (0005) goes: nothing reads it any more.

Not safe under the previous release: its code does not maintain the counts (its orders would
read 0). Stop the old API processes first. The generated columns rewrite ``orders`` under an
exclusive lock and the counts of existing orders are filled in one ``UPDATE``: on a large live
table, run it in a quiet hour. The indexes are built ``CONCURRENTLY`` (each in its own
transaction; if a build fails, drop the INVALID index it leaves and run the upgrade again).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COUNTS = ["units_ordered", "units_shipped", "live_shipments", "units_returned"]
DURATIONS = {
    "paid_after_s": "paid_at",
    "shipped_after_s": "shipped_at",
    "delivered_after_s": "delivered_at",
}
FULFILMENT_INCLUDE = [*COUNTS, *DURATIONS, "status", "channel", "currency"]
DURATION_SAMPLE = "(uuid_hash(id) & 31) = 0"


def upgrade() -> None:
    for column in COUNTS:
        op.add_column("orders", sa.Column(column, sa.Integer(), nullable=False, server_default="0"))
    for column, at in DURATIONS.items():
        op.add_column(
            "orders",
            sa.Column(
                column,
                sa.Float(),
                sa.Computed(f"date_part('epoch', {at} - created_at)", persisted=True),
            ),
        )
    op.execute(
        """
        UPDATE orders o
        SET units_ordered = coalesce(l.units, 0),
            units_shipped = coalesce(a.units, 0),
            live_shipments = coalesce(s.live, 0),
            units_returned = coalesce(r.units, 0)
        FROM orders x
        LEFT JOIN (SELECT order_id, sum(quantity) AS units FROM order_lines GROUP BY order_id) l
          ON l.order_id = x.id
        LEFT JOIN (SELECT order_id, sum(quantity) AS units FROM allocations
                   WHERE status = 'consumed' GROUP BY order_id) a
          ON a.order_id = x.id
        LEFT JOIN (SELECT order_id, count(*) AS live FROM shipments
                   WHERE status <> 'cancelled' GROUP BY order_id) s
          ON s.order_id = x.id
        LEFT JOIN (SELECT r.order_id, sum(rl.quantity) AS units
                   FROM returns r JOIN return_lines rl ON rl.return_id = r.id
                   WHERE r.status <> 'rejected' GROUP BY r.order_id) r
          ON r.order_id = x.id
        WHERE o.id = x.id
        """
    )
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_orders_fulfilment",
            "orders",
            ["created_at"],
            postgresql_include=FULFILMENT_INCLUDE,
            postgresql_concurrently=True,
        )
        op.create_index(
            "ix_orders_duration_sample",
            "orders",
            ["created_at"],
            postgresql_include=["status", "channel", "currency", *DURATIONS],
            postgresql_where=sa.text(DURATION_SAMPLE),
            postgresql_concurrently=True,
        )
        op.drop_index(
            "ix_shipments_live_created_at", table_name="shipments", postgresql_concurrently=True
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_shipments_live_created_at",
            "shipments",
            ["created_at"],
            postgresql_include=["order_id", "seq"],
            postgresql_where=sa.text("status <> 'cancelled'"),
            postgresql_concurrently=True,
        )
        op.drop_index(
            "ix_orders_duration_sample", table_name="orders", postgresql_concurrently=True
        )
        op.drop_index("ix_orders_fulfilment", table_name="orders", postgresql_concurrently=True)
    for column in [*reversed(DURATIONS), *reversed(COUNTS)]:
        op.drop_column("orders", column)
