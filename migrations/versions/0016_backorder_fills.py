"""Backorders filled as stock arrives: the backordered lines of a SKU, found by an index.

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # partial: only the lines still waiting for units (a handful among all order lines)
    op.create_index(
        "ix_order_lines_backordered_sku",
        "order_lines",
        ["sku"],
        postgresql_where=sa.text("backordered > 0"),
    )


def downgrade() -> None:
    op.drop_index("ix_order_lines_backordered_sku", table_name="order_lines")
