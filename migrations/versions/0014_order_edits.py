"""Order edits and partial cancellation.

Revision ID: 0014
Revises: 0013

``order_lines.cancelled``: the units of a line cancelled after placement (partial cancellation,
or an edit that lowered its quantity or removed it); ``quantity`` is what is still ordered, so a
fully cancelled or removed line keeps its row with a quantity of 0 (the check becomes
``quantity >= 0``). Safe under the previous release: a column with a default, and a weaker check.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "order_lines",
        sa.Column("cancelled", sa.Integer(), server_default="0", nullable=False),
    )
    op.create_check_constraint(
        op.f("ck_order_lines_cancelled_non_negative"), "order_lines", "cancelled >= 0"
    )
    op.drop_constraint(op.f("ck_order_lines_quantity_positive"), "order_lines", type_="check")
    op.create_check_constraint(
        op.f("ck_order_lines_quantity_non_negative"), "order_lines", "quantity >= 0"
    )


def downgrade() -> None:
    op.drop_constraint(op.f("ck_order_lines_quantity_non_negative"), "order_lines", type_="check")
    op.create_check_constraint(
        op.f("ck_order_lines_quantity_positive"), "order_lines", "quantity > 0"
    )
    op.drop_constraint(op.f("ck_order_lines_cancelled_non_negative"), "order_lines", type_="check")
    op.drop_column("order_lines", "cancelled")
