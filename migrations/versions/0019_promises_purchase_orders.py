"""Issue #18: delivery promises, suppliers, purchase orders, reorder settings.

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

from alembic import op  # noqa: F401

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
