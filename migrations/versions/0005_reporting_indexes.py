"""reporting indexes: covering index of orders by placement time, shipments and allocations
by creation time

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22 03:00:00.000000+00:00

The reports (``/v1/reports/...``) read the orders of a time window and the shipments and
consumed allocations of those orders. Built ``CONCURRENTLY`` so that order placement is not
blocked while they build on a large ``orders`` table (each index is its own transaction; if a
build fails, drop the INVALID index it leaves and run the upgrade again).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ORDERS_REPORTING_INCLUDE = [
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


def upgrade() -> None:
    with op.get_context().autocommit_block():
        # every order-level report: index-only scans of a time window
        op.create_index(
            "ix_orders_reporting",
            "orders",
            ["created_at"],
            postgresql_include=ORDERS_REPORTING_INCLUDE,
            postgresql_concurrently=True,
        )
        # split share: live shipments created since the window's start
        op.create_index(
            "ix_shipments_live_created_at",
            "shipments",
            ["created_at"],
            postgresql_include=["order_id", "seq"],
            postgresql_where=sa.text("status <> 'cancelled'"),
            postgresql_concurrently=True,
        )
        # fill rate, return rate per product: shipped units created since the window's start
        op.create_index(
            "ix_allocations_consumed_created_at",
            "allocations",
            ["created_at"],
            postgresql_include=["order_id", "sku", "quantity"],
            postgresql_where=sa.text("status = 'consumed'"),
            postgresql_concurrently=True,
        )


def downgrade() -> None:
    with op.get_context().autocommit_block():
        op.drop_index(
            "ix_allocations_consumed_created_at",
            table_name="allocations",
            postgresql_concurrently=True,
        )
        op.drop_index(
            "ix_shipments_live_created_at", table_name="shipments", postgresql_concurrently=True
        )
        op.drop_index("ix_orders_reporting", table_name="orders", postgresql_concurrently=True)
