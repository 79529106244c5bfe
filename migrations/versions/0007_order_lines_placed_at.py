"""order lines carry their order's placement time, channel and currency; index of lines by
placement time; index of the window's unshipped or cancelled orders

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22 05:00:00.000000+00:00

The product reports (top products, units ordered in the fulfilment KPIs) read the lines of the
orders placed in a time window. Without the placement time on the line, every such report joins
each line to its order (a hash of all the window's orders: ~1-2 s for a year of a 1M-order
history). The three copied columns never change after the order is placed (an order's
``created_at``, ``channel`` and ``currency`` are immutable), so the copies cannot drift.

Not safe under the previous release: the code before this revision does not write the three
columns, so its order placements fail once they are NOT NULL. Stop the old API processes first.
(A trigger cannot fill them in for it: the old code inserts the order and its lines in one
statement, whose line inserts do not see the order row.)

The upgrade backfills existing lines in one ``UPDATE`` (a full rewrite of ``order_lines``: on a
large live table, run it in a quiet hour), then builds the indexes ``CONCURRENTLY`` (each in its
own transaction; if one fails, drop the INVALID index it leaves and run the upgrade again).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("order_lines", sa.Column("placed_at", sa.DateTime(timezone=True)))
    op.add_column("order_lines", sa.Column("channel", sa.String(64)))
    op.add_column("order_lines", sa.Column("currency", sa.String(3)))
    op.execute(
        "UPDATE order_lines l SET placed_at = o.created_at, channel = o.channel, "
        "currency = o.currency FROM orders o WHERE o.id = l.order_id"
    )
    for column in ("placed_at", "channel", "currency"):
        op.alter_column("order_lines", column, nullable=False)
    with op.get_context().autocommit_block():
        # top products, units ordered: index-only scans of the lines of a placement window
        op.create_index(
            "ix_order_lines_reporting",
            "order_lines",
            ["placed_at"],
            postgresql_include=[
                "currency",
                "channel",
                "sku",
                "quantity",
                "total_amount",
                "order_id",
            ],
            postgresql_concurrently=True,
        )
        # the window's orders that are cancelled or not shipped (yet): the few lines reports
        # must leave out or tell apart, without a hash of every order of the window
        op.create_index(
            "ix_orders_unshipped_or_cancelled",
            "orders",
            ["created_at"],
            postgresql_include=["id", "status", "channel", "currency", "shipped_at"],
            postgresql_where=sa.text("shipped_at IS NULL OR status = 'cancelled'"),
            postgresql_concurrently=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(
            "ix_orders_unshipped_or_cancelled", table_name="orders", postgresql_concurrently=True
        )
        op.drop_index(
            "ix_order_lines_reporting", table_name="order_lines", postgresql_concurrently=True
        )
    op.drop_column("order_lines", "currency")
    op.drop_column("order_lines", "channel")
    op.drop_column("order_lines", "placed_at")
