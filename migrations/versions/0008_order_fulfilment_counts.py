"""orders carry their fulfilment counts (units ordered and shipped, live shipments) and durations

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-22 07:00:00.000000+00:00

The fulfilment KPIs (fill rate, split share) read, for every order of a time window, its units
ordered (order lines), its units shipped (consumed allocations) and its live shipments. Read
from those tables, a one-year window took three more scans of ~0.5-1.2 million index entries and
a hash of every order of the window (~0.9 s of the report's 1.7 s on a 1M-order history). Kept on
the order row and in the covering reporting index, they come with the one scan of the window's
orders the report makes anyway:

* ``units_ordered``: the sum of the order's line quantities, written when the order is placed
  (lines never change afterwards).
* ``units_shipped``: the units of the order's consumed allocations; raised by the request that
  ships a shipment (the only place allocations are consumed).
* ``live_shipments``: the order's shipments that are not cancelled; written when the order is
  placed or re-routed and set to 0 when it is cancelled.

And the seconds from placement to payment, shipping and delivery, as stored generated columns
(Postgres computes them whenever a row is written: they cannot drift): the percentiles of the
report compare them for every order of the window, and computing them there was most of its
time.

Not safe under the previous release: its code does not maintain the counts (its orders would
read 0). Stop the old API processes first. The upgrade fills the counts of existing orders in one
``UPDATE`` (a full rewrite of ``orders``: on a large live table, run it in a quiet hour), then
rebuilds the reporting index ``CONCURRENTLY`` with the three columns included (each statement
in its own transaction; if the build fails, drop the INVALID index it leaves and run the
upgrade again).

Also a small partial index of ~1 order in 64 (by a hash of its id), the sample from which the
fulfilment report brackets its exact percentiles without sorting every duration of the window.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REPORTING_INCLUDE = [
    "id",
    "status",
    "currency",
    "channel",
    "total_amount",
    "ship_country",
    "customer_id",
    "customer_email",
    "paid_at",
    "shipped_at",
    "delivered_at",
]
COUNTS = ["units_ordered", "units_shipped", "live_shipments"]
DURATIONS = {
    "paid_after_s": "paid_at",
    "shipped_after_s": "shipped_at",
    "delivered_after_s": "delivered_at",
}
DURATION_SAMPLE = "(uuid_hash(id) & 63) = 0"
DURATION_SAMPLE_INCLUDE = ["status", "channel", "currency", *DURATIONS]


def _rebuild_reporting_index(include: list[str]) -> None:
    with op.get_context().autocommit_block():
        op.drop_index("ix_orders_reporting", table_name="orders", postgresql_concurrently=True)
        op.create_index(
            "ix_orders_reporting",
            "orders",
            ["created_at"],
            postgresql_include=include,
            postgresql_concurrently=True,
        )


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
            live_shipments = coalesce(s.live, 0)
        FROM orders x
        LEFT JOIN (SELECT order_id, sum(quantity) AS units FROM order_lines GROUP BY order_id) l
          ON l.order_id = x.id
        LEFT JOIN (SELECT order_id, sum(quantity) AS units FROM allocations
                   WHERE status = 'consumed' GROUP BY order_id) a
          ON a.order_id = x.id
        LEFT JOIN (SELECT order_id, count(*) AS live FROM shipments
                   WHERE status <> 'cancelled' GROUP BY order_id) s
          ON s.order_id = x.id
        WHERE o.id = x.id
        """
    )
    _rebuild_reporting_index(REPORTING_INCLUDE + COUNTS + list(DURATIONS))
    with op.get_context().autocommit_block():
        op.create_index(
            "ix_orders_duration_sample",
            "orders",
            ["created_at"],
            postgresql_include=DURATION_SAMPLE_INCLUDE,
            postgresql_where=sa.text(DURATION_SAMPLE),
            postgresql_concurrently=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(
            "ix_orders_duration_sample", table_name="orders", postgresql_concurrently=True
        )
    _rebuild_reporting_index(REPORTING_INCLUDE)
    for column in [*reversed(DURATIONS), *reversed(COUNTS)]:
        op.drop_column("orders", column)
