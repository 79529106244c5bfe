"""Issue #17 follow-up: exceptions on picked shipments, connector line ids, stored routing after changes.

Exceptions on picked shipments and the rewritten routing document need no schema change (the
routing stays in ``orders.routing``). Connector edits need two columns:

* ``order_lines.external_line_id``: the sales channel's id of the line (Shopify's line item
  id, WooCommerce's), set at intake, named by Shopify's ``orders/edited`` changes;
* ``orders.channel_updated_at``: the channel's modification time of the latest update applied
  from a connector, so an older update arriving late, or an ``orders/edited`` that an
  ``orders/updated`` already carried, is not applied again.

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("order_lines", sa.Column("external_line_id", sa.String(128), nullable=True))
    op.add_column(
        "orders", sa.Column("channel_updated_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    op.drop_column("orders", "channel_updated_at")
    op.drop_column("order_lines", "external_line_id")
