"""Issue #19: stores: click and collect, transfers, point-of-sale sales, scoped keys.

Revision ID: 0020
Revises: 0019
"""

from __future__ import annotations

from alembic import op  # noqa: F401

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
